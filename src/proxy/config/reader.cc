#include "proxy/config/reader.h"

#include <algorithm>
#include <charconv>

#include "common/duration.h"
#include "common/text.h"

namespace trellis::proxy::config_yaml {
namespace {

constexpr std::string_view kDurationShape = "expected a duration like \"250ms\", \"1.5s\" or \"1h30m\"";
constexpr size_t kPercentDecimals = 4;

// A quoted "5" is a string: accepting it as a number would hide a type mistake.
bool is_plain_scalar(const YAML::Node& node) {
  const std::string& tag = node.Tag();
  return node.IsScalar() && tag != "!" && tag != "tag:yaml.org,2002:str";
}

std::string unknown_field_message(std::string_view name, std::initializer_list<std::string_view> allowed) {
  std::string message = "unknown field " + in_quotes(name);
  std::string_view best = closest_match(name, std::span(allowed.begin(), allowed.size()));
  if (!best.empty()) message += " (did you mean " + in_quotes(best) + "?)";
  return message;
}

}  // namespace

std::optional<Located> Fields::get(std::string_view key) const {
  for (const auto& [name, value] : entries_) {
    if (name == key) return value;
  }
  return std::nullopt;
}

std::vector<Located> Fields::present(std::initializer_list<std::string_view> keys) const {
  std::vector<Located> out;
  for (std::string_view key : keys) {
    if (auto v = get(key)) out.push_back(std::move(*v));
  }
  return out;
}

uint32_t per_million(uint32_t numerator, uint32_t denominator) {
  if (denominator == 0) return 0;
  return static_cast<uint32_t>(uint64_t{numerator} * kPerMillion / denominator);
}

void Reader::error(const YAML::Mark& mark, std::string path, std::string message) {
  errors_.push_back(ConfigError{file_, to_one_based(mark.line), to_one_based(mark.column), std::move(path),
                                std::move(message)});
}

bool Reader::check(const Located& at, const Problem& problem) {
  if (!problem) return true;
  error(at, *problem);
  return false;
}

std::optional<Fields> Reader::read_map(const Located& at, std::initializer_list<std::string_view> allowed) {
  Fields fields(at);
  if (at.node.IsNull()) return fields;  // "admin:" with nothing under it means all defaults
  if (!at.node.IsMap()) {
    error(at, "expected a map");
    return std::nullopt;
  }
  for (auto it = at.node.begin(); it != at.node.end(); ++it) {
    YAML::Node key = it->first;
    YAML::Node value = it->second;
    if (!key.IsScalar()) {
      error(key.Mark(), at.path, "field names must be strings");
      continue;
    }
    const std::string& name = key.Scalar();
    std::string path = field_path(at.path, name);
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      error(key.Mark(), path, unknown_field_message(name, allowed));
      continue;
    }
    if (fields.get(name)) {
      error(key.Mark(), path, "duplicate field " + in_quotes(name));
      continue;
    }
    // An empty value's own mark points past it, at whatever follows; its key is where the reader looks.
    YAML::Mark value_mark = value.IsNull() ? key.Mark() : value.Mark();
    fields.add(name, Located{value, std::move(path), value_mark, key.Mark()});
  }
  return fields;
}

std::optional<Located> Reader::required(const Fields& fields, std::string_view key) {
  auto v = fields.get(key);
  if (!v) error(fields.self().mark, field_path(fields.self().path, key), "required field is missing");
  return v;
}

std::optional<std::vector<std::pair<Located, Located>>> Reader::read_scalar_map(const Located& at,
                                                                                std::string_view shape) {
  std::vector<std::pair<Located, Located>> entries;
  if (at.node.IsNull()) return entries;
  if (!at.node.IsMap()) {
    error(at, "expected a map of " + std::string(shape));
    return std::nullopt;
  }
  for (auto it = at.node.begin(); it != at.node.end(); ++it) {
    if (!it->first.IsScalar() || !it->second.IsScalar()) {
      error(it->first.Mark(), at.path, std::string(shape) + " are name: value pairs of strings");
      continue;
    }
    std::string path = field_path(at.path, it->first.Scalar());
    entries.emplace_back(Located{it->first, path, it->first.Mark(), it->first.Mark()},
                         Located{it->second, path, it->second.Mark(), it->first.Mark()});
  }
  return entries;
}

std::optional<std::vector<Located>> Reader::read_list(const Located& at) {
  std::vector<Located> items;
  if (at.node.IsNull()) return items;
  if (!at.node.IsSequence()) {
    error(at, "expected a list");
    return std::nullopt;
  }
  size_t index = 0;
  for (const YAML::Node& item : at.node) {
    items.push_back(Located{item, item_path(at.path, index++), item.Mark(), item.Mark()});
  }
  return items;
}

bool Reader::read_string(const Located& at, std::string& out) {
  if (!at.node.IsScalar()) {
    error(at, "expected a string");
    return false;
  }
  out = at.node.Scalar();
  return true;
}

bool Reader::read_name(const Located& at, std::string& out) {
  return read_string(at, out) && check(at, check_name(out));
}

bool Reader::read_duration(const Located& at, Millis& out) {
  if (!at.node.IsScalar()) {
    error(at, std::string(kDurationShape));
    return false;
  }
  // Consumers add durations to clock readings: the cap keeps them far from
  // overflow while allowing any timeout anyone would mean.
  static const DurationLimits kLimits{std::chrono::hours(kMaxDurationHours), "8760h", Millis(1)};
  auto d = parse_duration(at.node.Scalar(), kLimits);
  if (!d) {
    error(at, d.error().message);
    return false;
  }
  out = std::chrono::duration_cast<Millis>(*d);
  return true;
}

bool Reader::read_positive_duration(const Located& at, Millis& out) {
  Millis value{};
  if (!read_duration(at, value)) return false;
  if (value.count() == 0) {
    error(at, "must be greater than 0");
    return false;
  }
  out = value;
  return true;
}

bool Reader::read_integer(const Located& at, int64_t min, int64_t max, int64_t& out) {
  if (!is_plain_scalar(at.node)) {
    error(at, "expected an integer");
    return false;
  }
  const std::string& text = at.node.Scalar();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string range = "must be between " + std::to_string(min) + " and " + std::to_string(max);
  if (ec == std::errc::result_out_of_range) {
    error(at, range);
    return false;
  }
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    error(at, "expected an integer");
    return false;
  }
  if (value < min || value > max) {
    error(at, range);
    return false;
  }
  out = value;
  return true;
}

bool Reader::read_bool(const Located& at, bool& out) {
  if (is_plain_scalar(at.node)) {
    const std::string& text = at.node.Scalar();
    if (text == "true" || text == "True" || text == "TRUE") {
      out = true;
      return true;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      out = false;
      return true;
    }
  }
  error(at, "expected true or false");
  return false;
}

bool Reader::read_percent(const Located& at, uint32_t& numerator, uint32_t& denominator) {
  const std::string shape = "expected a number from 0 to 100, e.g. 25 or 0.5";
  if (!is_plain_scalar(at.node)) {
    error(at, shape);
    return false;
  }
  std::string_view text = at.node.Scalar();
  if (!text.empty() && text.front() == '-') {
    error(at, "must be between 0 and 100");
    return false;
  }
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  auto digits = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(whole) || (dot != std::string_view::npos && !digits(fraction))) {
    error(at, shape);
    return false;
  }
  while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  if (whole.size() > 3) {
    error(at, "must be between 0 and 100");
    return false;
  }
  if (fraction.size() > kPercentDecimals) {
    error(at, "must have at most " + std::to_string(kPercentDecimals) + " decimals");
    return false;
  }
  uint32_t value = 0;
  std::from_chars(whole.data(), whole.data() + whole.size(), value);
  uint32_t scale = 100;
  for (char c : fraction) {
    value = value * 10 + static_cast<uint32_t>(c - '0');
    scale *= 10;
  }
  if (value > scale) {
    error(at, "must be between 0 and 100");
    return false;
  }
  numerator = value;
  denominator = scale;
  return true;
}

bool Reader::read_address(const Located& at, net::SocketAddress& out) {
  std::string text;
  if (!read_string(at, text)) return false;
  std::string message;
  if (!net::parse_socket_address(text, out, message)) {
    error(at, std::move(message));
    return false;
  }
  return true;
}

bool Reader::read_choice(const Located& at, std::string_view what, std::span<const std::string_view> choices,
                         size_t& index) {
  std::string value;
  if (!read_string(at, value)) return false;
  auto it = std::find(choices.begin(), choices.end(), value);
  if (it == choices.end()) {
    error(at, unknown_choice(what, value, choices));
    return false;
  }
  index = static_cast<size_t>(it - choices.begin());
  return true;
}

}  // namespace trellis::proxy::config_yaml
