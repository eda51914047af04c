// The mesh state the snapshot builder reads, and the lookups in it that the
// parts of the translation share: which HTTPRoutes apply to a Service, which
// DestinationPolicy is in force for it, what a backendRef names. Resources
// here have passed validation (docs/resources.md), so reads need no checks
// beyond "is it there".
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "control/resource.h"
#include "control/store.h"

namespace trellis::control {

struct MeshView {
  std::vector<Resource> http_routes;
  std::vector<Resource> grpc_routes;
  std::vector<Resource> destination_policies;
  std::vector<Resource> rate_limit_policies;
  std::vector<Resource> authorization_policies;
  std::vector<Resource> mesh_configs;
  std::vector<Resource> fault_injections;
  std::vector<Resource> reference_grants;
  std::vector<Instance> instances;  // live ones only
  std::string trust_domain;         // of the identities the mesh CA issues
};

// A service by name and namespace ("reviews", "default").
struct ServiceRef {
  std::string name;
  std::string namespace_;
  bool operator<(const ServiceRef& o) const {
    return name != o.name ? name < o.name : namespace_ < o.namespace_;
  }
  bool operator==(const ServiceRef& o) const { return name == o.name && namespace_ == o.namespace_; }
  std::string cluster_name() const { return name + "." + namespace_; }
};

// What a proxy sends to: all of a Service's instances ("reviews.default"),
// or the subset of them its DestinationPolicy selects ("reviews.default/v2"),
// on one of the Service's ports when it declares ports ("reviews.default_9080/v2":
// '_' is in no Service or namespace name).
struct ClusterRef {
  ServiceRef service;
  std::string subset;  // empty: the whole Service
  uint32_t port = 0;   // 0: the Service declares no ports, all its traffic
  bool operator<(const ClusterRef& o) const {
    return std::tie(service, port, subset) < std::tie(o.service, o.port, o.subset);
  }
  std::string cluster_name() const {
    return service.cluster_name() + (port == 0 ? "" : "_" + std::to_string(port)) +
           (subset.empty() ? "" : "/" + subset);
  }
};

// The header a client sidecar tells the instance's sidecar with which Service
// port a request is for; the instance's sidecar sends it to that port's
// target_port, and takes the header off.
inline constexpr const char* kServicePortHeader = "x-trellis-port";

// The ports `service` declares: those its live instances serve, by port
// number. Where instances disagree on a port's name or protocol, the one
// with the lowest id is taken. Empty: the Service declares no ports, and
// takes all of its traffic on the addresses its instances registered.
std::vector<ServicePort> service_ports(const MeshView& mesh, const ServiceRef& service);

// "svc" (in `default_namespace`) or "svc.ns".
ServiceRef parse_service_ref(const std::string& text, const std::string& default_namespace);

// The HTTPRoutes and GRPCRoutes attached to `service` (a parentRef to it, GAMMA) that apply
// to clients in `client_namespace`: those in the Service's namespace
// (producer routes) and those in the client's (consumer routes). Sorted
// oldest first (by resource version), then by namespace and name.
// With `port`, only the routes for that port of the Service: a parentRef
// without port and sectionName, or whose port and sectionName name it.
std::vector<const Resource*> routes_for(const MeshView& mesh, const ServiceRef& service,
                                        const std::string& client_namespace,
                                        const ServicePort* port = nullptr);

// The DestinationPolicy in force for `service`: of those targeting it, the
// one whose name sorts first. Null when there is none.
const Resource* destination_policy_for(const MeshView& mesh, const ServiceRef& service);

// The labels that subset `name` of `policy` selects; null when the policy
// defines no such subset.
const Json* subset_labels(const Resource& policy, const std::string& name);

// What a backendRef (of a rule, or of a RequestMirror) of `route` names: a
// cluster, or why there is none, as the Gateway API's ResolvedRefs reasons:
//   InvalidKind      neither a Service nor a Subset (group trellis.dev)
//   RefNotPermitted  in another namespace, and no ReferenceGrant there lets
//                    the route's kind and namespace refer to that Service
//                    (a route's own parent Service needs none: a consumer
//                    route sends its clients there without one)
//   BackendNotFound  a Service with no registered instance (a Service exists
//                    by its instances), a Subset that no DestinationPolicy
//                    defines (yet), or a port the Service does not declare
//                    (when it declares ports)
// Without a cluster, the backend's share of requests is answered 500.
struct BackendResolution {
  std::optional<ClusterRef> cluster;
  // A Service with no instance: the cluster it will have. Proxies keep it
  // (empty), so that it does not come and go with the Service's instances.
  std::optional<ClusterRef> absent;
  std::string reason;   // empty when resolved
  std::string message;  // why not, for status and `trellis check`
};
BackendResolution resolve_backend(const MeshView& mesh, const Json& ref, const Resource& route);

// Every filter of a route's spec: each rule's, then each of its
// backendRefs', with the filter's field path
// ("spec.rules[0].backendRefs[1].filters[0]").
void each_route_filter(const Json& spec,
                       const std::function<void(const Json& filter, const std::string& path)>& visit);

// Every backendRef of a route's spec: each rule's backends, then the
// backendRefs of its RequestMirror filters (the rule's and its backends'),
// with field paths.
void each_backend_ref(const Json& spec,
                      const std::function<void(const Json& ref, const std::string& path)>& visit);

// Whether a ReferenceGrant in `to_namespace` lets routes of `route_kind` in
// `from_namespace` refer to Service `service` there.
bool reference_granted(const MeshView& mesh, const std::string& route_kind, const std::string& from_namespace,
                       const std::string& to_namespace, const std::string& service);

// The FaultInjection `name` in `namespace_`; null when there is none.
const Resource* find_fault_injection(const MeshView& mesh, const std::string& namespace_,
                                     const std::string& name);

// The request timeout of a route that sets none: MeshConfig
// spec.defaults.requestTimeout, else 15 s. 0: no limit.
uint32_t default_request_timeout_ms(const MeshView& mesh);

// How sidecars configured by the control plane talk to each other (MeshConfig
// spec.mtls.mode).
enum class MeshTlsMode { kStrict, kPermissive, kDisable };
// spec.mtls of the MeshConfig, or null.
const Json* mesh_mtls(const MeshView& mesh);
// spec.mtls.mode of the MeshConfig, else PERMISSIVE.
MeshTlsMode mesh_tls_mode(const MeshView& mesh);
// spec.mtls.mode of the service's DestinationPolicy, else the mesh's.
MeshTlsMode service_tls_mode(const MeshView& mesh, const ServiceRef& service);
// The identity sidecars of `service` run as, under mesh.trust_domain:
// "spiffe://<trust domain>/ns/<namespace>/sa/<service>".
std::string service_identity(const MeshView& mesh, const std::string& service, const std::string& namespace_);

// ---- reading validated specs ----

// obj[key] when it is a string, else `fallback`.
std::string string_at(const Json& obj, const char* key, const std::string& fallback = "");
// A Gateway API duration ("1m30s") in milliseconds, capped to 32 bits;
// nothing when `value` is not one.
std::optional<uint32_t> duration_ms(const Json& value);
// obj[key] as a duration in milliseconds; `fallback` when absent.
uint32_t duration_at(const Json& obj, const char* key, uint32_t fallback);
// obj[key] when it is a non-negative integer (capped to 32 bits), else `fallback`.
uint32_t uint_at(const Json& obj, const char* key, uint32_t fallback);
// obj[key] when it is true or false, else `fallback`.
bool bool_at(const Json& obj, const char* key, bool fallback);
// obj[key] when it is a number, else `fallback`.
double number_at(const Json& obj, const char* key, double fallback);
// obj[key] when it is a map, else null.
const Json* map_at(const Json& obj, const char* key);
// obj[key] when it is a list, else an empty list.
const Json& list_at(const Json& obj, const char* key);

}  // namespace trellis::control
