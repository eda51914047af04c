#include "control/snapshot_builder.h"

#include <algorithm>
#include <optional>
#include <set>

#include "control/cluster_translation.h"
#include "control/validation.h"

namespace trellis::control {
namespace {

constexpr const char* kInbound = "inbound";
constexpr const char* kOutbound = "outbound";

std::string node_namespace(const v1::Hello& hello) {
  return hello.node().namespace_().empty() ? "default" : hello.node().namespace_();
}

// A Gateway API duration in milliseconds; 0 when absent (specs are validated
// before they are stored).
uint32_t duration_ms(const Json& value) {
  if (!value.is_string()) return 0;
  std::optional<int64_t> ms = parse_duration_ms(value.get_ref<const std::string&>());
  if (!ms || *ms < 0) return 0;
  return *ms > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(*ms);
}

std::string str(const Json& obj, const char* key, const std::string& fallback = "") {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool refers_to_service(const Json& ref) {
  return str(ref, "kind", "Service") == "Service" && str(ref, "group", "").empty();
}

// Routes attached to `service` (GAMMA: a parentRef to a Service).
std::vector<const Resource*> routes_for(const MeshView& mesh, const ServiceRef& service) {
  std::vector<const Resource*> out;
  for (const Resource& r : mesh.http_routes) {
    auto parents = r.spec.find("parentRefs");
    if (parents == r.spec.end() || !parents->is_array()) continue;
    for (const Json& p : *parents) {
      if (!p.is_object() || !refers_to_service(p)) continue;
      if (str(p, "name") == service.name && str(p, "namespace", r.namespace_) == service.namespace_) {
        out.push_back(&r);
        break;
      }
    }
  }
  // Oldest first is the Gateway API's tie-break; resource versions give that order.
  std::sort(out.begin(), out.end(), [](const Resource* a, const Resource* b) {
    return a->resource_version < b->resource_version;
  });
  return out;
}

// The backend a rule sends to while weighted splitting is not in the data
// plane yet: the heaviest backendRef (the first among equals).
bool primary_backend(const Json& rule, const std::string& route_ns, ServiceRef& out) {
  auto refs = rule.find("backendRefs");
  if (refs == rule.end() || !refs->is_array()) return false;
  int64_t best = -1;
  for (const Json& b : *refs) {
    if (!b.is_object() || !refers_to_service(b)) continue;
    int64_t weight = b.contains("weight") && b["weight"].is_number_integer() ? b["weight"].get<int64_t>() : 1;
    if (weight > best) {
      best = weight;
      out = {str(b, "name"), str(b, "namespace", route_ns)};
    }
  }
  return best > 0;
}

void add_backends(const Resource& route, std::set<ServiceRef>& out) {
  auto rules = route.spec.find("rules");
  if (rules == route.spec.end() || !rules->is_array()) return;
  for (const Json& rule : *rules) {
    auto refs = rule.find("backendRefs");
    if (refs == rule.end() || !refs->is_array()) continue;
    for (const Json& b : *refs)
      if (b.is_object() && refers_to_service(b)) out.insert({str(b, "name"), str(b, "namespace", route.namespace_)});
  }
}

void add_outbound_host(const MeshView& mesh, const ServiceRef& service, v1::Listener& listener) {
  v1::VirtualHost* vh = listener.add_virtual_hosts();
  vh->set_name(service.cluster_name());
  const std::string& n = service.name;
  const std::string& ns = service.namespace_;
  for (const std::string& d : {n, n + "." + ns, n + "." + ns + ".svc", n + "." + ns + ".svc.cluster.local"})
    vh->add_domains(d);
  for (const Resource* route : routes_for(mesh, service)) {
    const Json& rules = route->spec.value("rules", Json::array());
    for (const Json& rule : rules) {
      ServiceRef backend;
      if (!primary_backend(rule, route->namespace_, backend)) continue;
      uint32_t timeout = 0;
      if (auto t = rule.find("timeouts"); t != rule.end() && t->is_object())
        timeout = duration_ms(t->value("request", Json()));
      auto add = [&](v1::Route::PathKind kind, const std::string& path) {
        v1::Route* r = vh->add_routes();
        r->set_path_kind(kind);
        r->set_path(path);
        r->set_cluster(backend.cluster_name());
        r->set_timeout_ms(timeout);
      };
      const Json& matches = rule.value("matches", Json::array());
      if (matches.empty()) add(v1::Route::PREFIX, "/");
      for (const Json& m : matches) {
        // Header, query and method matches and regular expressions reach the
        // data plane with the traffic-management work; until then such a
        // match is left out rather than widened into one that matches more.
        if (m.contains("headers") || m.contains("queryParams") || m.contains("method")) continue;
        auto path = m.find("path");
        if (path == m.end()) {
          add(v1::Route::PREFIX, "/");
          continue;
        }
        std::string type = str(*path, "type", "PathPrefix");
        std::string value = str(*path, "value", "/");
        if (type == "Exact") add(v1::Route::EXACT, value);
        else if (type == "PathPrefix") add(v1::Route::PREFIX, value);
      }
    }
  }
  // Whatever no route claims goes to the service itself.
  v1::Route* fallback = vh->add_routes();
  fallback->set_path_kind(v1::Route::PREFIX);
  fallback->set_path("/");
  fallback->set_cluster(service.cluster_name());
}

void add_policy(const Resource& r, v1::ConfigUpdate& update) {
  v1::Policy* p = update.add_policies();
  p->set_key(r.kind + "/" + r.namespace_ + "/" + r.name);
  p->set_kind(r.kind);
  p->set_namespace_(r.namespace_);
  p->set_name(r.name);
  p->set_resource_version(r.resource_version);
  p->set_spec_json(r.spec.dump(-1, ' ', false, Json::error_handler_t::replace));
}

// Policies whose targetRef names `service` (kind Service) or one of the
// HTTPRoutes attached to it (kind HTTPRoute).
bool targets(const Resource& policy, const ServiceRef& service, const MeshView& mesh) {
  if (policy.namespace_ != service.namespace_) return false;
  auto target = policy.spec.find("targetRef");
  if (target == policy.spec.end() || !target->is_object()) return false;
  std::string kind = str(*target, "kind", "Service");
  std::string name = str(*target, "name");
  if (kind == "Service") return name == service.name;
  if (kind == "HTTPRoute") {
    for (const Resource* route : routes_for(mesh, service))
      if (route->name == name && route->namespace_ == policy.namespace_) return true;
  }
  return false;
}

}  // namespace

std::vector<ServiceRef> services_in_scope(const MeshView& mesh, const v1::Hello& hello) {
  std::set<ServiceRef> scope;
  std::string ns = node_namespace(hello);
  for (const std::string& s : hello.upstream_services()) {
    ServiceRef service = parse_service_ref(s, ns);
    scope.insert(service);
    for (const Resource* route : routes_for(mesh, service)) add_backends(*route, scope);
  }
  return {scope.begin(), scope.end()};
}

v1::ConfigUpdate build_proxy_config(const MeshView& mesh, const v1::Hello& hello) {
  v1::ConfigUpdate update;
  update.set_full(true);
  if (hello.has_instance() && !hello.instance().address().empty() && !hello.instance().app_address().empty()) {
    v1::Listener* in = update.add_listeners();
    in->set_name(kInbound);
    in->set_address(hello.instance().address());
    in->set_protocol(v1::Listener::HTTP);
    v1::VirtualHost* vh = in->add_virtual_hosts();
    vh->set_name(kInbound);
    vh->add_domains("*");
    v1::Route* r = vh->add_routes();
    r->set_path_kind(v1::Route::PREFIX);
    r->set_path("/");
    r->set_cluster(kInbound);
    v1::Cluster* c = update.add_clusters();
    c->set_name(kInbound);
    c->set_connect_timeout_ms(1000);
    c->set_idle_timeout_ms(60000);
    c->set_max_idle_per_endpoint(64);
    c->add_endpoints()->set_address(hello.instance().app_address());
  }
  std::vector<ServiceRef> scope = services_in_scope(mesh, hello);
  // An application that calls nothing gets no outbound listener.
  if (!hello.outbound_address().empty() && hello.upstream_services_size() > 0) {
    v1::Listener* out = update.add_listeners();
    out->set_name(kOutbound);
    out->set_address(hello.outbound_address());
    out->set_protocol(v1::Listener::HTTP);
    std::string ns = node_namespace(hello);
    std::set<ServiceRef> declared;
    for (const std::string& s : hello.upstream_services()) declared.insert(parse_service_ref(s, ns));
    for (const ServiceRef& s : declared) add_outbound_host(mesh, s, *out);
  }
  for (const ServiceRef& s : scope) *update.add_clusters() = build_cluster(mesh, {s, ""});

  // Policies: how to call the services in scope, and what applies to traffic
  // into this proxy's own service.
  for (const Resource& p : mesh.destination_policies)
    for (const ServiceRef& s : scope)
      if (targets(p, s, mesh)) {
        add_policy(p, update);
        break;
      }
  if (!hello.node().service().empty()) {
    ServiceRef own{hello.node().service(), node_namespace(hello)};
    for (const Resource& p : mesh.rate_limit_policies)
      if (targets(p, own, mesh)) add_policy(p, update);
    for (const Resource& p : mesh.authorization_policies)
      if (targets(p, own, mesh)) add_policy(p, update);
  }
  for (const Resource& p : mesh.mesh_configs) add_policy(p, update);
  return update;
}

}  // namespace trellis::control
