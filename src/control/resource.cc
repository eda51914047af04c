#include "control/resource.h"

#include <algorithm>
#include <limits>

#include "control/resources/checker.h"
#include "control/resources/formats.h"
#include "control/validation.h"

namespace trellis::control {
namespace {

// "status" is output only (routes are shown with theirs): what a document
// read back with `trellis get -o yaml` carries is ignored when applied, as
// Kubernetes does.
const Names kTopFields = {"apiVersion", "kind", "metadata", "spec", "status"};
const Names kMetadataFields = {"name", "namespace", "labels", "resourceVersion"};

Names kind_names() {
  Names names;
  for (const KindInfo& k : known_kinds()) names.push_back(k.kind);
  return names;
}

const KindInfo* find_exact_kind(std::string_view kind) {
  for (const KindInfo& k : known_kinds()) {
    if (kind == k.kind) return &k;
  }
  return nullptr;
}

// A resourceVersion is a decimal string, as in Kubernetes; it must fit in 64 bits.
std::optional<uint64_t> parse_resource_version(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

void read_metadata(Checker& checker, const MapReader& top, const KindInfo* info, Resource& out) {
  std::optional<MapReader> metadata = top.map("metadata", kMetadataFields, Need::kRequired);
  if (!metadata) return;

  if (std::optional<std::string> name = metadata->string("name", Need::kRequired)) {
    out.name = *name;
    if (auto problem = check_dns_subdomain(*name)) {
      metadata->error("name", *problem);
    } else if (info != nullptr && std::string_view(info->kind) == "MeshConfig" && *name != "default") {
      metadata->error("name", "must be \"default\": a mesh has one MeshConfig");
    }
  }

  if (std::optional<std::string> ns = metadata->string("namespace")) {
    out.namespace_ = *ns;
    if (info != nullptr && !info->namespaced) {
      metadata->error("namespace", std::string(info->kind) + " is cluster-scoped: remove metadata.namespace");
    } else if (auto problem = check_dns_label(*ns)) {
      metadata->error("namespace", *problem);
    }
  } else if (!metadata->has("namespace") && (info == nullptr || info->namespaced)) {
    out.namespace_ = "default";
  }

  if (std::optional<std::map<std::string, std::string>> labels = metadata->string_map("labels")) {
    std::string labels_path = metadata->path_of("labels");
    for (const auto& [key, value] : *labels) {
      if (auto problem = check_label_key(key)) checker.error(key_path(labels_path, key), *problem);
      if (auto problem = check_label_value(value)) {
        checker.error(key_path(labels_path, key), *problem);
      }
    }
    out.labels = std::move(*labels);
  }

  if (std::optional<std::string> version = metadata->string("resourceVersion")) {
    if (std::optional<uint64_t> parsed = parse_resource_version(*version)) {
      out.resource_version = *parsed;
    } else {
      metadata->error("resourceVersion", quote(*version) +
                                             " is not a resource version: expected a string of "
                                             "digits, as returned by the API, e.g. \"42\"");
    }
  }
}

}  // namespace

const std::vector<KindInfo>& known_kinds() {
  static const std::vector<KindInfo> kKinds = {
      {"HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes", true},
      {"GRPCRoute", "gateway.networking.k8s.io/v1", "grpcroutes", true},
      {"DestinationPolicy", "trellis.dev/v1alpha1", "destinationpolicies", true},
      {"RateLimitPolicy", "trellis.dev/v1alpha1", "ratelimitpolicies", true},
      {"AuthorizationPolicy", "trellis.dev/v1alpha1", "authorizationpolicies", true},
      {"MeshConfig", "trellis.dev/v1alpha1", "meshconfigs", false},
      {"FaultInjection", "trellis.dev/v1alpha1", "faultinjections", true},
      {"ReferenceGrant", "gateway.networking.k8s.io/v1", "referencegrants", true,
       "gateway.networking.k8s.io/v1beta1"},
  };
  return kKinds;
}

const KindInfo* find_kind(const std::string& name) {
  std::string lower = ascii_lower(name);
  for (const KindInfo& k : known_kinds()) {
    if (lower == ascii_lower(k.kind) || lower == k.plural) return &k;
  }
  return nullptr;
}

Json Resource::to_json() const {
  Json metadata = Json::object();
  metadata["name"] = name;
  if (!namespace_.empty()) metadata["namespace"] = namespace_;
  if (!labels.empty()) metadata["labels"] = labels;
  if (resource_version != 0) metadata["resourceVersion"] = std::to_string(resource_version);
  Json doc = Json::object();
  doc["apiVersion"] = api_version;
  doc["kind"] = kind;
  doc["metadata"] = std::move(metadata);
  doc["spec"] = spec;
  return doc;
}

ParsedResource parse_resource(const Json& doc) {
  ParsedResource parsed;
  Resource& out = parsed.resource;
  Checker checker(parsed.errors);
  if (!doc.is_object()) {
    checker.error("", "a resource must be a map with apiVersion, kind, metadata and spec");
    return parsed;
  }
  MapReader top = checker.map(doc, "", kTopFields);

  std::optional<std::string> api_version = top.string("apiVersion", Need::kRequired);
  if (api_version) out.api_version = *api_version;
  const KindInfo* info = nullptr;
  if (std::optional<std::string> kind = top.string("kind", Need::kRequired)) {
    out.kind = *kind;
    info = find_exact_kind(*kind);
    if (info == nullptr) {
      top.error("kind", "unknown kind " + quote(*kind) + did_you_mean(*kind, kind_names(), /*partial=*/true) +
                            "; the kinds are " + join_names(kind_names(), "and"));
    }
  }
  if (api_version && info != nullptr && *api_version != info->api_version &&
      (info->older_api_version == nullptr || *api_version != info->older_api_version)) {
    top.error("apiVersion", "must be " + quote(info->api_version) +
                                (info->older_api_version ? " or " + quote(info->older_api_version) : "") +
                                " for kind " + info->kind);
  }

  read_metadata(checker, top, info, out);

  const Json* spec = top.raw("spec");
  if (spec == nullptr) {
    top.error("spec", "required field is missing");
  } else {
    if (spec->is_object()) out.spec = *spec;
    if (info != nullptr) {
      std::vector<FieldError> spec_errors = validate_spec(info->kind, *spec);
      parsed.errors.insert(parsed.errors.end(), spec_errors.begin(), spec_errors.end());
    } else if (!spec->is_object()) {
      top.error("spec", "expected a map");
    }
  }
  return parsed;
}

}  // namespace trellis::control
