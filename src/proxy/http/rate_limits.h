// A route's rate limit at run time: which requests it counts, and its buckets
// (one, or one per client address, identity or header value), shared by all
// workers so that the limit holds for the whole proxy.
#pragma once

#include <memory>
#include <string_view>

#include "common/result.h"
#include "policy/rate_limiter.h"
#include "policy/route_table.h"
#include "proxy/config/config.h"

namespace trellis::proxy {

class RouteRateLimiter {
 public:
  // Per-key buckets kept at most, per limit: about 200 bytes each. The least
  // recently used key makes room for a new one (it then starts afresh).
  static constexpr size_t kMaxKeys = 10'000;

  struct Decision {
    bool allowed = true;
    Duration delay{};        // leaky bucket: hold the request this long first
    Duration retry_after{};  // refused: when a request would pass again
  };

  // Fails when the match does not compile (validated configs never do).
  static Result<std::shared_ptr<RouteRateLimiter>> build(const RateLimitConfig& config);

  const RateLimitConfig& config() const { return config_; }
  bool counts(const policy::RequestView& request) const;
  Decision admit(std::string_view key, MonoTime now);
  // Main thread, now and then: frees buckets that are full again.
  void evict_idle(MonoTime now);

 private:
  explicit RouteRateLimiter(const RateLimitConfig& config) : config_(config) {}

  RateLimitConfig config_;
  bool counts_all_ = false;
  policy::RouteTable match_;  // one virtual host "*", one route: the limit's match
  std::unique_ptr<policy::KeyedLimiter<policy::TokenBucket>> tokens_;
  std::unique_ptr<policy::KeyedLimiter<policy::LeakyBucket>> leaky_;
};

// Whether two limits count the same requests the same way (a reload keeps
// the buckets of a limit that did not change).
bool same_rate_limit(const RateLimitConfig& a, const RateLimitConfig& b);

}  // namespace trellis::proxy
