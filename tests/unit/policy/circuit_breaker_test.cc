// Circuit breaker caps: exact counts, independent resources, exact under
// concurrent workers, and limits changed under load.
#include "policy/circuit_breaker.h"

#include <gtest/gtest.h>

#include <latch>
#include <thread>
#include <vector>

namespace trellis::policy {
namespace {

TEST(CircuitBreaker, NamesTheLimitThatTripped) {
  EXPECT_EQ(name_of(Resource::kConnections), "max_connections");
  EXPECT_EQ(name_of(Resource::kPendingRequests), "max_pending_requests");
  EXPECT_EQ(name_of(Resource::kRequests), "max_requests");
  EXPECT_EQ(name_of(Resource::kRetries), "max_retries");
}

TEST(CircuitBreaker, AdmitsUpToTheLimitThenTrips) {
  CircuitBreaker cb({.max_connections = 2, .max_pending_requests = 1, .max_requests = 3, .max_retries = 0});
  EXPECT_TRUE(cb.try_acquire(Resource::kRequests));
  EXPECT_TRUE(cb.try_acquire(Resource::kRequests));
  EXPECT_TRUE(cb.try_acquire(Resource::kRequests));
  EXPECT_FALSE(cb.try_acquire(Resource::kRequests));
  EXPECT_EQ(cb.current(Resource::kRequests), 3u) << "a refusal leaves no trace";
  EXPECT_EQ(cb.remaining(Resource::kRequests), 0u);

  cb.release(Resource::kRequests);
  EXPECT_EQ(cb.current(Resource::kRequests), 2u);
  EXPECT_TRUE(cb.try_acquire(Resource::kRequests)) << "a released slot is free again";

  // Each resource has its own count.
  EXPECT_EQ(cb.current(Resource::kConnections), 0u);
  EXPECT_TRUE(cb.try_acquire(Resource::kConnections));
  EXPECT_TRUE(cb.try_acquire(Resource::kPendingRequests));
  EXPECT_FALSE(cb.try_acquire(Resource::kPendingRequests));
  EXPECT_FALSE(cb.try_acquire(Resource::kRetries)) << "a limit of 0 allows nothing";
  EXPECT_EQ(cb.remaining(Resource::kConnections), 1u);
}

TEST(CircuitBreaker, LoweredLimitRefusesUntilDrainedAndRevokesNothing) {
  CircuitBreaker cb({.max_requests = 10});
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(cb.try_acquire(Resource::kRequests));
  cb.set_limits({.max_requests = 5});
  EXPECT_EQ(cb.current(Resource::kRequests), 8u);
  EXPECT_EQ(cb.remaining(Resource::kRequests), 0u);
  EXPECT_FALSE(cb.try_acquire(Resource::kRequests));
  for (int i = 0; i < 4; ++i) cb.release(Resource::kRequests);
  EXPECT_TRUE(cb.try_acquire(Resource::kRequests)) << "4 open of 5";
  EXPECT_FALSE(cb.try_acquire(Resource::kRequests));
}

TEST(CircuitBreaker, ExactAcrossThreads) {
  constexpr int kThreads = 4;
  // Phase 1: every thread grabs as much as it can and holds it: exactly the
  // limit is granted between them, however the races fall. A limit large
  // enough that the threads are still racing when it runs out.
  constexpr uint32_t kBig = 200'000;
  CircuitBreaker cb({.max_requests = kBig});
  std::vector<int> held(kThreads, 0);
  {
    std::latch start(kThreads);  // every thread ready before any begins
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        int mine = 0;
        for (int i = 0; i < 100'000; ++i) mine += cb.try_acquire(Resource::kRequests) ? 1 : 0;
        held[t] = mine;
      });
    for (auto& th : threads) th.join();
  }
  int total = 0;
  for (int h : held) total += h;
  EXPECT_EQ(total, static_cast<int>(kBig));
  EXPECT_EQ(cb.current(Resource::kRequests), kBig);
  for (int i = 0; i < total; ++i) cb.release(Resource::kRequests);

  constexpr uint32_t kLimit = 100;
  constexpr int kRounds = 50'000;
  cb.set_limits({.max_requests = kLimit});
  // Phase 2: acquire and release in a tight loop; the count seen by anyone
  // never passes the limit and nothing leaks.
  std::atomic<uint32_t> max_seen{0};
  std::atomic<int> granted{0};
  std::latch start(kThreads);  // every thread ready before any begins
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      int mine = 0;
      for (int i = 0; i < kRounds; ++i) {
        if (!cb.try_acquire(Resource::kRequests)) continue;
        ++mine;
        uint32_t c = cb.current(Resource::kRequests);
        uint32_t m = max_seen.load(std::memory_order_relaxed);
        while (c > m && !max_seen.compare_exchange_weak(m, c)) {
        }
        cb.release(Resource::kRequests);
      }
      granted += mine;
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(max_seen.load(), kLimit);
  EXPECT_EQ(granted.load(), kThreads * kRounds) << "4 threads never hold 100 slots: nothing is refused";
  EXPECT_EQ(cb.current(Resource::kRequests), 0u);
}

}  // namespace
}  // namespace trellis::policy
