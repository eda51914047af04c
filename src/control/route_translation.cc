#include "control/route_translation.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "control/rate_limit_translation.h"
#include "control/resources/checker.h"

namespace trellis::control {
namespace {

constexpr uint32_t kPerMillion = 1000000;
constexpr uint32_t kDefaultRedirectStatus = 302;
constexpr const char* kNoBackends = "no backends";

// A route with what orders it among the others. Every field compares so that
// the more specific route comes first (see `before`).
struct Ranked {
  // Hostname precedence, between routes: the length of the route's matching
  // non-wildcard hostname, then of its matching hostname (0 without hostnames).
  size_t exact_host = 0;
  size_t host = 0;
  // Match precedence: Exact, then RegularExpression, then PathPrefix; the
  // longer path first; with a method; more headers; more query parameters.
  int path_kind = 0;
  size_t path_length = 0;
  bool method = false;
  size_t headers = 0;
  size_t query_params = 0;
  // Ties: the route first in routes_for's order (the oldest, then by
  // namespace and name), then the rule, match and hostname group listed first.
  size_t route = 0;
  size_t rule = 0;
  size_t match = 0;
  size_t host_group = 0;
  v1::Route out;
};

bool before(const Ranked& a, const Ranked& b) {
  // Fields where more is more specific are read from the other route.
  auto key = [](const Ranked& self, const Ranked& other) {
    return std::tie(other.exact_host, other.host, self.path_kind, other.path_length, other.method,
                    other.headers, other.query_params, self.route, self.rule, self.match, self.host_group);
  };
  return key(a, b) < key(b, a);
}

void fill_header_modifier(const Json& spec, v1::HeaderModifier& out) {
  for (const Json& h : list_at(spec, "set")) {
    v1::HeaderPair* pair = out.add_set();
    pair->set_name(ascii_lower(string_at(h, "name")));
    pair->set_value(string_at(h, "value"));
  }
  for (const Json& h : list_at(spec, "add")) {
    v1::HeaderPair* pair = out.add_add();
    pair->set_name(ascii_lower(string_at(h, "name")));
    pair->set_value(string_at(h, "value"));
  }
  for (const Json& name : list_at(spec, "remove")) {
    if (name.is_string()) out.add_remove(ascii_lower(name.get<std::string>()));
  }
}

// RequestHeaderModifier and ResponseHeaderModifier filters, of a rule or of
// a backendRef (`out`: a v1::Route or a v1::Backend).
template <class Message>
void fill_header_filters(const Json& filters, Message& out) {
  for (const Json& filter : filters) {
    std::string type = string_at(filter, "type");
    if (type == "RequestHeaderModifier") {
      if (const Json* spec = map_at(filter, "requestHeaderModifier")) {
        fill_header_modifier(*spec, *out.mutable_request_headers());
      }
    } else if (type == "ResponseHeaderModifier") {
      if (const Json* spec = map_at(filter, "responseHeaderModifier")) {
        fill_header_modifier(*spec, *out.mutable_response_headers());
      }
    }
  }
}

void fill_path_modifier(const Json* spec, v1::PathModifier& out) {
  if (spec == nullptr) return;
  if (string_at(*spec, "type") == "ReplaceFullPath") {
    out.set_kind(v1::PathModifier::FULL);
    out.set_value(string_at(*spec, "replaceFullPath"));
  } else {
    out.set_kind(v1::PathModifier::PREFIX);
    out.set_value(string_at(*spec, "replacePrefixMatch"));
  }
}

void fill_redirect(const Json& spec, v1::Redirect& out) {
  out.set_enabled(true);
  out.set_scheme(string_at(spec, "scheme"));
  out.set_hostname(string_at(spec, "hostname"));
  out.set_port(uint_at(spec, "port", 0));
  fill_path_modifier(map_at(spec, "path"), *out.mutable_path());
  out.set_status(uint_at(spec, "statusCode", kDefaultRedirectStatus));
}

void fill_cors(const Json& spec, v1::Cors& out) {
  for (const Json& o : list_at(spec, "allowOrigins"))
    if (o.is_string()) out.add_allow_origins(o.get<std::string>());
  out.set_allow_credentials(bool_at(spec, "allowCredentials", false));
  for (const Json& m : list_at(spec, "allowMethods"))
    if (m.is_string()) out.add_allow_methods(m.get<std::string>());
  for (const Json& h : list_at(spec, "allowHeaders"))
    if (h.is_string()) out.add_allow_headers(ascii_lower(h.get<std::string>()));
  for (const Json& h : list_at(spec, "exposeHeaders"))
    if (h.is_string()) out.add_expose_headers(ascii_lower(h.get<std::string>()));
  out.set_max_age_seconds(uint_at(spec, "maxAge", 5));
}

void fill_rewrite(const Json& spec, v1::Rewrite& out) {
  out.set_hostname(string_at(spec, "hostname"));
  fill_path_modifier(map_at(spec, "path"), *out.mutable_path());
}

uint32_t per_million(double percent) {
  return static_cast<uint32_t>(
      std::clamp<double>(std::llround(percent * (static_cast<double>(kPerMillion) / 100)), 0, kPerMillion));
}

// The FaultInjection the filter names, when it exists; a missing one
// injects nothing. `owner`: a v1::Route or a v1::Backend.
template <class Message>
void fill_fault(const MeshView& mesh, const Json& ref, const std::string& route_namespace, Message& owner) {
  const Resource* fault = find_fault_injection(mesh, route_namespace, string_at(ref, "name"));
  if (fault == nullptr) return;
  v1::Fault& out = *owner.mutable_fault();
  if (const Json* abort = map_at(fault->spec, "abort")) {
    out.set_abort_status(uint_at(*abort, "httpStatus", 0));
    out.set_abort_per_million(per_million(number_at(*abort, "percent", 100)));
  }
  if (const Json* delay = map_at(fault->spec, "delay")) {
    out.set_delay_ms(duration_at(*delay, "fixedDelay", 0));
    out.set_delay_per_million(per_million(number_at(*delay, "percent", 100)));
  }
}

// Tells the instance's sidecar which Service port the request is for: set
// last, over whatever the route's filters did to that header.
void set_service_port(uint32_t port, v1::HeaderModifier& out) {
  v1::HeaderPair* pair = out.add_set();
  pair->set_name(kServicePortHeader);
  pair->set_value(std::to_string(port));
}

void add_mirror(const MeshView& mesh, const Json& spec, const Resource& route,
                google::protobuf::RepeatedPtrField<v1::Mirror>& out) {
  const Json* ref = map_at(spec, "backendRef");
  std::optional<ClusterRef> cluster = ref ? resolve_backend(mesh, *ref, route).cluster : std::nullopt;
  if (!cluster) return;  // unresolved (see resolve_backend): there is nowhere to send copies
  v1::Mirror* m = out.Add();
  m->set_cluster(cluster->cluster_name());
  // The copy starts from the request as sent to the chosen backend, which
  // may name another port.
  if (cluster->port != 0) {
    set_service_port(cluster->port, *m->mutable_request_headers());
  } else {
    m->mutable_request_headers()->add_remove(kServicePortHeader);
  }
  if (const Json* fraction = map_at(spec, "fraction")) {
    m->set_numerator(uint_at(*fraction, "numerator", 0));
    m->set_denominator(uint_at(*fraction, "denominator", 100));
  } else {
    m->set_numerator(uint_at(spec, "percent", 100));
    m->set_denominator(100);
  }
}

// The filters a rule and a backendRef both act on: header changes,
// RequestRedirect, URLRewrite, RequestMirror and ExtensionRef
// (FaultInjection). `out`: a v1::Route or a v1::Backend.
template <class Message>
void fill_filters(const MeshView& mesh, const Json& filters, const Resource& route, Message& out) {
  fill_header_filters(filters, out);
  for (const Json& filter : filters) {
    std::string type = string_at(filter, "type");
    if (type == "RequestRedirect") {
      if (const Json* spec = map_at(filter, "requestRedirect")) fill_redirect(*spec, *out.mutable_redirect());
    } else if (type == "URLRewrite") {
      if (const Json* spec = map_at(filter, "urlRewrite")) fill_rewrite(*spec, *out.mutable_rewrite());
    } else if (type == "RequestMirror") {
      if (const Json* spec = map_at(filter, "requestMirror"))
        add_mirror(mesh, *spec, route, *out.mutable_mirrors());
    } else if (type == "ExtensionRef") {
      if (const Json* ref = map_at(filter, "extensionRef")) fill_fault(mesh, *ref, route.namespace_, out);
    }
  }
}

// What every match of a rule shares: filters, backends and timeouts.
v1::Route translate_rule(const MeshView& mesh, const Json& rule, const Resource& route,
                         uint32_t default_timeout_ms) {
  v1::Route out;
  const Json* timeouts = map_at(rule, "timeouts");
  out.set_timeout_ms(timeouts ? duration_at(*timeouts, "request", default_timeout_ms) : default_timeout_ms);
  out.set_per_try_timeout_ms(timeouts ? duration_at(*timeouts, "backendRequest", 0) : 0);
  const Json& filters = list_at(rule, "filters");
  fill_filters(mesh, filters, route, out);
  for (const Json& filter : filters) {
    if (string_at(filter, "type") == "CORS") {
      if (const Json* spec = map_at(filter, "cors")) fill_cors(*spec, *out.mutable_cors());
    }
  }
  const Json& refs = list_at(rule, "backendRefs");
  for (const Json& ref : refs) {
    v1::Backend* b = out.add_backends();
    std::optional<ClusterRef> cluster = resolve_backend(mesh, ref, route).cluster;
    b->set_cluster(cluster ? cluster->cluster_name() : "");  // its share answers 500
    b->set_weight(uint_at(ref, "weight", 1));
    fill_filters(mesh, list_at(ref, "filters"), route, *b);
    // A redirect answers: nothing is sent on that would need the port.
    if (cluster && cluster->port != 0 && !b->redirect().enabled())
      set_service_port(cluster->port, *b->mutable_request_headers());
  }
  if (refs.empty() && !out.redirect().enabled()) out.set_direct_error(kNoBackends);
  return out;
}

void fill_value_matches(const Json& list, bool lower_names,
                        google::protobuf::RepeatedPtrField<v1::ValueMatch>& out) {
  for (const Json& m : list) {
    v1::ValueMatch* v = out.Add();
    std::string name = string_at(m, "name");
    v->set_name(lower_names ? ascii_lower(name) : name);
    v->set_regex(string_at(m, "type") == "RegularExpression");
    v->set_value(string_at(m, "value"));
  }
}

// One match's conditions on top of its rule's `route`, with the match's
// part of the precedence.
void apply_match(const Json& match, Ranked& ranked) {
  v1::Route& out = ranked.out;
  const Json* path = map_at(match, "path");
  std::string type = path ? string_at(*path, "type", "PathPrefix") : "PathPrefix";
  std::string value = path ? string_at(*path, "value", "/") : "/";
  if (type == "Exact") {
    out.set_path_kind(v1::Route::EXACT);
    ranked.path_kind = 0;
  } else if (type == "RegularExpression") {
    out.set_path_kind(v1::Route::REGEX);
    ranked.path_kind = 1;
  } else {
    out.set_path_kind(v1::Route::PREFIX);
    ranked.path_kind = 2;
  }
  out.set_path(value);
  ranked.path_length = value.size();
  out.set_method(string_at(match, "method"));
  ranked.method = !out.method().empty();
  fill_value_matches(list_at(match, "headers"), /*lower_names=*/true, *out.mutable_headers());
  ranked.headers = static_cast<size_t>(out.headers_size());
  fill_value_matches(list_at(match, "queryParams"), /*lower_names=*/false, *out.mutable_query_params());
  ranked.query_params = static_cast<size_t>(out.query_params_size());
}

// RE2 text that matches `text` literally.
std::string quote_regex(std::string_view text) {
  std::string out;
  for (char c : text) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!plain) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// A GRPCRoute match: its method becomes a path match on
// "/<service>/<method>" (exact when both names are, a regular expression
// otherwise), ranked by the length of the names as the GRPCRoute's
// precedence says; headers as for an HTTPRoute.
void apply_grpc_match(const Json& match, Ranked& ranked) {
  v1::Route& out = ranked.out;
  const Json* method = map_at(match, "method");
  if (method == nullptr) {
    out.set_path_kind(v1::Route::PREFIX);
    out.set_path("/");
    ranked.path_kind = 2;
  } else {
    bool exact = string_at(*method, "type", "Exact") == "Exact";
    std::string service = string_at(*method, "service");
    std::string name = string_at(*method, "method");
    ranked.path_length = service.size() + name.size();
    if (exact && !service.empty() && !name.empty()) {
      out.set_path_kind(v1::Route::EXACT);
      out.set_path("/" + service + "/" + name);
      ranked.path_kind = 0;
    } else {
      auto part = [&](const std::string& text) {
        if (text.empty()) return std::string("[^/]+");
        return exact ? quote_regex(text) : "(?:" + text + ")";
      };
      out.set_path_kind(v1::Route::REGEX);
      out.set_path("/" + part(service) + "/" + part(name));
      ranked.path_kind = 1;
    }
  }
  fill_value_matches(list_at(match, "headers"), /*lower_names=*/true, *out.mutable_headers());
  ranked.headers = static_cast<size_t>(out.headers_size());
}

// A route's hostnames by their precedence: (exact length, length) -> hosts.
using HostGroups = std::vector<std::pair<std::pair<size_t, size_t>, std::vector<std::string>>>;

// The most specific group first; one group without hosts when there are none.
HostGroups host_groups(const Resource& route) {
  std::map<std::pair<size_t, size_t>, std::vector<std::string>, std::greater<>> groups;
  for (const Json& h : list_at(route.spec, "hostnames")) {
    if (!h.is_string()) continue;
    const std::string& host = h.get_ref<const std::string&>();
    size_t exact = host.starts_with("*") ? 0 : host.size();
    groups[{exact, host.size()}].push_back(host);
  }
  if (groups.empty()) groups[{0, 0}];
  return {groups.begin(), groups.end()};
}

}  // namespace

void add_service_routes(const MeshView& mesh, const ServiceRef& service, const std::string& client_namespace,
                        v1::VirtualHost& vh, const ServicePort* port) {
  uint32_t default_timeout = default_request_timeout_ms(mesh);
  std::vector<Ranked> ranked;
  std::vector<const Resource*> routes = routes_for(mesh, service, client_namespace, port);
  for (size_t r = 0; r < routes.size(); ++r) {
    const Resource& route = *routes[r];
    auto hosts = host_groups(route);
    // The client proxies enforce an HTTPRoute's limits, on every route made from it.
    google::protobuf::RepeatedPtrField<v1::RateLimit> limits;
    add_rate_limits(mesh, route.kind, route.namespace_, route.name, limits);
    bool grpc = route.kind == "GRPCRoute";
    // A GRPCRoute has no timeouts: its calls end at their own deadline
    // (grpc-timeout), as long-lived streams need, not at the mesh's default.
    uint32_t timeout = grpc ? 0 : default_timeout;
    // No rules: the Gateway API's default, one rule for every request with
    // no backends (answered 500).
    static const Json kDefaultRules = Json::array({Json::object()});
    const Json& rules = list_at(route.spec, "rules").empty() ? kDefaultRules : list_at(route.spec, "rules");
    for (size_t i = 0; i < rules.size(); ++i) {
      v1::Route rule = translate_rule(mesh, rules[i], route, timeout);
      rule.set_name(route.namespace_ + "/" + route.name);
      *rule.mutable_rate_limits() = limits;
      const Json& matches = list_at(rules[i], "matches");
      size_t match_count = std::max<size_t>(matches.size(), 1);  // none: one PathPrefix "/"
      for (size_t m = 0; m < match_count; ++m) {
        Ranked base;
        base.out = rule;
        static const Json kNoMatch = Json::object();  // one PathPrefix "/" (HTTPRoute) or any method
        const Json& match = matches.empty() ? kNoMatch : matches[m];
        if (grpc) {
          apply_grpc_match(match, base);
        } else {
          apply_match(match, base);
        }
        base.route = r;
        base.rule = i;
        base.match = m;
        for (size_t g = 0; g < hosts.size(); ++g) {
          Ranked& one = ranked.emplace_back(base);
          std::tie(one.exact_host, one.host) = hosts[g].first;
          one.host_group = g;
          for (const std::string& h : hosts[g].second) one.out.add_hosts(h);
        }
      }
    }
  }
  std::sort(ranked.begin(), ranked.end(), before);
  for (Ranked& r : ranked) *vh.add_routes() = std::move(r.out);
  // A Service with routes is served by them alone, as the Gateway API's mesh
  // profile has it: a request no rule matches is answered 404. Without
  // routes, everything goes to the Service itself.
  if (!routes.empty()) return;
  v1::Route* fallback = vh.add_routes();
  fallback->set_path_kind(v1::Route::PREFIX);
  fallback->set_path("/");
  ClusterRef self{service, "", port != nullptr ? port->port : 0};
  fallback->set_cluster(self.cluster_name());
  fallback->set_timeout_ms(default_timeout);
  if (self.port != 0) set_service_port(self.port, *fallback->mutable_request_headers());
}

void add_route_clusters(const MeshView& mesh, const ServiceRef& service, const std::string& client_namespace,
                        std::set<ClusterRef>& out, const ServicePort* port) {
  for (const Resource* route : routes_for(mesh, service, client_namespace, port)) {
    each_backend_ref(route->spec, [&](const Json& ref, const std::string&) {
      BackendResolution r = resolve_backend(mesh, ref, *route);
      if (r.cluster || r.absent) out.insert(r.cluster ? *r.cluster : *r.absent);
    });
  }
}

}  // namespace trellis::control
