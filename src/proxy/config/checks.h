// The rules a config value must follow wherever it comes from. The bootstrap
// loader and the control-plane merger both ask these, so a value one of them
// accepts the other accepts too, with the same words when it does not.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/text.h"
#include "policy/load_balancer.h"
#include "policy/rate_limiter.h"
#include "policy/route_match.h"
#include "proxy/config/config.h"

namespace trellis::proxy {

// What is wrong with a value; nothing when it is fine.
using Problem = std::optional<std::string>;

inline constexpr uint32_t kMaxWeight = 1'000'000;
inline constexpr uint32_t kPerMillion = 1'000'000;
// Consumers add durations to clock readings; capping them keeps that far away
// from overflow while allowing any timeout anyone would mean.
inline constexpr int64_t kMaxDurationHours = 365 * 24;
inline constexpr int64_t kMaxDurationMs = kMaxDurationHours * 3600 * 1000;

// "1500ms", "30s": seconds when whole, as durations are written in the config.
std::string format_duration(Millis d);

// "\"a\", \"b\" or \"c\"", for messages that list the choices.
std::string quoted_choices(std::span<const std::string_view> choices);
// "unknown <what> "x" (did you mean "y"?)", or with the supported values
// listed when nothing is close.
std::string unknown_choice(std::string_view what, std::string_view value,
                           std::span<const std::string_view> choices);

// ---- clusters

// TLS origination picks the protocol for the whole connection (ALPN): a
// cluster that follows each request's protocol cannot have it.
Problem check_tls_protocol(UpstreamProtocol protocol);

// A gRPC service name for a health check: at most 200 printable ASCII
// characters without spaces ("package.Service").
Problem check_grpc_service(std::string_view name);

// The active health check `kind` on a cluster speaking `protocol`, with TLS
// origination or not: gRPC checks speak HTTP/2, which a TLS server is asked
// for only on an http2 cluster (ALPN).
Problem check_health_check_protocol(HealthCheckConfig::Kind kind, UpstreamProtocol protocol, bool tls);

// ---- names and hosts

// Listener, virtual host, cluster and zone names: letters, digits, '_', '.', '-'.
bool is_valid_name(std::string_view name);
Problem check_name(std::string_view name);
// A virtual host's domain (lower case): "a.example", "a.example:8080", "*.example", "api.*" or "*".
Problem check_domain(std::string_view domain);
// A route's host condition (lower case): "a.example" or "*.example", no port.
Problem check_route_host(std::string_view host);
// A host name a redirect or rewrite sends to, without a port.
Problem check_hostname(std::string_view host);

// ---- paths and matching

// A path to match or to write: starts with "/", no spaces or control characters.
Problem check_path(std::string_view path);
// Compiles `pattern` as the route table will (RE2).
Problem check_regex(const std::string& pattern);

inline constexpr std::array<std::string_view, 9> kMethods = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                                             "CONNECT", "OPTIONS", "TRACE", "PATCH"};
Problem check_method(std::string_view method);

// AuthorizationPolicy values: a SPIFFE ID, "*" or an ID cut short ending in
// '*'; a path, exact or ending in '*'; a CIDR block or address.
Problem check_authz_identity(std::string_view pattern);
Problem check_authz_path(std::string_view pattern);
Problem check_ip_block(std::string_view block);
// A workload identity: spiffe://<trust domain>/ns/<namespace>/sa/<account>.
Problem check_spiffe_id(std::string_view id);

// An HTTP token (RFC 9110 section 5.6.2), as header and cookie names are.
bool is_token(std::string_view s);
Problem check_header_name(std::string_view name);
// A route's CORS settings: origins as policy::check_origin_pattern says,
// methods of HTTP, header names, each list "*" alone or names; max age 1 s to
// a day; no "*" in expose_headers with credentials (browsers refuse it).
Problem check_cors(const CorsConfig& cors);
// Fills the values CorsConfig derives from its lists.
void set_cors_lists(CorsConfig& cors);
Problem check_header_value(std::string_view value);
// A backend with a redirect answers its share: it has no header changes,
// rewrite, mirrors or fault, which would never act.
Problem check_backend_redirect(const BackendConfig& backend);
// A route's mirrors and those of any one of its backends: kMaxMirrorsPerRequest at most.
Problem check_mirror_count(const RouteConfig& route);
// A query parameter's name as sent: not empty, no spaces, controls, '&', '=' or '#'.
Problem check_query_name(std::string_view name);

// ---- header modifiers

enum class ModifierList : uint8_t { kSet, kAdd, kRemove };
// What is wrong with adding header `name` (already lower case) to `list` of
// `so_far`: not a token, a header the proxy manages (framing, hop-by-hop), or
// one already named in the same list or both set and removed.
Problem check_modifier_header(const HeaderModifier& so_far, ModifierList list, std::string_view name);

// ---- redirects and rewrites

bool is_redirect_status(uint32_t status);  // 301, 302, 303, 307, 308
inline constexpr std::string_view kRedirectStatuses = "301, 302, 303, 307 or 308";

// ---- rate limits

// A rate limit's name: a name, once per route. Only names given are checked.
Problem check_rate_limit_name(const std::vector<RateLimitConfig>& so_far, std::string_view name);

inline constexpr uint64_t kMaxRateLimitRequests = 1'000'000'000;
inline constexpr double kMaxLeakyRate = 1e9;

inline constexpr std::array<std::string_view, 3> kRateUnitNames = {"second", "minute", "hour"};
inline constexpr std::array<policy::RateUnit, 3> kRateUnits = {
    policy::RateUnit::kSecond, policy::RateUnit::kMinute, policy::RateUnit::kHour};
std::string_view rate_unit_name(policy::RateUnit unit);

// Whose requests share a bucket, in RateLimitConfig::Key order; a header's
// values are written { header: NAME }.
inline constexpr std::array<std::string_view, 3> kRateLimitKeyNames = {"all", "address", "identity"};

// Both sources write the burst as requests above the rate; the bucket wants
// its whole capacity, which cannot exceed 2^32 - 1.
uint32_t token_bucket_capacity(uint64_t requests_per_unit, uint64_t extra);
// The other way round, for /config_dump.
uint64_t token_bucket_extra(const policy::TokenBucketConfig& bucket);

// A leaky bucket's rate_per_second: more than 0, at most kMaxLeakyRate.
Problem check_leaky_rate(double rate_per_second);
// How long a full queue of `queue` requests takes to leave at `rate_per_second`
// (the default max_delay): queue x the bucket's own interval, rounded up to
// the millisecond so that the delay never cuts the queue short; at least 1 ms
// with a queue, 0 without, and no more than the longest duration.
Millis leaky_bucket_drain_time(double rate_per_second, uint32_t queue);

// ---- load balancing

inline constexpr std::array<std::string_view, 8> kLbPolicyNames = {
    "peak_ewma", "round_robin", "weighted_round_robin", "random", "weighted_random", "least_request",
    "ring_hash", "maglev"};
std::optional<policy::LbAlgorithm> lb_algorithm_from_name(std::string_view name);
std::string_view lb_algorithm_name(policy::LbAlgorithm algorithm);
// Consistent hashing: needs a hash policy and cannot warm endpoints slowly
// (a key's endpoint is fixed, there is no share to grow).
bool hashes_requests(policy::LbAlgorithm algorithm);

inline constexpr uint32_t kMinRingPoints = 1;
inline constexpr uint32_t kMaxRingPoints = 65536;

// ---- retries

inline constexpr uint32_t kMaxRetryAttempts = 10;
inline constexpr uint32_t kMaxRetryBufferLimit = 16 * 1024 * 1024;
inline constexpr Millis kDefaultBackoffBase{25};
// The backoff cap when only the base is given: ten times it.
Millis default_backoff_max(Millis base);

using policy::kRetryOnNames;
std::optional<uint32_t> retry_on_from_name(std::string_view name);
// The names of the conditions set in `bits`, in kRetryOnNames order.
std::vector<std::string_view> retry_on_names(uint32_t bits);

}  // namespace trellis::proxy
