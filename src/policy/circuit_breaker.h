// Circuit breaking as hard caps on what one cluster may have open at once
// (connections, pending and active requests, retries), exact across workers.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace trellis::policy {

enum class Resource : uint8_t { kConnections, kPendingRequests, kRequests, kRetries };
inline constexpr size_t kResourceCount = 4;

// The name of the limit on `r`, as the config spells it and as the response
// header naming the limit that tripped reports it.
constexpr std::string_view name_of(Resource r) {
  switch (r) {
    case Resource::kConnections:
      return "max_connections";
    case Resource::kPendingRequests:
      return "max_pending_requests";
    case Resource::kRequests:
      return "max_requests";
    case Resource::kRetries:
      return "max_retries";
  }
  return "unknown";
}

// Envoy's defaults: generous enough never to trip on a healthy cluster.
struct CircuitBreakerLimits {
  uint32_t max_connections = 1024;
  uint32_t max_pending_requests = 1024;
  uint32_t max_requests = 1024;
  uint32_t max_retries = 3;  // retries in flight at once, over the whole cluster
};

// One per cluster for the whole proxy, shared by every worker. Each counter is
// one atomic; try_acquire is a compare-and-swap loop, so the count never goes
// past the limit even for a moment and a free slot is never refused because
// of a racing refusal. Limits live in atomics too: a config update calls
// set_limits() on the same object, so counts of what is already open survive
// it and every release() finds the counter its acquire raised.
class CircuitBreaker {
 public:
  explicit CircuitBreaker(const CircuitBreakerLimits& limits = {}) { set_limits(limits); }
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // True, and counted, when `r` is below its limit; false (the breaker trips:
  // answer 503 naming name_of(r)) otherwise. Each true must be paired with
  // exactly one release(r).
  bool try_acquire(Resource r) {
    Slot& s = slots_[index(r)];
    const uint32_t limit = s.limit.load(std::memory_order_relaxed);
    uint32_t cur = s.count.load(std::memory_order_relaxed);
    do {
      if (cur >= limit) return false;
    } while (!s.count.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
    return true;
  }

  void release(Resource r) { slots_[index(r)].count.fetch_sub(1, std::memory_order_relaxed); }

  // What is open now (for stats and the remaining-capacity gauges).
  uint32_t current(Resource r) const { return slots_[index(r)].count.load(std::memory_order_relaxed); }
  uint32_t limit(Resource r) const { return slots_[index(r)].limit.load(std::memory_order_relaxed); }
  uint32_t remaining(Resource r) const {
    uint32_t c = current(r), l = limit(r);
    return c >= l ? 0 : l - c;
  }

  // A lowered limit refuses new acquisitions until enough is released; what
  // is already open is never revoked.
  void set_limits(const CircuitBreakerLimits& limits) {
    slots_[index(Resource::kConnections)].limit.store(limits.max_connections, std::memory_order_relaxed);
    slots_[index(Resource::kPendingRequests)].limit.store(limits.max_pending_requests,
                                                          std::memory_order_relaxed);
    slots_[index(Resource::kRequests)].limit.store(limits.max_requests, std::memory_order_relaxed);
    slots_[index(Resource::kRetries)].limit.store(limits.max_retries, std::memory_order_relaxed);
  }

 private:
  static constexpr size_t index(Resource r) { return static_cast<size_t>(r); }

  // One cache line each: workers opening connections do not slow down those
  // counting requests.
  struct alignas(64) Slot {
    std::atomic<uint32_t> count{0};
    std::atomic<uint32_t> limit{0};
  };
  std::array<Slot, kResourceCount> slots_;
};

// One unit of a breaker's resource, held by whoever acquired it and given
// back exactly once: by release(), by being replaced, or when destroyed.
// The breaker must outlive it (clusters' breakers live as long as the process).
class BreakerSlot {
 public:
  BreakerSlot() = default;
  ~BreakerSlot() { release(); }
  BreakerSlot(BreakerSlot&& o) noexcept : breaker_(o.breaker_), resource_(o.resource_) {
    o.breaker_ = nullptr;
  }
  BreakerSlot& operator=(BreakerSlot&& o) noexcept {
    if (this != &o) {
      release();
      breaker_ = o.breaker_;
      resource_ = o.resource_;
      o.breaker_ = nullptr;
    }
    return *this;
  }
  BreakerSlot(const BreakerSlot&) = delete;
  BreakerSlot& operator=(const BreakerSlot&) = delete;

  // Gives back what is held, then takes `r`; false (nothing held) when the
  // breaker refuses.
  bool acquire(CircuitBreaker& breaker, Resource r) {
    release();
    if (!breaker.try_acquire(r)) return false;
    breaker_ = &breaker;
    resource_ = r;
    return true;
  }
  void release() {
    if (breaker_ != nullptr) breaker_->release(resource_);
    breaker_ = nullptr;
  }
  bool held() const { return breaker_ != nullptr; }

 private:
  CircuitBreaker* breaker_ = nullptr;
  Resource resource_ = Resource::kRequests;
};

}  // namespace trellis::policy
