// Checks that a regular expression in a route or policy is one the data plane
// can run: it is compiled by the data plane's own RE2 wrapper, so what passes
// here compiles there, plus the limits on size and nesting that
// docs/resources.md promises and RE2 does not enforce itself.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace trellis::control {

// Nothing when `text` is acceptable, else the reason, meant to follow the
// field path ("spec.rules[0].matches[0].path.value: ...").
std::optional<std::string> check_regex(std::string_view text);

}  // namespace trellis::control
