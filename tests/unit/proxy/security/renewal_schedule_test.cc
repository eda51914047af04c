#include "proxy/security/renewal_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace trellis::proxy {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Made-up wall-clock time: nothing here reads a clock or sleeps.
const SystemTime kStart = SystemTime{} + hours(24 * 365 * 55);

// Always the middle of any range: uniform(n) == n / 2.
class MiddleRandom final : public Random {
 public:
  uint64_t next() override { return uint64_t{1} << 63; }
};
// The ends of every range.
class LowestRandom final : public Random {
 public:
  uint64_t next() override { return 0; }
};
class HighestRandom final : public Random {
 public:
  uint64_t next() override { return UINT64_MAX; }
};

TEST(RenewalScheduleTest, AsksAtOnceBeforeTheFirstCertificate) {
  FastRandom random(1);
  RenewalSchedule schedule(random);
  EXPECT_EQ(schedule.next_renewal(kStart), kStart);
  EXPECT_EQ(schedule.next_renewal(kStart + seconds(5)), kStart + seconds(5));
}

TEST(RenewalScheduleTest, RenewsAtHalfLifeWithoutJitterInTheMiddle) {
  MiddleRandom random;
  RenewalSchedule schedule(random);
  schedule.certificate_installed(kStart, kStart + hours(24));
  EXPECT_EQ(schedule.next_renewal(kStart), kStart + hours(12));
}

TEST(RenewalScheduleTest, JitterIsATenthOfTheLifetimeEitherWay) {
  LowestRandom low;
  HighestRandom high;
  EXPECT_EQ(RenewalSchedule::renewal_time(kStart, kStart + hours(10), {}, low), kStart + hours(4));
  EXPECT_EQ(RenewalSchedule::renewal_time(kStart, kStart + hours(10), {}, high), kStart + hours(6));
}

TEST(RenewalScheduleTest, AFleetSpreadsItsRenewals) {
  // A thousand sidecars that got their certificates at the same moment.
  SystemTime earliest = SystemTime::max();
  SystemTime latest = SystemTime::min();
  for (uint64_t seed = 0; seed < 1000; ++seed) {
    FastRandom random(seed);
    RenewalSchedule schedule(random);
    schedule.certificate_installed(kStart, kStart + hours(24));
    SystemTime at = schedule.next_renewal(kStart);
    ASSERT_GE(at, kStart + milliseconds(hours(24)) * 4 / 10);
    ASSERT_LE(at, kStart + milliseconds(hours(24)) * 6 / 10);
    earliest = std::min(earliest, at);
    latest = std::max(latest, at);
  }
  // Spread over most of the window, not bunched at half-life.
  EXPECT_LT(earliest, kStart + hours(10) + hours(1));
  EXPECT_GT(latest, kStart + hours(14) - hours(1));
}

TEST(RenewalScheduleTest, TheRenewalTimeIsDrawnOncePerCertificate) {
  FastRandom random(7);
  RenewalSchedule schedule(random);
  schedule.certificate_installed(kStart, kStart + hours(24));
  SystemTime at = schedule.next_renewal(kStart);
  EXPECT_EQ(schedule.next_renewal(kStart + hours(1)), at);
  EXPECT_EQ(schedule.next_renewal(kStart + hours(2)), at);
  // Past it: now.
  EXPECT_EQ(schedule.next_renewal(at + seconds(3)), at + seconds(3));
}

TEST(RenewalScheduleTest, BackoffDoublesFromOneSecondToAMinuteWithJitter) {
  RenewalPolicy policy;
  LowestRandom low;
  HighestRandom high;
  const int64_t steps_ms[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (uint32_t failures = 1; failures <= 8; ++failures) {
    int64_t step = steps_ms[failures - 1];
    EXPECT_EQ(RenewalSchedule::backoff(failures, policy, low).count(), step / 2) << failures;
    EXPECT_EQ(RenewalSchedule::backoff(failures, policy, high).count(), step) << failures;
  }
  EXPECT_EQ(RenewalSchedule::backoff(1000000, policy, high), milliseconds(60000));
  EXPECT_EQ(RenewalSchedule::backoff(UINT32_MAX, policy, low), milliseconds(30000));

  FastRandom random(3);
  for (int i = 0; i < 1000; ++i) {
    milliseconds d = RenewalSchedule::backoff(3, policy, random);
    ASSERT_GE(d, milliseconds(2000));
    ASSERT_LE(d, milliseconds(4000));
  }
}

TEST(RenewalScheduleTest, RetriesAfterFailuresThenBackToHalfLife) {
  FastRandom random(11);
  RenewalSchedule schedule(random);
  schedule.certificate_installed(kStart, kStart + hours(24));
  SystemTime t = schedule.next_renewal(kStart);

  // The control plane is down: each retry waits longer.
  milliseconds previous{0};
  for (uint32_t failure = 1; failure <= 10; ++failure) {
    schedule.attempt_failed(t);
    EXPECT_EQ(schedule.consecutive_failures(), failure);
    SystemTime next = schedule.next_renewal(t);
    milliseconds wait = std::chrono::duration_cast<milliseconds>(next - t);
    int64_t step = std::min<int64_t>(int64_t{1000} << (failure - 1), 60000);
    EXPECT_GE(wait.count(), step / 2) << failure;
    EXPECT_LE(wait.count(), step) << failure;
    // Jitter never lets a retry come sooner than the one before, until the cap.
    if (failure <= 6) {
      EXPECT_GE(wait, previous) << failure;
    }
    previous = wait;
    t = next;
  }
  // Asking again before the retry time does not bring it forward.
  EXPECT_EQ(schedule.next_renewal(t - seconds(10)), t);

  // It comes back: the next renewal is the new certificate's half-life.
  MiddleRandom middle;
  RenewalSchedule fresh(middle);
  fresh.attempt_failed(kStart);
  fresh.certificate_installed(kStart, kStart + hours(24));
  EXPECT_EQ(fresh.consecutive_failures(), 0u);
  EXPECT_EQ(fresh.next_renewal(kStart), kStart + hours(12));
}

TEST(RenewalScheduleTest, FailuresBeforeTheFirstCertificateBackOff) {
  HighestRandom random;
  RenewalSchedule schedule(random);
  schedule.attempt_failed(kStart);
  EXPECT_EQ(schedule.next_renewal(kStart), kStart + seconds(1));
  schedule.attempt_failed(kStart + seconds(1));
  EXPECT_EQ(schedule.next_renewal(kStart + seconds(1)), kStart + seconds(3));
}

TEST(RenewalScheduleTest, ARetryIsNeverSetPastTheMarginBeforeExpiry) {
  HighestRandom random;
  RenewalPolicy policy;
  policy.first_backoff = milliseconds(60000);  // every retry a minute away
  RenewalSchedule schedule(random, policy);
  SystemTime not_after = kStart + hours(1);
  schedule.certificate_installed(kStart, not_after);

  // Far from expiry: the full backoff.
  schedule.attempt_failed(kStart + hours(0));
  EXPECT_EQ(schedule.next_renewal(kStart), kStart + seconds(60));

  // 50 s before expiry: a minute would miss it; the retry comes 30 s
  // (the margin) before expiry instead.
  SystemTime late = not_after - seconds(50);
  schedule.attempt_failed(late);
  EXPECT_EQ(schedule.next_renewal(late), not_after - seconds(30));
}

TEST(RenewalScheduleTest, OnceExpiredItKeepsRetrying) {
  HighestRandom random;
  RenewalSchedule schedule(random);
  SystemTime not_after = kStart + hours(1);
  schedule.certificate_installed(kStart, not_after);

  SystemTime t = not_after + seconds(5);
  for (int i = 0; i < 100; ++i) {
    schedule.attempt_failed(t);
    SystemTime next = schedule.next_renewal(t);
    ASSERT_GT(next, t);
    ASSERT_LE(next - t, seconds(60));
    t = next;
  }
  EXPECT_GT(t, not_after + hours(1));
}

}  // namespace
}  // namespace trellis::proxy
