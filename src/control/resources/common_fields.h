// Fields that several kinds share: a policy's targetRef, and the parts of an
// HTTP request match (path, headers, method) used by HTTPRoute and
// RateLimitPolicy.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "control/resources/checker.h"

namespace trellis::control {

extern const Names kHttpMethods;

// spec.targetRef of a policy: {group?, kind, name}, where kind is one of
// `kinds` (Service and/or HTTPRoute) and group, when given, is that kind's
// group. A policy applies in its own namespace, so there is no namespace.
void check_target_ref(const MapReader& spec, const Names& kinds);

// A path match {type, value}; type defaults to PathPrefix, value to "/".
// Returns the type in force, or nothing when it is invalid.
std::optional<std::string> check_path_match(Checker& checker, const Json& value, const std::string& path,
                                            bool allow_regex);

// A list of header matches [{type?, name, value}] under `key`; names may not
// repeat (compared without case).
void check_header_matches(Checker& checker, const MapReader& parent, std::string_view key);

}  // namespace trellis::control
