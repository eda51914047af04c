// Retries as pure decision logic: which failures may be retried, how long to
// back off, and the budget that keeps retries from multiplying an overload.
// Clock readings and randomness come in as parameters.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/random.h"
#include "common/time.h"

namespace trellis::policy {

// Which failures a retry may follow (bit set).
enum RetryOn : uint32_t {
  kRetryConnectFailure = 1u << 0,
  kRetryReset = 1u << 1,         // the connection broke before a response
  kRetry5xx = 1u << 2,           // any 5xx answer, a connect failure, a reset or a per-try timeout
  kRetryGatewayError = 1u << 3,  // 502, 503, 504, a connect failure or a per-try timeout
  kRetryStatusCodes = 1u << 4,   // the codes in RetryPolicy::status_codes
  // gRPC calls whose answer carries one of these grpc-status codes in its
  // head (a trailers-only response: nothing of the call reached the client).
  // kRetryGrpcUnavailable also covers a gRPC call's connect failure and a
  // reset before any response byte, which a gRPC client sees as UNAVAILABLE.
  kRetryGrpcCancelled = 1u << 5,          // 1
  kRetryGrpcDeadlineExceeded = 1u << 6,   // 4
  kRetryGrpcResourceExhausted = 1u << 7,  // 8
  kRetryGrpcInternal = 1u << 8,           // 13
  kRetryGrpcUnavailable = 1u << 9,        // 14
};

// The conditions' names in config and resources, in bit order.
inline constexpr std::array<std::string_view, 10> kRetryOnNames = {"connect-failure",
                                                                   "reset",
                                                                   "5xx",
                                                                   "gateway-error",
                                                                   "retriable-status-codes",
                                                                   "cancelled",
                                                                   "deadline-exceeded",
                                                                   "resource-exhausted",
                                                                   "internal",
                                                                   "unavailable"};

struct RetryPolicy {
  uint32_t attempts = 0;      // retries after the first try; 0: off
  Millis per_try_timeout{0};  // 0: none
  uint32_t retry_on = kRetryConnectFailure | kRetryReset;
  std::vector<uint16_t> status_codes;
  Millis backoff_base{25};
  Millis backoff_max{250};
  // Budget: retries add at most this share to the requests sent, plus a floor.
  uint32_t budget_percent = 20;
  uint32_t budget_min_per_second = 10;
  bool non_idempotent = false;        // also retry methods that are not idempotent
  uint32_t buffer_limit = 64 * 1024;  // request bodies longer than this are never replayed
};

enum class AttemptFailure : uint8_t {
  kConnectFailure,  // no connection could be made (refused, unreachable, connect timeout)
  kReset,           // the connection broke before any response byte
  kPerTryTimeout,
  kStatus,  // a complete response head with a status
  // A gRPC call answered with a grpc-status other than OK in its head (the
  // status passed is the gRPC code).
  kGrpcStatus,
};

// Whether `failure` (with `status` for kStatus and kGrpcStatus) is one the
// policy retries; `grpc` says the request is a gRPC call. Says nothing of
// attempts left, the method or the budget.
bool is_retriable(const RetryPolicy& policy, AttemptFailure failure, int status = 0, bool grpc = false);

// GET, HEAD, OPTIONS, TRACE, PUT and DELETE (RFC 9110 section 9.2.2).
bool is_idempotent(std::string_view method);

// Whether a request with `method` may be sent again after `failure`. A
// connect failure never reached the upstream, so any method may. gRPC calls
// are all POST: a gRPC code the operator listed by name (a reset counting as
// UNAVAILABLE) says the service's calls may be retried, as gRPC's own retry
// policy does. Otherwise only idempotent methods unless the policy allows
// others.
bool method_allows_retry(const RetryPolicy& policy, std::string_view method, AttemptFailure failure,
                         bool grpc = false);

// The kRetryGrpc* bit for a gRPC status code; 0 for codes never retried.
uint32_t grpc_retry_bit(int code);

// Exponential backoff with full jitter: uniform in [0, min(max, base * 2^retry)],
// where `retry` is 0 before the first retry.
Duration backoff_delay(const RetryPolicy& policy, uint32_t retry, Random& random);

// Retries may add at most `percent` of the requests seen over a sliding
// window, plus `min_per_second` x the window's seconds. Counted in one-second
// buckets, so old traffic stops counting once the window has passed it.
// Not thread-safe: one per worker per cluster (each worker then gets its
// share of the floor, see the caller).
class RetryBudget {
 public:
  static constexpr size_t kBuckets = 10;  // the window, in seconds

  RetryBudget(uint32_t percent, double min_per_second);

  // Every request's first try.
  void record_request(MonoTime now);
  // A retry about to be made: true, and counted, when within the budget.
  bool try_withdraw(MonoTime now);

  // What the window holds at `now` (for tests and stats).
  uint64_t requests(MonoTime now);
  uint64_t retries(MonoTime now);

 private:
  struct Bucket {
    int64_t second = -1;  // which second of the clock it counts
    uint64_t requests = 0;
    uint64_t retries = 0;
  };
  Bucket& bucket(MonoTime now);

  uint32_t percent_;
  double min_per_second_;
  std::array<Bucket, kBuckets> buckets_{};
};

}  // namespace trellis::policy
