// Outlier detection on constructed time: consecutive-error rules, growing and
// decaying ejection times, the ejection cap, success-rate outliers, state
// carried across rebuilds, the panic helper, and concurrent reporters.
#include "policy/outlier_detector.h"

#include <gtest/gtest.h>

#include <latch>
#include <thread>
#include <vector>

namespace trellis::policy {
namespace {

using std::chrono::seconds;
using Outcome = OutlierDetector::Outcome;

MonoTime at(Duration since_start) { return MonoTime{} + since_start; }

std::vector<uint64_t> ids(size_t n) {
  std::vector<uint64_t> v;
  for (size_t i = 0; i < n; ++i) v.push_back(1000 + i);
  return v;
}

OutlierConfig allow_percent(uint32_t percent) {
  OutlierConfig c;
  c.max_ejection_percent = percent;
  return c;
}

// Reports `count` outcomes for host `index` at `now`; true if any ejected it.
bool report_n(OutlierDetector& d, size_t index, Outcome outcome, int count, MonoTime now) {
  bool ejected = false;
  for (int i = 0; i < count; ++i) ejected = d.report(index, outcome, now) || ejected;
  return ejected;
}

TEST(OutlierDetector, FifthConsecutive5xxEjects) {
  OutlierDetector d(OutlierConfig{}, ids(10));  // 10% of 10 hosts: one may go
  const MonoTime t0 = at(seconds(100));
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(d.report(3, Outcome::k5xx, t0)) << i;
  EXPECT_FALSE(d.is_ejected(3, t0));
  EXPECT_EQ(d.epoch(), 0u);
  EXPECT_TRUE(d.report(3, Outcome::k5xx, t0));
  EXPECT_TRUE(d.is_ejected(3, t0));
  EXPECT_FALSE(d.is_ejected(2, t0));
  EXPECT_EQ(d.ejected_count(), 1u);
  EXPECT_EQ(d.epoch(), 1u);
  EXPECT_EQ(d.snapshot(3).ejected_until, t0 + seconds(30));
  EXPECT_EQ(d.snapshot(3).multiplier, 1u);
  EXPECT_EQ(d.stats().ejections_consecutive_5xx, 1u);
  EXPECT_FALSE(d.report(3, Outcome::k5xx, t0)) << "already ejected";
}

TEST(OutlierDetector, SuccessResetsTheStreak) {
  OutlierDetector d(OutlierConfig{}, ids(10));
  const MonoTime t0 = at(seconds(1));
  EXPECT_FALSE(report_n(d, 0, Outcome::k5xx, 4, t0));
  EXPECT_FALSE(d.report(0, Outcome::kSuccess, t0));
  EXPECT_EQ(d.snapshot(0).consecutive_5xx, 0u);
  EXPECT_FALSE(report_n(d, 0, Outcome::k5xx, 4, t0));
  EXPECT_FALSE(d.is_ejected(0, t0));
  EXPECT_TRUE(d.report(0, Outcome::k5xx, t0));
}

TEST(OutlierDetector, GatewayErrorsCountAs5xx) {
  OutlierDetector d(OutlierConfig{}, ids(10));  // gateway rule off, 5xx rule at 5
  const MonoTime t0 = at(seconds(1));
  EXPECT_FALSE(report_n(d, 1, Outcome::kGatewayError, 2, t0));
  EXPECT_FALSE(report_n(d, 1, Outcome::k5xx, 2, t0));
  EXPECT_TRUE(d.report(1, Outcome::kGatewayError, t0));
  EXPECT_EQ(d.stats().ejections_consecutive_5xx, 1u);
  EXPECT_EQ(d.stats().ejections_gateway_errors, 0u);
}

TEST(OutlierDetector, GatewayErrorRule) {
  OutlierConfig c = allow_percent(100);
  c.consecutive_5xx = 0;
  c.consecutive_gateway_errors = 3;
  OutlierDetector d(c, ids(4));
  const MonoTime t0 = at(seconds(1));
  EXPECT_FALSE(report_n(d, 0, Outcome::kGatewayError, 2, t0));
  EXPECT_FALSE(d.report(0, Outcome::k5xx, t0)) << "a plain 500 breaks a gateway streak";
  EXPECT_EQ(d.snapshot(0).consecutive_gateway_errors, 0u);
  EXPECT_FALSE(report_n(d, 0, Outcome::kGatewayError, 2, t0));
  EXPECT_TRUE(d.report(0, Outcome::kGatewayError, t0));
  EXPECT_EQ(d.stats().ejections_gateway_errors, 1u);
  // With the 5xx rule off, plain 500s never eject.
  EXPECT_FALSE(report_n(d, 1, Outcome::k5xx, 100, t0));
}

TEST(OutlierDetector, EjectionEndsOnTimeAndTickSettlesIt) {
  OutlierDetector d(allow_percent(100), ids(3));
  const MonoTime t0 = at(seconds(100));
  ASSERT_TRUE(report_n(d, 2, Outcome::k5xx, 5, t0));
  EXPECT_TRUE(d.is_ejected(2, t0 + seconds(30) - Duration(1)));
  EXPECT_FALSE(d.is_ejected(2, t0 + seconds(30))) << "back at the exact end";
  EXPECT_EQ(d.ejected_count(), 1u) << "until the tick settles it";

  auto early = d.tick(t0 + seconds(20));
  EXPECT_EQ(early.unejected, 0u);
  EXPECT_EQ(d.epoch(), 1u);
  auto r = d.tick(t0 + seconds(30));
  EXPECT_EQ(r.unejected, 1u);
  EXPECT_EQ(d.ejected_count(), 0u);
  EXPECT_EQ(d.epoch(), 2u);
  EXPECT_EQ(d.snapshot(2).ejected_until, MonoTime::min());
}

TEST(OutlierDetector, EjectionTimeGrowsWithRepeatsAndDecays) {
  OutlierDetector d(allow_percent(100), ids(2));
  MonoTime t = at(seconds(1000));
  // Ejected three times in a row: 30 s, 60 s, 90 s.
  for (int n = 1; n <= 3; ++n) {
    ASSERT_TRUE(report_n(d, 0, Outcome::k5xx, 5, t)) << n;
    EXPECT_EQ(d.snapshot(0).ejected_until, t + seconds(30) * n);
    EXPECT_EQ(d.snapshot(0).multiplier, static_cast<uint32_t>(n));
    t += seconds(30) * n;
    ASSERT_EQ(d.tick(t).unejected, 1u);
    EXPECT_EQ(d.snapshot(0).multiplier, static_cast<uint32_t>(n)) << "no decay on the tick that returns it";
    t += seconds(1);
  }
  // Each healthy interval forgives one ejection.
  d.tick(t += seconds(10));
  EXPECT_EQ(d.snapshot(0).multiplier, 2u);
  d.tick(t += seconds(10));
  EXPECT_EQ(d.snapshot(0).multiplier, 1u);
  ASSERT_TRUE(report_n(d, 0, Outcome::k5xx, 5, t));
  EXPECT_EQ(d.snapshot(0).ejected_until, t + seconds(60)) << "2 x base after decaying to 1";
}

TEST(OutlierDetector, EjectionTimeIsCapped) {
  OutlierConfig c = allow_percent(100);
  c.base_ejection_time = seconds(30);
  c.max_ejection_time = seconds(70);
  OutlierDetector d(c, ids(2));
  MonoTime t = at(seconds(10));
  const Duration expected[] = {seconds(30), seconds(60), seconds(70), seconds(70)};
  const uint32_t multipliers[] = {1, 2, 3, 3};
  for (int n = 0; n < 4; ++n) {
    ASSERT_TRUE(report_n(d, 1, Outcome::k5xx, 5, t));
    EXPECT_EQ(d.snapshot(1).ejected_until - t, expected[n]) << n;
    EXPECT_EQ(d.snapshot(1).multiplier, multipliers[n]) << "stops growing past the cap";
    t += expected[n];
    d.tick(t);
  }
}

TEST(OutlierDetector, MaxEjectionPercentCaps) {
  OutlierDetector d(allow_percent(20), ids(10));
  const MonoTime t0 = at(seconds(5));
  EXPECT_TRUE(report_n(d, 0, Outcome::k5xx, 5, t0));
  EXPECT_TRUE(report_n(d, 1, Outcome::k5xx, 5, t0));
  EXPECT_FALSE(report_n(d, 2, Outcome::k5xx, 5, t0)) << "a third would be 30%";
  EXPECT_FALSE(d.is_ejected(2, t0));
  EXPECT_EQ(d.ejected_count(), 2u);
  EXPECT_EQ(d.stats().ejections_refused, 1u);
  EXPECT_EQ(d.snapshot(2).consecutive_5xx, 0u) << "the refused attempt used up its streak";
  EXPECT_FALSE(report_n(d, 2, Outcome::k5xx, 4, t0));

  // Once one host is back, the next streak on host 2 ejects it.
  d.tick(t0 + seconds(30));
  EXPECT_EQ(d.ejected_count(), 0u);
  EXPECT_TRUE(d.report(2, Outcome::k5xx, t0 + seconds(31)));
}

TEST(OutlierDetector, SmallClustersEjectOnlyWithAlwaysEjectOneHost) {
  const MonoTime t0 = at(seconds(5));
  OutlierDetector strict(OutlierConfig{}, ids(5));  // 1 of 5 is 20% > 10%
  EXPECT_FALSE(report_n(strict, 0, Outcome::k5xx, 50, t0));
  EXPECT_EQ(strict.ejected_count(), 0u);
  EXPECT_EQ(strict.stats().ejections_refused, 10u) << "one attempt per streak of 5";

  OutlierConfig c;
  c.always_eject_one_host = true;
  OutlierDetector one(c, ids(5));
  EXPECT_TRUE(report_n(one, 0, Outcome::k5xx, 5, t0));
  EXPECT_FALSE(report_n(one, 1, Outcome::k5xx, 5, t0)) << "only one past the percentage";
  EXPECT_EQ(one.ejected_count(), 1u);

  OutlierDetector single(c, ids(1));
  EXPECT_TRUE(report_n(single, 0, Outcome::k5xx, 5, t0)) << "the panic threshold then takes over";
}

OutlierConfig success_rate_config() {
  OutlierConfig c = allow_percent(50);
  c.consecutive_5xx = 0;
  c.success_rate.enabled = true;
  return c;
}

// Host i answers `requests[i]` requests, `successes[i]` of them successes.
void traffic(OutlierDetector& d, const std::vector<int>& requests, const std::vector<int>& successes,
             MonoTime t) {
  for (size_t i = 0; i < requests.size(); ++i)
    for (int r = 0; r < requests[i]; ++r)
      d.report(i, r < successes[i] ? Outcome::kSuccess : Outcome::k5xx, t);
}

TEST(OutlierDetector, SuccessRateEjectsTheOutlier) {
  OutlierDetector d(success_rate_config(), ids(6));
  const MonoTime t0 = at(seconds(10));
  traffic(d, {200, 200, 200, 200, 200, 200}, {198, 198, 196, 198, 198, 100}, t0);
  EXPECT_EQ(d.snapshot(5).window_requests, 200u);
  EXPECT_EQ(d.snapshot(5).window_successes, 100u);
  EXPECT_EQ(d.ejected_count(), 0u) << "success rate is judged on the tick only";
  auto r = d.tick(t0 + seconds(10));
  EXPECT_EQ(r.ejected, 1u);
  EXPECT_TRUE(d.is_ejected(5, t0 + seconds(10)));
  EXPECT_FALSE(d.is_ejected(2, t0 + seconds(10))) << "98% is within the spread";
  EXPECT_EQ(d.stats().ejections_success_rate, 1u);
  EXPECT_EQ(d.snapshot(0).window_requests, 0u) << "a new window";
  // The next window without traffic judges nothing.
  EXPECT_EQ(d.tick(t0 + seconds(20)).ejected, 0u);
}

TEST(OutlierDetector, SuccessRateNeedsEnoughHostsWithEnoughRequests) {
  const MonoTime t0 = at(seconds(10));
  {
    OutlierDetector d(success_rate_config(), ids(6));
    // Two hosts under the request volume: four remain, minimum is five.
    traffic(d, {200, 200, 200, 200, 99, 99}, {200, 200, 200, 200, 99, 0}, t0);
    EXPECT_EQ(d.tick(t0 + seconds(10)).ejected, 0u);
  }
  {
    OutlierDetector d(success_rate_config(), ids(5));
    traffic(d, {100, 100, 100, 100, 100}, {100, 100, 100, 100, 10}, t0);
    EXPECT_EQ(d.tick(t0 + seconds(10)).ejected, 1u) << "five hosts at exactly the volume";
  }
  {
    OutlierDetector d(success_rate_config(), ids(5));
    traffic(d, {100, 100, 100, 100, 100}, {90, 90, 90, 90, 90}, t0);
    EXPECT_EQ(d.tick(t0 + seconds(10)).ejected, 0u) << "all alike: nobody is an outlier";
  }
}

TEST(OutlierDetector, SuccessRateEjectsTheWorstFirstUnderTheCap) {
  OutlierConfig c = success_rate_config();
  c.max_ejection_percent = 10;
  c.success_rate.stdev_factor = 1.0;
  OutlierDetector d(c, ids(10));
  const MonoTime t0 = at(seconds(10));
  std::vector<int> requests(10, 100), successes(10, 100);
  successes[3] = 60;
  successes[7] = 20;
  traffic(d, requests, successes, t0);
  EXPECT_EQ(d.tick(t0 + seconds(10)).ejected, 1u);
  EXPECT_TRUE(d.is_ejected(7, t0 + seconds(10)));
  EXPECT_FALSE(d.is_ejected(3, t0 + seconds(10)));
  EXPECT_EQ(d.stats().ejections_refused, 1u);
}

TEST(OutlierDetector, AdoptStateCarriesHostsById) {
  OutlierDetector old(allow_percent(100), {7, 8, 9});
  const MonoTime t0 = at(seconds(50));
  ASSERT_TRUE(report_n(old, 1, Outcome::k5xx, 5, t0));  // id 8
  report_n(old, 2, Outcome::k5xx, 4, t0);               // id 9, one short

  OutlierDetector next(allow_percent(100), {9, 8, 10});
  next.adopt_state(old);
  EXPECT_GT(next.epoch(), old.epoch());
  EXPECT_EQ(next.ejected_count(), 1u);
  EXPECT_TRUE(next.is_ejected(1, t0)) << "id 8 stays ejected";
  EXPECT_EQ(next.snapshot(1).ejected_until, t0 + seconds(30));
  EXPECT_EQ(next.snapshot(1).multiplier, 1u);
  EXPECT_EQ(next.stats().ejections_consecutive_5xx, 1u);
  EXPECT_FALSE(next.is_ejected(2, t0)) << "id 10 is new";
  EXPECT_TRUE(next.report(0, Outcome::k5xx, t0 + seconds(1))) << "id 9's streak continues";
  EXPECT_EQ(next.tick(t0 + seconds(30)).unejected, 1u);
  EXPECT_EQ(next.ejected_count(), 1u) << "id 9, ejected after the copy, is still out";
}

TEST(OutlierDetector, OutOfRangeIndexIsIgnored) {
  OutlierDetector d(allow_percent(100), ids(2));
  EXPECT_FALSE(report_n(d, 2, Outcome::k5xx, 10, at(seconds(1))));
  EXPECT_FALSE(d.is_ejected(2, at(seconds(1))));
  EXPECT_EQ(d.snapshot(9).multiplier, 0u);
}

TEST(OutlierDetector, PanicHelper) {
  static_assert(in_panic(4, 10, 50));
  EXPECT_TRUE(in_panic(4, 10, 50));
  EXPECT_FALSE(in_panic(5, 10, 50)) << "exactly at the threshold is not panic";
  EXPECT_TRUE(in_panic(0, 1, 50));
  EXPECT_FALSE(in_panic(1, 1, 50));
  EXPECT_FALSE(in_panic(0, 0, 50)) << "no hosts: nothing to spread over";
  EXPECT_FALSE(in_panic(0, 10, 0)) << "threshold 0 turns panic off";
  EXPECT_TRUE(in_panic(99, 100, 100));
  EXPECT_FALSE(in_panic(100, 100, 100));
}

TEST(OutlierDetector, ConcurrentReportersLoseNothingAndEjectOnce) {
  OutlierConfig c = allow_percent(50);
  c.success_rate.enabled = true;  // so the window counts every report
  c.success_rate.request_volume = 1'000'000;
  OutlierDetector d(c, ids(2));
  constexpr int kThreads = 4;
  constexpr int kEach = 5000;
  const MonoTime t0 = at(seconds(1));
  std::atomic<int> ejected_reports{0};
  std::latch start(kThreads);  // every thread ready before any begins
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      int mine = 0;
      for (int i = 0; i < kEach; ++i) {
        mine += d.report(0, Outcome::kGatewayError, t0) ? 1 : 0;
        d.report(1, Outcome::kSuccess, t0);
      }
      ejected_reports += mine;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ejected_reports.load(), 1);
  EXPECT_EQ(d.ejected_count(), 1u);
  EXPECT_EQ(d.epoch(), 1u);
  EXPECT_EQ(d.stats().ejections_consecutive_5xx, 1u);
  EXPECT_EQ(d.snapshot(0).window_requests, static_cast<uint32_t>(kThreads * kEach));
  EXPECT_EQ(d.snapshot(0).window_successes, 0u);
  EXPECT_EQ(d.snapshot(1).window_requests, static_cast<uint32_t>(kThreads * kEach));
  EXPECT_EQ(d.snapshot(1).window_successes, static_cast<uint32_t>(kThreads * kEach));
}

TEST(OutlierDetector, ConcurrentEjectionsRespectTheCap) {
  OutlierDetector d(allow_percent(20), ids(10));
  const MonoTime t0 = at(seconds(1));
  std::atomic<int> ejected{0};
  std::latch start(4);  // every thread ready before any begins
  std::vector<std::thread> threads;
  // Four workers fail eight hosts at once: the cap lets exactly two go.
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      int mine = 0;
      for (int i = 0; i < 200; ++i)
        for (size_t h = 0; h < 8; ++h) mine += d.report((h + t) % 8, Outcome::k5xx, t0) ? 1 : 0;
      ejected += mine;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(ejected.load(), 2);
  EXPECT_EQ(d.ejected_count(), 2u);
  int out = 0;
  for (size_t h = 0; h < 10; ++h) out += d.is_ejected(h, t0) ? 1 : 0;
  EXPECT_EQ(out, 2);
}

}  // namespace
}  // namespace trellis::policy
