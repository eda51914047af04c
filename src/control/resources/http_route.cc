// HTTPRoute and GRPCRoute: the Gateway API's routes, attached to Services
// for mesh routing (GAMMA). The shape is the Gateway API's; what Trellis adds
// is a backend of kind Subset (group trellis.dev) that names a subset of a
// Service defined in that Service's DestinationPolicy, and an ExtensionRef
// filter naming a FaultInjection. A GRPCRoute matches a gRPC service and
// method instead of a path, and has no redirect, rewrite or timeouts.
#include <cctype>
#include <map>
#include <set>
#include <utility>

#include "control/mesh_view.h"
#include "control/resources/common_fields.h"
#include "control/resources/formats.h"
#include "control/resources/kinds.h"
#include "control/resources/regex_syntax.h"
#include "control/validation.h"
#include "policy/cors.h"

namespace trellis::control {
namespace {

constexpr size_t kMaxParentRefs = 32;
constexpr size_t kMaxHostnames = 16;
constexpr size_t kMaxRules = 16;
constexpr size_t kMaxMatches = 64;
constexpr size_t kMaxMatchesPerRoute = 128;  // over all rules, as the Gateway API bounds them
constexpr size_t kMaxFilters = 16;
constexpr size_t kMaxBackendRefs = 16;
constexpr size_t kMaxHeaderEdits = 16;
constexpr size_t kMaxQueryParamMatches = 16;
constexpr int64_t kMaxWeight = 1000000;
constexpr size_t kMaxHeaderValue = 4096;
constexpr size_t kMaxQueryValue = 1024;
constexpr std::string_view kTrellisGroup = "trellis.dev";
constexpr std::string_view kGatewayGroup = "gateway.networking.k8s.io";

const Names kParentRefFields = {"group", "kind", "namespace", "name", "sectionName", "port"};
const Names kRuleFields = {"name", "matches", "filters", "backendRefs", "timeouts"};
const Names kMatchFields = {"path", "headers", "queryParams", "method"};
const Names kBackendObjectFields = {"group", "kind", "name", "namespace", "port"};
const Names kBackendRefFields = {"group", "kind", "name", "namespace", "port", "weight", "filters"};
// Each filter type and, at the same index, the field that carries its settings.
const Names kFilterTypes = {"RequestHeaderModifier",
                            "ResponseHeaderModifier",
                            "RequestMirror",
                            "RequestRedirect",
                            "URLRewrite",
                            "ExtensionRef",
                            "CORS"};
const Names kFilterConfigFields = {"requestHeaderModifier",
                                   "responseHeaderModifier",
                                   "requestMirror",
                                   "requestRedirect",
                                   "urlRewrite",
                                   "extensionRef",
                                   "cors"};
// A filter's fields: its type and the field of each type's settings.
Names with_type(const Names& config_fields) {
  Names out = {"type"};
  out.insert(out.end(), config_fields.begin(), config_fields.end());
  return out;
}
const Names kFilterFields = with_type(kFilterConfigFields);
const Names kGrpcRuleFields = {"name", "matches", "filters", "backendRefs"};
const Names kGrpcFilterTypes = {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                                "ExtensionRef"};
const Names kGrpcFilterFields = {"type", "requestHeaderModifier", "responseHeaderModifier", "requestMirror",
                                 "extensionRef"};

// What differs between the two kinds of route.
struct RouteKind {
  std::string_view name;  // "HTTPRoute"
  const Names& rule_fields;
  const Names& filter_types;
  const Names& filter_fields;
};
const RouteKind kHttpRoute = {"HTTPRoute", kRuleFields, kFilterTypes, kFilterFields};
const RouteKind kGrpcRoute = {"GRPCRoute", kGrpcRuleFields, kGrpcFilterTypes, kGrpcFilterFields};

// What a rule's matches allow its filters to do: ReplacePrefixMatch needs
// exactly one match, of type PathPrefix, to know which prefix it replaces.
struct RuleContext {
  bool single_prefix_match = true;
};

struct FilterSummary {
  std::optional<size_t> redirect_index;
  size_t count = 0;  // filters in the list
};

bool has_control_characters(std::string_view text) {
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return true;
  }
  return false;
}

// A gRPC service ("package.Service", `dotted`) or method name: letters,
// digits and '_', not starting with a digit.
std::optional<std::string> check_grpc_name(std::string_view name, bool dotted) {
  const char* shape =
      dotted ? "a gRPC service name such as \"shop.v1.Cart\"" : "a gRPC method name such as \"Get\"";
  if (name.empty() || name.size() > 1024) return "must be " + std::string(shape) + ", 1 to 1024 characters";
  bool start = true;
  for (char c : name) {
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (dotted && c == '.' && !start) {
      start = true;
      continue;
    }
    if (!letter && !(digit && !start)) return quote(name) + " is not " + shape;
    start = false;
  }
  if (start) return quote(name) + " is not " + shape;
  return std::nullopt;
}

void check_subset_name(const MapReader& ref, const std::string& name) {
  size_t slash = name.find('/');
  if (slash == std::string::npos) {
    ref.error("name", quote(name) +
                          " is not a subset reference: write \"<service>/<subset>\", e.g. "
                          "\"reviews/v2\"");
    return;
  }
  if (auto problem = check_dns_label(name.substr(0, slash))) {
    ref.error("name", "the service part of " + quote(name) + ": " + *problem);
  }
  if (auto problem = check_dns_label(name.substr(slash + 1))) {
    ref.error("name", "the subset part of " + quote(name) + ": " + *problem);
  }
}

// A Kubernetes kind name: a letter, then letters, digits and '-', at most 63.
std::optional<std::string> check_kind_name(std::string_view kind) {
  bool ok = !kind.empty() && kind.size() <= 63 && std::isalpha(static_cast<unsigned char>(kind.front())) &&
            kind.back() != '-';
  for (char c : kind) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-');
  if (ok) return std::nullopt;
  return quote(kind) + " is not a kind name: a letter, then letters, digits and '-', at most 63 characters";
}

// An API group: "" (the core group) or a DNS subdomain.
std::optional<std::string> check_group_name(std::string_view group) {
  if (group.empty()) return std::nullopt;
  if (check_dns_subdomain(group)) return quote(group) + " is not an API group: \"\" or a DNS subdomain";
  return std::nullopt;
}

// group, kind, name, namespace and port of a backend: a Service (core
// group), a Subset (group trellis.dev), or any other kind, which the Gateway
// API says to accept and answer with 500 for its share (ResolvedRefs False,
// reason InvalidKind: `trellis get` and `trellis check` show it).
void check_backend_object(const MapReader& ref) {
  std::optional<std::string> group = std::string();
  if (ref.has("group")) group = ref.string("group");
  std::optional<std::string> kind = std::string("Service");
  if (ref.has("kind")) kind = ref.string("kind");
  std::optional<std::string> name = ref.string("name", Need::kRequired);
  if (std::optional<std::string> ns = ref.string("namespace")) {
    if (auto problem = check_dns_label(*ns)) ref.error("namespace", *problem);
  }
  ref.integer("port", 1, 65535);
  if (!kind || !group) return;
  if (auto problem = check_group_name(*group)) ref.error("group", *problem);
  if (auto problem = check_kind_name(*kind)) ref.error("kind", *problem);
  const bool service = group->empty() && *kind == "Service";
  const bool subset = *group == kTrellisGroup && *kind == "Subset";
  if (service) {
    if (name) {
      if (auto problem = check_dns_label(*name)) ref.error("name", *problem);
    }
  } else if (subset) {
    if (name) check_subset_name(ref, *name);
  } else if (name && (name->empty() || name->size() > 253)) {
    ref.error("name", "must be 1 to 253 characters");
  }
  if ((service || subset) && !ref.has("port")) {
    ref.error("port", "required field is missing: the port to send to");
  }
}

// The Gateway API's defaults make a parentRef without kind a Gateway (group
// gateway.networking.k8s.io). Trellis runs no Gateways, so such a route
// would carry no traffic: it is refused rather than stored to do nothing.
// A mesh route names its Service in full: group "" and kind Service.
void check_parent_kind(const MapReader& ref, const RouteKind& route_kind) {
  std::optional<std::string> group = std::string(kGatewayGroup);
  if (ref.has("group")) group = ref.string("group");
  std::optional<std::string> kind = std::string("Gateway");
  if (ref.has("kind")) kind = ref.string("kind");
  if (!group || !kind) return;
  const std::string article = route_kind.name == "HTTPRoute" ? "an " : "a ";
  if (*kind == "Gateway" && (*group == kGatewayGroup)) {
    std::string what = ref.has("kind")
                           ? "kind Gateway"
                           : "a parentRef without kind names a Gateway (the Gateway API's default)";
    ref.error("kind", what + ", and Trellis runs no Gateways: in the mesh " + article +
                          std::string(route_kind.name) +
                          " attaches to a Service; write kind: Service and group: \"\"");
    return;
  }
  if (*kind != "Service") {
    ref.error("kind", quote(*kind) + " is not supported: in the mesh " + article +
                          std::string(route_kind.name) + " attaches to a Service (kind Service, group \"\")" +
                          did_you_mean(*kind, {"Service"}));
    return;
  }
  if (!ref.has("group")) {
    ref.error("group", "required for kind Service: must be \"\" (the core group); left out, it is \"" +
                           std::string(kGatewayGroup) + "\", where no Service is");
  } else if (!group->empty()) {
    ref.error("group", "must be \"\" for kind Service (the core group)");
  }
}

void check_parent_refs(Checker& checker, const MapReader& spec, const RouteKind& route_kind) {
  struct Reference {
    std::string path;
    bool narrowed;        // by port or sectionName
    std::string section;  // "port 80", "sectionName http", ...
  };
  std::map<std::string, std::vector<Reference>> by_service;
  for (const Item& item : spec.list("parentRefs", 1, kMaxParentRefs, Need::kRequired)) {
    MapReader ref = checker.map(*item.json, item.path, kParentRefFields);
    if (!ref.ok()) continue;
    check_parent_kind(ref, route_kind);
    std::optional<std::string> ns = ref.string("namespace");
    if (ns) {
      if (auto problem = check_dns_label(*ns)) ref.error("namespace", *problem);
    }
    std::optional<std::string> name = ref.string("name", Need::kRequired);
    if (name) {
      if (auto problem = check_dns_label(*name)) ref.error("name", *problem);
    }
    std::optional<std::string> section = ref.string("sectionName");
    if (section) {
      if (auto problem = check_dns_label(*section)) ref.error("sectionName", *problem);
    }
    std::optional<int64_t> port = ref.integer("port", 1, 65535);
    if (!name) continue;
    std::string key;
    if (section) key = "sectionName " + quote(*section);
    if (port) key += (key.empty() ? "" : " and ") + ("port " + std::to_string(*port));
    by_service[ns.value_or("") + "/" + *name].push_back(
        {item.path, ref.has("sectionName") || ref.has("port"), key});
  }
  // The Gateway API's rule: one Service may be a parent several times only
  // for distinct ports (or port names).
  for (const auto& [service, refs] : by_service) {
    if (refs.size() < 2) continue;
    std::set<std::string> sections;
    for (const Reference& r : refs) {
      if (!r.narrowed) {
        checker.error(r.path,
                      "this Service is referenced more than once: each reference to it "
                      "must set port or sectionName");
      } else if (!sections.insert(r.section).second) {
        checker.error(r.path, "duplicate reference to the same Service with " + r.section);
      }
    }
  }
}

void check_query_param_matches(Checker& checker, const MapReader& match) {
  std::set<std::string> seen;
  for (const Item& item : match.list("queryParams", 0, kMaxQueryParamMatches)) {
    MapReader param = checker.map(*item.json, item.path, {"type", "name", "value"});
    if (!param.ok()) continue;
    std::optional<std::string> type = std::string("Exact");
    if (param.has("type")) type = param.enumeration("type", {"Exact", "RegularExpression"});
    if (std::optional<std::string> name = param.string("name", Need::kRequired)) {
      if (auto problem = check_token(*name, "query parameter name")) {
        param.error("name", *problem);
      } else if (!seen.insert(*name).second) {
        param.error("name", "query parameter " + quote(*name) + " is already matched in this list");
      }
    }
    std::optional<std::string> value = param.string("value", Need::kRequired);
    if (!value || !type) continue;
    if (value->empty() || value->size() > kMaxQueryValue) {
      param.error("value", "must be 1 to " + std::to_string(kMaxQueryValue) + " characters");
    } else if (*type == "RegularExpression") {
      if (auto problem = check_regex(*value)) param.error("value", *problem);
    }
  }
}

// Returns the match's path type in force, or nothing when it is invalid.
std::optional<std::string> check_match(Checker& checker, const Item& item) {
  MapReader match = checker.map(*item.json, item.path, kMatchFields);
  if (!match.ok()) return std::nullopt;
  std::optional<std::string> type = std::string("PathPrefix");
  if (const Json* path = match.raw("path")) {
    type = check_path_match(checker, *path, match.path_of("path"), /*allow_regex=*/true);
  }
  check_header_matches(checker, match, "headers");
  check_query_param_matches(checker, match);
  match.enumeration("method", kHttpMethods);
  return type;
}

void check_header_modifier(Checker& checker, const Json& value, const std::string& path) {
  MapReader modifier = checker.map(value, path, {"set", "add", "remove"});
  if (!modifier.ok()) return;
  for (std::string_view op : {"set", "add"}) {
    std::set<std::string> seen;
    for (const Item& item : modifier.list(op, 0, kMaxHeaderEdits)) {
      MapReader header = checker.map(*item.json, item.path, {"name", "value"});
      if (!header.ok()) continue;
      if (std::optional<std::string> name = header.string("name", Need::kRequired)) {
        if (auto problem = check_token(*name, "header name")) {
          header.error("name", *problem);
        } else if (ascii_lower(*name) == kServicePortHeader) {
          header.error("name", quote(*name) + " is the mesh's own header (the Service port of a request)");
        } else if (!seen.insert(ascii_lower(*name)).second) {
          header.error("name", "header " + quote(*name) + " is already listed in " + std::string(op));
        }
      }
      if (std::optional<std::string> text = header.string("value", Need::kRequired)) {
        if (text->empty() || text->size() > kMaxHeaderValue) {
          header.error("value", "must be 1 to " + std::to_string(kMaxHeaderValue) + " characters");
        } else if (has_control_characters(*text)) {
          header.error("value", "must not contain control characters such as line breaks");
        }
      }
    }
  }
  std::set<std::string> removed;
  for (const Item& item : modifier.list("remove", 0, kMaxHeaderEdits)) {
    std::optional<std::string> name = checker.string(*item.json, item.path);
    if (!name) continue;
    if (auto problem = check_token(*name, "header name")) {
      checker.error(item.path, *problem);
    } else if (ascii_lower(*name) == kServicePortHeader) {
      checker.error(item.path, quote(*name) + " is the mesh's own header (the Service port of a request)");
    } else if (!removed.insert(ascii_lower(*name)).second) {
      checker.error(item.path, "header " + quote(*name) + " is already listed in remove");
    }
  }
}

void check_path_modifier(const MapReader& parent, const RuleContext& rule) {
  std::optional<MapReader> modifier = parent.map("path", {"type", "replaceFullPath", "replacePrefixMatch"});
  if (!modifier) return;
  std::optional<std::string> type =
      modifier->enumeration("type", {"ReplaceFullPath", "ReplacePrefixMatch"}, Need::kRequired);
  if (!type) return;
  bool full = *type == "ReplaceFullPath";
  std::string_view wanted = full ? "replaceFullPath" : "replacePrefixMatch";
  std::string_view other = full ? "replacePrefixMatch" : "replaceFullPath";
  if (modifier->has(other)) {
    modifier->error(
        other, std::string("only allowed when type is ") + (full ? "ReplacePrefixMatch" : "ReplaceFullPath"));
  }
  if (!modifier->has(wanted)) {
    modifier->error(wanted, "required when type is " + *type);
  } else if (std::optional<std::string> value = modifier->string(wanted)) {
    if (auto problem = check_http_path(*value)) modifier->error(wanted, *problem);
  }
  if (!full && !rule.single_prefix_match) {
    modifier->error("type",
                    "ReplacePrefixMatch needs the rule to have exactly one match, with a "
                    "path of type PathPrefix (the prefix it replaces)");
  }
}

void check_redirect(Checker& checker, const Json& value, const std::string& path, const RuleContext& rule) {
  MapReader redirect = checker.map(value, path, {"scheme", "hostname", "path", "port", "statusCode"});
  if (!redirect.ok()) return;
  redirect.enumeration("scheme", {"http", "https"});
  if (std::optional<std::string> host = redirect.string("hostname")) {
    if (auto problem = check_hostname(*host, /*allow_wildcard=*/false)) {
      redirect.error("hostname", *problem);
    }
  }
  check_path_modifier(redirect, rule);
  redirect.integer("port", 1, 65535);
  std::optional<int64_t> status = redirect.integer("statusCode", INT64_MIN, INT64_MAX);
  if (status && *status != 301 && *status != 302 && *status != 303 && *status != 307 && *status != 308) {
    redirect.error("statusCode", "must be one of 301, 302, 303, 307 or 308");
  }
}

void check_url_rewrite(Checker& checker, const Json& value, const std::string& path,
                       const RuleContext& rule) {
  MapReader rewrite = checker.map(value, path, {"hostname", "path"});
  if (!rewrite.ok()) return;
  if (std::optional<std::string> host = rewrite.string("hostname")) {
    if (auto problem = check_hostname(*host, /*allow_wildcard=*/false)) {
      rewrite.error("hostname", *problem);
    }
  }
  check_path_modifier(rewrite, rule);
}

void check_mirror(Checker& checker, const Json& value, const std::string& path) {
  MapReader mirror = checker.map(value, path, {"backendRef", "percent", "fraction"});
  if (!mirror.ok()) return;
  if (std::optional<MapReader> ref = mirror.map("backendRef", kBackendObjectFields, Need::kRequired)) {
    check_backend_object(*ref);
  }
  mirror.integer("percent", 0, 100);
  if (std::optional<MapReader> fraction = mirror.map("fraction", {"numerator", "denominator"})) {
    std::optional<int64_t> numerator = fraction->integer("numerator", 0, INT32_MAX, Need::kRequired);
    std::optional<int64_t> denominator = fraction->integer("denominator", 1, INT32_MAX);
    if (!fraction->has("denominator")) denominator = 100;
    if (numerator && denominator && *numerator > *denominator) {
      fraction->error("numerator",
                      "must not be greater than the denominator (" + std::to_string(*denominator) + ")");
    }
  }
  if (mirror.has("percent") && mirror.has("fraction")) {
    mirror.error_here("set percent or fraction, not both");
  }
}

// The one extension there is: a FaultInjection in the route's namespace.
void check_extension_ref(Checker& checker, const Json& value, const std::string& path) {
  MapReader ref = checker.map(value, path, {"group", "kind", "name"});
  if (!ref.ok()) return;
  std::optional<std::string> group = ref.string("group", Need::kRequired);
  std::optional<std::string> kind = ref.string("kind", Need::kRequired);
  std::optional<std::string> name = ref.string("name", Need::kRequired);
  if (group && *group != kTrellisGroup) {
    ref.error("group", quote(*group) +
                           " is not a supported extension group: the one extension is kind "
                           "FaultInjection in group \"trellis.dev\"");
  }
  if (kind && *kind != "FaultInjection") {
    ref.error("kind", quote(*kind) +
                          " is not a supported extension: the one extension is kind FaultInjection "
                          "in group \"trellis.dev\"" +
                          did_you_mean(*kind, {"FaultInjection"}));
  }
  if (name) {
    if (auto problem = check_dns_subdomain(*name)) ref.error("name", *problem);
  }
}

// The CORS filter: origins ("*" or scheme://host[:port], the host maybe
// starting with "*"), methods, header names; "*" only alone in a list.
void check_cors(Checker& checker, const Json& value, const std::string& path) {
  MapReader cors = checker.map(
      value, path,
      {"allowOrigins", "allowCredentials", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge"});
  if (!cors.ok()) return;
  auto strings = [&](std::string_view key, size_t max, auto check) {
    std::set<std::string> seen;
    std::vector<Item> items = cors.list(key, 0, max);
    for (const Item& item : items) {
      std::optional<std::string> text = checker.string(*item.json, item.path);
      if (!text) continue;
      if (*text == "*" && items.size() > 1) {
        checker.error(item.path, "\"*\" allows everything: it must be alone in " + std::string(key));
      } else if (*text != "*") {
        if (auto problem = check(*text)) {
          checker.error(item.path, *problem);
          continue;
        }
      }
      if (!seen.insert(*text).second) checker.error(item.path, quote(*text) + " is listed twice");
    }
  };
  strings("allowOrigins", 64, [](const std::string& o) { return policy::check_origin_pattern(o); });
  strings("allowMethods", 9, [](const std::string& m) -> std::optional<std::string> {
    for (std::string_view known : kHttpMethods)
      if (m == known) return std::nullopt;
    return quote(m) + " is not one of " + join_names(kHttpMethods, "or") + ", or \"*\"";
  });
  auto header = [](const std::string& h) { return check_token(h, "header name"); };
  strings("allowHeaders", 64, header);
  strings("exposeHeaders", 64, header);
  std::optional<bool> credentials = cors.boolean("allowCredentials");
  cors.integer("maxAge", 1, 86400);
  if (credentials && *credentials) {
    const Json* expose = cors.raw("exposeHeaders");
    if (expose != nullptr && expose->is_array() && expose->size() == 1 && (*expose)[0] == "*")
      cors.error("exposeHeaders",
                 "\"*\" cannot be used with allowCredentials: browsers then take it as a header's name; list "
                 "the headers");
  }
}

// The filters of a rule or, with `in_backend`, of one backendRef.
FilterSummary check_filters(Checker& checker, const MapReader& parent, const RuleContext& rule,
                            bool in_backend, const RouteKind& route_kind) {
  FilterSummary summary;
  std::map<std::string, size_t> first_of_type;
  std::vector<Item> filters = parent.list("filters", 0, kMaxFilters);
  summary.count = filters.size();
  for (size_t i = 0; i < filters.size(); ++i) {
    MapReader filter = checker.map(*filters[i].json, filters[i].path, route_kind.filter_fields);
    if (!filter.ok()) continue;
    std::optional<std::string> type = filter.enumeration("type", route_kind.filter_types, Need::kRequired);
    if (!type) continue;
    std::string_view config_field;
    for (size_t k = 0; k < kFilterTypes.size(); ++k) {
      if (kFilterTypes[k] == *type) {
        config_field = kFilterConfigFields[k];
      } else if (filter.has(kFilterConfigFields[k])) {
        filter.error(kFilterConfigFields[k], "only allowed when type is " + std::string(kFilterTypes[k]));
      }
    }
    if (in_backend && *type == "CORS") {
      filter.error("type",
                   "CORS is not supported in a backendRef's filters: a preflight is answered before a "
                   "backend is chosen; put it in the rule's filters");
      continue;
    }
    if (*type != "RequestMirror") {
      auto [first, inserted] = first_of_type.emplace(*type, i);
      if (!inserted) {
        filter.error("type", *type + " may appear only once in a filters list (first at filters[" +
                                 std::to_string(first->second) + "])");
      }
      std::string other = *type == "RequestRedirect" ? "URLRewrite" : "RequestRedirect";
      if ((*type == "RequestRedirect" || *type == "URLRewrite") && first_of_type.count(other) > 0) {
        filter.error("type", "a rule may have a RequestRedirect or a URLRewrite filter, not both");
      }
    }
    const Json* config = filter.raw(config_field);
    if (config == nullptr) {
      filter.error(config_field, "required when type is " + *type);
      continue;
    }
    std::string config_path = filter.path_of(config_field);
    if (*type == "RequestHeaderModifier" || *type == "ResponseHeaderModifier") {
      check_header_modifier(checker, *config, config_path);
    } else if (*type == "RequestRedirect") {
      check_redirect(checker, *config, config_path, rule);
      summary.redirect_index = i;
    } else if (*type == "URLRewrite") {
      check_url_rewrite(checker, *config, config_path, rule);
    } else if (*type == "ExtensionRef") {
      check_extension_ref(checker, *config, config_path);
    } else if (*type == "CORS") {
      check_cors(checker, *config, config_path);
    } else {
      check_mirror(checker, *config, config_path);
    }
  }
  return summary;
}

void check_backend_ref(Checker& checker, const Item& item, const RuleContext& rule,
                       const RouteKind& route_kind) {
  MapReader ref = checker.map(*item.json, item.path, kBackendRefFields);
  if (!ref.ok()) return;
  check_backend_object(ref);
  ref.integer("weight", 0, kMaxWeight);
  FilterSummary filters = check_filters(checker, ref, rule, /*in_backend=*/true, route_kind);
  if (filters.redirect_index && filters.count > 1) {
    checker.error(item_path(ref.path_of("filters"), *filters.redirect_index) + ".type",
                  "a RequestRedirect answers this backend's share, so the backend's other filters would "
                  "never act: remove them");
  }
}

void check_timeouts(const MapReader& rule) {
  std::optional<MapReader> timeouts = rule.map("timeouts", {"request", "backendRequest"});
  if (!timeouts) return;
  std::optional<int64_t> request = timeouts->duration("request");
  std::optional<int64_t> backend = timeouts->duration("backendRequest");
  // "0s" turns a timeout off, so a zero request timeout bounds nothing.
  if (request && backend && *request != 0 && *backend > *request) {
    timeouts->error("backendRequest",
                    "must not be longer than request (" + timeouts->raw("request")->get<std::string>() + ")");
  }
}

// A GRPCRoute match: a method (service and/or method name, exact or as
// regular expressions) and headers.
void check_grpc_match(Checker& checker, const Item& item) {
  MapReader match = checker.map(*item.json, item.path, {"method", "headers"});
  if (!match.ok()) return;
  if (std::optional<MapReader> method = match.map("method", {"type", "service", "method"})) {
    std::optional<std::string> type = std::string("Exact");
    if (method->has("type")) type = method->enumeration("type", {"Exact", "RegularExpression"});
    std::optional<std::string> service = method->string("service");
    std::optional<std::string> name = method->string("method");
    if (!method->has("service") && !method->has("method")) {
      method->error_here("set service, method or both");
    } else if (type && *type == "Exact") {
      if (service) {
        if (auto problem = check_grpc_name(*service, /*dotted=*/true)) method->error("service", *problem);
      }
      if (name) {
        if (auto problem = check_grpc_name(*name, /*dotted=*/false)) method->error("method", *problem);
      }
    } else if (type) {
      for (const auto& [field, value] : {std::pair{"service", service}, std::pair{"method", name}}) {
        if (!value) continue;
        if (value->empty() || value->size() > 1024) {
          method->error(field, "must be 1 to 1024 characters");
        } else if (auto problem = check_regex(*value)) {
          method->error(field, *problem);
        }
      }
    }
  }
  check_header_matches(checker, match, "headers");
}

void check_rule(Checker& checker, const Item& item, const RouteKind& route_kind) {
  MapReader rule = checker.map(*item.json, item.path, route_kind.rule_fields);
  if (!rule.ok()) return;
  std::vector<Item> matches = rule.list("matches", 0, kMaxMatches);
  std::vector<std::optional<std::string>> path_types;
  path_types.reserve(matches.size());
  for (const Item& match : matches) {
    if (route_kind.name == "GRPCRoute") {
      check_grpc_match(checker, match);
    } else {
      path_types.push_back(check_match(checker, match));
    }
  }
  // No matches means the default one, a PathPrefix "/". An invalid path type
  // was reported already and is not held against the filters too.
  RuleContext context;
  context.single_prefix_match =
      matches.empty() || (path_types.size() == 1 && (!path_types[0] || *path_types[0] == "PathPrefix"));
  FilterSummary filters = check_filters(checker, rule, context, /*in_backend=*/false, route_kind);
  std::vector<Item> backends = rule.list("backendRefs", 0, kMaxBackendRefs);
  for (const Item& backend : backends) check_backend_ref(checker, backend, context, route_kind);
  if (filters.redirect_index && !backends.empty()) {
    checker.error(item_path(rule.path_of("filters"), *filters.redirect_index),
                  "a rule with a RequestRedirect filter must have no backendRefs: the redirect "
                  "answers the request");
  }
  check_timeouts(rule);
}

const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

void validate_route(Checker& checker, const Json& spec_json, const RouteKind& route_kind) {
  MapReader spec = checker.map(spec_json, "spec", {"parentRefs", "hostnames", "rules"});
  if (!spec.ok()) return;
  check_parent_refs(checker, spec, route_kind);
  for (const Item& item : spec.list("hostnames", 0, kMaxHostnames)) {
    std::optional<std::string> host = checker.string(*item.json, item.path);
    if (!host) continue;
    if (auto problem = check_hostname(*host, /*allow_wildcard=*/true)) checker.error(item.path, *problem);
  }
  std::map<std::string, std::string> rule_names;  // name -> the rule's path
  size_t matches = 0;
  for (const Item& rule : spec.list("rules", 0, kMaxRules)) {
    check_rule(checker, rule, route_kind);
    const Json* name = member(*rule.json, "name");
    if (name != nullptr && name->is_string()) {
      const std::string& text = name->get_ref<const std::string&>();
      if (auto problem = check_dns_subdomain(text)) {
        checker.error(rule.path + ".name", *problem);
      } else if (auto [first, fresh] = rule_names.emplace(text, rule.path); !fresh) {
        checker.error(rule.path + ".name",
                      "rule name " + quote(text) + " is already used by " + first->second);
      }
    } else if (name != nullptr) {
      checker.error(rule.path + ".name", "expected a string");
    }
    const Json* list = member(*rule.json, "matches");
    if (list != nullptr && list->is_array()) matches += list->size();
  }
  if (matches > kMaxMatchesPerRoute) {
    spec.error("rules", "has " + std::to_string(matches) + " matches in all: at most " +
                            std::to_string(kMaxMatchesPerRoute) + " over all rules");
  }
}

}  // namespace

void validate_http_route(Checker& checker, const Json& spec) { validate_route(checker, spec, kHttpRoute); }

void validate_grpc_route(Checker& checker, const Json& spec) { validate_route(checker, spec, kGrpcRoute); }

}  // namespace trellis::control
