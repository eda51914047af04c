// A user-facing mesh resource in Kubernetes style (apiVersion, kind,
// metadata, spec), as stored by the control plane and served by its API.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

namespace trellis::control {

using Json = nlohmann::json;

// The kinds the control plane knows, with the apiVersion each is written in.
//   HTTPRoute            gateway.networking.k8s.io/v1 (the Gateway API shape)
//   DestinationPolicy    trellis.dev/v1alpha1
//   RateLimitPolicy      trellis.dev/v1alpha1
//   AuthorizationPolicy  trellis.dev/v1alpha1
//   MeshConfig           trellis.dev/v1alpha1 (one per mesh, name "default")
//   FaultInjection       trellis.dev/v1alpha1 (referenced from HTTPRoute rules)
//   ReferenceGrant       gateway.networking.k8s.io/v1, or v1beta1 as before v1.5
struct KindInfo {
  const char* kind;
  const char* api_version;
  const char* plural;  // lower-case plural used in API paths and the CLI
  bool namespaced;
  const char* older_api_version = nullptr;  // also accepted, kept as written
};
const std::vector<KindInfo>& known_kinds();
// By kind, plural or singular lower-case name ("httproute", "httproutes",
// "HTTPRoute"); null when unknown.
const KindInfo* find_kind(const std::string& name);

struct ResourceKey {
  std::string kind;
  std::string namespace_;  // "" for cluster-scoped kinds
  std::string name;
  bool operator<(const ResourceKey& o) const {
    return std::tie(kind, namespace_, name) < std::tie(o.kind, o.namespace_, o.name);
  }
  bool operator==(const ResourceKey& o) const {
    return kind == o.kind && namespace_ == o.namespace_ && name == o.name;
  }
};

struct Resource {
  std::string api_version;
  std::string kind;
  std::string name;
  std::string namespace_;  // defaulted to "default" for namespaced kinds
  std::map<std::string, std::string> labels;
  uint64_t resource_version = 0;  // assigned by the store; 0 = not stored yet
  Json spec = Json::object();

  ResourceKey key() const { return {kind, namespace_, name}; }
  // The Kubernetes-style document: apiVersion, kind, metadata (name,
  // namespace, labels, resourceVersion as a string), spec.
  Json to_json() const;
};

// One validation error: the field path from the document root and the reason,
// e.g. {"spec.rules[0].backendRefs[1].weight", "must be between 0 and 1000000"}.
struct FieldError {
  std::string path;
  std::string message;
  std::string to_string() const { return path.empty() ? message : path + ": " + message; }
};

// The outcome of reading one document: the resource as far as it could be
// read, and every problem found in it. A resource with errors must not be
// stored; its fields are filled on a best-effort basis so that callers can
// still name it in messages.
struct ParsedResource {
  Resource resource;
  std::vector<FieldError> errors;
  bool ok() const { return errors.empty(); }
};

// Reads a Kubernetes-style document (apiVersion, kind, metadata, spec) and
// checks all of it: the envelope (known kind, its apiVersion, metadata.name,
// metadata.namespace, metadata.labels, metadata.resourceVersion as a string
// of digits, no unknown fields) and the kind's spec (see control/validation.h).
// Errors come in a fixed order for a given document. Never throws. The spec
// is kept as written: defaults are documented in docs/resources.md and
// applied by whoever consumes the resource.
ParsedResource parse_resource(const Json& doc);

}  // namespace trellis::control
