#include "control/mesh_view.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "control/validation.h"

namespace trellis::control {
namespace {

constexpr uint32_t kDefaultRequestTimeoutMs = 15000;
constexpr const char* kGatewayGroup = "gateway.networking.k8s.io";
constexpr const char* kTrellisGroup = "trellis.dev";

bool is_service_ref(const Json& ref) {
  return string_at(ref, "kind", "Service") == "Service" && string_at(ref, "group").empty();
}

}  // namespace

ServiceRef parse_service_ref(const std::string& text, const std::string& default_namespace) {
  size_t dot = text.find('.');
  if (dot == std::string::npos) return {text, default_namespace};
  return {text.substr(0, dot), text.substr(dot + 1)};
}

std::vector<ServicePort> service_ports(const MeshView& mesh, const ServiceRef& service) {
  std::map<uint32_t, std::pair<std::string, ServicePort>> by_port;  // port -> (instance id, port)
  for (const Instance& i : mesh.instances) {
    if (i.service != service.name || i.namespace_ != service.namespace_) continue;
    for (const ServicePort& p : i.ports) {
      auto [it, fresh] = by_port.try_emplace(p.port, i.id, p);
      if (!fresh && i.id < it->second.first) it->second = {i.id, p};
    }
  }
  std::vector<ServicePort> out;
  for (auto& [number, entry] : by_port) out.push_back(std::move(entry.second));
  return out;
}

std::vector<const Resource*> routes_for(const MeshView& mesh, const ServiceRef& service,
                                        const std::string& client_namespace, const ServicePort* port) {
  std::vector<const Resource*> out;
  for (const std::vector<Resource>* routes : {&mesh.http_routes, &mesh.grpc_routes}) {
    for (const Resource& r : *routes) {
      if (r.namespace_ != service.namespace_ && r.namespace_ != client_namespace) continue;
      for (const Json& p : list_at(r.spec, "parentRefs")) {
        if (!p.is_object() || !is_service_ref(p)) continue;
        if (port != nullptr) {
          if (uint_at(p, "port", port->port) != port->port) continue;
          if (string_at(p, "sectionName", port->name) != port->name) continue;
        }
        if (string_at(p, "name") == service.name &&
            string_at(p, "namespace", r.namespace_) == service.namespace_) {
          out.push_back(&r);
          break;
        }
      }
    }
  }
  // The Gateway API's tie-breaks between routes: the oldest first (resource
  // versions give that order), then by namespace and name.
  std::sort(out.begin(), out.end(), [](const Resource* a, const Resource* b) {
    return std::tie(a->resource_version, a->namespace_, a->name) <
           std::tie(b->resource_version, b->namespace_, b->name);
  });
  return out;
}

const Resource* destination_policy_for(const MeshView& mesh, const ServiceRef& service) {
  const Resource* found = nullptr;
  for (const Resource& p : mesh.destination_policies) {
    if (p.namespace_ != service.namespace_) continue;
    const Json* target = map_at(p.spec, "targetRef");
    if (target == nullptr || string_at(*target, "name") != service.name) continue;
    if (found == nullptr || p.name < found->name) found = &p;
  }
  return found;
}

const Json* subset_labels(const Resource& policy, const std::string& name) {
  for (const Json& subset : list_at(policy.spec, "subsets")) {
    if (string_at(subset, "name") == name) return map_at(subset, "labels");
  }
  return nullptr;
}

bool reference_granted(const MeshView& mesh, const std::string& route_kind, const std::string& from_namespace,
                       const std::string& to_namespace, const std::string& service) {
  for (const Resource& grant : mesh.reference_grants) {
    if (grant.namespace_ != to_namespace) continue;
    bool from = false;
    for (const Json& f : list_at(grant.spec, "from")) {
      from |= string_at(f, "group") == kGatewayGroup && string_at(f, "kind") == route_kind &&
              string_at(f, "namespace") == from_namespace;
    }
    if (!from) continue;
    for (const Json& t : list_at(grant.spec, "to")) {
      if (string_at(t, "group").empty() && string_at(t, "kind") == "Service" &&
          string_at(t, "name", service) == service)
        return true;
    }
  }
  return false;
}

BackendResolution resolve_backend(const MeshView& mesh, const Json& ref, const Resource& route) {
  BackendResolution out;
  const std::string ns = string_at(ref, "namespace", route.namespace_);
  const std::string name = string_at(ref, "name");
  const std::string group = string_at(ref, "group");
  const std::string kind = string_at(ref, "kind", "Service");
  ClusterRef cluster;
  if (group.empty() && kind == "Service") {
    cluster = {{name, ns}, ""};
  } else if (group == kTrellisGroup && kind == "Subset" && name.find('/') != std::string::npos) {
    size_t slash = name.find('/');
    cluster = {{name.substr(0, slash), ns}, name.substr(slash + 1)};
  } else {
    out.reason = "InvalidKind";
    out.message = "kind " + kind + (group.empty() ? "" : " in group " + group) +
                  " is not a backend Trellis knows (Service, or Subset in group trellis.dev)";
    return out;
  }
  // A consumer route may send its clients' requests to its own parent
  // Service, as they would go without the route; anything else elsewhere
  // needs the consent of that namespace. Only a route all of whose parents
  // are elsewhere is a consumer route for every one of them: with a parent
  // in its own namespace it serves every client of that one.
  auto is_parent = [&] {
    bool found = false;
    for (const Json& p : list_at(route.spec, "parentRefs")) {
      const std::string parent_ns = string_at(p, "namespace", route.namespace_);
      if (parent_ns == route.namespace_) return false;
      found |= is_service_ref(p) && string_at(p, "name") == cluster.service.name && parent_ns == ns;
    }
    return found;
  };
  if (ns != route.namespace_ && !is_parent() &&
      !reference_granted(mesh, route.kind, route.namespace_, ns, cluster.service.name)) {
    out.reason = "RefNotPermitted";
    out.message = "Service " + cluster.service.name + " is in namespace " + ns +
                  ", and no ReferenceGrant there lets " + route.kind + "s in namespace " + route.namespace_ +
                  " refer to it";
    return out;
  }
  // A Service exists while an instance of it is registered (a Kubernetes
  // Service is one with endpoints here); with none, its share is answered
  // 500 as the Gateway API says, not 503 from an empty cluster.
  bool exists = false;
  for (const Instance& i : mesh.instances) exists |= i.service == cluster.service.name && i.namespace_ == ns;
  if (!exists) {
    out.reason = "BackendNotFound";
    out.message = "Service " + cluster.service.cluster_name() + " has no registered instance";
    out.absent = std::move(cluster);
    return out;
  }
  // The port, where the Service declares ports: one of them, or nothing.
  if (std::vector<ServicePort> ports = service_ports(mesh, cluster.service); !ports.empty()) {
    const uint32_t port = uint_at(ref, "port", 0);
    bool declared = false;
    for (const ServicePort& p : ports) declared |= p.port == port;
    if (!declared) {
      out.reason = "BackendNotFound";
      out.message = "Service " + cluster.service.cluster_name() + " has no port " + std::to_string(port);
      return out;
    }
    cluster.port = port;
  }
  if (!cluster.subset.empty()) {
    const Resource* policy = destination_policy_for(mesh, cluster.service);
    if (policy == nullptr || subset_labels(*policy, cluster.subset) == nullptr) {
      out.reason = "BackendNotFound";
      out.message = "subset " + cluster.subset + " of Service " + cluster.service.cluster_name() +
                    " is defined by no DestinationPolicy";
      return out;
    }
  }
  out.cluster = std::move(cluster);
  return out;
}

const Resource* find_fault_injection(const MeshView& mesh, const std::string& namespace_,
                                     const std::string& name) {
  for (const Resource& f : mesh.fault_injections) {
    if (f.namespace_ == namespace_ && f.name == name) return &f;
  }
  return nullptr;
}

uint32_t default_request_timeout_ms(const MeshView& mesh) {
  for (const Resource& m : mesh.mesh_configs) {
    if (m.name != "default") continue;
    if (const Json* defaults = map_at(m.spec, "defaults")) {
      return duration_at(*defaults, "requestTimeout", kDefaultRequestTimeoutMs);
    }
  }
  return kDefaultRequestTimeoutMs;
}

namespace {

// mtls.mode of a policy's spec.mtls map, when it says one.
std::optional<MeshTlsMode> tls_mode_at(const Json* mtls) {
  if (mtls == nullptr) return std::nullopt;
  std::string mode = string_at(*mtls, "mode");
  if (mode == "STRICT") return MeshTlsMode::kStrict;
  if (mode == "PERMISSIVE") return MeshTlsMode::kPermissive;
  if (mode == "DISABLE") return MeshTlsMode::kDisable;
  return std::nullopt;
}

}  // namespace

const Json* mesh_mtls(const MeshView& mesh) {
  for (const Resource& m : mesh.mesh_configs)
    if (m.name == "default") return map_at(m.spec, "mtls");
  return nullptr;
}

MeshTlsMode mesh_tls_mode(const MeshView& mesh) {
  return tls_mode_at(mesh_mtls(mesh)).value_or(MeshTlsMode::kPermissive);
}

MeshTlsMode service_tls_mode(const MeshView& mesh, const ServiceRef& service) {
  const Resource* policy = destination_policy_for(mesh, service);
  std::optional<MeshTlsMode> own = tls_mode_at(policy != nullptr ? map_at(policy->spec, "mtls") : nullptr);
  return own ? *own : mesh_tls_mode(mesh);
}

std::string service_identity(const MeshView& mesh, const std::string& service,
                             const std::string& namespace_) {
  return "spiffe://" + mesh.trust_domain + "/ns/" + namespace_ + "/sa/" + service;
}

std::string string_at(const Json& obj, const char* key, const std::string& fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::optional<uint32_t> duration_ms(const Json& value) {
  if (!value.is_string()) return std::nullopt;
  std::optional<int64_t> ms = parse_duration_ms(value.get_ref<const std::string&>());
  if (!ms || *ms < 0) return std::nullopt;
  return static_cast<uint32_t>(std::min<int64_t>(*ms, UINT32_MAX));
}

uint32_t duration_at(const Json& obj, const char* key, uint32_t fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  if (it == obj.end()) return fallback;
  return duration_ms(*it).value_or(fallback);
}

uint32_t uint_at(const Json& obj, const char* key, uint32_t fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return fallback;
  if (it->is_number_unsigned())
    return static_cast<uint32_t>(std::min<uint64_t>(it->get<uint64_t>(), UINT32_MAX));
  return it->get<int64_t>() < 0 ? fallback
                                : static_cast<uint32_t>(std::min<int64_t>(it->get<int64_t>(), UINT32_MAX));
}

bool bool_at(const Json& obj, const char* key, bool fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

double number_at(const Json& obj, const char* key, double fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : fallback;
}

void each_route_filter(const Json& spec,
                       const std::function<void(const Json& filter, const std::string& path)>& visit) {
  auto each_in = [&](const Json& owner, const std::string& path) {
    const Json& filters = list_at(owner, "filters");
    for (size_t f = 0; f < filters.size(); ++f)
      visit(filters[f], path + ".filters[" + std::to_string(f) + "]");
  };
  const Json& rules = list_at(spec, "rules");
  for (size_t i = 0; i < rules.size(); ++i) {
    const std::string rule = "spec.rules[" + std::to_string(i) + "]";
    each_in(rules[i], rule);
    const Json& refs = list_at(rules[i], "backendRefs");
    for (size_t b = 0; b < refs.size(); ++b)
      each_in(refs[b], rule + ".backendRefs[" + std::to_string(b) + "]");
  }
}

void each_backend_ref(const Json& spec,
                      const std::function<void(const Json& ref, const std::string& path)>& visit) {
  const Json& rules = list_at(spec, "rules");
  for (size_t i = 0; i < rules.size(); ++i) {
    const Json& refs = list_at(rules[i], "backendRefs");
    for (size_t b = 0; b < refs.size(); ++b)
      visit(refs[b], "spec.rules[" + std::to_string(i) + "].backendRefs[" + std::to_string(b) + "]");
  }
  each_route_filter(spec, [&](const Json& filter, const std::string& path) {
    const Json* mirror = map_at(filter, "requestMirror");
    const Json* ref = mirror != nullptr ? map_at(*mirror, "backendRef") : nullptr;
    if (ref != nullptr && string_at(filter, "type") == "RequestMirror")
      visit(*ref, path + ".requestMirror.backendRef");
  });
}

const Json* map_at(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? &*it : nullptr;
}

const Json& list_at(const Json& obj, const char* key) {
  static const Json kEmpty = Json::array();
  if (!obj.is_object()) return kEmpty;
  auto it = obj.find(key);
  return it != obj.end() && it->is_array() ? *it : kEmpty;
}

}  // namespace trellis::control
