// Adaptive concurrency on constructed time: the baseline measurement, growth
// at steady latency, the drop when latency climbs, shedding above the limit,
// and the in-flight cap under concurrent workers.
#include "policy/concurrency_limiter.h"

#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <latch>
#include <thread>
#include <vector>

namespace trellis::policy {
namespace {

using std::chrono::seconds;

MonoTime at(Duration since_start) { return MonoTime{} + since_start; }

// Admits as many requests as the limit allows at `now`, then completes them
// all with `latency`; returns how many were admitted.
uint32_t fill_and_complete(ConcurrencyLimiter& c, MonoTime now, Duration latency) {
  uint32_t n = 0;
  while (c.try_acquire()) ++n;
  for (uint32_t i = 0; i < n; ++i) c.release(latency, now + latency);
  return n;
}

// Completes the baseline measurement at `latency`; `t` moves past it.
void measure(ConcurrencyLimiter& c, MonoTime& t, Duration latency) {
  while (c.measuring_baseline()) {
    fill_and_complete(c, t, latency);
    t += latency;
  }
}

// One sample window of full load at `latency`; `t` moves to the next window.
void full_window(ConcurrencyLimiter& c, MonoTime& t, Duration latency, const ConcurrencyConfig& config) {
  fill_and_complete(c, t, latency);
  t += config.sample_window;
}

ConcurrencyConfig test_config() {
  ConcurrencyConfig c;
  c.baseline_interval = std::chrono::hours(1);  // no re-measurement unless a test asks
  return c;
}

TEST(ConcurrencyLimiter, MeasuresTheBaselineAtTheMinimumFirst) {
  FastRandom rng(1);
  const ConcurrencyConfig config = test_config();
  MonoTime t = at(seconds(10));
  ConcurrencyLimiter c(config, t, rng);
  EXPECT_TRUE(c.measuring_baseline());
  EXPECT_EQ(c.limit(), 3u);
  EXPECT_EQ(c.baseline(), Duration::zero());
  EXPECT_EQ(fill_and_complete(c, t, Millis(10)), 3u) << "pinned to min_limit";
  t += Millis(10);

  int samples = 3;
  while (c.measuring_baseline()) {
    samples += static_cast<int>(fill_and_complete(c, t, Millis(10)));
    t += Millis(10);
  }
  EXPECT_GE(samples, 50);
  EXPECT_LE(samples, 52) << "ends at the 50th sample";
  EXPECT_EQ(c.baseline(), Millis(10));
  EXPECT_EQ(c.limit(), 20u) << "back to the initial limit";
}

TEST(ConcurrencyLimiter, ShedsAboveTheLimit) {
  FastRandom rng(2);
  const ConcurrencyConfig config = test_config();
  MonoTime t = at(seconds(10));
  ConcurrencyLimiter c(config, t, rng);
  measure(c, t, Millis(10));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c.try_acquire()) << i;
  EXPECT_EQ(c.in_flight(), 20u);
  EXPECT_FALSE(c.try_acquire());
  EXPECT_EQ(c.in_flight(), 20u) << "a shed request is not counted";
  c.release_ignored();
  EXPECT_TRUE(c.try_acquire());
  EXPECT_FALSE(c.try_acquire());
  for (int i = 0; i < 20; ++i) c.release_ignored();
  EXPECT_EQ(c.in_flight(), 0u);
}

TEST(ConcurrencyLimiter, SteadyLatencyGrowsTheLimitToTheMax) {
  FastRandom rng(3);
  const ConcurrencyConfig config = test_config();
  MonoTime t = at(seconds(10));
  ConcurrencyLimiter c(config, t, rng);
  measure(c, t, Millis(10));
  uint32_t previous = c.limit();
  int windows = 0;
  while (c.limit() < config.max_limit && windows < 500) {
    full_window(c, t, Millis(10), config);
    EXPECT_GE(c.limit(), previous) << "never shrinks at the baseline latency";
    previous = c.limit();
    ++windows;
  }
  EXPECT_EQ(c.limit(), 1000u);
  // sqrt(limit) per window: from 20 to 1000 takes about 2 x (sqrt(1000) - sqrt(20)) windows.
  EXPECT_LT(windows, 80);
  full_window(c, t, Millis(10), config);
  EXPECT_EQ(c.limit(), 1000u) << "held at max_limit";
}

TEST(ConcurrencyLimiter, LatencyWithinToleranceStillGrows) {
  FastRandom rng(4);
  const ConcurrencyConfig config = test_config();
  MonoTime t = at(seconds(10));
  ConcurrencyLimiter c(config, t, rng);
  measure(c, t, Millis(10));
  for (int i = 0; i < 10; ++i) full_window(c, t, Millis(12), config);  // 1.2 x baseline
  EXPECT_GT(c.limit(), 60u);
}

TEST(ConcurrencyLimiter, QueueingLatencyDropsTheLimit) {
  FastRandom rng(5);
  const ConcurrencyConfig config = test_config();
  MonoTime t = at(seconds(10));
  ConcurrencyLimiter c(config, t, rng);
  measure(c, t, Millis(10));
  while (c.limit() < 400) full_window(c, t, Millis(10), config);

  // A window is judged by the completion that closes it, which belongs to
  // the next one: the first slow batch closes the last fast window.
  full_window(c, t, Millis(20), config);
  const uint32_t before = c.limit();
  // Latency doubles: gradient 1.25 x 10 / 20 = 0.625, so the limit falls to
  // 0.625 x limit + sqrt(limit).
  full_window(c, t, Millis(20), config);
  EXPECT_EQ(c.limit(), static_cast<uint32_t>(0.625 * before + std::sqrt(before)));
  EXPECT_LT(c.limit(), 0.7 * before);
  uint32_t previous = c.limit();
  for (int i = 0; i < 30; ++i) {
    full_window(c, t, Millis(20), config);
    EXPECT_LE(c.limit(), previous);
    previous = c.limit();
  }
  // The fixed point of 0.625 x L + sqrt(L) is about 7, above min_limit.
  EXPECT_LE(c.limit(), 8u);
  EXPECT_GE(c.limit(), config.min_limit);

  // Queueing gone: it grows back.
  for (int i = 0; i < 20; ++i) full_window(c, t, Millis(10), config);
  EXPECT_GT(c.limit(), 100u);
}

TEST(ConcurrencyLimiter, TrafficBelowHalfTheLimitDoesNotGrowIt) {
  FastRandom rng(6);
  const ConcurrencyConfig config = test_config();
  MonoTime t = at(seconds(10));
  ConcurrencyLimiter c(config, t, rng);
  measure(c, t, Millis(10));
  ASSERT_EQ(c.limit(), 20u);
  for (int w = 0; w < 50; ++w) {
    for (int i = 0; i < 9; ++i) ASSERT_TRUE(c.try_acquire());  // 9 of 20 in flight
    for (int i = 0; i < 9; ++i) c.release(Millis(10), t);
    t += config.sample_window;
  }
  EXPECT_EQ(c.limit(), 20u);
  // But it still shrinks when latency says so.
  for (int w = 0; w < 3; ++w) {
    for (int i = 0; i < 9; ++i) ASSERT_TRUE(c.try_acquire());
    for (int i = 0; i < 9; ++i) c.release(Millis(40), t);
    t += config.sample_window;
  }
  EXPECT_LT(c.limit(), 20u);
}

TEST(ConcurrencyLimiter, RemeasuresTheBaselineOnAJitteredInterval) {
  FastRandom rng(7);
  ConcurrencyConfig config;
  config.baseline_interval = seconds(60);
  config.baseline_jitter_percent = 15;
  MonoTime t = at(seconds(10));
  ConcurrencyLimiter c(config, t, rng);
  measure(c, t, Millis(10));
  const MonoTime measured = t;
  while (!c.measuring_baseline()) full_window(c, t, Millis(10), config);
  EXPECT_GE(t - measured, seconds(60));
  EXPECT_LE(t - measured, seconds(69) + config.sample_window * 2);
  EXPECT_EQ(c.limit(), config.min_limit) << "pinned while measuring";

  // The service got slower for good: the new baseline takes it as normal,
  // and the limit comes back where it was.
  measure(c, t, Millis(30));
  EXPECT_EQ(c.baseline(), Millis(30));
  EXPECT_EQ(c.limit(), 1000u);
  full_window(c, t, Millis(30), config);
  full_window(c, t, Millis(30), config);
  EXPECT_EQ(c.limit(), 1000u);
}

TEST(ConcurrencyLimiter, RequestsFromBeforeTheMeasurementDoNotCount) {
  FastRandom rng(8);
  ConcurrencyConfig config = test_config();
  config.baseline_samples = 5;
  const MonoTime t0 = at(seconds(10));
  ConcurrencyLimiter c(config, t0, rng);
  // Requests sent 5 s before the limiter started (under whatever came
  // before it) complete first.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.try_acquire());
  for (int i = 0; i < 3; ++i) c.release(seconds(5), t0 + Millis(1));
  EXPECT_TRUE(c.measuring_baseline());
  MonoTime t = t0 + Millis(2);
  measure(c, t, Millis(10));
  EXPECT_EQ(c.baseline(), Millis(10)) << "the 5 s stragglers were left out";
}

TEST(ConcurrencyLimiter, BaselineTimesOutAtLowTraffic) {
  FastRandom rng(10);
  const ConcurrencyConfig config = test_config();
  const MonoTime t0 = at(seconds(10));
  ConcurrencyLimiter c(config, t0, rng);
  // Two requests in three seconds: far from 50 samples.
  ASSERT_TRUE(c.try_acquire());
  c.release(Millis(8), t0 + seconds(1));
  EXPECT_TRUE(c.measuring_baseline());
  ASSERT_TRUE(c.try_acquire());
  c.release(Millis(12), t0 + seconds(3));
  EXPECT_FALSE(c.measuring_baseline());
  EXPECT_EQ(c.baseline(), Millis(10));
  EXPECT_EQ(c.limit(), 20u);
}

TEST(ConcurrencyLimiter, BoundsAreSanitized) {
  FastRandom rng(11);
  ConcurrencyConfig config;
  config.min_limit = 0;
  config.max_limit = 5;
  config.initial_limit = 50;
  config.baseline_samples = 1;
  ConcurrencyLimiter c(config, at(seconds(1)), rng);
  EXPECT_EQ(c.limit(), 1u) << "min_limit of at least one";
  ASSERT_TRUE(c.try_acquire());
  c.release(Millis(5), at(seconds(1)) + Millis(5));
  EXPECT_EQ(c.limit(), 5u) << "the initial limit held to max_limit";
}

TEST(ConcurrencyLimiter, InFlightNeverPassesTheLimitAcrossThreads) {
  FastRandom rng(12);
  ConcurrencyConfig config = test_config();
  config.baseline_samples = 20;
  std::atomic<int64_t> clock_ms{0};
  ConcurrencyLimiter c(config, at(Millis(0)), rng);
  constexpr int kThreads = 4;
  constexpr int kOps = 100'000;
  constexpr size_t kHold = 64;  // each worker keeps up to this many open
  std::atomic<uint64_t> shed{0}, admitted{0};
  std::atomic<bool> over{false};
  std::latch start(kThreads);  // every thread ready before any begins
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      std::deque<int> open;
      uint64_t my_shed = 0, my_admitted = 0;
      for (int i = 0; i < kOps; ++i) {
        if (open.size() < kHold && c.try_acquire()) {
          ++my_admitted;
          // The limit only grows at steady latency (after the first
          // measurement), so in flight read first can never exceed it.
          const uint32_t inflight = c.in_flight();
          if (inflight > c.limit()) over = true;
          open.push_back(i);
        } else {
          if (open.size() < kHold) ++my_shed;
          if (!open.empty()) {
            open.pop_front();
            c.release(Millis(5), at(Millis(clock_ms.fetch_add(1) + 5)));
          }
        }
      }
      for (size_t k = 0; k < open.size(); ++k) c.release(Millis(5), at(Millis(clock_ms.load() + 5)));
      shed += my_shed;
      admitted += my_admitted;
    });
  for (auto& th : threads) th.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(c.in_flight(), 0u);
  EXPECT_GT(shed.load(), 0u) << "256 wanted in flight against a limit that starts at 3";
  EXPECT_GT(c.limit(), 20u) << "steady latency grew the limit";
  EXPECT_FALSE(c.measuring_baseline());
}

}  // namespace
}  // namespace trellis::policy
