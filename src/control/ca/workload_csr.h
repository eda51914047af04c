// What a workload may ask the CA for: the checks on a certificate signing
// request before anything is signed. The CA takes only the public key from
// the request; names and extensions come from the CA's own template.
#pragma once

#include <string_view>

#include "common/result.h"
#include "common/spiffe.h"
#include "control/ca/x509.h"

namespace trellis::control {

// Requests larger than this are refused unread: a P-256 CSR is under 1 KiB.
inline constexpr size_t kMaxCsrBytes = 16 * 1024;

// The request's public key, when: the PEM holds one CSR whose self-signature
// verifies (the requester holds the key); the key is ECDSA P-256 (the
// message names the key found otherwise); and it asks for exactly one
// subject alternative name, a URI equal to `entitled` (a request for another
// identity, for DNS, IP or e-mail names, or for more URIs is refused, naming
// what was asked and what is allowed). Other requested extensions and the
// requested subject are ignored: they never reach the certificate.
Result<UniquePkey> check_workload_csr(std::string_view csr_pem, const SpiffeId& entitled);

}  // namespace trellis::control
