#include "proxy/security/certificate_manager.h"

#include <algorithm>
#include <utility>

namespace trellis::proxy {

Result<CertificateManager> CertificateManager::create(const SpiffeId& identity, Random& random,
                                                      TlsProfile profile, RenewalPolicy policy) {
  Result<WorkloadCredentials> credentials = WorkloadCredentials::create(identity, std::move(profile));
  if (!credentials) return credentials.error();
  return CertificateManager(std::move(*credentials), RenewalSchedule(random, policy));
}

Result<bool> CertificateManager::install(std::string_view certificate_pem, std::string_view chain_pem,
                                         std::string_view trust_bundle_pem, SystemTime now) {
  Result<bool> installed = credentials_.install(certificate_pem, chain_pem, trust_bundle_pem, now);
  if (!installed) {
    renewal_failed(now);
    return installed;
  }
  const TlsCredentials& current = *credentials_.current();
  // The CA dates certificates back (a minute, for peers whose clocks lag):
  // the half-life counts from when this one arrived, or a short-lived
  // certificate would be due for renewal the moment it is installed.
  schedule_.certificate_installed(std::max(current.not_before, now), current.not_after);
  ++renewals_ok_;
  return true;
}

void CertificateManager::renewal_failed(SystemTime now) {
  schedule_.attempt_failed(now);
  ++renewals_failed_;
}

Result<bool> CertificateManager::update_trust_bundle(std::string_view trust_bundle_pem, SystemTime now) {
  return credentials_.update_trust_bundle(trust_bundle_pem, now);
}

CertificateStats CertificateManager::stats() const {
  CertificateStats stats;
  stats.not_after = credentials_.not_after();
  stats.renewals_ok = renewals_ok_;
  stats.renewals_failed = renewals_failed_;
  return stats;
}

}  // namespace trellis::proxy
