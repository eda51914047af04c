// Checks a workload certificate the way a peer does: the chain verifies to a
// root of the trust bundle at a given time and the leaf names exactly one
// SPIFFE ID. For tests and tools here; a proxy-side copy belongs in net, which
// the proxy may include.
#pragma once

#include <string_view>

#include "common/result.h"
#include "common/spiffe.h"
#include "control/ca/x509.h"

namespace trellis::control {

// `leaf_pem` holds exactly one certificate, `chain_pem` zero or more
// intermediates (empty text is none), `bundle_pem` one or more roots. The
// leaf must verify through the chain to one of the roots as of `at`, must not
// be a CA, and must carry exactly one spiffe:// URI SAN, a valid SPIFFE ID,
// which is returned. Errors say which of these failed.
Result<SpiffeId> verify_workload(std::string_view leaf_pem, std::string_view chain_pem,
                                 std::string_view bundle_pem, SystemTime at);

}  // namespace trellis::control
