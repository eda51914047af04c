#include "proxy/security/renewal_schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace trellis::proxy {

using std::chrono::milliseconds;

milliseconds RenewalSchedule::backoff(uint32_t failures, const RenewalPolicy& policy, Random& random) {
  const int64_t max = std::max<int64_t>(policy.max_backoff.count(), 0);
  int64_t step = std::clamp<int64_t>(policy.first_backoff.count(), 0, max);
  for (uint32_t i = 1; i < failures && step < max; ++i) step = step > max / 2 ? max : step * 2;
  // The upper half of the step: spread out, yet never much sooner than the
  // step says, so retries still slow down as failures pile up.
  const int64_t low = step / 2;
  return milliseconds(low + static_cast<int64_t>(random.uniform(static_cast<uint64_t>(step - low) + 1)));
}

SystemTime RenewalSchedule::renewal_time(SystemTime not_before, SystemTime not_after,
                                         const RenewalPolicy& policy, Random& random) {
  const int64_t lifetime = std::chrono::duration_cast<milliseconds>(not_after - not_before).count();
  if (lifetime <= 0) return not_before;
  const auto at = static_cast<int64_t>(std::llround(static_cast<double>(lifetime) * policy.renew_at));
  const auto jitter = static_cast<int64_t>(static_cast<double>(lifetime) * std::max(policy.jitter, 0.0));
  const int64_t offset = static_cast<int64_t>(random.uniform(static_cast<uint64_t>(2 * jitter) + 1)) - jitter;
  return not_before + milliseconds(at + offset);
}

void RenewalSchedule::certificate_installed(SystemTime not_before, SystemTime not_after) {
  not_after_ = not_after;
  renew_at_ = renewal_time(not_before, not_after, policy_, *random_);
  failures_ = 0;
}

void RenewalSchedule::attempt_failed(SystemTime now) {
  if (failures_ < std::numeric_limits<uint32_t>::max()) ++failures_;
  SystemTime retry = now + backoff(failures_, policy_, *random_);
  if (not_after_ && now < *not_after_) {
    SystemTime deadline = *not_after_ - policy_.expiry_margin;
    if (deadline > now) retry = std::min(retry, deadline);
  }
  retry_at_ = retry;
}

SystemTime RenewalSchedule::next_renewal(SystemTime now) const {
  SystemTime at = now;
  if (failures_ > 0) {
    at = retry_at_;
  } else if (not_after_) {
    at = renew_at_;
  }
  return std::max(at, now);
}

}  // namespace trellis::proxy
