#include "control/resources/regex_syntax.h"

#include <re2/re2.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "policy/route_table.h"

namespace trellis::control {
namespace {

// Beyond what RE2 refuses by itself (docs/resources.md, "Regular
// expressions"): a program this large already costs the data plane more per
// request than a route match should, and deep nesting is only ever a mistake.
constexpr int kMaxProgramSize = 10000;
constexpr size_t kMaxGroupDepth = 100;

const std::string kInvalid = "invalid regular expression: ";
const std::string kLinearTime = " (the data plane matches regular expressions in linear time, RE2 syntax)";

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// The end of the bracket expression that starts at text[at] ('['), in an
// expression RE2 accepted: the index of its closing ']'.
size_t class_end(std::string_view text, size_t at) {
  size_t i = at + 1;
  if (i < text.size() && text[i] == '^') ++i;
  if (i < text.size() && text[i] == ']') ++i;  // a leading ']' is literal
  while (i < text.size() && text[i] != ']') {
    if (text[i] == '\\') {
      i += 2;
    } else if (text.substr(i).starts_with("[:") && text.find(":]", i + 2) != std::string_view::npos) {
      // RE2 reads "[:name:]" as a class name whenever ":]" follows, and
      // refuses unknown names, so in an accepted expression this is one.
      i = text.find(":]", i + 2) + 2;
    } else {
      ++i;
    }
  }
  return i;
}

// How deeply groups nest in an expression RE2 accepted.
size_t group_depth(std::string_view text) {
  size_t depth = 0;
  size_t deepest = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\') {
      if (i + 1 < text.size() && text[i + 1] == 'Q') {  // literal text up to \E
        size_t end = text.find("\\E", i + 2);
        if (end == std::string_view::npos) break;
        i = end + 1;
      } else {
        ++i;  // the escaped character; \x{...} and \p{...} hold no parentheses
      }
    } else if (c == '[') {
      i = class_end(text, i);
    } else if (c == '(') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ')' && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// RE2's reason, with what it means for a user when the construct is one a
// linear-time engine cannot have.
std::string explain(std::string_view text, const std::string& reason) {
  if (reason.starts_with("invalid UTF-8")) return "must be valid UTF-8";
  constexpr std::string_view kEscape = "invalid escape sequence: \\";
  if (reason.starts_with(kEscape) && reason.size() == kEscape.size() + 1) {
    char c = reason.back();
    if (c >= '1' && c <= '9') {
      return "backreferences (\\" + std::string(1, c) + ") are not supported" + kLinearTime;
    }
  }
  constexpr std::string_view kPerl = "invalid perl operator: ";
  if (reason.starts_with(kPerl)) {
    std::string_view op = std::string_view(reason).substr(kPerl.size());
    if (op == "(?=" || op == "(?!") return "lookahead ((?=...) and (?!...)) is not supported" + kLinearTime;
    if (op == "(?<" && (contains(text, "(?<=") || contains(text, "(?<!"))) {
      return "lookbehind ((?<=...) and (?<!...)) is not supported" + kLinearTime;
    }
    if (op == "(?P" && contains(text, "(?P=")) {
      return "backreferences ((?P=name)) are not supported" + kLinearTime;
    }
  }
  constexpr std::string_view kRepeat = "invalid repetition size: ";
  if (reason.starts_with(kRepeat)) {
    // "{n}", "{n,}" or "{n,m}": either a minimum above its maximum, or a
    // count (alone or multiplied through nested repetitions) above 1000.
    std::string_view op = std::string_view(reason).substr(kRepeat.size());
    size_t comma = op.find(',');
    if (comma != std::string_view::npos && comma + 2 < op.size()) {
      int64_t low = std::strtoll(std::string(op.substr(1, comma - 1)).c_str(), nullptr, 10);
      int64_t high = std::strtoll(std::string(op.substr(comma + 1)).c_str(), nullptr, 10);
      if (high < low) return kInvalid + std::string(op) + " has its minimum above its maximum";
    }
    return "repetition counts may be at most 1000, also when nested repetitions multiply (" +
           std::string(op) + ")";
  }
  if (reason.starts_with("pattern too large"))
    return kInvalid + "too large once its repetitions are expanded";
  return kInvalid + reason;
}

}  // namespace

std::optional<std::string> check_regex(std::string_view text) {
  if (text.empty()) return "must not be empty";
  std::string pattern(text);
  auto compiled = policy::Regex::compile(pattern);
  if (!compiled.ok()) return explain(text, compiled.error().message);
  // policy::Regex keeps its RE2 to itself; its size is read from a second
  // compilation with the same (default) options. Validation is not on any
  // request path, and expressions are at most a few KiB.
  RE2::Options options;
  options.set_log_errors(false);
  RE2 sized(pattern, options);
  if (sized.ok() && sized.ProgramSize() > kMaxProgramSize) {
    return kInvalid + "too large once its repetitions are expanded (" + std::to_string(sized.ProgramSize()) +
           " steps, at most " + std::to_string(kMaxProgramSize) + ")";
  }
  if (group_depth(text) > kMaxGroupDepth) {
    return kInvalid + "groups nested more than " + std::to_string(kMaxGroupDepth) + " deep";
  }
  return std::nullopt;
}

}  // namespace trellis::control
