#include "proxy/security/certificate_metrics.h"

#include <fmt/format.h>

#include <iterator>

namespace trellis::proxy {

std::optional<int64_t> seconds_to_expiry(const CertificateStats& stats, SystemTime now) {
  if (!stats.not_after) return std::nullopt;
  // Floor, so a certificate that expires in half a second shows 0, not 1,
  // and one that expired half a second ago shows -1.
  return std::chrono::floor<std::chrono::seconds>(*stats.not_after - now).count();
}

std::string render_certificate_metrics(const CertificateStats& stats, SystemTime now) {
  std::string out;
  auto it = std::back_inserter(out);
  if (std::optional<int64_t> seconds = seconds_to_expiry(stats, now)) {
    fmt::format_to(it,
                   "# HELP trellis_certificate_expiry_seconds Seconds until the workload certificate expires "
                   "(negative once expired).\n"
                   "# TYPE trellis_certificate_expiry_seconds gauge\n"
                   "trellis_certificate_expiry_seconds {}\n",
                   *seconds);
  }
  fmt::format_to(it,
                 "# HELP trellis_certificate_renewals_total Workload certificate renewals, by result.\n"
                 "# TYPE trellis_certificate_renewals_total counter\n"
                 "trellis_certificate_renewals_total{{result=\"ok\"}} {}\n"
                 "trellis_certificate_renewals_total{{result=\"failed\"}} {}\n",
                 stats.renewals_ok, stats.renewals_failed);
  return out;
}

}  // namespace trellis::proxy
