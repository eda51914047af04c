// The decisions the router makes on a request before an upstream sees it, in
// the order it makes them (router.cc runs them in this order too):
//
//   0. authorization        the listener's AuthorizationPolicies (403)
//   1. forwarding headers   x-forwarded-for, x-request-id
//   2. route                the listener's route table (404 without one)
//   3. rate limits          429, or a leaky bucket's hold
//   4. direct answers       a route's direct error, a redirect
//   5. split                which weighted backend, hence which cluster (or
//                           the backend's own redirect)
//   6. fault                a delay, an abort, or both
//   7. rewrite              header and URL changes for the upstream
//   8. mirrors              which shadow clusters get a copy
//
// then admission (circuit breaker, adaptive concurrency) and the tries. Each
// decision is a plain function of the request, the route and the worker's
// randomness, so it is tested on its own.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/random.h"
#include "common/time.h"
#include "http/message.h"
#include "policy/authorization.h"
#include "proxy/config/config.h"
#include "proxy/http/rate_limits.h"
#include "proxy/security/authorization.h"

namespace trellis::proxy {

// 0. Whether the listener lets the request through. The path is normalized
// first (and forwarded normalized, so the application sees what was
// authorized); a path that cannot be is refused as a bad request.
struct AuthzVerdict {
  enum class Kind : uint8_t { kAllowed, kDenied, kBadPath };
  Kind kind = Kind::kAllowed;
  int policy = policy::AuthzDecision::kDefault;  // the deciding policy
};
AuthzVerdict authorize_request(const policy::Authorizer& authorizer, const AuthzClient& client,
                               http::RequestHeadersCopy& request, std::string& scratch);

// 1. x-forwarded-for: every earlier value in order, then `client_ip`.
// x-request-id: the client's, or a new UUIDv4 (into `request_id` either way).
void add_forwarding_headers(http::RequestHeadersCopy& request, std::string_view client_ip, Random& random,
                            std::string& request_id, std::string& scratch);

// 1. x-forwarded-client-cert and `header` (the listener's
// client_identity_header): never the client's own; on an mTLS listener,
// `header` (unless empty) is "By=<this proxy's identity>;URI=<the client's
// verified identity>", so the application learns who called.
void add_client_cert_header(http::RequestHeadersCopy& request, std::string_view header,
                            std::string_view own_identity, std::string_view client_identity,
                            std::string& scratch);

// 3. Every limit whose match the request satisfies must admit it; a leaky
// bucket may ask for it to be held first (the longest hold wins).
struct RateLimitDecision {
  const RouteRateLimiter* refused_by = nullptr;  // set: answer 429
  Duration retry_after{};                        // when refused
  Duration hold{};                               // when admitted
};
RateLimitDecision check_rate_limits(const std::vector<std::shared_ptr<RouteRateLimiter>>& limits,
                                    const http::RequestHeaders& request, std::string_view client_ip,
                                    MonoTime now);

// 5. The backend drawn by weight; null when every weight is 0.
const BackendConfig* choose_backend(const RouteConfig& route, Random& random);

// 6. A request drawn for both a delay and an abort is delayed, then aborted.
struct FaultDecision {
  Duration delay{};      // 0: none
  int abort_status = 0;  // 0: none
};
// The backend's fault when it has one, else the route's.
FaultDecision decide_fault(const RouteConfig& route, const BackendConfig& backend, Random& random);

// 7. The request as the upstream will see it: the route's and the backend's
// header changes, then host and path rewrites (the backend's hostname or
// path in place of the route's).
void rewrite_request(const RouteConfig& route, const BackendConfig& backend,
                     http::RequestHeadersCopy& request, std::string& scratch);

// 8. Bit i set: mirror i gets a copy, counting the route's mirrors first,
// then the backend's (kMaxMirrorsPerRequest in all, as loading checks).
uint32_t sample_mirrors(const RouteConfig& route, const BackendConfig& backend, Random& random);
// Mirror i as sample_mirrors counts them.
const MirrorConfig& mirror_at(const RouteConfig& route, const BackendConfig& backend, size_t i);

// The key a hashing balancer places the request by, under `hash`; none when
// the request lacks it. A missing cookie with a lifetime set gets a new
// value in `new_cookie`, which the response then sets.
std::optional<uint64_t> request_hash(const HashPolicy& hash, const http::RequestHeaders& request,
                                     std::string_view client_ip, Random& random, std::string& new_cookie);

}  // namespace trellis::proxy
