#include "control/resources/common_fields.h"

#include <set>

#include "control/resources/formats.h"
#include "control/resources/regex_syntax.h"

namespace trellis::control {

const Names kHttpMethods = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};

namespace {

constexpr size_t kMaxHeaderMatches = 16;
constexpr size_t kMaxMatchValue = 4096;

struct TargetKind {
  std::string_view kind;
  std::string_view group;
};

constexpr TargetKind kTargetKinds[] = {
    {"Service", ""},
    {"HTTPRoute", "gateway.networking.k8s.io"},
};

}  // namespace

void check_target_ref(const MapReader& spec, const Names& kinds) {
  std::optional<MapReader> ref = spec.map("targetRef", {"group", "kind", "name"}, Need::kRequired);
  if (!ref) return;
  std::optional<std::string> group = ref->string("group");
  std::optional<std::string> kind = ref->enumeration("kind", kinds, Need::kRequired);
  std::optional<std::string> name = ref->string("name", Need::kRequired);
  if (!kind) return;
  for (const TargetKind& t : kTargetKinds) {
    if (t.kind != *kind) continue;
    if (group && *group != t.group) {
      ref->error("group", "must be " + quote(t.group) + " for kind " + *kind +
                              (t.group.empty() ? " (the core group), or left out" : ", or left out"));
    }
    if (name) {
      auto problem = *kind == "Service" ? check_dns_label(*name) : check_dns_subdomain(*name);
      if (problem) ref->error("name", *problem);
    }
  }
}

std::optional<std::string> check_path_match(Checker& checker, const Json& value, const std::string& path,
                                            bool allow_regex) {
  MapReader match = checker.map(value, path, {"type", "value"});
  if (!match.ok()) return std::nullopt;
  const Names types =
      allow_regex ? Names{"Exact", "PathPrefix", "RegularExpression"} : Names{"Exact", "PathPrefix"};
  std::optional<std::string> type = std::string("PathPrefix");
  if (match.has("type")) type = match.enumeration("type", types);
  std::optional<std::string> text = match.string("value");
  if (text && type) {
    std::optional<std::string> problem;
    if (*type == "RegularExpression") {
      problem = text->size() > 1024 ? "must be at most 1024 characters, has " + std::to_string(text->size())
                                    : check_regex(*text);
    } else {
      problem = check_http_path(*text);
    }
    if (problem) match.error("value", *problem);
  }
  return type;
}

void check_header_matches(Checker& checker, const MapReader& parent, std::string_view key) {
  std::set<std::string> seen;
  for (const Item& item : parent.list(key, 0, kMaxHeaderMatches)) {
    MapReader header = checker.map(*item.json, item.path, {"type", "name", "value"});
    if (!header.ok()) continue;
    std::optional<std::string> type = std::string("Exact");
    if (header.has("type")) type = header.enumeration("type", {"Exact", "RegularExpression"});
    if (std::optional<std::string> name = header.string("name", Need::kRequired)) {
      if (auto problem = check_token(*name, "header name")) {
        header.error("name", *problem);
      } else if (!seen.insert(ascii_lower(*name)).second) {
        header.error("name", "header " + quote(*name) + " is already matched in this list");
      }
    }
    std::optional<std::string> value = header.string("value", Need::kRequired);
    if (!value || !type) continue;
    if (value->empty() || value->size() > kMaxMatchValue) {
      header.error("value", "must be 1 to " + std::to_string(kMaxMatchValue) + " characters");
    } else if (*type == "RegularExpression") {
      if (auto problem = check_regex(*value)) header.error("value", *problem);
    }
  }
}

}  // namespace trellis::control
