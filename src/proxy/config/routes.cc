// The bootstrap file's routes: what a request must look like, how many may
// pass (rate limits), and where it goes (backends or a redirect), changed on
// the way (headers, rewrites), copied (mirrors) or broken on purpose (faults).
#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <optional>

#include "proxy/config/loader.h"

namespace trellis::proxy::config_yaml {
namespace {

using policy::PathMatchKind;

constexpr std::array<std::string_view, 2> kSchemes = {"http", "https"};
constexpr std::string_view kKeyChoices = "\"all\", \"address\", \"identity\" or { header: NAME }";

// A route's match may test every part of a request and must say which paths;
// a rate limit's tests only the path (prefix or exact), method and headers,
// and without a path counts every path.
enum class MatchFor : uint8_t { kRoute, kRateLimit };

// A number as YAML writes one, unquoted: digits, an optional fraction and an
// optional exponent ("100", "0.5", "2.5e3"). Nothing when the text is not one
// (NaN when it does not fit a double, so that no range takes it).
std::optional<double> parse_number(const YAML::Node& node) {
  const std::string& tag = node.Tag();
  if (!node.IsScalar() || tag == "!" || tag == "tag:yaml.org,2002:str") return std::nullopt;
  std::string_view text = node.Scalar();
  size_t i = text.empty() || text.front() != '-' ? 0 : 1;
  auto digits = [&] {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    return i > start;
  };
  if (!digits()) return std::nullopt;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (!digits()) return std::nullopt;  // "1." is not a number
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (!digits()) return std::nullopt;
  }
  if (i != text.size()) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  // Too large or too small for a double: out of any range the caller allows.
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<double>::quiet_NaN();
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

class RouteLoader {
 public:
  RouteLoader(Reader& reader, const ClusterIndex& clusters) : r_(reader), clusters_(clusters) {}

  void load(const Located& at, RouteConfig& route) {
    auto fields = r_.read_map(
        at, {"name", "match", "rate_limits", "cluster", "backends", "redirect", "rewrite", "request_headers",
             "response_headers", "mirror", "fault", "timeout", "per_try_timeout", "cors"});
    if (!fields) return;
    if (auto v = fields->get("name")) r_.read_name(*v, route.name);
    bool path_kind_known = false;
    if (auto v = r_.required(*fields, "match"))
      path_kind_known = load_match(*v, MatchFor::kRoute, route.match);
    if (auto v = fields->get("rate_limits")) load_rate_limits(*v, route.rate_limits);
    // Prefix replacements are checked against the match only when its kind is certain.
    const policy::RouteMatch* match = path_kind_known ? &route.match : nullptr;

    std::vector<Located> targets = fields->present({"cluster", "backends", "redirect"});
    if (targets.empty()) r_.error(at, "needs \"cluster\", \"backends\" or \"redirect\"");
    for (size_t i = 1; i < targets.size(); ++i) {
      r_.key_error(targets[i], "set only one of \"cluster\", \"backends\" or \"redirect\"");
    }
    if (auto v = fields->get("cluster")) {
      BackendConfig backend;  // the shorthand: one backend of weight 1
      if (r_.read_string(*v, backend.cluster))
        clusters_.resolve(r_, *v, backend.cluster, backend.cluster_index);
      route.backends.push_back(std::move(backend));
    }
    if (auto v = fields->get("backends")) load_backends(*v, match, route.backends);
    load_actions(*fields, match,
                 {route.redirect, route.rewrite, route.request_headers, route.response_headers, route.mirrors,
                  route.fault});
    if (auto v = fields->get("cors")) load_cors(*v, route.cors);
    if (auto v = fields->get("timeout")) r_.read_duration(*v, route.timeout);
    if (auto v = fields->get("per_try_timeout")) r_.read_duration(*v, route.per_try_timeout);
    r_.check(at, check_mirror_count(route));
  }

 private:
  // True when the kind of path match is certain (exactly one was given).
  bool load_match(const Located& at, MatchFor what, policy::RouteMatch& match) {
    const bool route = what == MatchFor::kRoute;
    auto fields =
        route ? r_.read_map(at, {"prefix", "exact", "regex", "method", "headers", "query_params", "hosts"})
              : r_.read_map(at, {"prefix", "exact", "method", "headers"});
    if (!fields) return false;
    std::vector<Located> paths = fields->present({"prefix", "exact", "regex"});
    if (paths.size() > 1) {
      r_.error(at, route ? "set only one of \"prefix\", \"exact\" or \"regex\""
                         : "set only one of \"prefix\" or \"exact\"");
    }
    if (paths.empty() && route) r_.error(at, "needs \"prefix\", \"exact\" or \"regex\"");
    if (paths.size() == 1) {
      const Located& path = paths.front();
      match.path_kind = fields->get("prefix")  ? PathMatchKind::kPrefix
                        : fields->get("exact") ? PathMatchKind::kExact
                                               : PathMatchKind::kRegex;
      if (r_.read_string(path, match.path)) {
        r_.check(path,
                 match.path_kind == PathMatchKind::kRegex ? check_regex(match.path) : check_path(match.path));
      }
    }
    if (auto v = fields->get("method")) {
      size_t index = 0;
      if (r_.read_choice(*v, "method", kMethods, index)) match.method = kMethods[index];
    }
    if (auto v = fields->get("headers")) load_value_matches(*v, /*headers=*/true, match.headers);
    if (auto v = fields->get("query_params")) load_value_matches(*v, /*headers=*/false, match.query_params);
    if (auto v = fields->get("hosts")) {
      if (auto items = r_.read_list(*v)) {
        for (const Located& item : *items) {
          std::string host;
          if (!r_.read_string(item, host)) continue;
          host = ascii_lower(host);
          if (r_.check(item, check_route_host(host))) match.hosts.push_back(std::move(host));
        }
      }
    }
    return paths.size() == 1;
  }

  void load_value_matches(const Located& at, bool headers, std::vector<policy::ValueMatch>& out) {
    auto items = r_.read_list(at);
    if (!items) return;
    for (const Located& item : *items) {
      auto fields = r_.read_map(item, {"name", "value", "regex"});
      if (!fields) continue;
      policy::ValueMatch match;
      if (auto v = r_.required(*fields, "name"); v && r_.read_string(*v, match.name)) {
        // Header names compare without case; query parameter names as sent.
        if (headers && r_.check(*v, check_header_name(match.name))) match.name = ascii_lower(match.name);
        if (!headers) r_.check(*v, check_query_name(match.name));
      }
      std::vector<Located> values = fields->present({"value", "regex"});
      if (values.size() != 1) {
        r_.error(item,
                 values.empty() ? "needs \"value\" or \"regex\"" : "set only one of \"value\" or \"regex\"");
      } else {
        match.regex = fields->get("regex").has_value();
        if (r_.read_string(values.front(), match.value)) {
          r_.check(values.front(), match.regex ? check_regex(match.value) : check_header_value(match.value));
        }
      }
      out.push_back(std::move(match));
    }
  }

  void load_rate_limits(const Located& at, std::vector<RateLimitConfig>& limits) {
    auto items = r_.read_list(at);
    if (!items) return;
    for (const Located& item : *items) {
      RateLimitConfig limit;
      load_rate_limit(item, limits, limit);
      limits.push_back(std::move(limit));
    }
  }

  void load_rate_limit(const Located& at, const std::vector<RateLimitConfig>& so_far,
                       RateLimitConfig& limit) {
    auto fields = r_.read_map(at, {"name", "match", "key", "token_bucket", "leaky_bucket"});
    if (!fields) return;
    if (auto v = fields->get("name"); v && r_.read_string(*v, limit.name)) {
      r_.check(*v, check_rate_limit_name(so_far, limit.name));
    }
    if (auto v = fields->get("match")) load_match(*v, MatchFor::kRateLimit, limit.match);
    if (auto v = fields->get("key")) load_rate_limit_key(*v, limit);
    std::vector<Located> buckets = fields->present({"token_bucket", "leaky_bucket"});
    if (buckets.empty()) r_.error(at, "needs \"token_bucket\" or \"leaky_bucket\"");
    if (buckets.size() > 1) r_.key_error(buckets[1], "set only one of \"token_bucket\" or \"leaky_bucket\"");
    if (auto v = fields->get("token_bucket")) load_token_bucket(*v, limit.token_bucket);
    if (auto v = fields->get("leaky_bucket")) {
      limit.leaky = true;
      load_leaky_bucket(*v, limit.leaky_bucket);
    }
  }

  void load_rate_limit_key(const Located& at, RateLimitConfig& limit) {
    if (at.node.IsMap()) {
      auto fields = r_.read_map(at, {"header"});
      if (!fields) return;
      limit.key = RateLimitConfig::Key::kHeader;
      if (auto v = r_.required(*fields, "header"); v && r_.read_string(*v, limit.key_header)) {
        if (r_.check(*v, check_header_name(limit.key_header)))
          limit.key_header = ascii_lower(limit.key_header);
      }
      return;
    }
    if (!at.node.IsScalar()) {
      r_.error(at, "expected " + std::string(kKeyChoices));
      return;
    }
    const std::string& value = at.node.Scalar();
    auto it = std::find(kRateLimitKeyNames.begin(), kRateLimitKeyNames.end(), value);
    if (it == kRateLimitKeyNames.end()) {
      std::string message = "unknown key " + in_quotes(value);
      std::string_view best = closest_match(value, kRateLimitKeyNames);
      r_.error(at, best.empty() ? message + " (expected " + std::string(kKeyChoices) + ")"
                                : message + " (did you mean " + in_quotes(best) + "?)");
      return;
    }
    limit.key = static_cast<RateLimitConfig::Key>(it - kRateLimitKeyNames.begin());
  }

  void load_token_bucket(const Located& at, policy::TokenBucketConfig& bucket) {
    auto fields = r_.read_map(at, {"requests_per_unit", "unit", "burst"});
    if (!fields) return;
    if (auto v = r_.required(*fields, "requests_per_unit"))
      r_.read_integer(*v, 1, kMaxRateLimitRequests, bucket.requests_per_unit);
    if (auto v = fields->get("unit")) {
      size_t index = 0;
      if (r_.read_choice(*v, "unit", kRateUnitNames, index)) bucket.unit = kRateUnits[index];
    }
    uint32_t extra = 0;
    if (auto v = fields->get("burst")) r_.read_integer(*v, 0, std::numeric_limits<uint32_t>::max(), extra);
    bucket.burst = token_bucket_capacity(bucket.requests_per_unit, extra);
  }

  void load_leaky_bucket(const Located& at, policy::LeakyBucketConfig& bucket) {
    auto fields = r_.read_map(at, {"rate_per_second", "queue_size", "max_delay"});
    if (!fields) return;
    if (auto v = r_.required(*fields, "rate_per_second")) {
      if (std::optional<double> rate = parse_number(v->node)) {
        if (r_.check(*v, check_leaky_rate(*rate))) bucket.rate_per_second = *rate;
      } else {
        r_.error(*v, "expected a number, e.g. 100 or 0.5");
      }
    }
    bucket.queue = 0;
    bool queue_known = true;
    if (auto v = fields->get("queue_size"))
      queue_known = r_.read_integer(*v, 0, std::numeric_limits<uint32_t>::max(), bucket.queue);
    bucket.max_delay = leaky_bucket_drain_time(bucket.rate_per_second, bucket.queue);
    if (auto v = fields->get("max_delay")) {
      Millis max_delay{};
      if (queue_known && bucket.queue == 0) {
        r_.key_error(*v, "needs a \"queue_size\" greater than 0: without a queue nothing waits");
      } else if (r_.read_positive_duration(*v, max_delay)) {
        bucket.max_delay = max_delay;
      }
    }
  }

  void load_backends(const Located& at, const policy::RouteMatch* match,
                     std::vector<BackendConfig>& backends) {
    auto items = r_.read_list(at);
    if (!items) return;
    if (items->empty()) r_.error(at, "must list at least one backend");
    for (const Located& item : *items) {
      auto fields = r_.read_map(item, {"cluster", "weight", "request_headers", "response_headers", "rewrite",
                                       "mirror", "fault", "redirect"});
      if (!fields) continue;
      BackendConfig backend;
      if (auto v = r_.required(*fields, "cluster"); v && r_.read_string(*v, backend.cluster)) {
        clusters_.resolve(r_, *v, backend.cluster, backend.cluster_index);
      }
      if (auto v = fields->get("weight")) r_.read_integer(*v, 0, kMaxWeight, backend.weight);
      load_actions(*fields, match,
                   {backend.redirect, backend.rewrite, backend.request_headers, backend.response_headers,
                    backend.mirrors, backend.fault});
      r_.check(item, check_backend_redirect(backend));
      backends.push_back(std::move(backend));
    }
  }

  // What a route and each of its backends may do to the requests they take.
  struct Actions {
    RedirectConfig& redirect;
    RewriteConfig& rewrite;
    HeaderModifier& request_headers;
    HeaderModifier& response_headers;
    std::vector<MirrorConfig>& mirrors;
    FaultConfig& fault;
  };

  void load_actions(const Fields& fields, const policy::RouteMatch* match, Actions out) {
    auto redirect = fields.get("redirect");
    if (redirect) load_redirect(*redirect, match, out.redirect);
    if (auto v = fields.get("rewrite")) {
      if (redirect)
        r_.key_error(*v, "\"rewrite\" cannot be combined with \"redirect\"");
      else
        load_rewrite(*v, match, out.rewrite);
    }
    if (auto v = fields.get("request_headers")) load_header_modifier(*v, out.request_headers);
    if (auto v = fields.get("response_headers")) load_header_modifier(*v, out.response_headers);
    if (auto v = fields.get("mirror")) load_mirrors(*v, out.mirrors);
    if (auto v = fields.get("fault")) load_fault(*v, out.fault);
  }

  void load_header_modifier(const Located& at, HeaderModifier& modifier) {
    auto fields = r_.read_map(at, {"set", "add", "remove"});
    if (!fields) return;
    for (auto [key, list] : {std::pair{"set", ModifierList::kSet}, std::pair{"add", ModifierList::kAdd}}) {
      auto v = fields->get(key);
      if (!v) continue;
      auto entries = r_.read_scalar_map(*v, "headers");
      if (!entries) continue;
      for (const auto& [name_at, value_at] : *entries) {
        std::string name = ascii_lower(name_at.node.Scalar());
        const std::string& value = value_at.node.Scalar();
        if (!r_.check(name_at, check_modifier_header(modifier, list, name))) continue;
        if (!r_.check(value_at, check_header_value(value))) continue;
        (list == ModifierList::kSet ? modifier.set : modifier.add).emplace_back(std::move(name), value);
      }
    }
    if (auto v = fields->get("remove")) {
      if (auto items = r_.read_list(*v)) {
        for (const Located& item : *items) {
          std::string name;
          if (!r_.read_string(item, name)) continue;
          name = ascii_lower(name);
          if (r_.check(item, check_modifier_header(modifier, ModifierList::kRemove, name))) {
            modifier.remove.push_back(std::move(name));
          }
        }
      }
    }
  }

  void load_redirect(const Located& at, const policy::RouteMatch* match, RedirectConfig& redirect) {
    auto fields = r_.read_map(at, {"scheme", "hostname", "port", "path", "status"});
    if (!fields) return;
    redirect.enabled = true;
    if (auto v = fields->get("scheme")) {
      size_t index = 0;
      if (r_.read_choice(*v, "scheme", kSchemes, index)) redirect.scheme = kSchemes[index];
    }
    if (auto v = fields->get("hostname")) read_hostname(*v, redirect.hostname);
    if (auto v = fields->get("port")) r_.read_integer(*v, 1, 65535, redirect.port);
    if (auto v = fields->get("path")) load_path_modifier(*v, match, "redirect", redirect.path);
    if (auto v = fields->get("status")) {
      int64_t status = 0;
      if (r_.read_integer(*v, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                          status)) {
        if (status >= 0 && is_redirect_status(static_cast<uint32_t>(status))) {
          redirect.status = static_cast<uint16_t>(status);
        } else {
          r_.error(*v, "must be " + std::string(kRedirectStatuses));
        }
      }
    }
  }

  void load_rewrite(const Located& at, const policy::RouteMatch* match, RewriteConfig& rewrite) {
    auto fields = r_.read_map(at, {"hostname", "path"});
    if (!fields) return;
    if (fields->present({"hostname", "path"}).empty()) r_.error(at, "needs \"hostname\" or \"path\"");
    if (auto v = fields->get("hostname")) read_hostname(*v, rewrite.hostname);
    if (auto v = fields->get("path")) load_path_modifier(*v, match, "rewrite", rewrite.path);
  }

  void read_hostname(const Located& at, std::string& out) {
    std::string host;
    if (r_.read_string(at, host) && r_.check(at, check_hostname(host))) out = ascii_lower(host);
  }

  void load_path_modifier(const Located& at, const policy::RouteMatch* match, std::string_view what,
                          PathModifier& path) {
    auto fields = r_.read_map(at, {"full", "prefix"});
    if (!fields) return;
    std::vector<Located> set = fields->present({"full", "prefix"});
    if (set.size() != 1) {
      r_.error(at, set.empty() ? "needs \"full\" or \"prefix\"" : "set only one of \"full\" or \"prefix\"");
      return;
    }
    const Located& v = set.front();
    path.kind = fields->get("full") ? PathModifier::Kind::kFull : PathModifier::Kind::kPrefix;
    if (r_.read_string(v, path.value)) r_.check(v, check_path(path.value));
    // Only a prefix match says which part of the path the new prefix replaces.
    if (path.kind == PathModifier::Kind::kPrefix && match && match->path_kind != PathMatchKind::kPrefix) {
      r_.error(v, "a prefix " + std::string(what) + " needs a \"prefix\" match");
    }
  }

  void load_mirrors(const Located& at, std::vector<MirrorConfig>& mirrors) {
    auto items = r_.read_list(at);
    if (!items) return;
    for (const Located& item : *items) {
      auto fields = r_.read_map(item, {"cluster", "percent", "request_headers"});
      if (!fields) continue;
      MirrorConfig mirror;
      if (auto v = fields->get("request_headers")) load_header_modifier(*v, mirror.request_headers);
      if (auto v = r_.required(*fields, "cluster"); v && r_.read_string(*v, mirror.cluster)) {
        clusters_.resolve(r_, *v, mirror.cluster, mirror.cluster_index);
      }
      if (auto v = fields->get("percent")) r_.read_percent(*v, mirror.numerator, mirror.denominator);
      mirrors.push_back(std::move(mirror));
    }
  }

  void load_cors(const Located& at, CorsConfig& cors) {
    auto fields = r_.read_map(at, {"allow_origins", "allow_credentials", "allow_methods", "allow_headers",
                                   "expose_headers", "max_age"});
    if (!fields) return;
    cors.enabled = true;
    for (const auto& [key, list] :
         {std::pair{"allow_origins", &cors.allow_origins}, std::pair{"allow_methods", &cors.allow_methods},
          std::pair{"allow_headers", &cors.allow_headers},
          std::pair{"expose_headers", &cors.expose_headers}}) {
      auto v = fields->get(key);
      if (!v) continue;
      if (auto items = r_.read_list(*v)) {
        for (const Located& item : *items) {
          std::string text;
          if (r_.read_string(item, text)) list->push_back(std::move(text));
        }
      }
    }
    if (auto v = fields->get("allow_credentials")) r_.read_bool(*v, cors.allow_credentials);
    if (auto v = fields->get("max_age")) r_.read_integer(*v, 1, 86400, cors.max_age_seconds);
    r_.check(at, check_cors(cors));
    set_cors_lists(cors);
  }

  void load_fault(const Located& at, FaultConfig& fault) {
    auto fields = r_.read_map(at, {"abort", "delay"});
    if (!fields) return;
    if (fields->present({"abort", "delay"}).empty()) r_.error(at, "needs \"abort\" or \"delay\"");
    if (auto v = fields->get("abort")) {
      if (auto f = r_.read_map(*v, {"status", "percent"})) {
        if (auto s = r_.required(*f, "status")) r_.read_integer(*s, 200, 599, fault.abort_status);
        if (auto p = r_.required(*f, "percent")) read_per_million(*p, fault.abort_per_million);
      }
    }
    if (auto v = fields->get("delay")) {
      if (auto f = r_.read_map(*v, {"duration", "percent"})) {
        if (auto d = r_.required(*f, "duration")) r_.read_positive_duration(*d, fault.delay);
        if (auto p = r_.required(*f, "percent")) read_per_million(*p, fault.delay_per_million);
      }
    }
  }

  void read_per_million(const Located& at, uint32_t& out) {
    uint32_t numerator = 0;
    uint32_t denominator = 0;
    if (r_.read_percent(at, numerator, denominator)) out = per_million(numerator, denominator);
  }

  Reader& r_;
  const ClusterIndex& clusters_;
};

}  // namespace

void load_routes(Reader& reader, const Located& at, const ClusterIndex& clusters,
                 std::vector<RouteConfig>& routes) {
  auto items = reader.read_list(at);
  if (!items) return;
  if (items->empty()) {
    reader.error(at, "must list at least one route");
    return;
  }
  RouteLoader loader(reader, clusters);
  for (const Located& item : *items) {
    RouteConfig route;
    loader.load(item, route);
    routes.push_back(std::move(route));
  }
}

}  // namespace trellis::proxy::config_yaml
