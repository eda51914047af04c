// Retry decisions: which failures and methods may be retried, the jittered
// backoff, and the sliding-window budget.
#include "policy/retry.h"

#include <algorithm>
#include <chrono>

namespace trellis::policy {

bool is_retriable(const RetryPolicy& policy, AttemptFailure failure, int status, bool grpc) {
  const uint32_t on = policy.retry_on;
  const uint32_t unavailable = grpc ? uint32_t{kRetryGrpcUnavailable} : 0u;
  switch (failure) {
    case AttemptFailure::kConnectFailure:
      return (on & (kRetryConnectFailure | kRetry5xx | kRetryGatewayError | unavailable)) != 0;
    case AttemptFailure::kReset:
      return (on & (kRetryReset | kRetry5xx | unavailable)) != 0;
    case AttemptFailure::kPerTryTimeout:
      return (on & (kRetry5xx | kRetryGatewayError)) != 0;
    case AttemptFailure::kGrpcStatus:
      return (on & grpc_retry_bit(status)) != 0;
    case AttemptFailure::kStatus:
      break;
  }
  if ((on & kRetry5xx) && status >= 500 && status <= 599) return true;
  if ((on & kRetryGatewayError) && status >= 502 && status <= 504) return true;
  if (on & kRetryStatusCodes) {
    for (uint16_t code : policy.status_codes)
      if (code == status) return true;
  }
  return false;
}

bool is_idempotent(std::string_view method) {
  // Method names are case-sensitive (RFC 9110 section 9.1): "get" is not GET.
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" || method == "PUT" ||
         method == "DELETE";
}

uint32_t grpc_retry_bit(int code) {
  switch (code) {
    case 1:
      return kRetryGrpcCancelled;
    case 4:
      return kRetryGrpcDeadlineExceeded;
    case 8:
      return kRetryGrpcResourceExhausted;
    case 13:
      return kRetryGrpcInternal;
    case 14:
      return kRetryGrpcUnavailable;
    default:
      return 0;
  }
}

bool method_allows_retry(const RetryPolicy& policy, std::string_view method, AttemptFailure failure,
                         bool grpc) {
  if (failure == AttemptFailure::kConnectFailure) return true;
  if (grpc && (failure == AttemptFailure::kGrpcStatus ||
               (failure == AttemptFailure::kReset && (policy.retry_on & kRetryGrpcUnavailable) != 0)))
    return true;
  return policy.non_idempotent || is_idempotent(method);
}

Duration backoff_delay(const RetryPolicy& policy, uint32_t retry, Random& random) {
  const auto max = std::chrono::duration_cast<Duration>(policy.backoff_max).count();
  auto cap = std::min(std::chrono::duration_cast<Duration>(policy.backoff_base).count(), max);
  if (cap <= 0) return Duration::zero();
  // Doubling stops at the cap, so a large `retry` cannot overflow.
  for (uint32_t i = 0; i < retry && cap < max; ++i) cap = cap > max / 2 ? max : cap * 2;
  return Duration(static_cast<Duration::rep>(random.uniform(static_cast<uint64_t>(cap) + 1)));
}

namespace {

int64_t second_of(MonoTime now) {
  return std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
}

// The sum of one count over the buckets of the window ending at `second`;
// buckets of earlier laps are skipped even if nothing has reset them yet.
template <class Buckets, class Count>
uint64_t window_sum(const Buckets& buckets, int64_t second, Count count) {
  uint64_t sum = 0;
  for (const auto& b : buckets)
    if (b.second > second - static_cast<int64_t>(buckets.size()) && b.second <= second) sum += count(b);
  return sum;
}

}  // namespace

RetryBudget::RetryBudget(uint32_t percent, double min_per_second)
    : percent_(percent), min_per_second_(min_per_second) {}

RetryBudget::Bucket& RetryBudget::bucket(MonoTime now) {
  int64_t second = second_of(now);
  // A bucket still holding an older second is from a previous lap of the
  // window: its counts no longer belong in it.
  int64_t slot = second % static_cast<int64_t>(kBuckets);
  if (slot < 0) slot += kBuckets;
  Bucket& b = buckets_[static_cast<size_t>(slot)];
  if (b.second != second) b = {second, 0, 0};
  return b;
}

void RetryBudget::record_request(MonoTime now) { ++bucket(now).requests; }

bool RetryBudget::try_withdraw(MonoTime now) {
  Bucket& current = bucket(now);
  uint64_t retries_in_window = retries(now);
  double allowed =
      static_cast<double>(requests(now)) * percent_ / 100.0 + min_per_second_ * static_cast<double>(kBuckets);
  if (static_cast<double>(retries_in_window) >= allowed) return false;
  ++current.retries;
  return true;
}

uint64_t RetryBudget::requests(MonoTime now) {
  return window_sum(buckets_, second_of(now), [](const Bucket& b) { return b.requests; });
}

uint64_t RetryBudget::retries(MonoTime now) {
  return window_sum(buckets_, second_of(now), [](const Bucket& b) { return b.retries; });
}

}  // namespace trellis::policy
