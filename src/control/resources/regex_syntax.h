// Checks that a regular expression in a route or policy is one the data plane
// can run: RE2 syntax, matched in linear time, so no backreferences or
// lookaround, and repetitions bounded as RE2 bounds them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace trellis::control {

// Nothing when `text` is acceptable, else the reason. The structure (groups,
// alternation, repetitions, escapes) is parsed here, following RE2's rules;
// each bracket expression ([a-z], [[:alpha:]]) is compiled with std::regex in
// ECMAScript mode, which stands in for RE2 there: the two agree on ranges and
// class names except for a few RE2-only forms, which are translated first.
// The whole pattern is never handed to std::regex: libstdc++ compiles it
// with one level of recursion per term, so a long pattern could exhaust the
// stack of the thread doing the check.
std::optional<std::string> check_regex(std::string_view text);

}  // namespace trellis::control
