#include "proxy/config/checks.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "common/spiffe.h"
#include "common/text.h"
#include "policy/authorization.h"
#include "policy/cors.h"
#include "policy/route_table.h"

namespace trellis::proxy {
namespace {

bool is_lower_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

// A host name as written in a URL: labels of letters, digits, '-' and '_'
// separated by single dots.
bool is_host_name(std::string_view host) {
  if (host.empty() || host.front() == '.' || host.back() == '.') return false;
  if (host.find("..") != std::string_view::npos) return false;
  return std::all_of(host.begin(), host.end(), [](char c) { return is_lower_host_char(c); });
}

// The proxy frames messages and manages connections itself; a modifier that
// touched these could desynchronise a peer (request smuggling) or break reuse.
constexpr std::array<std::string_view, 8> kManagedHeaders = {
    "connection", "content-length", "keep-alive",        "proxy-connection",
    "te",         "trailer",        "transfer-encoding", "upgrade"};

bool has_name(const std::vector<std::pair<std::string, std::string>>& pairs, std::string_view name) {
  return std::any_of(pairs.begin(), pairs.end(), [&](const auto& pair) { return pair.first == name; });
}

}  // namespace

std::string format_duration(Millis d) {
  int64_t ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string quoted_choices(std::span<const std::string_view> choices) {
  std::string out;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += i + 1 == choices.size() ? " or " : ", ";
    out += in_quotes(choices[i]);
  }
  return out;
}

std::string unknown_choice(std::string_view what, std::string_view value,
                           std::span<const std::string_view> choices) {
  std::string message = "unknown " + std::string(what) + " " + in_quotes(value);
  std::string_view best = closest_match(value, choices);
  if (!best.empty()) return message + " (did you mean " + in_quotes(best) + "?)";
  return message + " (expected " + quoted_choices(choices) + ")";
}

// '/' is allowed so that the control plane can name a subset's cluster
// "<service>.<namespace>/<subset>".
bool is_valid_name(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '/';
  });
}

Problem check_tls_protocol(UpstreamProtocol protocol) {
  if (protocol == UpstreamProtocol::kDownstream)
    return "downstream is not possible with tls, where ALPN picks one protocol per connection";
  return std::nullopt;
}

Problem check_grpc_service(std::string_view name) {
  if (name.size() > 200) return "must be at most 200 characters";
  for (char c : name)
    if (c <= ' ' || c >= 0x7f) return "must be printable ASCII without spaces";
  return std::nullopt;
}

Problem check_health_check_protocol(HealthCheckConfig::Kind kind, UpstreamProtocol protocol, bool tls) {
  if (kind == HealthCheckConfig::Kind::kGrpc && tls && protocol != UpstreamProtocol::kHttp2)
    return "grpc checks speak HTTP/2, which this cluster's TLS does not offer; set protocol: http2";
  return std::nullopt;
}

Problem check_name(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (!is_valid_name(name))
    return "invalid name " + in_quotes(name) + ": use only letters, digits, '_', '.', '-' and '/'";
  return std::nullopt;
}

// Lower-case host names with at most one '*', which must be the first or last character.
Problem check_domain(std::string_view domain) {
  if (domain.empty()) return "must not be empty";
  for (char c : domain) {
    bool allowed = is_lower_host_char(c) || c == ':' || c == '[' || c == ']' || c == '*';
    if (!allowed) return "invalid character in domain " + in_quotes(domain);
  }
  size_t stars = std::count(domain.begin(), domain.end(), '*');
  if (stars > 1 || (stars == 1 && domain.front() != '*' && domain.back() != '*')) {
    return "invalid wildcard in " + in_quotes(domain) +
           ": at most one '*', at the start or the end (e.g. \"*.example.com\", \"example.*\")";
  }
  return std::nullopt;
}

Problem check_route_host(std::string_view host) {
  if (host.empty()) return "must not be empty";
  std::string_view name = host.substr(0, 2) == "*." ? host.substr(2) : host;
  if (!is_host_name(name)) {
    return "invalid host " + in_quotes(host) +
           ": expected a host name without a port, or \"*.\" and one (e.g. " + "\"*.example.com\")";
  }
  return std::nullopt;
}

Problem check_hostname(std::string_view host) {
  if (host.empty()) return "must not be empty";
  if (!is_host_name(ascii_lower(host)))
    return "invalid host name " + in_quotes(host) + " (no port, no wildcard)";
  return std::nullopt;
}

Problem check_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return "must start with \"/\"";
  bool has_space =
      std::any_of(path.begin(), path.end(), [](unsigned char c) { return c <= ' ' || c == 0x7f; });
  if (has_space) return "must not contain spaces or control characters";
  return std::nullopt;
}

Problem check_regex(const std::string& pattern) {
  auto compiled = policy::Regex::compile(pattern);
  if (!compiled) return "invalid regular expression: " + compiled.error().message;
  return std::nullopt;
}

Problem check_method(std::string_view method) {
  if (std::find(kMethods.begin(), kMethods.end(), method) != kMethods.end()) return std::nullopt;
  return unknown_choice("method", method, kMethods);
}

Problem check_authz_identity(std::string_view pattern) {
  if (pattern == "*") return std::nullopt;
  if (!pattern.starts_with("spiffe://")) return "must be \"*\" or a SPIFFE ID (spiffe://...)";
  size_t star = pattern.find('*');
  if (star != std::string_view::npos && star + 1 != pattern.size()) return "'*' is only allowed at the end";
  if (std::any_of(pattern.begin(), pattern.end(), [](unsigned char c) { return c <= ' ' || c >= 0x7f; }))
    return "must not contain spaces, control or non-ASCII characters";
  return std::nullopt;
}

Problem check_authz_path(std::string_view pattern) {
  size_t star = pattern.find('*');
  if (star != std::string_view::npos && star + 1 != pattern.size())
    return "'*' is only allowed at the end, as in \"/api/*\"";
  return check_path(pattern.substr(0, star));
}

Problem check_ip_block(std::string_view block) {
  auto parsed = policy::IpBlock::parse(block);
  if (!parsed) return parsed.error().message;
  return std::nullopt;
}

Problem check_spiffe_id(std::string_view id) {
  auto parsed = SpiffeId::parse(id);
  if (!parsed) return parsed.error().message;
  return std::nullopt;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

Problem check_header_name(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (!is_token(name)) {
    return "invalid header name " + in_quotes(name) + ": use letters, digits and !#$%&'*+-.^_`|~";
  }
  return std::nullopt;
}

Problem check_backend_redirect(const BackendConfig& b) {
  if (!b.redirect.enabled) return std::nullopt;
  if (b.request_headers.empty() && b.response_headers.empty() && b.rewrite.empty() && b.mirrors.empty() &&
      b.fault.abort_status == 0 && b.fault.delay.count() == 0)
    return std::nullopt;
  return std::string(
      "a backend with a redirect answers its share: its header changes, rewrite, mirrors and fault would "
      "never "
      "act");
}

Problem check_mirror_count(const RouteConfig& route) {
  size_t most = 0;
  for (const BackendConfig& b : route.backends) most = std::max(most, b.mirrors.size());
  if (route.mirrors.size() + most <= kMaxMirrorsPerRequest) return std::nullopt;
  return "a request may be mirrored " + std::to_string(kMaxMirrorsPerRequest) +
         " times at most; this route mirrors " + std::to_string(route.mirrors.size()) +
         " and one of its backends " + std::to_string(most) + " more";
}

Problem check_cors(const CorsConfig& cors) {
  auto star_alone = [](const std::vector<std::string>& list, const char* what) -> Problem {
    for (const std::string& v : list)
      if (v == "*" && list.size() > 1) return std::string(what) + ": \"*\" must be alone";
    return std::nullopt;
  };
  for (const auto& [list, what] :
       {std::pair{&cors.allow_origins, "allow_origins"}, std::pair{&cors.allow_methods, "allow_methods"},
        std::pair{&cors.allow_headers, "allow_headers"}, std::pair{&cors.expose_headers, "expose_headers"}}) {
    if (list->size() > 64) return std::string(what) + ": at most 64";
    if (auto p = star_alone(*list, what)) return p;
  }
  for (const std::string& o : cors.allow_origins)
    if (auto p = policy::check_origin_pattern(o)) return "allow_origins: " + *p;
  static constexpr std::string_view kMethods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                                  "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  for (const std::string& m : cors.allow_methods) {
    if (m != "*" && std::find(std::begin(kMethods), std::end(kMethods), m) == std::end(kMethods))
      return "allow_methods: " + in_quotes(m) +
             " is not an HTTP method (GET, HEAD, POST, PUT, DELETE, CONNECT, "
             "OPTIONS, TRACE, PATCH)";
  }
  for (const auto* list : {&cors.allow_headers, &cors.expose_headers}) {
    for (const std::string& h : *list)
      if (h != "*")
        if (auto p = check_header_name(h))
          return (list == &cors.allow_headers ? "allow_headers: " : "expose_headers: ") + *p;
  }
  if (cors.max_age_seconds < 1 || cors.max_age_seconds > 86400) return "max_age: must be 1 to 86400 seconds";
  if (cors.allow_credentials && cors.expose_headers.size() == 1 && cors.expose_headers[0] == "*")
    return "expose_headers: \"*\" cannot be used with allow_credentials (browsers take it as a header name)";
  return std::nullopt;
}

void set_cors_lists(CorsConfig& cors) {
  cors.expose_value.clear();
  for (const std::string& h : cors.expose_headers)
    cors.expose_value += (cors.expose_value.empty() ? "" : ",") + h;
}

Problem check_header_value(std::string_view value) {
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    return "must not contain CR, LF or NUL";
  }
  return std::nullopt;
}

Problem check_query_name(std::string_view name) {
  if (name.empty()) return "must not be empty";
  bool bad = std::any_of(name.begin(), name.end(), [](unsigned char c) {
    return c <= ' ' || c == 0x7f || c == '&' || c == '=' || c == '#';
  });
  if (bad)
    return "invalid query parameter name " + in_quotes(name) + ": no spaces, controls, '&', '=' or '#'";
  return std::nullopt;
}

Problem check_modifier_header(const HeaderModifier& so_far, ModifierList list, std::string_view name) {
  if (auto problem = check_header_name(name)) return problem;
  if (std::find(kManagedHeaders.begin(), kManagedHeaders.end(), name) != kManagedHeaders.end()) {
    return in_quotes(name) + " is managed by the proxy and cannot be modified";
  }
  const bool in_set = has_name(so_far.set, name);
  const bool in_add = has_name(so_far.add, name);
  const bool in_remove = std::find(so_far.remove.begin(), so_far.remove.end(), name) != so_far.remove.end();
  const bool duplicate = list == ModifierList::kSet   ? in_set
                         : list == ModifierList::kAdd ? in_add
                                                      : in_remove;
  if (duplicate) return "duplicate header " + in_quotes(name);
  const bool conflict = list == ModifierList::kRemove ? in_set || in_add : in_remove;
  if (conflict) return in_quotes(name) + " is both removed and set or added";
  return std::nullopt;
}

bool is_redirect_status(uint32_t status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

Problem check_rate_limit_name(const std::vector<RateLimitConfig>& so_far, std::string_view name) {
  if (auto problem = check_name(name)) return problem;
  bool duplicate = std::any_of(so_far.begin(), so_far.end(),
                               [&](const RateLimitConfig& limit) { return limit.name == name; });
  if (duplicate) return "duplicate rate limit name " + in_quotes(name);
  return std::nullopt;
}

std::string_view rate_unit_name(policy::RateUnit unit) {
  for (size_t i = 0; i < kRateUnits.size(); ++i) {
    if (kRateUnits[i] == unit) return kRateUnitNames[i];
  }
  return kRateUnitNames[0];
}

uint32_t token_bucket_capacity(uint64_t requests_per_unit, uint64_t extra) {
  constexpr uint64_t kMax = std::numeric_limits<uint32_t>::max();
  if (requests_per_unit >= kMax || extra >= kMax - requests_per_unit) return static_cast<uint32_t>(kMax);
  return static_cast<uint32_t>(requests_per_unit + extra);
}

uint64_t token_bucket_extra(const policy::TokenBucketConfig& bucket) {
  return bucket.burst > bucket.requests_per_unit ? bucket.burst - bucket.requests_per_unit : 0;
}

Problem check_leaky_rate(double rate_per_second) {
  // Written so that NaN fails too.
  if (rate_per_second > 0 && rate_per_second <= kMaxLeakyRate) return std::nullopt;
  return "must be greater than 0 and at most 1000000000";
}

Millis leaky_bucket_drain_time(double rate_per_second, uint32_t queue) {
  if (queue == 0) return Millis(0);
  // The interval as the bucket computes it (rounded up to the nanosecond), so
  // that the last place in the queue is still within the delay.
  const policy::LeakyBucket probe(policy::LeakyBucketConfig{rate_per_second, Duration::zero(), 0});
  const auto interval_ns =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(probe.interval()).count());
  constexpr uint64_t kMaxNs = static_cast<uint64_t>(kMaxDurationMs) * 1'000'000;
  if (interval_ns > kMaxNs / queue) return Millis(kMaxDurationMs);
  const uint64_t ms = (interval_ns * queue + 999'999) / 1'000'000;
  return Millis(std::clamp<int64_t>(static_cast<int64_t>(ms), 1, kMaxDurationMs));
}

std::optional<policy::LbAlgorithm> lb_algorithm_from_name(std::string_view name) {
  using policy::LbAlgorithm;
  constexpr std::array<LbAlgorithm, kLbPolicyNames.size()> kAlgorithms = {
      LbAlgorithm::kPeakEwma, LbAlgorithm::kRoundRobin,     LbAlgorithm::kWeightedRoundRobin,
      LbAlgorithm::kRandom,   LbAlgorithm::kWeightedRandom, LbAlgorithm::kLeastRequest,
      LbAlgorithm::kRingHash, LbAlgorithm::kMaglev};
  for (size_t i = 0; i < kLbPolicyNames.size(); ++i) {
    if (kLbPolicyNames[i] == name) return kAlgorithms[i];
  }
  return std::nullopt;
}

std::string_view lb_algorithm_name(policy::LbAlgorithm algorithm) {
  using policy::LbAlgorithm;
  switch (algorithm) {
    case LbAlgorithm::kPeakEwma:
      return "peak_ewma";
    case LbAlgorithm::kRoundRobin:
      return "round_robin";
    case LbAlgorithm::kWeightedRoundRobin:
      return "weighted_round_robin";
    case LbAlgorithm::kRandom:
      return "random";
    case LbAlgorithm::kWeightedRandom:
      return "weighted_random";
    case LbAlgorithm::kLeastRequest:
      return "least_request";
    case LbAlgorithm::kRingHash:
      return "ring_hash";
    case LbAlgorithm::kMaglev:
      return "maglev";
  }
  return "peak_ewma";
}

bool hashes_requests(policy::LbAlgorithm algorithm) {
  return algorithm == policy::LbAlgorithm::kRingHash || algorithm == policy::LbAlgorithm::kMaglev;
}

Millis default_backoff_max(Millis base) { return std::min(base * 10, Millis(kMaxDurationMs)); }

std::optional<uint32_t> retry_on_from_name(std::string_view name) {
  // kRetryOnNames is in bit order.
  static_assert(policy::kRetryConnectFailure == 1u << 0 && policy::kRetryStatusCodes == 1u << 4 &&
                policy::kRetryGrpcUnavailable == 1u << (kRetryOnNames.size() - 1));
  for (size_t i = 0; i < kRetryOnNames.size(); ++i) {
    if (kRetryOnNames[i] == name) return 1u << i;
  }
  return std::nullopt;
}

std::vector<std::string_view> retry_on_names(uint32_t bits) {
  std::vector<std::string_view> out;
  for (std::string_view name : kRetryOnNames) {
    if (bits & *retry_on_from_name(name)) out.push_back(name);
  }
  return out;
}

}  // namespace trellis::proxy
