// Token and leaky buckets: GCRA and paced departure slots, each one atomic
// advanced by a compare-and-swap loop.
#include "policy/rate_limiter.h"

#include <chrono>
#include <cmath>
#include <limits>

namespace trellis::policy {

namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::min();
// Bounds on durations computed from config, far past any sensible value and
// far enough from int64 overflow that now + several of them cannot wrap.
constexpr int64_t kMaxSpanNs = int64_t{1} << 60;

int64_t ns_of(MonoTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

int64_t ns_of(Duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

Duration span(int64_t ns) { return std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(ns)); }

int64_t saturating_mul(int64_t a, uint64_t b) {
  unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  return p > static_cast<unsigned __int128>(kMaxSpanNs) ? kMaxSpanNs : static_cast<int64_t>(p);
}

}  // namespace

Duration unit_duration(RateUnit unit) {
  switch (unit) {
    case RateUnit::kSecond:
      return std::chrono::seconds(1);
    case RateUnit::kMinute:
      return std::chrono::minutes(1);
    case RateUnit::kHour:
      return std::chrono::hours(1);
  }
  return std::chrono::seconds(1);
}

TokenBucket::TokenBucket(const TokenBucketConfig& config) : tat_ns_(kNever) {
  const int64_t unit_ns = ns_of(unit_duration(config.unit));
  if (config.requests_per_unit == 0) {
    refuse_all_ = true;
    interval_ns_ = unit_ns;
    return;
  }
  // Rounded up: the bucket never admits faster than configured.
  const uint64_t rpu = config.requests_per_unit;
  interval_ns_ = std::max<int64_t>(1, static_cast<int64_t>((static_cast<uint64_t>(unit_ns) + rpu - 1) / rpu));
  burst_ = config.burst != 0 ? config.burst : std::min<uint64_t>(rpu, UINT32_MAX);
  tolerance_ns_ = saturating_mul(interval_ns_, burst_);
}

TokenBucket::Decision TokenBucket::admit(MonoTime now) {
  if (refuse_all_) return {false, span(interval_ns_), 0};
  const int64_t t = ns_of(now);
  int64_t tat = tat_ns_.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t next = std::max(tat, t) + interval_ns_;
    const int64_t ahead = next - t;  // how far this request would run ahead of now
    if (ahead > tolerance_ns_) return {false, span(ahead - tolerance_ns_), 0};
    if (tat_ns_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) {
      return {true, Duration::zero(), static_cast<uint64_t>((tolerance_ns_ - ahead) / interval_ns_)};
    }
  }
}

bool TokenBucket::idle(MonoTime now) const { return tat_ns_.load(std::memory_order_relaxed) <= ns_of(now); }

LeakyBucket::LeakyBucket(const LeakyBucketConfig& config) : next_ns_(kNever) {
  const double rate = config.rate_per_second;
  if (!(rate > 0) || !std::isfinite(rate)) {
    refuse_all_ = true;
    interval_ns_ = ns_of(std::chrono::seconds(1));
    return;
  }
  // Rounded up, and held to a sane range: a rate of 1e-12/s is "never".
  const double t = std::ceil(1e9 / rate);
  interval_ns_ = t < 1 ? 1 : t > static_cast<double>(kMaxSpanNs) ? kMaxSpanNs : static_cast<int64_t>(t);
  const int64_t max_delay = std::clamp<int64_t>(ns_of(config.max_delay), 0, kMaxSpanNs);
  max_delay_ns_ = std::min(max_delay, saturating_mul(interval_ns_, config.queue));
}

LeakyBucket::Decision LeakyBucket::admit(MonoTime now) {
  if (refuse_all_) return {false, Duration::zero(), span(interval_ns_)};
  const int64_t t = ns_of(now);
  int64_t next = next_ns_.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t slot = std::max(next, t);
    const int64_t delay = slot - t;
    if (delay > max_delay_ns_) return {false, Duration::zero(), span(delay - max_delay_ns_)};
    if (next_ns_.compare_exchange_weak(next, slot + interval_ns_, std::memory_order_relaxed)) {
      return {true, span(delay), Duration::zero()};
    }
  }
}

bool LeakyBucket::idle(MonoTime now) const {
  // Not merely nothing held (the last slot, next - T, is past): the next
  // request must also be free to leave at once, as in a fresh bucket.
  return next_ns_.load(std::memory_order_relaxed) <= ns_of(now);
}

uint64_t LeakyBucket::waiting(MonoTime now) const {
  // Held slots are next - T, next - 2T, ... down to the first of the run,
  // which left at once; those after `now` are still waiting.
  const int64_t next = next_ns_.load(std::memory_order_relaxed);
  if (next == kNever) return 0;
  const int64_t ahead = next - ns_of(now);
  if (ahead <= 0) return 0;
  return static_cast<uint64_t>((ahead + interval_ns_ - 1) / interval_ns_ - 1);
}

}  // namespace trellis::policy
