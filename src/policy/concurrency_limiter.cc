// Adaptive concurrency: lock-free admission and latency accounting, and the
// gradient update run by whichever completion closes a window.
#include "policy/concurrency_limiter.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace trellis::policy {

namespace {

constexpr int kSumBits = 40;
constexpr uint64_t kSumMask = (uint64_t{1} << kSumBits) - 1;
constexpr uint64_t kOneSample = uint64_t{1} << kSumBits;
// One sample adds at most about 71 minutes, so no single outlier can carry
// the sum into the count.
constexpr uint64_t kMaxSampleUs = uint64_t{1} << 32;

int64_t ns_of(MonoTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

int64_t ns_of(Duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

ConcurrencyConfig sanitized(ConcurrencyConfig c) {
  c.min_limit = std::max<uint32_t>(c.min_limit, 1);
  c.max_limit = std::max(c.max_limit, c.min_limit);
  c.initial_limit = std::clamp(c.initial_limit, c.min_limit, c.max_limit);
  if (!(c.tolerance > 0) || !std::isfinite(c.tolerance)) c.tolerance = 1;
  c.baseline_samples = std::max<uint32_t>(c.baseline_samples, 1);
  c.sample_window = std::max<Duration>(c.sample_window, Duration(1));
  c.baseline_timeout = std::max<Duration>(c.baseline_timeout, Duration(1));
  c.baseline_interval = std::max<Duration>(c.baseline_interval, c.sample_window);
  c.baseline_jitter_percent = std::min<uint32_t>(c.baseline_jitter_percent, 100);
  return c;
}

}  // namespace

ConcurrencyLimiter::ConcurrencyLimiter(const ConcurrencyConfig& config, MonoTime now, Random& random)
    : config_(sanitized(config)),
      limit_(config_.initial_limit),
      window_end_ns_(0),
      measure_start_ns_(0),
      resume_limit_(config_.initial_limit),
      random_(random.next()) {
  start_measuring(ns_of(now));
}

bool ConcurrencyLimiter::try_acquire() {
  uint32_t cur = in_flight_.load(std::memory_order_relaxed);
  do {
    if (cur >= limit_.load(std::memory_order_relaxed)) return false;
  } while (!in_flight_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

void ConcurrencyLimiter::release_ignored() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

void ConcurrencyLimiter::release(Duration latency, MonoTime now) {
  const uint32_t before = in_flight_.fetch_sub(1, std::memory_order_relaxed);
  const int64_t t = ns_of(now);
  const int64_t latency_ns = std::max<int64_t>(ns_of(latency), 0);
  const bool measuring = measuring_.load(std::memory_order_acquire);
  // A request sent before the measurement began queued behind the old limit.
  if (!measuring || t - latency_ns >= measure_start_ns_.load(std::memory_order_relaxed)) {
    uint32_t peak = window_peak_.load(std::memory_order_relaxed);
    while (before > peak && !window_peak_.compare_exchange_weak(peak, before, std::memory_order_relaxed)) {
    }
    const uint64_t add =
        kOneSample | std::min<uint64_t>(static_cast<uint64_t>(latency_ns) / 1000, kMaxSampleUs);
    const uint64_t window = window_.fetch_add(add, std::memory_order_relaxed) + add;
    if (measuring && (window >> kSumBits) >= config_.baseline_samples) {
      maybe_update(t);
      return;
    }
  }
  if (t >= window_end_ns_.load(std::memory_order_relaxed)) maybe_update(t);
}

void ConcurrencyLimiter::maybe_update(int64_t now_ns) {
  // Whoever holds the flag does the update; the others have work to do.
  if (updating_.test_and_set(std::memory_order_acquire)) return;
  const bool measuring = measuring_.load(std::memory_order_relaxed);
  const bool enough =
      measuring && (window_.load(std::memory_order_relaxed) >> kSumBits) >= config_.baseline_samples;
  if (enough || now_ns >= window_end_ns_.load(std::memory_order_relaxed)) {
    const uint64_t window = window_.exchange(0, std::memory_order_relaxed);
    const uint64_t count = window >> kSumBits;
    const uint64_t sum_us = window & kSumMask;
    if (measuring) {
      if (count > 0) {
        finish_measuring(now_ns, count, sum_us);
      } else {
        // Timed out with nothing to average: keep measuring.
        window_end_ns_.store(now_ns + ns_of(config_.baseline_timeout), std::memory_order_relaxed);
      }
    } else {
      if (count > 0) apply_gradient(count, sum_us);
      window_peak_.store(in_flight_.load(std::memory_order_relaxed), std::memory_order_relaxed);
      if (now_ns >= next_baseline_ns_) {
        start_measuring(now_ns);
      } else {
        window_end_ns_.store(now_ns + ns_of(config_.sample_window), std::memory_order_relaxed);
      }
    }
  }
  updating_.clear(std::memory_order_release);
}

void ConcurrencyLimiter::start_measuring(int64_t now_ns) {
  resume_limit_ = limit_.load(std::memory_order_relaxed);
  limit_.store(config_.min_limit, std::memory_order_relaxed);
  measure_start_ns_.store(now_ns, std::memory_order_relaxed);
  measuring_.store(true, std::memory_order_release);
  window_.exchange(0, std::memory_order_relaxed);  // samples from before the pin
  window_end_ns_.store(now_ns + ns_of(config_.baseline_timeout), std::memory_order_relaxed);
}

void ConcurrencyLimiter::finish_measuring(int64_t now_ns, uint64_t count, uint64_t sum_us) {
  const int64_t baseline_ns = std::max<int64_t>(static_cast<int64_t>(sum_us * 1000 / count), 1000);
  baseline_ns_.store(baseline_ns, std::memory_order_relaxed);
  limit_.store(resume_limit_, std::memory_order_relaxed);
  window_peak_.store(in_flight_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  measuring_.store(false, std::memory_order_release);

  const int64_t interval = ns_of(config_.baseline_interval);
  const uint64_t jitter_span = static_cast<uint64_t>(interval / 100) * config_.baseline_jitter_percent;
  next_baseline_ns_ = now_ns + interval + static_cast<int64_t>(random_.uniform(jitter_span + 1));
  window_end_ns_.store(now_ns + ns_of(config_.sample_window), std::memory_order_relaxed);
}

void ConcurrencyLimiter::apply_gradient(uint64_t count, uint64_t sum_us) {
  const double sample_us = std::max(1.0, static_cast<double>(sum_us) / static_cast<double>(count));
  const double baseline_us = static_cast<double>(baseline_ns_.load(std::memory_order_relaxed)) / 1000.0;
  const double gradient = std::clamp(config_.tolerance * baseline_us / sample_us, 0.5, 1.0);
  const double limit = limit_.load(std::memory_order_relaxed);
  double next = limit * gradient + std::sqrt(limit);
  // Fewer than half the limit ever in flight: the traffic was the bound.
  if (next > limit && 2.0 * window_peak_.load(std::memory_order_relaxed) < limit) next = limit;
  next = std::clamp(std::floor(next), static_cast<double>(config_.min_limit),
                    static_cast<double>(config_.max_limit));
  limit_.store(static_cast<uint32_t>(next), std::memory_order_relaxed);
}

}  // namespace trellis::policy
