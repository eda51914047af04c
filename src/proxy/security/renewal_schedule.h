// When a sidecar asks the CA for its next certificate: at half of the
// certificate's lifetime, give or take a random tenth of it so that a fleet
// started together does not renew together; after a failed attempt, again
// after a growing, jittered backoff. No clock and no I/O: time comes in as
// arguments and randomness through Random, so tests run it on made-up time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "common/random.h"
#include "proxy/security/certificate_checks.h"

namespace trellis::proxy {

struct RenewalPolicy {
  // Renew at this fraction of the lifetime after notBefore: at half-life a
  // sidecar has the other half to ride out a control-plane outage.
  double renew_at = 0.5;
  // Uniform jitter of ± this fraction of the lifetime around that point.
  double jitter = 0.1;
  // Retries: the first after about first_backoff, doubling up to
  // max_backoff, each drawn uniformly from the upper half of its step.
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{60000};
  // While the certificate is valid, a retry is never set later than this
  // before it expires, so a long backoff cannot sleep through the last
  // chance to renew in time.
  std::chrono::milliseconds expiry_margin{30000};
};

// Used on the main thread, with the WorkloadCredentials it schedules for.
class RenewalSchedule {
 public:
  explicit RenewalSchedule(Random& random, RenewalPolicy policy = {}) : random_(&random), policy_(policy) {}

  // A certificate valid over [not_before, not_after) was installed: the next
  // renewal is at its half-life with jitter, drawn once here. Clears the
  // failures.
  void certificate_installed(SystemTime not_before, SystemTime not_after);
  // A renewal attempt failed at `now` (the CA refused or was unreachable,
  // or its certificate was refused): the next try is after a backoff, and
  // no later than expiry_margin before a still-valid certificate expires.
  // Once it has expired, tries go on at the backoff's pace.
  void attempt_failed(SystemTime now);

  // When to try next; never earlier than `now` (now itself: try at once,
  // as before the first certificate).
  SystemTime next_renewal(SystemTime now) const;
  // Failed attempts since the last certificate was installed.
  uint32_t consecutive_failures() const { return failures_; }

  // The backoff before retry number `failures` (1 for the first), with
  // jitter: uniform in [step / 2, step], step = first_backoff * 2^(failures
  // - 1) capped at max_backoff.
  static std::chrono::milliseconds backoff(uint32_t failures, const RenewalPolicy& policy, Random& random);
  // The renewal time of a certificate valid over [not_before, not_after).
  static SystemTime renewal_time(SystemTime not_before, SystemTime not_after, const RenewalPolicy& policy,
                                 Random& random);

 private:
  Random* random_;
  RenewalPolicy policy_;
  std::optional<SystemTime> not_after_;  // of the installed certificate
  SystemTime renew_at_{};
  SystemTime retry_at_{};  // when failures_ > 0
  uint32_t failures_ = 0;
};

}  // namespace trellis::proxy
