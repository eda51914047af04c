#include "control/resources/regex_syntax.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cwchar>
#include <exception>
#include <regex>
#include <vector>

namespace trellis::control {
namespace {

constexpr int64_t kMaxRepeat = 1000;  // RE2's limit on {n,m}, also on nested products
// Steps once repetitions are expanded. RE2 refuses programs past its memory
// budget; refusing early keeps that from surfacing as a rejected push.
constexpr int64_t kMaxExpandedSize = 10000;
constexpr size_t kMaxGroupDepth = 100;

const std::string kInvalid = "invalid regular expression: ";
const std::string kLinearTime = " (the data plane matches regular expressions in linear time, RE2 syntax)";

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_word(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_octal(char c) { return c >= '0' && c <= '7'; }
unsigned hex_value(char c) {
  if (is_digit(c)) return static_cast<unsigned>(c - '0');
  return static_cast<unsigned>((c | 0x20) - 'a' + 10);
}

// A code point as ECMAScript class text for std::wregex: escaped when ASCII,
// so that "]", "-" or "\\" written as \x5D stay literal.
std::wstring wide_code_point(unsigned value) {
  if (value >= 0x80) return std::wstring(1, static_cast<wchar_t>(value));
  wchar_t buffer[8];
  std::swprintf(buffer, 8, L"\\x%02X", value);
  return buffer;
}

std::wstring widen_ascii(std::string_view text) { return std::wstring(text.begin(), text.end()); }

// Length of the UTF-8 sequence at text[at], and its code point; 0 when invalid.
size_t decode_utf8(std::string_view text, size_t at, unsigned& code_point) {
  unsigned char lead = static_cast<unsigned char>(text[at]);
  size_t length = lead < 0x80           ? 1
                  : (lead >> 5) == 0x6  ? 2
                  : (lead >> 4) == 0xE  ? 3
                  : (lead >> 3) == 0x1E ? 4
                                        : 0;
  if (length == 0 || at + length > text.size()) return 0;
  code_point = length == 1 ? lead : lead & (0x7F >> length);
  for (size_t k = 1; k < length; ++k) {
    unsigned char next = static_cast<unsigned char>(text[at + k]);
    if ((next >> 6) != 0x2) return 0;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  static constexpr unsigned kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kMinimum[length] || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

std::string class_error_reason(std::regex_constants::error_type code) {
  switch (code) {
    case std::regex_constants::error_range:
      return "invalid character range";
    case std::regex_constants::error_ctype:
      return "unknown character class name";
    case std::regex_constants::error_collate:  // what libstdc++ reports for [[:nosuch:]]
      return "unknown character class name";
    case std::regex_constants::error_escape:
      return "invalid escape sequence";
    default:
      return "invalid character class";
  }
}

// One escape sequence starting at text[at] (a backslash). Sets `length`, and
// `ecma` to the same thing as ECMAScript class text.
std::optional<std::string> read_escape(std::string_view text, size_t at, bool in_class, size_t& length,
                                       std::wstring& ecma) {
  if (at + 1 >= text.size()) return kInvalid + "ends with a lone '\\'";
  char c = text[at + 1];
  length = 2;
  ecma = widen_ascii(text.substr(at, 2));
  if (c >= '1' && c <= '9') {
    return "backreferences (\\" + std::string(1, c) + ") are not supported" + kLinearTime;
  }
  if (c == '0') {  // octal, up to three digits
    unsigned value = 0;
    while (length < 4 && at + length < text.size() && is_octal(text[at + length])) {
      value = value * 8 + static_cast<unsigned>(text[at + length] - '0');
      ++length;
    }
    ecma = wide_code_point(value);
    return std::nullopt;
  }
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x80) return kInvalid + "a backslash before a non-ASCII character";
  if (!is_word(c)) return std::nullopt;  // escaped punctuation stands for itself
  if (std::strchr("dDsSwWftnrv", c) != nullptr) return std::nullopt;
  if (c == 'a') {
    ecma = L"\\x07";
    return std::nullopt;
  }
  // Assertions, any byte, and \Q (its literal text is skipped by the caller).
  if (!in_class && std::strchr("bBAzCQ", c) != nullptr) return std::nullopt;
  if (c == 'p' || c == 'P') {  // \pL or \p{Greek}: a Unicode class
    if (at + 2 >= text.size()) return kInvalid + "\\p needs a class, e.g. \\pL or \\p{Greek}";
    if (text[at + 2] == '{') {
      size_t end = text.find('}', at + 3);
      if (end == std::string_view::npos || end == at + 3) {
        return kInvalid + "\\p{ without a class name and '}'";
      }
      length = end + 1 - at;
    } else {
      length = 3;
    }
    ecma = L"\\w";  // stands in for the class in the range check
    return std::nullopt;
  }
  if (c == 'x') {  // \xHH or \x{HHHH}
    unsigned value = 0;
    if (at + 2 < text.size() && text[at + 2] == '{') {
      size_t end = text.find('}', at + 3);
      if (end == std::string_view::npos || end == at + 3 || end - (at + 3) > 8) {
        return kInvalid + "\\x{ needs hex digits and '}'";
      }
      for (size_t i = at + 3; i < end; ++i) {
        if (!is_hex(text[i])) return kInvalid + "\\x{ needs hex digits and '}'";
        value = std::min(value * 16 + hex_value(text[i]), 0x110000u);
      }
      length = end + 1 - at;
    } else {
      if (at + 3 >= text.size() || !is_hex(text[at + 2]) || !is_hex(text[at + 3])) {
        return kInvalid + "\\x needs two hex digits, e.g. \\x7F";
      }
      value = hex_value(text[at + 2]) * 16 + hex_value(text[at + 3]);
      length = 4;
    }
    ecma = wide_code_point(value);
    return std::nullopt;
  }
  return kInvalid + "unknown escape \\" + std::string(1, c);
}

// A bracket expression starting at text[0] ('['). Sets its length. Checked
// with std::wregex so that ranges compare code points, as RE2's do.
std::optional<std::string> check_class(std::string_view text, size_t& length) {
  std::wstring ecma = L"[";
  size_t i = 1;
  if (i < text.size() && text[i] == '^') ecma += static_cast<wchar_t>(text[i++]);
  if (i < text.size() && text[i] == ']') {  // a leading ']' is literal in RE2, not in ECMAScript
    ecma += L"\\]";
    ++i;
  }
  while (i < text.size() && text[i] != ']') {
    if (text[i] == '\\') {
      size_t escape_length = 0;
      std::wstring escape;
      if (auto problem = read_escape(text, i, /*in_class=*/true, escape_length, escape)) return problem;
      ecma += escape;
      i += escape_length;
    } else if (text.substr(i).starts_with("[:")) {
      size_t end = text.find(":]", i + 2);
      if (end == std::string_view::npos) {
        ecma += L"\\[";
        ++i;
        continue;
      }
      std::string name(text.substr(i + 2, end - (i + 2)));
      if (name.starts_with("^")) name.erase(0, 1);  // RE2's negated form; the name is what matters
      // RE2 knows these two; ECMAScript does not.
      if (name == "ascii") {
        ecma += L"\\x00-\\x7F";
      } else if (name == "word") {
        ecma += L"\\w";
      } else {
        ecma += L"[:" + widen_ascii(name) + L":]";
      }
      i = end + 2;
    } else if (text[i] == '[') {
      ecma += L"\\[";
      ++i;
    } else {
      unsigned code_point = 0;
      size_t char_length = decode_utf8(text, i, code_point);  // valid: checked up front
      ecma += static_cast<wchar_t>(code_point);
      i += std::max<size_t>(char_length, 1);
    }
  }
  if (i >= text.size()) return kInvalid + "'[' without a matching ']'";
  ecma += L']';
  length = i + 1;
  try {
    std::wregex compiled(ecma, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return kInvalid + class_error_reason(e.code()) + " in " + std::string(text.substr(0, length));
  } catch (const std::exception&) {
    return kInvalid + "invalid character class " + std::string(text.substr(0, length));
  }
  return std::nullopt;
}

// Parses "{n}", "{n,}" or "{n,m}" at text[0]; returns its length, or 0 when
// the brace starts no repetition (RE2 then reads it as a literal '{').
size_t parse_repetition(std::string_view text, int64_t& low, int64_t& high) {
  size_t i = 1;
  auto read_number = [&](int64_t& out) {
    size_t start = i;
    out = 0;
    while (i < text.size() && is_digit(text[i])) {
      out = std::min<int64_t>(out * 10 + (text[i] - '0'), kMaxRepeat * 10);
      ++i;
    }
    return i > start;
  };
  if (!read_number(low)) return 0;
  high = low;
  if (i < text.size() && text[i] == ',') {
    ++i;
    if (!read_number(high)) high = -1;  // open-ended
  }
  return (i < text.size() && text[i] == '}') ? i + 1 : 0;
}

struct Frame {
  int64_t size = 0;     // expanded steps
  int64_t product = 1;  // largest product of nested repetition counts
};

}  // namespace

std::optional<std::string> check_regex(std::string_view text) {
  if (text.empty()) return "must not be empty";
  for (size_t at = 0; at < text.size();) {
    unsigned code_point = 0;
    size_t length = decode_utf8(text, at, code_point);
    if (length == 0) return "must be valid UTF-8";
    at += length;
  }
  const std::string kNothingToRepeat =
      kInvalid + "a repetition (*, +, ? or {n}) with nothing before it to repeat";
  const std::string kDoubleRepeat = kInvalid + "a repetition right after another one (as in \"a**\")";
  const std::string kTooLarge = kInvalid + "too large once its repetitions are expanded";

  // What the next repetition operator would follow.
  enum class After { kNothing, kAtom, kRepeat, kLazyRepeat };
  After after = After::kNothing;
  std::vector<Frame> frames(1);
  Frame last;  // the last atom: what a repetition applies to
  auto add_atom = [&](int64_t size, int64_t product) {
    frames.back().size += size;
    frames.back().product = std::max(frames.back().product, product);
    last = {size, product};
    after = After::kAtom;
    return frames.back().size <= kMaxExpandedSize;
  };

  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '\\') {
      size_t length = 0;
      std::wstring unused;
      if (auto problem = read_escape(text, i, /*in_class=*/false, length, unused)) return problem;
      if (text[i + 1] == 'Q') {  // literal text up to \E
        size_t end = text.find("\\E", i + 2);
        length = (end == std::string_view::npos) ? text.size() - i : end + 2 - i;
      }
      if (!add_atom(1, 1)) return kTooLarge;
      i += length;
    } else if (c == '[') {
      size_t length = 0;
      if (auto problem = check_class(text.substr(i), length)) return problem;
      if (!add_atom(1, 1)) return kTooLarge;
      i += length;
    } else if (c == '(') {
      std::string_view rest = text.substr(i + 1);
      size_t length = 1;
      if (rest.starts_with("?")) {
        rest.remove_prefix(1);
        if (rest.starts_with("=") || rest.starts_with("!")) {
          return "lookahead ((?=...) and (?!...)) is not supported" + kLinearTime;
        }
        if (rest.starts_with("<=") || rest.starts_with("<!")) {
          return "lookbehind ((?<=...) and (?<!...)) is not supported" + kLinearTime;
        }
        if (rest.starts_with("P=") || rest.starts_with("P>")) {
          return "backreferences ((?P=name)) are not supported" + kLinearTime;
        }
        if (rest.starts_with("P<") || rest.starts_with("<")) {  // a named group
          size_t open = rest.find('<');
          size_t close = rest.find('>', open);
          if (close == std::string_view::npos) return kInvalid + "a group name without its closing '>'";
          std::string_view name = rest.substr(open + 1, close - open - 1);
          if (name.empty() || !std::all_of(name.begin(), name.end(), is_word)) {
            return kInvalid + "invalid group name \"" + std::string(name) + "\"";
          }
          length = 2 + close + 1;
        } else {
          size_t flags = 0;
          while (flags < rest.size() && std::strchr("imsU-", rest[flags]) != nullptr) ++flags;
          if (flags > 0 && flags < rest.size() && rest[flags] == ')') {
            // A flag setting such as (?i) changes how text matches, never
            // whether the pattern is valid, and takes nothing to repeat.
            i += 2 + flags + 1;
            continue;
          }
          if (flags >= rest.size() || rest[flags] != ':') {
            return kInvalid + "unknown group syntax \"(?" +
                   std::string(rest.substr(0, std::min(flags + 1, rest.size()))) + "\"";
          }
          length = 2 + flags + 1;  // (?:...) or (?i:...)
        }
      }
      frames.push_back({});
      if (frames.size() > kMaxGroupDepth) return kInvalid + "groups nested more than 100 deep";
      after = After::kNothing;
      i += length;
    } else if (c == ')') {
      if (frames.size() == 1) return kInvalid + "')' without a matching '('";
      Frame inner = frames.back();
      frames.pop_back();
      if (!add_atom(inner.size, inner.product)) return kTooLarge;
      ++i;
    } else if (c == '|') {
      after = After::kNothing;
      ++i;
    } else if (c == '*' || c == '+' || c == '?') {
      if (after == After::kNothing) return kNothingToRepeat;
      if (after == After::kRepeat && c == '?') {
        after = After::kLazyRepeat;  // a non-greedy repetition, as in "a*?"
      } else if (after != After::kAtom) {
        return kDoubleRepeat;
      } else {
        after = After::kRepeat;
      }
      ++i;
    } else if (c == '{') {
      int64_t low = 0;
      int64_t high = 0;
      size_t length = parse_repetition(text.substr(i), low, high);
      if (length == 0) {  // a literal brace
        if (!add_atom(1, 1)) return kTooLarge;
        ++i;
        continue;
      }
      std::string operator_text(text.substr(i, length));
      if (after == After::kNothing) return kNothingToRepeat;
      if (after != After::kAtom) return kDoubleRepeat;
      if (low > kMaxRepeat || high > kMaxRepeat) {
        return "repetition counts above 1000 are not supported (" + operator_text + ")";
      }
      if (high >= 0 && high < low) {
        return kInvalid + operator_text + " has its minimum above its maximum";
      }
      int64_t count = std::max<int64_t>(std::max(low, high), 1);
      int64_t product = last.product * count;
      if (product > kMaxRepeat) {
        return "nested repetitions may multiply to at most 1000 (" + operator_text + " makes it " +
               std::to_string(product) + ")";
      }
      frames.back().size += last.size * (count - 1);
      frames.back().product = std::max(frames.back().product, product);
      if (frames.back().size > kMaxExpandedSize) return kTooLarge;
      after = After::kRepeat;
      i += length;
    } else {
      // Literals, '.', and the anchors '^' and '$' (RE2 lets those repeat).
      if (!add_atom(1, 1)) return kTooLarge;
      ++i;
    }
  }
  if (frames.size() > 1) return kInvalid + "'(' without a matching ')'";
  return std::nullopt;
}

}  // namespace trellis::control
