// Rate limiters on constructed time: exact admission counts, Retry-After,
// shaping delays and queue bounds, per-key isolation and memory bounds, and
// exactness when several threads share one bucket.
#include "policy/rate_limiter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <latch>
#include <string>
#include <thread>
#include <vector>

namespace trellis::policy {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

MonoTime at(Duration since_start) { return MonoTime{} + since_start; }

// Requests every `step` over [from, to): how many were admitted.
template <class Bucket>
int admitted_over(Bucket& bucket, MonoTime from, MonoTime to, Duration step) {
  int n = 0;
  for (MonoTime t = from; t < to; t += step) n += bucket.admit(t).allowed ? 1 : 0;
  return n;
}

TEST(TokenBucket, BurstThenOneEveryInterval) {
  TokenBucket bucket({.requests_per_unit = 10, .unit = RateUnit::kSecond, .burst = 5});
  EXPECT_EQ(bucket.interval(), Millis(100));
  // A request every millisecond for 2 s: the burst of 5 at t=0, then one each
  // 100 ms from t=100ms to t=1900ms (19 more). Over any closed window of
  // length W at most burst + floor(W/T) pass: [0, 2000ms] would hold 25.
  EXPECT_EQ(admitted_over(bucket, at(Millis(0)), at(Millis(2000)), Millis(1)), 5 + 19);
  EXPECT_TRUE(bucket.admit(at(Millis(2000))).allowed) << "the 25th, at the window's closing edge";
  EXPECT_FALSE(bucket.admit(at(Millis(2000))).allowed);
}

TEST(TokenBucket, RemainingCountsDown) {
  TokenBucket bucket({.requests_per_unit = 10, .burst = 5});
  for (uint64_t left : {4u, 3u, 2u, 1u, 0u}) {
    auto d = bucket.admit(at(seconds(1)));
    ASSERT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, left);
    EXPECT_EQ(d.retry_after, Duration::zero());
  }
  auto refused = bucket.admit(at(seconds(1)));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining, 0u);
}

TEST(TokenBucket, RetryAfterIsExactlyWhenTheNextRequestPasses) {
  TokenBucket bucket({.requests_per_unit = 10, .burst = 5});
  MonoTime t0 = at(seconds(50));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(bucket.admit(t0).allowed);
  auto d = bucket.admit(t0 + Millis(1));
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, Millis(99));
  EXPECT_FALSE(bucket.admit(t0 + Millis(1) + d.retry_after - Duration(1)).allowed) << "one tick early";
  EXPECT_TRUE(bucket.admit(t0 + Millis(1) + d.retry_after).allowed);
  // Refusals do not push the time back.
  for (int i = 0; i < 100; ++i) ASSERT_FALSE(bucket.admit(t0 + Millis(150)).allowed);
  EXPECT_EQ(bucket.admit(t0 + Millis(150)).retry_after, Millis(50));
  EXPECT_TRUE(bucket.admit(t0 + Millis(200)).allowed);
}

TEST(TokenBucket, RefillsToTheBurstAndNoFurther) {
  TokenBucket bucket({.requests_per_unit = 10, .burst = 5});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(bucket.admit(at(seconds(0))).allowed);
  EXPECT_FALSE(bucket.idle(at(Millis(499))));
  EXPECT_TRUE(bucket.idle(at(Millis(500))));
  // An hour of silence still buys only the burst.
  int n = 0;
  while (bucket.admit(at(hours(1))).allowed) ++n;
  EXPECT_EQ(n, 5);
  // Half refilled: 2 after 250 ms (tokens accrue one per 100 ms).
  n = 0;
  while (bucket.admit(at(hours(1) + Millis(250))).allowed) ++n;
  EXPECT_EQ(n, 2);
}

TEST(TokenBucket, UnitsAndDefaultBurst) {
  TokenBucket per_minute({.requests_per_unit = 60, .unit = RateUnit::kMinute, .burst = 1});
  EXPECT_EQ(per_minute.interval(), seconds(1));
  EXPECT_EQ(admitted_over(per_minute, at(seconds(0)), at(minutes(2)), Millis(100)), 120);

  TokenBucket per_hour({.requests_per_unit = 3600, .unit = RateUnit::kHour});
  EXPECT_EQ(per_hour.burst(), 3600u) << "burst 0 means one unit's worth";
  int n = 0;
  while (per_hour.admit(at(seconds(0))).allowed) ++n;
  EXPECT_EQ(n, 3600);
  EXPECT_EQ(per_hour.admit(at(seconds(0))).retry_after, seconds(1));
}

TEST(TokenBucket, RoundingNeverAdmitsFasterThanTheRate) {
  // 3/s is not a whole number of nanoseconds apart.
  TokenBucket bucket({.requests_per_unit = 3, .burst = 1});
  EXPECT_EQ(bucket.interval(), Duration(333'333'334));
  EXPECT_EQ(admitted_over(bucket, at(seconds(0)), at(seconds(30)), Millis(1)), 90);
}

TEST(TokenBucket, ZeroRateRefusesEverything) {
  TokenBucket bucket({.requests_per_unit = 0, .unit = RateUnit::kMinute});
  auto d = bucket.admit(at(seconds(0)));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, minutes(1));
  EXPECT_FALSE(bucket.admit(at(hours(10))).allowed);
}

TEST(TokenBucket, ExactAcrossThreadsAtOneInstant) {
  // A burst large enough that the threads are still racing for it.
  constexpr uint32_t kBurst = 200'000;
  TokenBucket bucket({.requests_per_unit = 100, .burst = kBurst});
  const MonoTime now = at(seconds(7));
  std::atomic<int> admitted{0};
  std::latch start(4);  // every thread ready before any begins
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      int mine = 0;
      for (int i = 0; i < 100'000; ++i) mine += bucket.admit(now).allowed ? 1 : 0;
      admitted += mine;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), static_cast<int>(kBurst));
}

TEST(TokenBucket, ExactAcrossThreadsOverTime) {
  // Four workers each see their own clock readings, interleaved: together
  // they get the burst plus one per interval, as one worker would.
  TokenBucket bucket({.requests_per_unit = 1000, .burst = 10});
  std::atomic<int> admitted{0};
  std::latch start(4);  // every thread ready before any begins
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      int mine = 0;
      // Thread t asks at microseconds t, t+4, t+8, ... below 1 s.
      for (int us = t; us < 1'000'000; us += 4) mine += bucket.admit(at(Micros(us))).allowed ? 1 : 0;
      admitted += mine;
    });
  for (auto& th : threads) th.join();
  // Out-of-order readings across threads can only delay admissions, never
  // add any: burst + floor(W / T) is the ceiling.
  EXPECT_LE(admitted.load(), 10 + 999);
  EXPECT_GE(admitted.load(), 10 + 990);
}

TEST(LeakyBucket, DelaysGrowLinearlyUpToTheMaxDelay) {
  LeakyBucket bucket({.rate_per_second = 10, .max_delay = seconds(1), .queue = 100});
  EXPECT_EQ(bucket.interval(), Millis(100));
  const MonoTime t0 = at(seconds(3));
  for (int i = 0; i <= 10; ++i) {
    auto d = bucket.admit(t0);
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.delay, Millis(100) * i);
  }
  auto refused = bucket.admit(t0);
  EXPECT_FALSE(refused.allowed) << "a delay of 1.1 s is past max_delay";
  EXPECT_EQ(refused.retry_after, Millis(100));
  EXPECT_EQ(bucket.waiting(t0), 10u) << "the first left at once";

  // Later arrivals wait for the slots still free.
  auto later = bucket.admit(t0 + Millis(150));
  ASSERT_TRUE(later.allowed);
  EXPECT_EQ(later.delay, Millis(1100) - Millis(150));
}

TEST(LeakyBucket, SpacedArrivalsPassAtOnce) {
  LeakyBucket bucket({.rate_per_second = 10, .max_delay = Millis(0), .queue = 0});
  // Policing: only requests at least 100 ms apart pass, none waits.
  int n = 0;
  for (int ms = 0; ms < 1000; ms += 10) {
    auto d = bucket.admit(at(Millis(ms)));
    if (!d.allowed) continue;
    ++n;
    EXPECT_EQ(d.delay, Duration::zero());
  }
  EXPECT_EQ(n, 10);
  EXPECT_TRUE(bucket.idle(at(Millis(1000))));
  EXPECT_FALSE(bucket.idle(at(Millis(999))));
}

TEST(LeakyBucket, QueueBoundRefusesPastTheHeldCount) {
  LeakyBucket bucket({.rate_per_second = 10, .max_delay = seconds(60), .queue = 3});
  EXPECT_EQ(bucket.max_delay(), Millis(300)) << "3 held at 100 ms each";
  const MonoTime t0 = at(seconds(1));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(bucket.admit(t0).allowed) << i;
  EXPECT_EQ(bucket.waiting(t0), 3u);
  auto refused = bucket.admit(t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, Millis(100));

  // At +150 ms the slot at +100 ms has left: two wait, one more fits.
  EXPECT_EQ(bucket.waiting(t0 + Millis(150)), 2u);
  auto d = bucket.admit(t0 + Millis(150));
  ASSERT_TRUE(d.allowed);
  EXPECT_EQ(d.delay, Millis(250));
  EXPECT_EQ(bucket.waiting(t0 + Millis(150)), 3u);
  EXPECT_FALSE(bucket.admit(t0 + Millis(150)).allowed);
  EXPECT_EQ(bucket.waiting(t0 + Millis(400)), 0u);
}

TEST(LeakyBucket, SustainedOverloadLeavesAtTheRate) {
  LeakyBucket bucket({.rate_per_second = 50, .max_delay = Millis(200), .queue = 100});
  // 1000 requests/s offered for 10 s; 50/s leave (plus what the delay can
  // hold at the end, which leaves after the window).
  int admitted = 0;
  Duration last_departure{};
  for (int ms = 0; ms < 10'000; ++ms) {
    auto d = bucket.admit(at(Millis(ms)));
    if (!d.allowed) continue;
    ++admitted;
    EXPECT_LE(d.delay, Millis(200));
    Duration departure = Millis(ms) + d.delay;
    if (admitted > 1) {
      EXPECT_EQ(departure - last_departure, Millis(20));
    }
    last_departure = departure;
  }
  EXPECT_EQ(admitted, 500 + 10);
}

TEST(LeakyBucket, BadRateRefuses) {
  for (double rate : {0.0, -1.0, std::nan("")}) {
    LeakyBucket bucket({.rate_per_second = rate});
    EXPECT_FALSE(bucket.admit(at(seconds(1))).allowed) << rate;
  }
}

TEST(LeakyBucket, ExactAcrossThreads) {
  // 1 ms slots out to 300 s: enough of them that the threads race throughout.
  LeakyBucket bucket({.rate_per_second = 1000, .max_delay = seconds(300), .queue = 1'000'000});
  constexpr int kSlots = 300'001;
  const MonoTime now = at(seconds(2));
  std::vector<std::vector<int64_t>> delays(4);
  std::latch start(4);  // every thread ready before any begins
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      delays[t].reserve(kSlots);
      for (int i = 0; i < 100'000; ++i) {
        auto d = bucket.admit(now);
        if (d.allowed) delays[t].push_back(std::chrono::duration_cast<Millis>(d.delay).count());
      }
    });
  for (auto& th : threads) th.join();
  // Exactly the slots 0, 1, ..., 300000 ms, each handed to one request.
  std::vector<int> seen(kSlots, 0);
  size_t total = 0;
  for (auto& v : delays)
    for (int64_t ms : v) {
      ASSERT_GE(ms, 0);
      ASSERT_LT(ms, kSlots);
      ++seen[ms];
      ++total;
    }
  EXPECT_EQ(total, static_cast<size_t>(kSlots));
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kSlots) << "every slot handed out exactly once";
}

TEST(KeyedLimiter, KeysAreIsolated) {
  KeyedLimiter<TokenBucket> limiter({.requests_per_unit = 1, .unit = RateUnit::kMinute, .burst = 2});
  const MonoTime now = at(seconds(10));
  EXPECT_TRUE(limiter.admit("10.0.0.1", now).allowed);
  EXPECT_TRUE(limiter.admit("10.0.0.1", now).allowed);
  auto refused = limiter.admit("10.0.0.1", now);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, seconds(60));
  EXPECT_TRUE(limiter.admit("10.0.0.2", now).allowed) << "another client has its own bucket";
  EXPECT_EQ(limiter.size(), 2u);
}

TEST(KeyedLimiter, EmptyKeysShareOneBucketOutsideTheMap) {
  KeyedLimiter<TokenBucket> limiter({.requests_per_unit = 1, .unit = RateUnit::kHour, .burst = 3});
  const MonoTime now = at(seconds(10));
  int n = 0;
  while (limiter.admit("", now).allowed) ++n;
  EXPECT_EQ(n, 3);
  EXPECT_EQ(limiter.size(), 0u);
  EXPECT_TRUE(limiter.admit("x", now).allowed);
}

TEST(KeyedLimiter, MemoryIsBoundedAndBusyKeysSurviveChurn) {
  KeyedLimiter<TokenBucket> limiter({.requests_per_unit = 1, .unit = RateUnit::kHour, .burst = 1}, 1024);
  EXPECT_EQ(limiter.max_keys(), 1024u);
  const MonoTime now = at(seconds(10));
  ASSERT_TRUE(limiter.admit("hot", now).allowed);
  for (int i = 0; i < 20'000; ++i) {
    limiter.admit("churn-" + std::to_string(i), now);
    // The client that keeps coming stays most recently used in its shard.
    ASSERT_FALSE(limiter.admit("hot", now).allowed) << "evicted after " << i;
  }
  EXPECT_EQ(limiter.size(), 1024u) << "every shard full, none past its share";
  EXPECT_EQ(limiter.evicted(), 20'001u - limiter.size());
}

TEST(KeyedLimiter, SmallBoundsHold) {
  for (size_t max_keys : {1u, 3u, 64u, 100u}) {
    KeyedLimiter<LeakyBucket> limiter({.rate_per_second = 1}, max_keys);
    EXPECT_LE(limiter.max_keys(), max_keys);
    EXPECT_GE(limiter.max_keys(), 1u);
    for (int i = 0; i < 1000; ++i) limiter.admit("k" + std::to_string(i), at(seconds(1)));
    EXPECT_LE(limiter.size(), max_keys);
  }
}

TEST(KeyedLimiter, EvictIdleDropsOnlyQuietKeys) {
  KeyedLimiter<LeakyBucket> limiter({.rate_per_second = 10, .max_delay = seconds(5)});
  const MonoTime t0 = at(seconds(100));
  for (int i = 0; i < 50; ++i) limiter.admit("quiet-" + std::to_string(i), t0);
  for (int i = 0; i < 20; ++i) limiter.admit("busy", t0);  // slots out to +2 s
  EXPECT_EQ(limiter.size(), 51u);
  EXPECT_EQ(limiter.evict_idle(t0 + Millis(100)), 50u);
  EXPECT_EQ(limiter.size(), 1u);
  auto d = limiter.admit("busy", t0 + Millis(100));
  ASSERT_TRUE(d.allowed);
  EXPECT_EQ(d.delay, Millis(1900)) << "the busy key kept its queue";
  EXPECT_EQ(limiter.evict_idle(t0 + seconds(3)), 1u);
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(KeyedLimiter, ExactPerKeyAcrossThreads) {
  KeyedLimiter<TokenBucket> limiter({.requests_per_unit = 10, .burst = 50});
  const MonoTime now = at(seconds(1));
  const std::vector<std::string> keys = {"a", "b", "c", "d", "e", "f", "g", "h"};
  std::vector<std::atomic<int>> admitted(keys.size());
  std::latch start(4);  // every thread ready before any begins
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 400; ++i)
        for (size_t k = 0; k < keys.size(); ++k)
          if (limiter.admit(keys[k], now).allowed) ++admitted[k];
    });
  for (auto& th : threads) th.join();
  for (size_t k = 0; k < keys.size(); ++k) EXPECT_EQ(admitted[k].load(), 50) << keys[k];
}

}  // namespace
}  // namespace trellis::policy
