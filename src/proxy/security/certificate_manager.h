// The sidecar's workload certificate over the life of the process: its own
// key and CSR, each certificate the mesh CA returns (checked, then swapped in
// as new TLS contexts), when to ask for the next one, and what /stats shows.
// The owner does the asking: at next_renewal() it sends csr_pem() to the
// control plane, then calls install() with the answer or renewal_failed().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/random.h"
#include "common/result.h"
#include "common/spiffe.h"
#include "proxy/security/certificate_metrics.h"
#include "proxy/security/renewal_schedule.h"
#include "proxy/security/tls_credentials.h"
#include "proxy/security/workload_credentials.h"

namespace trellis::proxy {

// Main thread only; workers get current()'s contexts through the config
// snapshot, rebuilt when generation() changes.
class CertificateManager {
 public:
  // A fresh key and CSR for `identity`. `random` (the main thread's) jitters
  // the schedule and must outlive the manager.
  static Result<CertificateManager> create(const SpiffeId& identity, Random& random, TlsProfile profile = {},
                                           RenewalPolicy policy = {});

  const std::string& identity() const { return credentials_.identity(); }
  // What to send the CA; the same for the life of the manager.
  const std::string& csr_pem() const { return credentials_.csr_pem(); }

  // The CA's answer (see WorkloadCredentials::install). Installed: the next
  // renewal is at the new certificate's half-life, counted as ok. Refused:
  // the last good credentials stay, a retry is scheduled, counted as failed.
  Result<bool> install(std::string_view certificate_pem, std::string_view chain_pem,
                       std::string_view trust_bundle_pem, SystemTime now);
  // An attempt that brought no certificate (control plane unreachable, CA
  // refused the CSR): a retry is scheduled, counted as failed.
  void renewal_failed(SystemTime now);
  // A new trust bundle for the installed certificate (root rotation). Not a
  // renewal: the schedule and the counts stay as they are.
  Result<bool> update_trust_bundle(std::string_view trust_bundle_pem, SystemTime now);

  // When to ask next; `now` before the first certificate. Never before `now`.
  SystemTime next_renewal(SystemTime now) const { return schedule_.next_renewal(now); }
  uint32_t consecutive_failures() const { return schedule_.consecutive_failures(); }

  // Null before the first certificate.
  const std::shared_ptr<const TlsCredentials>& current() const { return credentials_.current(); }
  uint64_t generation() const { return credentials_.generation(); }
  CertificateStats stats() const;

 private:
  CertificateManager(WorkloadCredentials credentials, RenewalSchedule schedule)
      : credentials_(std::move(credentials)), schedule_(schedule) {}

  WorkloadCredentials credentials_;
  RenewalSchedule schedule_;
  uint64_t renewals_ok_ = 0;
  uint64_t renewals_failed_ = 0;
};

}  // namespace trellis::proxy
