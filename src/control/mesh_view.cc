#include "control/mesh_view.h"

#include <algorithm>
#include <tuple>

#include "control/validation.h"

namespace trellis::control {
namespace {

constexpr uint32_t kDefaultRequestTimeoutMs = 15000;

bool is_service_ref(const Json& ref) {
  return string_at(ref, "kind", "Service") == "Service" && string_at(ref, "group").empty();
}

}  // namespace

ServiceRef parse_service_ref(const std::string& text, const std::string& default_namespace) {
  size_t dot = text.find('.');
  if (dot == std::string::npos) return {text, default_namespace};
  return {text.substr(0, dot), text.substr(dot + 1)};
}

std::vector<const Resource*> routes_for(const MeshView& mesh, const ServiceRef& service,
                                        const std::string& client_namespace) {
  std::vector<const Resource*> out;
  for (const std::vector<Resource>* routes : {&mesh.http_routes, &mesh.grpc_routes}) {
    for (const Resource& r : *routes) {
      if (r.namespace_ != service.namespace_ && r.namespace_ != client_namespace) continue;
      for (const Json& p : list_at(r.spec, "parentRefs")) {
        if (!p.is_object() || !is_service_ref(p)) continue;
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

std::optional<ClusterRef> resolve_backend(const MeshView& mesh, const Json& ref,
                                          const std::string& route_namespace) {
  std::string ns = string_at(ref, "namespace", route_namespace);
  std::string name = string_at(ref, "name");
  if (is_service_ref(ref)) return ClusterRef{{name, ns}, ""};
  // A Subset: "<service>/<subset>" (validated), defined by the Service's policy.
  size_t slash = name.find('/');
  if (slash == std::string::npos) return std::nullopt;
  ClusterRef cluster{{name.substr(0, slash), ns}, name.substr(slash + 1)};
  const Resource* policy = destination_policy_for(mesh, cluster.service);
  if (policy == nullptr || subset_labels(*policy, cluster.subset) == nullptr) return std::nullopt;
  return cluster;
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
