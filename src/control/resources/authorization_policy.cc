// AuthorizationPolicy: which clients may call a Service, by mTLS identity,
// namespace or address, and what they may call (methods, paths, ports).
#include "control/resources/common_fields.h"
#include "control/resources/formats.h"
#include "control/resources/kinds.h"

namespace trellis::control {
namespace {

constexpr size_t kMaxEntries = 64;

// An entry that sets nothing would match everything, which is what leaving
// the list out already says; an empty entry is far more likely a mistake.
void require_some(const MapReader& entry, const Names& keys) {
  for (std::string_view key : keys) {
    const Json* value = entry.raw(key);
    if (value != nullptr && !(value->is_array() && value->empty()) && !value->is_null()) return;
  }
  entry.error_here("set at least one of " + join_names(keys));
}

void check_source(Checker& checker, const Item& item) {
  MapReader from = checker.map(*item.json, item.path, {"identities", "namespaces", "ipBlocks"});
  if (!from.ok()) return;
  require_some(from, {"identities", "namespaces", "ipBlocks"});
  for (const Item& id : from.list("identities", 0, kMaxEntries)) {
    std::optional<std::string> text = checker.string(*id.json, id.path);
    if (!text) continue;
    if (auto problem = check_identity_pattern(*text)) checker.error(id.path, *problem);
  }
  for (const Item& ns : from.list("namespaces", 0, kMaxEntries)) {
    std::optional<std::string> text = checker.string(*ns.json, ns.path);
    if (!text) continue;
    if (auto problem = check_dns_label(*text)) checker.error(ns.path, *problem);
  }
  for (const Item& block : from.list("ipBlocks", 0, kMaxEntries)) {
    std::optional<std::string> text = checker.string(*block.json, block.path);
    if (!text) continue;
    if (auto problem = check_cidr(*text)) checker.error(block.path, *problem);
  }
}

std::optional<std::string> check_path_pattern(std::string_view text) {
  size_t star = text.find('*');
  if (star != std::string_view::npos && star + 1 != text.size()) {
    return "'*' is only allowed at the end, as in \"/api/*\"";
  }
  std::string_view path = text.substr(0, star);
  if (path.empty()) return "must start with \"/\"";
  return check_http_path(path);
}

void check_operation(Checker& checker, const Item& item) {
  MapReader to = checker.map(*item.json, item.path, {"methods", "paths", "ports"});
  if (!to.ok()) return;
  require_some(to, {"methods", "paths", "ports"});
  for (const Item& method : to.list("methods", 0, kMaxEntries)) {
    checker.enumeration(*method.json, method.path, kHttpMethods);
  }
  for (const Item& path : to.list("paths", 0, kMaxEntries)) {
    std::optional<std::string> text = checker.string(*path.json, path.path);
    if (!text) continue;
    if (auto problem = check_path_pattern(*text)) checker.error(path.path, *problem);
  }
  for (const Item& port : to.list("ports", 0, kMaxEntries)) {
    checker.integer(*port.json, port.path, 1, 65535);
  }
}

}  // namespace

void validate_authorization_policy(Checker& checker, const Json& spec_json) {
  MapReader spec = checker.map(spec_json, "spec", {"targetRef", "action", "rules"});
  if (!spec.ok()) return;
  check_target_ref(spec, {"Service"});
  spec.enumeration("action", {"ALLOW", "DENY"});
  for (const Item& item : spec.list("rules", 0, kMaxEntries)) {
    MapReader rule = checker.map(*item.json, item.path, {"from", "to"});
    if (!rule.ok()) continue;
    for (const Item& from : rule.list("from", 0, kMaxEntries)) check_source(checker, from);
    for (const Item& to : rule.list("to", 0, kMaxEntries)) check_operation(checker, to);
  }
}

}  // namespace trellis::control
