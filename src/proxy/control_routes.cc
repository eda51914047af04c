// A trellis.v1 Route as the config model: match, backends (or the cluster
// shorthand), header changes, redirect, rewrite, mirrors and faults.
#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

#include "proxy/control_translate.h"

namespace trellis::proxy::control_merge {
namespace {

using policy::PathMatchKind;

constexpr std::array<std::string_view, 2> kSchemes = {"http", "https"};

std::string item(const std::string& path, int index) { return path + "[" + std::to_string(index) + "]"; }

class RouteTranslator {
 public:
  RouteTranslator(const ClusterIndex& clusters, Errors& errors) : clusters_(clusters), errors_(errors) {}

  void translate(const v1::Route& in, const std::string& path, RouteConfig& route) {
    bool path_kind_known = translate_match(in, path, route.match);
    const policy::RouteMatch* match = path_kind_known ? &route.match : nullptr;

    if (in.backends_size() > 0) {
      for (int i = 0; i < in.backends_size(); ++i)
        translate_backend(in.backends(i), item(path + ".backends", i), route);
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
      translate_mirror(in.mirrors(i), item(path + ".mirrors", i), route);
    if (in.has_fault()) translate_fault(in.fault(), path + ".fault", route.fault);
    route.timeout = Millis(in.timeout_ms());
    route.per_try_timeout = Millis(in.per_try_timeout_ms());
    if (errors_.check(path + ".direct_error", check_header_value(in.direct_error()))) {
      route.direct_error = in.direct_error();
    }
  }

 private:
  // True when the kind of path match is known.
  bool translate_match(const v1::Route& in, const std::string& path, policy::RouteMatch& match) {
    bool known = true;
    switch (in.path_kind()) {
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
        errors_.add(path + ".path_kind", "unknown path_kind " + std::to_string(in.path_kind()));
        known = false;
    }
    if (match.path_kind == PathMatchKind::kRegex) {
      match.path = in.path();
      errors_.check(path + ".path", check_regex(match.path));
    } else {
      match.path = in.path().empty() ? "/" : in.path();
      errors_.check(path + ".path", check_path(match.path));
    }
    if (!in.method().empty() && errors_.check(path + ".method", check_method(in.method())))
      match.method = in.method();
    for (int i = 0; i < in.headers_size(); ++i) {
      translate_value_match(in.headers(i), item(path + ".headers", i), /*header=*/true, match.headers);
    }
    for (int i = 0; i < in.query_params_size(); ++i) {
      translate_value_match(in.query_params(i), item(path + ".query_params", i), /*header=*/false,
                            match.query_params);
    }
    for (int i = 0; i < in.hosts_size(); ++i) {
      std::string host = lower_case(in.hosts(i));
      if (errors_.check(item(path + ".hosts", i), check_route_host(host)))
        match.hosts.push_back(std::move(host));
    }
    return known;
  }

  void translate_value_match(const v1::ValueMatch& in, const std::string& path, bool header,
                             std::vector<policy::ValueMatch>& out) {
    policy::ValueMatch match;
    // Header names compare without case; query parameter names as sent.
    match.name = header ? lower_case(in.name()) : in.name();
    errors_.check(path + ".name", header ? check_header_name(in.name()) : check_query_name(in.name()));
    match.regex = in.regex();
    match.value = in.value();
    errors_.check(path + ".value", match.regex ? check_regex(match.value) : check_header_value(match.value));
    out.push_back(std::move(match));
  }

  void translate_backend(const v1::Backend& in, const std::string& path, RouteConfig& route) {
    BackendConfig backend;
    // An empty name is a backend that does not exist: its share is answered 500.
    backend.cluster = in.cluster();
    if (!backend.cluster.empty()) resolve(path + ".cluster", backend.cluster, backend.cluster_index);
    if (in.weight() > kMaxWeight) errors_.add(path + ".weight", "must be between 0 and 1000000");
    backend.weight = in.weight();
    translate_header_modifier(in.request_headers(), path + ".request_headers", backend.request_headers);
    translate_header_modifier(in.response_headers(), path + ".response_headers", backend.response_headers);
    route.backends.push_back(std::move(backend));
  }

  void translate_header_modifier(const v1::HeaderModifier& in, const std::string& path, HeaderModifier& out) {
    for (auto [pairs, list, key] : {std::tuple{&in.set(), ModifierList::kSet, ".set"},
                                    std::tuple{&in.add(), ModifierList::kAdd, ".add"}}) {
      for (int i = 0; i < pairs->size(); ++i) {
        const v1::HeaderPair& pair = (*pairs)[i];
        const std::string entry = item(path + key, i);
        std::string name = lower_case(pair.name());
        if (!errors_.check(entry + ".name", check_modifier_header(out, list, name))) continue;
        if (!errors_.check(entry + ".value", check_header_value(pair.value()))) continue;
        (list == ModifierList::kSet ? out.set : out.add).emplace_back(std::move(name), pair.value());
      }
    }
    for (int i = 0; i < in.remove_size(); ++i) {
      std::string name = lower_case(in.remove(i));
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
      out.hostname = lower_case(in.hostname());
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
      out.hostname = lower_case(in.hostname());
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

  void translate_mirror(const v1::Mirror& in, const std::string& path, RouteConfig& route) {
    MirrorConfig mirror;
    mirror.cluster = in.cluster();
    if (mirror.cluster.empty()) {
      errors_.add(path + ".cluster", "must not be empty");
    } else {
      resolve(path + ".cluster", mirror.cluster, mirror.cluster_index);
    }
    mirror.numerator = in.numerator();
    mirror.denominator = in.denominator() == 0 ? 100 : in.denominator();
    if (mirror.numerator > mirror.denominator) {
      errors_.add(path + ".numerator",
                  "must not exceed the denominator (" + std::to_string(mirror.denominator) + ")");
    }
    route.mirrors.push_back(std::move(mirror));
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
