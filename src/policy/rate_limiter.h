// Rate limits that hold exactly across every worker of the proxy: a token
// bucket (GCRA), a leaky bucket that shapes traffic by delaying it, and
// per-key buckets for limits by client, identity or header value.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/time.h"

namespace trellis::policy {

enum class RateUnit : uint8_t { kSecond, kMinute, kHour };
Duration unit_duration(RateUnit unit);

struct TokenBucketConfig {
  // 0 refuses every request.
  uint64_t requests_per_unit = 100;
  RateUnit unit = RateUnit::kSecond;
  // Requests admitted at once by a bucket that has been idle. 0: one unit's
  // worth (requests_per_unit, capped at 2^32 - 1).
  uint32_t burst = 0;
};

// A token bucket as GCRA (the generic cell rate algorithm): the whole state is
// one atomic "theoretical arrival time" (TAT), advanced by one emission
// interval T = unit / requests_per_unit per admitted request with a
// compare-and-swap loop. Lock-free and exact: one bucket shared by every
// worker admits the configured rate in total, never workers x rate.
//
// Semantics: a request at `now` is admitted when max(TAT, now) + T - now <=
// burst x T. From idle, `burst` requests pass at once; then one every T. Over
// any closed window of length W at most burst + floor(W / T) requests are
// admitted, and exactly that many when requests keep arriving. T is rounded
// up to the nanosecond, so rounding never admits more than the rate.
class TokenBucket {
 public:
  using Config = TokenBucketConfig;
  struct Decision {
    bool allowed = false;
    // Refused: how long until a request would be admitted (Retry-After, rounded
    // up to whole seconds by the caller). Zero when allowed.
    Duration retry_after{};
    // Requests that could still be admitted at `now` after this one
    // (RateLimit-Remaining).
    uint64_t remaining = 0;
  };

  explicit TokenBucket(const TokenBucketConfig& config);
  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  // Thread-safe and lock-free; any worker may call it at any time.
  Decision admit(MonoTime now);
  // True when the bucket is full again at `now`: a fresh bucket would decide
  // exactly the same from here on, so forgetting this one loses nothing.
  bool idle(MonoTime now) const;

  Duration interval() const { return Duration(interval_ns_); }
  uint64_t burst() const { return burst_; }

 private:
  bool refuse_all_ = false;
  int64_t interval_ns_ = 0;   // T
  int64_t tolerance_ns_ = 0;  // burst x T
  uint64_t burst_ = 0;
  std::atomic<int64_t> tat_ns_;
};

struct LeakyBucketConfig {
  // Requests leave evenly spaced, one every 1 / rate_per_second seconds. Must
  // be > 0 (config validation refuses others; here they refuse everything).
  double rate_per_second = 100;
  // The longest a request may be held before it is sent; past it, refused.
  Duration max_delay = std::chrono::seconds(1);
  // The most requests held at once; 0 polices without queueing (only requests
  // that may leave at once pass).
  uint32_t queue = 100;
};

// Shaping as a leaky bucket: instead of refusing a request that comes too
// early, it is given a departure time and the caller holds it until then.
// The state is one atomic "next free departure time"; admit() claims the next
// slot with a compare-and-swap loop, so one bucket paces the whole proxy.
//
// The queue is not tracked by a counter the caller must keep right: slots
// are handed out evenly spaced, so the requests still waiting at `now` are
// exactly the slots after `now`, derived from the next free slot. Holding at
// most `queue` requests is then the same as a delay of at most queue x T, and
// the effective bound is min(max_delay, queue x T). A held request the
// caller drops (client gone) still uses its slot: the bucket errs on the
// side of sending less, never more.
class LeakyBucket {
 public:
  using Config = LeakyBucketConfig;
  struct Decision {
    bool allowed = false;
    // Allowed: how long to hold the request before sending it (0: now).
    Duration delay{};
    // Refused: how long until a request would be admitted.
    Duration retry_after{};
  };

  explicit LeakyBucket(const LeakyBucketConfig& config);
  LeakyBucket(const LeakyBucket&) = delete;
  LeakyBucket& operator=(const LeakyBucket&) = delete;

  // Thread-safe and lock-free.
  Decision admit(MonoTime now);
  // Nothing held at `now`: a fresh bucket would decide the same.
  bool idle(MonoTime now) const;
  // Requests admitted with a delay that have not yet reached their time.
  uint64_t waiting(MonoTime now) const;

  Duration interval() const { return Duration(interval_ns_); }
  Duration max_delay() const { return Duration(max_delay_ns_); }

 private:
  bool refuse_all_ = false;
  int64_t interval_ns_ = 0;   // T
  int64_t max_delay_ns_ = 0;  // min(max_delay, queue x T)
  std::atomic<int64_t> next_ns_;
};

// One bucket per key (client address, identity, header value) for the whole
// proxy. Keys are spread over up to 64 shards, each a small mutex and a map,
// so two workers rarely meet on one lock; the bucket's own decision is
// lock-free, the lock only guards the map.
//
// Memory is bounded: at most max_keys keys are held (each shard holds
// max_keys / shards). A new key that finds its shard full evicts the shard's
// least recently used key. An idle bucket (full again) loses nothing when
// evicted; a busy one that is evicted comes back as a fresh bucket, so under
// a flood of distinct keys a limit errs toward admitting, never toward
// refusing a well-behaved client. A key seen on every request stays at the
// front and is never the one evicted. evict_idle() (the owner's main thread,
// every few seconds) returns the memory of keys that went quiet. About 200
// bytes per key: the default 100,000 keys bound the map near 20 MB.
//
// Requests with an empty key share one bucket, outside the map: never evicted.
template <class Bucket>
class KeyedLimiter {
 public:
  using Config = typename Bucket::Config;
  using Decision = typename Bucket::Decision;
  static constexpr size_t kMaxShards = 64;

  explicit KeyedLimiter(const Config& config, size_t max_keys = 100'000)
      : config_(config),
        shard_count_(std::min(kMaxShards, std::bit_floor(std::max<size_t>(max_keys, 1)))),
        per_shard_(std::max<size_t>(max_keys, 1) / shard_count_),
        shard_bits_(std::countr_zero(shard_count_)),
        shards_(std::make_unique<Shard[]>(shard_count_)),
        shared_(config) {}
  KeyedLimiter(const KeyedLimiter&) = delete;
  KeyedLimiter& operator=(const KeyedLimiter&) = delete;

  // Thread-safe: any worker, any time.
  Decision admit(std::string_view key, MonoTime now) {
    if (key.empty()) return shared_.admit(now);
    Shard& shard = shard_for(key);
    std::lock_guard lock(shard.mu);
    if (auto it = shard.index.find(key); it != shard.index.end()) {
      shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
      return it->second->bucket.admit(now);
    }
    if (shard.lru.size() >= per_shard_) {
      shard.index.erase(shard.lru.back().key);
      shard.lru.pop_back();
      ++shard.evicted;
    }
    Entry& entry = shard.lru.emplace_front(key, config_);
    shard.index.emplace(entry.key, shard.lru.begin());
    return entry.bucket.admit(now);
  }

  // Drops every bucket that is idle at `now`; returns how many.
  size_t evict_idle(MonoTime now) {
    size_t dropped = 0;
    for (size_t i = 0; i < shard_count_; ++i) {
      Shard& shard = shards_[i];
      std::lock_guard lock(shard.mu);
      for (auto it = shard.lru.begin(); it != shard.lru.end();) {
        if (!it->bucket.idle(now)) {
          ++it;
          continue;
        }
        shard.index.erase(it->key);
        it = shard.lru.erase(it);
        ++dropped;
      }
    }
    return dropped;
  }

  // Keys held now, and keys evicted to make room for new ones (for stats).
  size_t size() const {
    return sum([](const Shard& s) { return s.lru.size(); });
  }
  uint64_t evicted() const {
    return sum([](const Shard& s) { return s.evicted; });
  }
  size_t max_keys() const { return per_shard_ * shard_count_; }

 private:
  struct Entry {
    Entry(std::string_view k, const Config& config) : key(k), bucket(config) {}
    std::string key;
    Bucket bucket;
  };
  // Cache-line aligned so that two shards' locks never share a line.
  struct alignas(64) Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // most recently used first; nodes never move
    // Views into the list nodes' keys, which stay put until erased.
    std::unordered_map<std::string_view, typename std::list<Entry>::iterator> index;
    uint64_t evicted = 0;
  };

  Shard& shard_for(std::string_view key) {
    if (shard_bits_ == 0) return shards_[0];
    // The map hashes the same value for its own buckets: take the shard from
    // the top bits of a remix so the two choices stay independent.
    const uint64_t h = std::hash<std::string_view>{}(key);
    return shards_[(h * 0x9E3779B97F4A7C15ull) >> (64 - shard_bits_)];
  }

  template <class F>
  size_t sum(F f) const {
    size_t total = 0;
    for (size_t i = 0; i < shard_count_; ++i) {
      std::lock_guard lock(shards_[i].mu);
      total += f(shards_[i]);
    }
    return total;
  }

  Config config_;
  size_t shard_count_;
  size_t per_shard_;
  int shard_bits_;
  std::unique_ptr<Shard[]> shards_;
  Bucket shared_;
};

}  // namespace trellis::policy
