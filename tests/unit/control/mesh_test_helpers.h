// Helpers shared by the snapshot builder's tests: resources, instances and
// hellos to fill a MeshView with, and a short text form of a route to
// compare orders with.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "control/mesh_view.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::control::testing {

inline Resource resource(std::string kind, std::string name, const char* spec, uint64_t version = 1,
                         std::string ns = "default") {
  Resource r;
  r.api_version =
      kind == "HTTPRoute" || kind == "GRPCRoute" ? "gateway.networking.k8s.io/v1" : "trellis.dev/v1alpha1";
  r.kind = std::move(kind);
  r.name = std::move(name);
  r.namespace_ = r.kind == "MeshConfig" ? "" : std::move(ns);
  r.resource_version = version;
  r.spec = Json::parse(spec);
  return r;
}

inline Resource http_route(std::string name, const char* spec, uint64_t version = 1,
                           std::string ns = "default") {
  return resource("HTTPRoute", std::move(name), spec, version, std::move(ns));
}

// A ReferenceGrant in `ns` letting HTTPRoutes in `from_ns` send to Service
// `service` there (every Service when empty).
inline Resource reference_grant(std::string ns, const std::string& from_ns, const std::string& service = "") {
  Json spec = {
      {"from", {{{"group", "gateway.networking.k8s.io"}, {"kind", "HTTPRoute"}, {"namespace", from_ns}}}},
      {"to", {{{"group", ""}, {"kind", "Service"}}}}};
  if (!service.empty()) spec["to"][0]["name"] = service;
  Resource r = resource("ReferenceGrant", "grant-" + from_ns, "{}", 1, std::move(ns));
  r.api_version = "gateway.networking.k8s.io/v1";
  r.spec = std::move(spec);
  return r;
}

inline Instance instance(std::string service, std::string address,
                         std::map<std::string, std::string> labels = {}, std::string ns = "default") {
  Instance i;
  i.id = service + "-" + address;
  i.service = std::move(service);
  i.namespace_ = std::move(ns);
  i.address = std::move(address);
  i.labels = std::move(labels);
  return i;
}

// `mesh` with an instance for each Service that its routes' backendRefs
// and mirrors name (a Subset's Service too) and that has none yet, but those
// in `missing` ("name.namespace"): a test's backends exist unless it says so.
inline MeshView with_backends(MeshView mesh, const std::set<std::string>& missing = {}) {
  std::set<std::string> known;
  for (const Instance& i : mesh.instances) known.insert(i.service + "." + i.namespace_);
  std::vector<Instance> added;
  for (const std::vector<Resource>* routes : {&mesh.http_routes, &mesh.grpc_routes}) {
    for (const Resource& route : *routes) {
      each_backend_ref(route.spec, [&](const Json& ref, const std::string&) {
        std::string name = string_at(ref, "name");
        name = name.substr(0, name.find('/'));
        const std::string ns = string_at(ref, "namespace", route.namespace_);
        if (missing.count(name + "." + ns) || !known.insert(name + "." + ns).second) return;
        added.push_back(instance(name, "10.255.0." + std::to_string(added.size() + 1) + ":80", {}, ns));
      });
    }
  }
  mesh.instances.insert(mesh.instances.end(), added.begin(), added.end());
  return mesh;
}

inline v1::Hello hello(std::vector<std::string> upstreams, bool with_instance = true, std::string ns = "") {
  v1::Hello h;
  h.mutable_node()->set_id("productpage-1");
  h.mutable_node()->set_service("productpage");
  h.mutable_node()->set_namespace_(std::move(ns));
  h.set_outbound_address("127.0.0.1:16001");
  for (auto& u : upstreams) h.add_upstream_services(u);
  if (with_instance) {
    h.mutable_instance()->set_address("127.0.0.1:16000");
    h.mutable_instance()->set_app_address("127.0.0.1:9080");
  }
  return h;
}

// "EXACT /health GET h:x-a q:debug hosts:a.example -> reviews-v1.default=90,reviews-v2.default=10",
// with "!error" for a direct error and "redirect" for a redirect.
inline std::string describe(const v1::Route& r) {
  static const char* const kKinds[] = {"PREFIX", "EXACT", "REGEX"};
  std::string out = std::string(kKinds[r.path_kind()]) + " " + r.path();
  if (!r.method().empty()) out += " " + r.method();
  for (const auto& h : r.headers()) out += " h:" + h.name();
  for (const auto& q : r.query_params()) out += " q:" + q.name();
  if (r.hosts_size() > 0) {
    out += " hosts:";
    for (int i = 0; i < r.hosts_size(); ++i) out += (i ? "," : "") + r.hosts(i);
  }
  out += " ->";
  if (!r.cluster().empty()) out += " " + r.cluster();
  for (int i = 0; i < r.backends_size(); ++i) {
    out += (i ? "," : " ") + r.backends(i).cluster() + "=" + std::to_string(r.backends(i).weight());
  }
  if (r.redirect().enabled()) out += " redirect";
  if (!r.direct_error().empty()) out += " !" + r.direct_error();
  return out;
}

inline std::vector<std::string> describe_all(const v1::VirtualHost& vh) {
  std::vector<std::string> out;
  for (const v1::Route& r : vh.routes()) out.push_back(describe(r));
  return out;
}

}  // namespace trellis::control::testing
