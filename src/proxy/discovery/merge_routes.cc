// A trellis.v1 Route as the config model: match, rate limits, backends (or
// the cluster shorthand), header changes, redirect, rewrite, mirrors and faults.
#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

#include "proxy/discovery/merge_parts.h"

namespace trellis::proxy::control_merge {
namespace {

using policy::PathMatchKind;

constexpr std::array<std::string_view, 2> kSchemes = {"http", "https"};

class RouteTranslator {
 public:
  RouteTranslator(const ClusterIndex& clusters, Errors& errors) : clusters_(clusters), errors_(errors) {}

  void translate(const v1::Route& in, const std::string& path, RouteConfig& route) {
    route.name = in.name();
    if (!route.name.empty()) errors_.check(path + ".name", check_name(route.name));
    bool path_kind_known = translate_match(in, path, route.match);
    const policy::RouteMatch* match = path_kind_known ? &route.match : nullptr;
    for (int i = 0; i < in.rate_limits_size(); ++i) {
      RateLimitConfig limit;
      translate_rate_limit(in.rate_limits(i), item(path + ".rate_limits", i), route.rate_limits, limit);
      route.rate_limits.push_back(std::move(limit));
    }

    if (in.backends_size() > 0) {
      for (int i = 0; i < in.backends_size(); ++i)
        translate_backend(in.backends(i), item(path + ".backends", i), match, route);
    } else if (!in.cluster().empty()) {
      BackendConfig backend;  // the shorthand: one backend of weight 1
      backend.cluster = in.cluster();
      resolve(path + ".cluster", backend.cluster, backend.cluster_index);
      route.backends.push_back(std::move(backend));
    }
    const bool redirect = in.has_redirect() && in.redirect().enabled();
    if (redirect) {
      if (!route.backends.empty())
        errors_.add(path + ".redirect", "a redirect route must not have backends or a cluster");
      translate_redirect(in.redirect(), path + ".redirect", match, route.redirect);
    }
    if (in.has_rewrite()) {
      translate_rewrite(in.rewrite(), path + ".rewrite", match, route.rewrite);
      if (redirect && !route.rewrite.empty())
        errors_.add(path + ".rewrite", "cannot be combined with a redirect");
    }
    translate_header_modifier(in.request_headers(), path + ".request_headers", route.request_headers);
    translate_header_modifier(in.response_headers(), path + ".response_headers", route.response_headers);
    for (int i = 0; i < in.mirrors_size(); ++i)
      translate_mirror(in.mirrors(i), item(path + ".mirrors", i), route.mirrors);
    if (in.has_fault()) translate_fault(in.fault(), path + ".fault", route.fault);
    if (in.has_cors()) {
      const v1::Cors& c = in.cors();
      CorsConfig& cors = route.cors;
      cors.enabled = true;
      cors.allow_origins.assign(c.allow_origins().begin(), c.allow_origins().end());
      cors.allow_credentials = c.allow_credentials();
      cors.allow_methods.assign(c.allow_methods().begin(), c.allow_methods().end());
      cors.allow_headers.assign(c.allow_headers().begin(), c.allow_headers().end());
      cors.expose_headers.assign(c.expose_headers().begin(), c.expose_headers().end());
      cors.max_age_seconds = c.max_age_seconds() == 0 ? 5 : c.max_age_seconds();
      errors_.check(path + ".cors", check_cors(cors));
      set_cors_lists(cors);
    }
    route.timeout = Millis(in.timeout_ms());
    route.per_try_timeout = Millis(in.per_try_timeout_ms());
    if (errors_.check(path + ".direct_error", check_header_value(in.direct_error()))) {
      route.direct_error = in.direct_error();
    }
    errors_.check(path + ".mirrors", check_mirror_count(route));
  }

 private:
  // True when the kind of path match is known.
  bool translate_match(const v1::Route& in, const std::string& path, policy::RouteMatch& match) {
    bool known = translate_path(in.path_kind(), in.path(), path, match);
    translate_method_and_headers(in.method(), in.headers(), path, match);
    for (int i = 0; i < in.query_params_size(); ++i) {
      translate_value_match(in.query_params(i), item(path + ".query_params", i), /*header=*/false,
                            match.query_params);
    }
    for (int i = 0; i < in.hosts_size(); ++i) {
      std::string host = ascii_lower(in.hosts(i));
      if (errors_.check(item(path + ".hosts", i), check_route_host(host)))
        match.hosts.push_back(std::move(host));
    }
    return known;
  }

  // The path condition of a route or a rate limit; false when the kind is unknown.
  bool translate_path(v1::Route::PathKind kind, const std::string& value, const std::string& path,
                      policy::RouteMatch& match) {
    bool known = true;
    switch (kind) {
      case v1::Route::PREFIX:
        match.path_kind = PathMatchKind::kPrefix;
        break;
      case v1::Route::EXACT:
        match.path_kind = PathMatchKind::kExact;
        break;
      case v1::Route::REGEX:
        match.path_kind = PathMatchKind::kRegex;
        break;
      default:
        errors_.add(path + ".path_kind", "unknown path_kind " + std::to_string(kind));
        known = false;
    }
    if (match.path_kind == PathMatchKind::kRegex) {
      match.path = value;
      errors_.check(path + ".path", check_regex(match.path));
    } else {
      match.path = value.empty() ? "/" : value;
      errors_.check(path + ".path", check_path(match.path));
    }
    return known;
  }

  void translate_method_and_headers(const std::string& method,
                                    const google::protobuf::RepeatedPtrField<v1::ValueMatch>& headers,
                                    const std::string& path, policy::RouteMatch& match) {
    if (!method.empty() && errors_.check(path + ".method", check_method(method))) match.method = method;
    for (int i = 0; i < headers.size(); ++i) {
      translate_value_match(headers[i], item(path + ".headers", i), /*header=*/true, match.headers);
    }
  }

  void translate_value_match(const v1::ValueMatch& in, const std::string& path, bool header,
                             std::vector<policy::ValueMatch>& out) {
    policy::ValueMatch match;
    // Header names compare without case; query parameter names as sent.
    match.name = header ? ascii_lower(in.name()) : in.name();
    errors_.check(path + ".name", header ? check_header_name(in.name()) : check_query_name(in.name()));
    match.regex = in.regex();
    match.value = in.value();
    errors_.check(path + ".value", match.regex ? check_regex(match.value) : check_header_value(match.value));
    out.push_back(std::move(match));
  }

  void translate_rate_limit(const v1::RateLimit& in, const std::string& path,
                            const std::vector<RateLimitConfig>& so_far, RateLimitConfig& out) {
    out.name = in.name();
    if (!out.name.empty()) errors_.check(path + ".name", check_rate_limit_name(so_far, out.name));
    if (in.has_path()) {
      // A rate limit counts requests by prefix or exact path, never by regex.
      if (in.path_kind() == v1::Route::REGEX)
        errors_.add(path + ".path_kind", "must be PREFIX or EXACT");
      else
        translate_path(in.path_kind(), in.path(), path, out.match);
    }
    translate_method_and_headers(in.method(), in.headers(), path, out.match);
    switch (in.key()) {
      case v1::RateLimit::ALL:
        out.key = RateLimitConfig::Key::kAll;
        break;
      case v1::RateLimit::ADDRESS:
        out.key = RateLimitConfig::Key::kAddress;
        break;
      case v1::RateLimit::IDENTITY:
        out.key = RateLimitConfig::Key::kIdentity;
        break;
      case v1::RateLimit::HEADER:
        out.key = RateLimitConfig::Key::kHeader;
        break;
      default:
        errors_.add(path + ".key", "unknown key " + std::to_string(in.key()));
    }
    if (in.key() == v1::RateLimit::HEADER) {
      if (errors_.check(path + ".key_header", check_header_name(in.key_header())))
        out.key_header = ascii_lower(in.key_header());
    } else if (!in.key_header().empty()) {
      errors_.add(path + ".key_header", "set only with key HEADER");
    }
    switch (in.bucket_case()) {
      case v1::RateLimit::kTokenBucket:
        translate_token_bucket(in.token_bucket(), path + ".token_bucket", out.token_bucket);
        break;
      case v1::RateLimit::kLeakyBucket:
        out.leaky = true;
        translate_leaky_bucket(in.leaky_bucket(), path + ".leaky_bucket", out.leaky_bucket);
        break;
      case v1::RateLimit::BUCKET_NOT_SET:
        errors_.add(path, "needs a token_bucket or a leaky_bucket");
        break;
    }
  }

  void translate_token_bucket(const v1::TokenBucket& in, const std::string& path,
                              policy::TokenBucketConfig& out) {
    if (in.requests_per_unit() < 1 || in.requests_per_unit() > kMaxRateLimitRequests)
      errors_.add(path + ".requests_per_unit",
                  "must be between 1 and " + std::to_string(kMaxRateLimitRequests));
    out.requests_per_unit = in.requests_per_unit();
    switch (in.unit()) {
      case v1::TokenBucket::SECOND:
        out.unit = policy::RateUnit::kSecond;
        break;
      case v1::TokenBucket::MINUTE:
        out.unit = policy::RateUnit::kMinute;
        break;
      case v1::TokenBucket::HOUR:
        out.unit = policy::RateUnit::kHour;
        break;
      default:
        errors_.add(path + ".unit", "unknown unit " + std::to_string(in.unit()));
    }
    // Sent as requests above the rate, as the file writes it.
    out.burst = token_bucket_capacity(in.requests_per_unit(), in.burst());
  }

  void translate_leaky_bucket(const v1::LeakyBucket& in, const std::string& path,
                              policy::LeakyBucketConfig& out) {
    errors_.check(path + ".rate_per_second", check_leaky_rate(in.rate_per_second()));
    out.rate_per_second = in.rate_per_second();
    out.queue = in.queue_size();
    out.max_delay = leaky_bucket_drain_time(out.rate_per_second, out.queue);
    if (in.max_delay_ms() != 0) {
      if (out.queue == 0)
        errors_.add(path + ".max_delay_ms",
                    "needs a queue_size greater than 0: without a queue nothing waits");
      else
        out.max_delay = Millis(in.max_delay_ms());
    }
  }

  void translate_backend(const v1::Backend& in, const std::string& path, const policy::RouteMatch* match,
                         RouteConfig& route) {
    BackendConfig backend;
    // An empty name is a backend that does not exist: its share is answered 500.
    backend.cluster = in.cluster();
    if (!backend.cluster.empty()) resolve(path + ".cluster", backend.cluster, backend.cluster_index);
    if (in.weight() > kMaxWeight) errors_.add(path + ".weight", "must be between 0 and 1000000");
    backend.weight = in.weight();
    translate_header_modifier(in.request_headers(), path + ".request_headers", backend.request_headers);
    translate_header_modifier(in.response_headers(), path + ".response_headers", backend.response_headers);
    const bool redirect = in.has_redirect() && in.redirect().enabled();
    if (redirect) translate_redirect(in.redirect(), path + ".redirect", match, backend.redirect);
    if (in.has_rewrite()) {
      translate_rewrite(in.rewrite(), path + ".rewrite", match, backend.rewrite);
      if (redirect && !backend.rewrite.empty())
        errors_.add(path + ".rewrite", "cannot be combined with a redirect");
    }
    for (int i = 0; i < in.mirrors_size(); ++i)
      translate_mirror(in.mirrors(i), item(path + ".mirrors", i), backend.mirrors);
    if (in.has_fault()) translate_fault(in.fault(), path + ".fault", backend.fault);
    errors_.check(path, check_backend_redirect(backend));
    route.backends.push_back(std::move(backend));
  }

  void translate_header_modifier(const v1::HeaderModifier& in, const std::string& path, HeaderModifier& out) {
    for (auto [pairs, list, key] : {std::tuple{&in.set(), ModifierList::kSet, ".set"},
                                    std::tuple{&in.add(), ModifierList::kAdd, ".add"}}) {
      for (int i = 0; i < pairs->size(); ++i) {
        const v1::HeaderPair& pair = (*pairs)[i];
        const std::string entry = item(path + key, i);
        std::string name = ascii_lower(pair.name());
        if (!errors_.check(entry + ".name", check_modifier_header(out, list, name))) continue;
        if (!errors_.check(entry + ".value", check_header_value(pair.value()))) continue;
        (list == ModifierList::kSet ? out.set : out.add).emplace_back(std::move(name), pair.value());
      }
    }
    for (int i = 0; i < in.remove_size(); ++i) {
      std::string name = ascii_lower(in.remove(i));
      if (errors_.check(item(path + ".remove", i), check_modifier_header(out, ModifierList::kRemove, name))) {
        out.remove.push_back(std::move(name));
      }
    }
  }

  void translate_redirect(const v1::Redirect& in, const std::string& path, const policy::RouteMatch* match,
                          RedirectConfig& out) {
    out.enabled = true;
    if (!in.scheme().empty()) {
      if (std::find(kSchemes.begin(), kSchemes.end(), in.scheme()) == kSchemes.end()) {
        errors_.add(path + ".scheme", unknown_choice("scheme", in.scheme(), kSchemes));
      }
      out.scheme = in.scheme();
    }
    if (!in.hostname().empty() && errors_.check(path + ".hostname", check_hostname(in.hostname()))) {
      out.hostname = ascii_lower(in.hostname());
    }
    if (in.port() > 65535) errors_.add(path + ".port", "must be between 0 and 65535");
    out.port = static_cast<uint16_t>(in.port());
    if (in.has_path()) translate_path_modifier(in.path(), path + ".path", match, "redirect", out.path);
    if (in.status() != 0) {
      if (!is_redirect_status(in.status()))
        errors_.add(path + ".status", "must be " + std::string(kRedirectStatuses));
      out.status = static_cast<uint16_t>(in.status());
    }
  }

  void translate_rewrite(const v1::Rewrite& in, const std::string& path, const policy::RouteMatch* match,
                         RewriteConfig& out) {
    if (!in.hostname().empty() && errors_.check(path + ".hostname", check_hostname(in.hostname()))) {
      out.hostname = ascii_lower(in.hostname());
    }
    if (in.has_path()) translate_path_modifier(in.path(), path + ".path", match, "rewrite", out.path);
  }

  void translate_path_modifier(const v1::PathModifier& in, const std::string& path,
                               const policy::RouteMatch* match, std::string_view what, PathModifier& out) {
    switch (in.kind()) {
      case v1::PathModifier::NONE:
        return;
      case v1::PathModifier::FULL:
        out.kind = PathModifier::Kind::kFull;
        break;
      case v1::PathModifier::PREFIX:
        out.kind = PathModifier::Kind::kPrefix;
        break;
      default:
        errors_.add(path + ".kind", "unknown kind " + std::to_string(in.kind()));
        return;
    }
    out.value = in.value();
    errors_.check(path + ".value", check_path(out.value));
    // Only a prefix match says which part of the path the new prefix replaces.
    if (out.kind == PathModifier::Kind::kPrefix && match && match->path_kind != PathMatchKind::kPrefix) {
      errors_.add(path + ".kind", "a prefix " + std::string(what) + " needs path_kind PREFIX");
    }
  }

  void translate_mirror(const v1::Mirror& in, const std::string& path, std::vector<MirrorConfig>& mirrors) {
    MirrorConfig mirror;
    mirror.cluster = in.cluster();
    if (mirror.cluster.empty()) {
      errors_.add(path + ".cluster", "must not be empty");
    } else {
      resolve(path + ".cluster", mirror.cluster, mirror.cluster_index);
    }
    mirror.numerator = in.numerator();
    mirror.denominator = in.denominator() == 0 ? 100 : in.denominator();
    translate_header_modifier(in.request_headers(), path + ".request_headers", mirror.request_headers);
    if (mirror.numerator > mirror.denominator) {
      errors_.add(path + ".numerator",
                  "must not exceed the denominator (" + std::to_string(mirror.denominator) + ")");
    }
    mirrors.push_back(std::move(mirror));
  }

  void translate_fault(const v1::Fault& in, const std::string& path, FaultConfig& out) {
    if (in.abort_status() != 0 && (in.abort_status() < 200 || in.abort_status() > 599)) {
      errors_.add(path + ".abort_status", "must be between 200 and 599 (0: no abort)");
    }
    out.abort_status = static_cast<uint16_t>(std::min<uint32_t>(in.abort_status(), 65535));
    for (auto [value, field] : {std::pair{in.abort_per_million(), ".abort_per_million"},
                                std::pair{in.delay_per_million(), ".delay_per_million"}}) {
      if (value > kPerMillion) errors_.add(path + field, "must be between 0 and 1000000");
    }
    out.abort_per_million = in.abort_per_million();
    out.delay = Millis(in.delay_ms());
    out.delay_per_million = in.delay_per_million();
  }

  void resolve(const std::string& path, const std::string& name, size_t& index) {
    auto it = clusters_.find(name);
    if (it == clusters_.end()) {
      errors_.add(path, "unknown cluster " + in_quotes(name));
    } else {
      index = it->second;
    }
  }

  const ClusterIndex& clusters_;
  Errors& errors_;
};

}  // namespace

void translate_route(const v1::Route& in, const std::string& path, const ClusterIndex& clusters,
                     Errors& errors, RouteConfig& out) {
  RouteTranslator(clusters, errors).translate(in, path, out);
}

}  // namespace trellis::proxy::control_merge
