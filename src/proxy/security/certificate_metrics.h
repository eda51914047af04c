// The numbers /stats shows about the sidecar's certificate: time to expiry
// and renewal outcomes, rendered in Prometheus' text format for the admin
// thread to append to the rest.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "proxy/security/certificate_checks.h"

namespace trellis::proxy {

struct CertificateStats {
  // The certificate in force; none before the first one.
  std::optional<SystemTime> not_after;
  // Certificates installed (the first included) and attempts that ended
  // without one (the CA unreachable or refusing, or its answer refused).
  uint64_t renewals_ok = 0;
  uint64_t renewals_failed = 0;
};

// Whole seconds from `now` to notAfter, negative once expired; none before
// the first certificate.
std::optional<int64_t> seconds_to_expiry(const CertificateStats& stats, SystemTime now);

// trellis_certificate_expiry_seconds (gauge, left out before the first
// certificate) and trellis_certificate_renewals_total{result="ok|failed"}
// (counter), each with its HELP and TYPE lines.
std::string render_certificate_metrics(const CertificateStats& stats, SystemTime now);

}  // namespace trellis::proxy
