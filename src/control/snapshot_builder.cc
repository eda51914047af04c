#include "control/snapshot_builder.h"

#include <map>
#include <set>

#include "control/authorization_translation.h"
#include "control/cluster_translation.h"
#include "control/rate_limit_translation.h"
#include "control/route_translation.h"

namespace trellis::control {
namespace {

constexpr const char* kInbound = "inbound";
constexpr const char* kOutbound = "outbound";

std::string node_namespace(const v1::Hello& hello) {
  return hello.node().namespace_().empty() ? "default" : hello.node().namespace_();
}

std::set<ServiceRef> declared_upstreams(const v1::Hello& hello) {
  std::set<ServiceRef> out;
  for (const std::string& s : hello.upstream_services()) {
    out.insert(parse_service_ref(s, node_namespace(hello)));
  }
  return out;
}

// The instance's ports as its hello says, when they follow the rules (the
// registry refuses the instance otherwise); none when they do not.
google::protobuf::RepeatedPtrField<v1::ServicePort> hello_ports(const v1::Hello& hello) {
  std::vector<ServicePort> ports;
  for (const v1::ServicePort& p : hello.instance().ports())
    ports.push_back({p.name(), p.port(), p.target_port(), p.protocol()});
  if (!check_service_ports(ports).empty()) return {};
  return hello.instance().ports();
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
// HTTPRoutes attached to it (kind HTTPRoute, in the policy's namespace, which
// is the service's).
bool targets(const Resource& policy, const ServiceRef& service, const MeshView& mesh) {
  if (policy.namespace_ != service.namespace_) return false;
  const Json* target = map_at(policy.spec, "targetRef");
  if (target == nullptr) return false;
  std::string kind = string_at(*target, "kind", "Service");
  std::string name = string_at(*target, "name");
  if (kind == "Service") return name == service.name;
  if (kind == "HTTPRoute") {
    for (const Resource* route : routes_for(mesh, service, service.namespace_))
      if (route->name == name && route->namespace_ == policy.namespace_) return true;
  }
  return false;
}

}  // namespace

std::vector<ClusterRef> clusters_in_scope(const MeshView& mesh, const v1::Hello& hello) {
  std::set<ClusterRef> scope;
  for (const ServiceRef& service : declared_upstreams(hello)) {
    std::vector<ServicePort> ports = service_ports(mesh, service);
    if (ports.empty()) {
      scope.insert({service, "", 0});
      add_route_clusters(mesh, service, node_namespace(hello), scope);
    }
    for (const ServicePort& port : ports) {
      scope.insert({service, "", port.port});
      add_route_clusters(mesh, service, node_namespace(hello), scope, &port);
    }
  }
  return {scope.begin(), scope.end()};
}

v1::ConfigUpdate build_proxy_config(const MeshView& mesh, const v1::Hello& hello) {
  v1::ConfigUpdate update;
  update.set_full(true);
  if (hello.has_instance() && !hello.instance().address().empty() &&
      !hello.instance().app_address().empty()) {
    v1::Listener* in = update.add_listeners();
    in->set_name(kInbound);
    in->set_direction(v1::Listener::INBOUND);
    in->set_address(hello.instance().address());
    in->set_protocol(v1::Listener::HTTP);
    switch (service_tls_mode(mesh, {hello.node().service(), node_namespace(hello)})) {
      case MeshTlsMode::kStrict:
        in->mutable_tls()->set_mode(v1::ListenerTls::STRICT);
        break;
      case MeshTlsMode::kPermissive:
        in->mutable_tls()->set_mode(v1::ListenerTls::PERMISSIVE);
        break;
      case MeshTlsMode::kDisable:
        break;
    }
    // The header that tells the application who called, when the mesh names one.
    if (const Json* mtls = mesh_mtls(mesh); mtls != nullptr && mtls->contains("clientIdentityHeader"))
      in->mutable_client_identity_header()->set_name(string_at(*mtls, "clientIdentityHeader"));
    v1::VirtualHost* vh = in->add_virtual_hosts();
    vh->set_name(kInbound);
    vh->add_domains("*");
    // A request for one of the instance's Service ports (the client sidecar
    // names it in kServicePortHeader) goes to that port's target_port; any
    // other to app_address. The header goes no further.
    std::vector<v1::Route*> routes;
    const auto ports = hello_ports(hello);
    for (const v1::ServicePort& port : ports) {
      v1::Route* r = vh->add_routes();
      r->set_path_kind(v1::Route::PREFIX);
      r->set_path("/");
      v1::ValueMatch* m = r->add_headers();
      m->set_name(kServicePortHeader);
      m->set_value(std::to_string(port.port()));
      r->set_cluster(std::string(kInbound) + "_" + std::to_string(port.port()));
      routes.push_back(r);
    }
    v1::Route* r = vh->add_routes();
    r->set_path_kind(v1::Route::PREFIX);
    r->set_path("/");
    r->set_cluster(kInbound);
    routes.push_back(r);
    for (v1::Route* each : routes) each->mutable_request_headers()->add_remove(kServicePortHeader);
    // The proxy in front of each instance of a Service enforces who may call it.
    if (!hello.node().service().empty()) {
      v1::Authorization authz;
      if (build_authorization(mesh, {hello.node().service(), node_namespace(hello)}, authz))
        *in->mutable_authorization() = std::move(authz);
    }
    // The proxy in front of each instance of a Service enforces the limits on it.
    if (!hello.node().service().empty()) {
      for (v1::Route* each : routes)
        add_rate_limits(mesh, "Service", node_namespace(hello), hello.node().service(),
                        *each->mutable_rate_limits());
    }
    v1::Cluster* c = update.add_clusters();
    c->set_name(kInbound);
    c->set_service(hello.node().service());
    c->set_service_namespace(node_namespace(hello));
    c->set_connect_timeout_ms(1000);
    c->set_idle_timeout_ms(60000);
    c->set_max_idle_per_endpoint(64);
    // The application gets each request in the protocol its caller spoke
    // (the client sidecar names it), so gRPC servers get HTTP/2.
    c->set_protocol(v1::Cluster::DOWNSTREAM);
    c->add_endpoints()->set_address(hello.instance().app_address());
    // Each port at the application's host and its target_port, in its protocol.
    const std::string app_host = host_of(hello.instance().app_address());
    for (const v1::ServicePort& port : ports) {
      v1::Cluster* pc = update.add_clusters();
      *pc = *c;
      pc->set_name(std::string(kInbound) + "_" + std::to_string(port.port()));
      pc->set_protocol(cluster_protocol(port.protocol()));
      pc->mutable_endpoints(0)->set_address(app_host + ":" + std::to_string(port.target_port()));
    }
  }
  std::vector<ClusterRef> scope = clusters_in_scope(mesh, hello);
  // An application that calls nothing gets no outbound listener.
  if (!hello.outbound_address().empty() && hello.upstream_services_size() > 0) {
    v1::Listener* out = update.add_listeners();
    out->set_name(kOutbound);
    out->set_address(hello.outbound_address());
    out->set_protocol(v1::Listener::HTTP);
    const std::set<ServiceRef> upstreams = declared_upstreams(hello);
    // The bare name ("reviews") is the Service in the client's namespace, as
    // in Kubernetes DNS; when the client calls none there, the first of that
    // name in another namespace. Qualified names are always its own.
    std::map<std::string, ServiceRef> bare;
    for (const ServiceRef& s : upstreams) {
      auto [it, fresh] = bare.emplace(s.name, s);
      if (!fresh && s.namespace_ == node_namespace(hello)) it->second = s;
    }
    for (const ServiceRef& s : upstreams) {
      const std::string& n = s.name;
      const std::string& ns = s.namespace_;
      std::vector<std::string> names = {n + "." + ns, n + "." + ns + ".svc",
                                        n + "." + ns + ".svc.cluster.local"};
      if (bare.at(n) == s) names.insert(names.begin(), n);
      std::vector<ServicePort> ports = service_ports(mesh, s);
      if (ports.empty()) {  // every port of the Service's names
        v1::VirtualHost* vh = out->add_virtual_hosts();
        vh->set_name(s.cluster_name());
        for (const std::string& d : names) vh->add_domains(d);
        add_service_routes(mesh, s, node_namespace(hello), *vh);
        continue;
      }
      // One virtual host per port, by the Host's port ("reviews:9080"). A
      // Host without a port means port 80, as in HTTP, or the only port.
      for (const ServicePort& port : ports) {
        v1::VirtualHost* vh = out->add_virtual_hosts();
        vh->set_name(s.cluster_name() + "_" + std::to_string(port.port));
        const bool portless_too = port.port == 80 || ports.size() == 1;
        for (const std::string& d : names) {
          vh->add_domains(d + ":" + std::to_string(port.port));
          if (portless_too) vh->add_domains(d);
        }
        add_service_routes(mesh, s, node_namespace(hello), *vh, &port);
      }
    }
  }
  for (const ClusterRef& c : scope) *update.add_clusters() = build_cluster(mesh, c);

  // Policies: how to call the services in scope, and what applies to traffic
  // into this proxy's own service.
  std::set<ServiceRef> services;
  for (const ClusterRef& c : scope) services.insert(c.service);
  for (const Resource& p : mesh.destination_policies)
    for (const ServiceRef& s : services)
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
