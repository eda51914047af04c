#include "proxy/http/rate_limits.h"

namespace trellis::proxy {
namespace {

bool same_values(const std::vector<policy::ValueMatch>& a, const std::vector<policy::ValueMatch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].regex != b[i].regex || a[i].value != b[i].value) return false;
  return true;
}

}  // namespace

Result<std::shared_ptr<RouteRateLimiter>> RouteRateLimiter::build(const RateLimitConfig& config) {
  std::shared_ptr<RouteRateLimiter> out(new RouteRateLimiter(config));
  const policy::RouteMatch& m = config.match;
  out->counts_all_ = m.path_kind == policy::PathMatchKind::kPrefix && m.path == "/" && m.method.empty() &&
                     m.headers.empty() && m.query_params.empty();
  if (!out->counts_all_) {
    auto added = out->match_.add_virtual_host({"*"}, {m});
    if (!added) return make_error(added.error().message);
  }
  if (config.leaky) {
    out->leaky_ = std::make_unique<policy::KeyedLimiter<policy::LeakyBucket>>(config.leaky_bucket, kMaxKeys);
  } else {
    out->tokens_ = std::make_unique<policy::KeyedLimiter<policy::TokenBucket>>(config.token_bucket, kMaxKeys);
  }
  return out;
}

bool RouteRateLimiter::counts(const policy::RequestView& request) const {
  if (counts_all_) return true;
  policy::RouteRef ref;
  // The limit's match ignores the host: any authority reaches its "*" host.
  policy::RequestView view = request;
  view.authority = "*";
  return match_.match(view, ref);
}

RouteRateLimiter::Decision RouteRateLimiter::admit(std::string_view key, MonoTime now) {
  Decision out;
  if (leaky_) {
    auto d = leaky_->admit(key, now);
    out.allowed = d.allowed;
    out.delay = d.delay;
    out.retry_after = d.retry_after;
  } else {
    auto d = tokens_->admit(key, now);
    out.allowed = d.allowed;
    out.retry_after = d.retry_after;
  }
  return out;
}

void RouteRateLimiter::evict_idle(MonoTime now) {
  if (leaky_) leaky_->evict_idle(now);
  if (tokens_) tokens_->evict_idle(now);
}

bool same_rate_limit(const RateLimitConfig& a, const RateLimitConfig& b) {
  const policy::RouteMatch& x = a.match;
  const policy::RouteMatch& y = b.match;
  bool same_match = x.path_kind == y.path_kind && x.path == y.path && x.method == y.method &&
                    same_values(x.headers, y.headers) && same_values(x.query_params, y.query_params);
  bool same_bucket =
      a.leaky == b.leaky && (a.leaky ? a.leaky_bucket.rate_per_second == b.leaky_bucket.rate_per_second &&
                                           a.leaky_bucket.max_delay == b.leaky_bucket.max_delay &&
                                           a.leaky_bucket.queue == b.leaky_bucket.queue
                                     : a.token_bucket.requests_per_unit == b.token_bucket.requests_per_unit &&
                                           a.token_bucket.unit == b.token_bucket.unit &&
                                           a.token_bucket.burst == b.token_bucket.burst);
  return a.name == b.name && same_match && a.key == b.key && a.key_header == b.key_header && same_bucket;
}

}  // namespace trellis::proxy
