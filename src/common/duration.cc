#include "common/duration.h"

#include <array>
#include <cstdint>

#include "common/text.h"

namespace trellis {
namespace {

constexpr std::string_view kShape = "expected a duration like \"250ms\", \"1.5s\" or \"1h30m\"";
constexpr std::string_view kUnits = "ns, us, ms, s, m or h";

struct Unit {
  std::string_view name;
  int64_t ns;
};
// Longest names first, so "ms" is not read as "m" then "s".
constexpr std::array<Unit, 7> kUnitTable = {{{"ms", 1'000'000},
                                             {"us", 1'000},
                                             {"\xC2\xB5s", 1'000},  // µs
                                             {"ns", 1},
                                             {"h", 3'600'000'000'000},
                                             {"m", 60'000'000'000},
                                             {"s", 1'000'000'000}}};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string resolution_name(std::chrono::nanoseconds r) {
  switch (r.count()) {
    case 1'000'000:
      return "milliseconds";
    case 1'000'000'000:
      return "seconds";
    case 1'000:
      return "microseconds";
    default:
      return "multiples of " + std::to_string(r.count()) + "ns";
  }
}

}  // namespace

Result<std::chrono::nanoseconds> parse_duration(std::string_view text, const DurationLimits& limits) {
  if (!text.empty() && text.front() == '-') return make_error("must not be negative");
  if (text.empty()) return make_error(std::string(kShape));
  // Exact in nanoseconds; 128 bits leave room for any number of digits that
  // fits under the cap below.
  using Wide = unsigned __int128;
  const Wide cap = static_cast<Wide>(limits.max.count());
  const std::string too_long = "must be at most " + std::string(limits.max_text);
  Wide total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    std::string_view whole = text.substr(start, i - start);
    std::string_view fraction;
    if (i < text.size() && text[i] == '.') {
      size_t f = ++i;
      while (i < text.size() && is_digit(text[i])) ++i;
      fraction = text.substr(f, i - f);
      if (fraction.empty()) whole = {};  // "1." is not a number
    }
    if (whole.empty()) return make_error(std::string(kShape));
    std::string_view rest = text.substr(i);
    if (rest.empty()) return make_error("a unit is required (" + std::string(kUnits) + "), e.g. \"10s\"");
    const Unit* unit = nullptr;
    for (const Unit& u : kUnitTable) {
      if (rest.substr(0, u.name.size()) == u.name) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) {
      size_t end = 0;
      while (end < rest.size() && !is_digit(rest[end])) ++end;
      return make_error("unknown unit " + in_quotes(rest.substr(0, end)) + " (use " + std::string(kUnits) +
                        ")");
    }
    i += unit->name.size();
    // whole x unit + fraction x unit / 10^digits, in nanoseconds.
    while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
    while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
    if (whole.size() > 20) return make_error(too_long);
    Wide w = 0;
    for (char c : whole) w = w * 10 + static_cast<unsigned>(c - '0');
    Wide part = w * static_cast<Wide>(unit->ns);
    if (!fraction.empty()) {
      if (fraction.size() > 15)
        return make_error("must be a whole number of " + resolution_name(limits.resolution));
      Wide f = 0, scale = 1;
      for (char c : fraction) {
        f = f * 10 + static_cast<unsigned>(c - '0');
        scale *= 10;
      }
      Wide ns = f * static_cast<Wide>(unit->ns);
      if (ns % scale != 0)
        return make_error("must be a whole number of " + resolution_name(limits.resolution));
      part += ns / scale;
    }
    total += part;
    if (total > cap) return make_error(too_long);
  }
  auto ns = std::chrono::nanoseconds(static_cast<int64_t>(total));
  if (limits.resolution.count() > 1 && ns.count() % limits.resolution.count() != 0)
    return make_error("must be a whole number of " + resolution_name(limits.resolution));
  return ns;
}

bool is_gateway_api_duration(std::string_view text) {
  // ^([0-9]{1,5}(h|m|s|ms)){1,4}$
  if (text.empty()) return false;
  int parts = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == start || i - start > 5 || i == text.size()) return false;
    if (text.substr(i, 2) == "ms") {
      i += 2;
    } else if (text[i] == 'h' || text[i] == 'm' || text[i] == 's') {
      ++i;
    } else {
      return false;
    }
    if (++parts > 4) return false;
  }
  return true;
}

}  // namespace trellis
