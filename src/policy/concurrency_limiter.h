// Adaptive concurrency for one destination: a cap on requests in flight that
// follows measured latency, so an upstream that starts queueing is sent fewer
// requests at once instead of longer queues (the gradient of Envoy's adaptive
// concurrency filter and Netflix's concurrency-limits).
#pragma once

#include <atomic>
#include <cstdint>

#include "common/random.h"
#include "common/time.h"

namespace trellis::policy {

struct ConcurrencyConfig {
  // The limit the gradient starts from once the first baseline is measured.
  uint32_t initial_limit = 20;
  uint32_t min_limit = 3;
  uint32_t max_limit = 1000;
  // Latency is averaged over windows this long; the limit moves once per
  // window (a window ends at the first completion after it is over).
  Duration sample_window = Millis(100);
  // Latency up to this multiple of the baseline counts as no queueing.
  double tolerance = 1.25;
  // The baseline (latency without queueing) is measured again this often,
  // plus a random share of up to baseline_jitter_percent, so proxies started
  // together do not all measure at once.
  Duration baseline_interval = std::chrono::seconds(60);
  uint32_t baseline_jitter_percent = 15;
  // While measuring, the limit is pinned to min_limit; the baseline is the
  // mean latency of this many requests, or of those completed within
  // baseline_timeout (at least one).
  uint32_t baseline_samples = 50;
  Duration baseline_timeout = std::chrono::seconds(2);

  bool operator==(const ConcurrencyConfig&) const = default;
};

// One per destination for the whole proxy, shared by every worker.
//
// The limit follows
//   gradient  = clamp(tolerance x baseline / sample, 0.5, 1)
//   new_limit = limit x gradient + sqrt(limit)
// once per window, clamped to [min_limit, max_limit], where `sample` is the
// window's mean latency and `baseline` the mean latency measured with the
// limit pinned to min_limit (Envoy's min-RTT window): while latency stays
// near the baseline the limit grows by its square root per window; once
// requests queue it shrinks in proportion. A window in which fewer than half
// the limit were ever in flight does not grow the limit: traffic, not the
// upstream, was the bound, and growth then would only let a burst through.
//
// Measuring the baseline pins the limit to min_limit for baseline_samples
// requests (Envoy does the same): requests over it are shed meanwhile. The
// first measurement starts at construction; later ones every
// baseline_interval (jittered). Requests that started before a measurement
// began do not count toward it.
//
// Threads: try_acquire(), release() and release_ignored() are lock-free and
// may be called by any worker. The in-flight count is one atomic checked
// against the limit with a compare-and-swap, so it never passes the limit in
// force when the request was admitted (a lowered limit is reached as
// requests finish; none is revoked). Latency is summed lock-free into one
// atomic word; the completion that finds a window over takes a try-lock and
// recomputes the limit, and every other thread goes on without waiting.
class ConcurrencyLimiter {
 public:
  // `random` seeds the limiter's own generator for the jitter (the updater
  // runs on whichever worker closes a window, so it cannot borrow one).
  ConcurrencyLimiter(const ConcurrencyConfig& config, MonoTime now, Random& random);
  ConcurrencyLimiter(const ConcurrencyLimiter&) = delete;
  ConcurrencyLimiter& operator=(const ConcurrencyLimiter&) = delete;

  // True, and counted in flight, when below the limit; false: shed the
  // request (503). Each true is paired with exactly one release call.
  bool try_acquire();
  // The request got its answer after `latency` (measured from send to the
  // response head or the end: the caller's choice, the same every time).
  void release(Duration latency, MonoTime now);
  // The request ended without a latency worth learning from: cancelled by
  // the client, failed before reaching the upstream, or a local reply.
  void release_ignored();

  uint32_t limit() const { return limit_.load(std::memory_order_relaxed); }
  uint32_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  // Zero until the first measurement completes.
  Duration baseline() const { return Duration(baseline_ns_.load(std::memory_order_relaxed)); }
  bool measuring_baseline() const { return measuring_.load(std::memory_order_relaxed); }

 private:
  void maybe_update(int64_t now_ns);
  void start_measuring(int64_t now_ns);
  void finish_measuring(int64_t now_ns, uint64_t count, uint64_t sum_us);
  void apply_gradient(uint64_t count, uint64_t sum_us);

  const ConcurrencyConfig config_;

  // Shared by every worker.
  alignas(64) std::atomic<uint32_t> in_flight_{0};
  std::atomic<uint32_t> limit_;
  // The window's latency: completions in the top 24 bits, the sum of their
  // latencies in microseconds in the low 40, so one add records a sample and
  // one exchange takes both. A window holds at most 16M samples and 12 days
  // of summed latency, far beyond what a 100 ms window sees.
  alignas(64) std::atomic<uint64_t> window_{0};
  std::atomic<uint32_t> window_peak_{0};  // most in flight seen this window
  std::atomic<int64_t> window_end_ns_;
  std::atomic<bool> measuring_{true};
  std::atomic<int64_t> measure_start_ns_;
  std::atomic<int64_t> baseline_ns_{0};
  std::atomic_flag updating_;  // clear on construction (C++20)

  // Touched only by the thread holding updating_.
  uint32_t resume_limit_;  // the limit to return to after measuring
  int64_t next_baseline_ns_ = 0;
  FastRandom random_;
};

}  // namespace trellis::policy
