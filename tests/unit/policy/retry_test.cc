// Retry decisions on fake time and seeded randomness.
#include "policy/retry.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace trellis::policy {
namespace {

RetryPolicy retry_on(uint32_t flags, std::vector<uint16_t> codes = {}) {
  RetryPolicy p;
  p.attempts = 2;
  p.retry_on = flags;
  p.status_codes = std::move(codes);
  return p;
}

MonoTime at(Duration since_start) { return MonoTime{} + since_start; }

TEST(Retry, ConnectFailureCondition) {
  auto p = retry_on(kRetryConnectFailure);
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kConnectFailure));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kReset));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kPerTryTimeout));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kStatus, 503));
}

TEST(Retry, ResetCondition) {
  auto p = retry_on(kRetryReset);
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kReset));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kConnectFailure));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kPerTryTimeout));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kStatus, 500));
}

TEST(Retry, FiveXxCoversEveryServerSideFailure) {
  auto p = retry_on(kRetry5xx);
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kConnectFailure));
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kReset));
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kPerTryTimeout));
  for (int status : {500, 501, 502, 503, 504, 599})
    EXPECT_TRUE(is_retriable(p, AttemptFailure::kStatus, status));
  for (int status : {200, 404, 429, 499, 600}) EXPECT_FALSE(is_retriable(p, AttemptFailure::kStatus, status));
}

TEST(Retry, GatewayErrorCondition) {
  auto p = retry_on(kRetryGatewayError);
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kConnectFailure));
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kPerTryTimeout));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kReset));
  for (int status : {502, 503, 504}) EXPECT_TRUE(is_retriable(p, AttemptFailure::kStatus, status));
  for (int status : {500, 501, 505, 404}) EXPECT_FALSE(is_retriable(p, AttemptFailure::kStatus, status));
}

TEST(Retry, StatusCodesCondition) {
  auto p = retry_on(kRetryStatusCodes, {409, 503});
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kStatus, 409));
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kStatus, 503));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kStatus, 502));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kConnectFailure));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kReset));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kPerTryTimeout));
  // The list alone does nothing without the flag.
  EXPECT_FALSE(is_retriable(retry_on(0, {409}), AttemptFailure::kStatus, 409));
}

TEST(Retry, ConditionsCombine) {
  auto p = retry_on(kRetryReset | kRetryStatusCodes, {429});
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kReset));
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kStatus, 429));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kStatus, 503));
  EXPECT_FALSE(is_retriable(retry_on(0), AttemptFailure::kConnectFailure));
}

TEST(Retry, GrpcCodesEachByName) {
  const std::pair<uint32_t, int> kCodes[] = {{kRetryGrpcCancelled, 1},
                                             {kRetryGrpcDeadlineExceeded, 4},
                                             {kRetryGrpcResourceExhausted, 8},
                                             {kRetryGrpcInternal, 13},
                                             {kRetryGrpcUnavailable, 14}};
  for (auto [bit, code] : kCodes) {
    auto p = retry_on(bit);
    for (int other = 0; other <= 16; ++other)
      EXPECT_EQ(is_retriable(p, AttemptFailure::kGrpcStatus, other, true), other == code)
          << code << " " << other;
    // A gRPC code is not an HTTP status, and HTTP conditions do not cover it.
    EXPECT_FALSE(is_retriable(p, AttemptFailure::kStatus, 503, true));
  }
  EXPECT_FALSE(
      is_retriable(retry_on(kRetry5xx | kRetryStatusCodes, {14}), AttemptFailure::kGrpcStatus, 14, true));
}

TEST(Retry, GrpcUnavailableCoversConnectFailuresAndResetsOfCalls) {
  auto p = retry_on(kRetryGrpcUnavailable);
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kConnectFailure, 0, true));
  EXPECT_TRUE(is_retriable(p, AttemptFailure::kReset, 0, true));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kPerTryTimeout, 0, true));
  // Not for requests that are not gRPC calls.
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kConnectFailure, 0, false));
  EXPECT_FALSE(is_retriable(p, AttemptFailure::kReset, 0, false));
  EXPECT_FALSE(is_retriable(retry_on(kRetryGrpcInternal), AttemptFailure::kReset, 0, true));
}

TEST(Retry, IdempotentMethods) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
    EXPECT_TRUE(is_idempotent(m)) << m;
  for (const char* m : {"POST", "PATCH", "CONNECT", "get", "", "GETX"}) EXPECT_FALSE(is_idempotent(m)) << m;
}

TEST(Retry, MethodAllowsRetry) {
  RetryPolicy p;
  // A connect failure never reached the upstream: any method may go again.
  EXPECT_TRUE(method_allows_retry(p, "POST", AttemptFailure::kConnectFailure));
  for (auto f : {AttemptFailure::kReset, AttemptFailure::kPerTryTimeout, AttemptFailure::kStatus}) {
    EXPECT_FALSE(method_allows_retry(p, "POST", f));
    EXPECT_TRUE(method_allows_retry(p, "GET", f));
  }
  // A gRPC code named by the policy says the calls may go again.
  EXPECT_TRUE(method_allows_retry(p, "POST", AttemptFailure::kGrpcStatus, true));
  EXPECT_FALSE(method_allows_retry(p, "POST", AttemptFailure::kReset, true));
  p.retry_on |= kRetryGrpcUnavailable;
  EXPECT_TRUE(method_allows_retry(p, "POST", AttemptFailure::kReset, true));
  EXPECT_FALSE(method_allows_retry(p, "POST", AttemptFailure::kReset, false));
  EXPECT_FALSE(method_allows_retry(p, "POST", AttemptFailure::kPerTryTimeout, true));
  p.non_idempotent = true;
  EXPECT_TRUE(method_allows_retry(p, "POST", AttemptFailure::kReset));
}

TEST(Retry, BackoffStaysWithinTheCapAndGrows) {
  FastRandom rng(9);
  RetryPolicy p;
  p.backoff_base = Millis(10);
  p.backoff_max = Millis(1000);
  for (uint32_t retry = 0; retry < 8; ++retry) {
    Duration cap = std::min<Duration>(Millis(10) * (1 << retry), Millis(1000));
    Duration lo = Duration::max(), hi = Duration::zero();
    double sum = 0;
    constexpr int kDraws = 20'000;
    for (int i = 0; i < kDraws; ++i) {
      Duration d = backoff_delay(p, retry, rng);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
      sum += std::chrono::duration<double>(d).count();
    }
    EXPECT_GE(lo, Duration::zero()) << "retry " << retry;
    EXPECT_LE(hi, cap) << "retry " << retry;
    // Full jitter: uniform over [0, cap], so the mean is half the cap and
    // the draws reach close to both ends.
    double cap_s = std::chrono::duration<double>(cap).count();
    EXPECT_NEAR(sum / kDraws, cap_s / 2, cap_s * 0.02) << "retry " << retry;
    EXPECT_LT(std::chrono::duration<double>(lo).count(), cap_s * 0.01) << "retry " << retry;
    EXPECT_GT(std::chrono::duration<double>(hi).count(), cap_s * 0.99) << "retry " << retry;
  }
}

TEST(Retry, BackoffCapHoldsForHugeRetryCounts) {
  FastRandom rng(3);
  RetryPolicy p;
  p.backoff_base = Millis(25);
  p.backoff_max = Millis(250);
  for (uint32_t retry : {10u, 63u, 64u, 1000u, UINT32_MAX}) {
    for (int i = 0; i < 1000; ++i) {
      Duration d = backoff_delay(p, retry, rng);
      ASSERT_GE(d, Duration::zero());
      ASSERT_LE(d, Millis(250));
    }
  }
  // A base above the max is held to the max.
  p.backoff_base = Millis(400);
  for (int i = 0; i < 1000; ++i) ASSERT_LE(backoff_delay(p, 0, rng), Millis(250));
  // No base: no wait.
  p.backoff_base = Millis(0);
  EXPECT_EQ(backoff_delay(p, 3, rng), Duration::zero());
}

TEST(RetryBudget, PercentOfRequests) {
  RetryBudget budget(20, 0);
  MonoTime now = at(std::chrono::seconds(100));
  for (int i = 0; i < 1000; ++i) budget.record_request(now);
  int granted = 0;
  for (int i = 0; i < 1000; ++i) granted += budget.try_withdraw(now) ? 1 : 0;
  EXPECT_EQ(granted, 200);
  EXPECT_EQ(budget.requests(now), 1000u);
  EXPECT_EQ(budget.retries(now), 200u) << "refused withdrawals are not counted";
}

TEST(RetryBudget, RequestsAcrossTheWindowAllCount) {
  RetryBudget budget(10, 0);
  for (int s = 0; s < 10; ++s)
    for (int i = 0; i < 100; ++i) budget.record_request(at(std::chrono::seconds(s) + Millis(500)));
  MonoTime now = at(std::chrono::seconds(9) + Millis(900));
  EXPECT_EQ(budget.requests(now), 1000u);
  int granted = 0;
  while (budget.try_withdraw(now)) ++granted;
  EXPECT_EQ(granted, 100);
}

TEST(RetryBudget, FloorAllowsRetriesWithoutTraffic) {
  RetryBudget budget(20, 3);
  MonoTime now = at(std::chrono::seconds(5));
  int granted = 0;
  while (granted < 1000 && budget.try_withdraw(now)) ++granted;
  EXPECT_EQ(granted, 30) << "3 per second over a 10-second window";

  // The floor adds to the percentage.
  RetryBudget both(20, 1);
  for (int i = 0; i < 100; ++i) both.record_request(now);
  granted = 0;
  while (granted < 1000 && both.try_withdraw(now)) ++granted;
  EXPECT_EQ(granted, 20 + 10);

  // A fractional floor (a worker's share of a cluster's floor).
  RetryBudget share(0, 0.25);
  granted = 0;
  while (granted < 1000 && share.try_withdraw(now)) ++granted;
  EXPECT_EQ(granted, 3) << "retries while fewer than 2.5";
}

TEST(RetryBudget, OldTrafficAgesOut) {
  RetryBudget budget(20, 0);
  MonoTime start = at(std::chrono::seconds(1000));
  for (int i = 0; i < 1000; ++i) budget.record_request(start);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(budget.try_withdraw(start));

  MonoTime later = start + std::chrono::seconds(9) + Millis(999);
  EXPECT_EQ(budget.requests(later), 1000u) << "still inside the window";
  EXPECT_EQ(budget.retries(later), 50u);
  int granted = 0;
  while (budget.try_withdraw(later)) ++granted;
  EXPECT_EQ(granted, 150) << "the retries made earlier in the window count";

  MonoTime gone = start + std::chrono::seconds(10);
  EXPECT_EQ(budget.requests(gone), 0u);
  EXPECT_EQ(budget.retries(gone), 150u) << "only the retries of the last 10 s remain";
  EXPECT_FALSE(budget.try_withdraw(gone)) << "no traffic left, no floor";
}

TEST(RetryBudget, BucketsAreReusedAfterAFullLap) {
  RetryBudget budget(50, 0);
  // Second 3 and second 13 share a bucket; the old count must not leak in.
  for (int i = 0; i < 100; ++i) budget.record_request(at(std::chrono::seconds(3)));
  MonoTime now = at(std::chrono::seconds(13));
  budget.record_request(now);
  budget.record_request(now);
  EXPECT_EQ(budget.requests(now), 2u);
  EXPECT_TRUE(budget.try_withdraw(now));
  EXPECT_FALSE(budget.try_withdraw(now));
  // Long idle gaps too.
  MonoTime much_later = at(std::chrono::hours(5));
  EXPECT_EQ(budget.requests(much_later), 0u);
  EXPECT_EQ(budget.retries(much_later), 0u);
}

}  // namespace
}  // namespace trellis::policy
