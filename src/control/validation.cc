#include "control/validation.h"

#include <algorithm>

#include "common/duration.h"
#include "control/resources/checker.h"
#include "control/resources/kinds.h"

namespace trellis::control {
namespace {

struct SpecValidator {
  std::string_view kind;
  void (*validate)(Checker&, const Json&);
};

constexpr SpecValidator kValidators[] = {
    {"HTTPRoute", validate_http_route},
    {"GRPCRoute", validate_grpc_route},
    {"DestinationPolicy", validate_destination_policy},
    {"RateLimitPolicy", validate_rate_limit_policy},
    {"AuthorizationPolicy", validate_authorization_policy},
    {"MeshConfig", validate_mesh_config},
    {"FaultInjection", validate_fault_injection},
    {"ReferenceGrant", validate_reference_grant},
};

}  // namespace

std::vector<FieldError> validate_spec(std::string_view kind, const Json& spec) {
  std::vector<FieldError> errors;
  Checker checker(errors);
  for (const SpecValidator& v : kValidators) {
    if (v.kind == kind) {
      v.validate(checker, spec);
      return errors;
    }
  }
  checker.error("kind", "unknown kind " + quote(kind));
  return errors;
}

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  if (!is_gateway_api_duration(text)) return std::nullopt;
  // At most 4 x 99999h: far below parse_duration's limit.
  auto d = parse_duration(text);
  if (!d) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
}

bool is_dns1123_label(std::string_view text) {
  if (text.empty() || text.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(text.front()) || !alnum(text.back())) return false;
  return std::all_of(text.begin(), text.end(), [&](char c) { return alnum(c) || c == '-'; });
}

bool is_dns1123_subdomain(std::string_view text) {
  if (text.empty() || text.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = text.find('.', start);
    std::string_view label = text.substr(start, dot == std::string_view::npos ? text.npos : dot - start);
    // Kubernetes bounds only the whole name here, not each label.
    if (label.empty()) return false;
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!alnum(label.front()) || !alnum(label.back())) return false;
    if (!std::all_of(label.begin(), label.end(), [&](char c) { return alnum(c) || c == '-'; })) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

}  // namespace trellis::control
