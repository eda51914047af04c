// Spec validation for the mesh resource kinds, and the value formats those
// specs share (durations, DNS names). The field-by-field rules are in
// docs/resources.md; the per-kind code is in control/resources/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/resource.h"

namespace trellis::control {

// Checks `spec` against the schema of `kind` (a kind name as in known_kinds(),
// e.g. "HTTPRoute") and returns every problem found, each with its path from
// the document root ("spec.rules[0].matches[1].path.value"). Unknown fields
// and wrong types are errors. An unknown kind gives one error at "kind".
// Never throws.
std::vector<FieldError> validate_spec(std::string_view kind, const Json& spec);

// A duration of a resource, in milliseconds: the project's grammar
// (common/duration.h) in the Gateway API's narrower form, one to four parts,
// each 1-5 digits and a unit h, m, s or ms ("10s", "500ms", "1h30m"), as the
// Gateway API defines its Duration fields. Nullopt otherwise.
std::optional<int64_t> parse_duration_ms(std::string_view text);

// DNS-1123 label: 1-63 of [a-z0-9-], starting and ending with [a-z0-9].
bool is_dns1123_label(std::string_view text);
// DNS-1123 subdomain: labels joined by '.', at most 253 characters.
bool is_dns1123_subdomain(std::string_view text);

}  // namespace trellis::control
