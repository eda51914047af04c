#include "control/resources/checker.h"
#include "common/text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "control/validation.h"

namespace trellis::control {
namespace {

const Json& empty_map() {
  static const Json kEmpty = Json::object();
  return kEmpty;
}

std::string describe(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "no value";
    case Json::value_t::boolean:
      return "true/false";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a decimal number";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::object:
      return "a map";
    default:
      return "an unsupported value";
  }
}

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

std::string range_message(int64_t min, int64_t max) {
  if (max == std::numeric_limits<int64_t>::max()) return "must be at least " + std::to_string(min);
  return "must be between " + std::to_string(min) + " and " + std::to_string(max);
}

std::string plural(size_t n, std::string_view word) {
  return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

}  // namespace

std::string key_path(std::string_view parent, std::string_view key) {
  return std::string(parent) + "[" + std::string(key) + "]";
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", u);
      out += buffer;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string join_names(const Names& names, std::string_view last) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += (i + 1 == names.size()) ? " " + std::string(last) + " " : ", ";
    out += names[i];
  }
  return out;
}

std::string did_you_mean(std::string_view given, const Names& candidates, bool partial) {
  std::string_view best = closest_match(given, candidates, partial);
  return best.empty() ? "" : " (did you mean " + quote(best) + "?)";
}

// ---- Checker ----

void Checker::error(std::string path, std::string message) {
  errors_.push_back({std::move(path), std::move(message)});
}

void Checker::type_error(const std::string& path, std::string_view expected, const Json& got) {
  error(path, "expected " + std::string(expected) + ", got " + describe(got));
}

MapReader Checker::map(const Json& value, std::string path, const Names& fields) {
  if (value.is_null()) return MapReader(this, &empty_map(), std::move(path));
  if (!value.is_object()) {
    type_error(path, "a map", value);
    return MapReader(this, nullptr, std::move(path));
  }
  for (const auto& [key, unused] : value.items()) {
    if (std::find(fields.begin(), fields.end(), key) != fields.end()) continue;
    error(field_path(path, key), "unknown field " + quote(key) + did_you_mean(key, fields));
  }
  return MapReader(this, &value, std::move(path));
}

std::optional<std::string> Checker::string(const Json& value, const std::string& path) {
  if (!value.is_string()) {
    type_error(path, "a string", value);
    return std::nullopt;
  }
  return value.get<std::string>();
}

std::optional<int64_t> Checker::integer(const Json& value, const std::string& path, int64_t min,
                                        int64_t max) {
  if (!value.is_number_integer()) {
    type_error(path, "an integer", value);
    return std::nullopt;
  }
  bool in_range = false;
  int64_t n = 0;
  if (value.is_number_unsigned()) {
    uint64_t u = value.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      n = static_cast<int64_t>(u);
      in_range = n >= min && n <= max;
    }
  } else {
    n = value.get<int64_t>();
    in_range = n >= min && n <= max;
  }
  if (!in_range) {
    error(path, range_message(min, max));
    return std::nullopt;
  }
  return n;
}

std::optional<double> Checker::number(const Json& value, const std::string& path, double min, double max) {
  if (!value.is_number()) {
    type_error(path, "a number", value);
    return std::nullopt;
  }
  double d = value.get<double>();
  if (!std::isfinite(d) || d < min || d > max) {
    error(path, "must be between " + format_number(min) + " and " + format_number(max));
    return std::nullopt;
  }
  return d;
}

std::optional<bool> Checker::boolean(const Json& value, const std::string& path) {
  if (!value.is_boolean()) {
    type_error(path, "true or false", value);
    return std::nullopt;
  }
  return value.get<bool>();
}

std::optional<int64_t> Checker::duration(const Json& value, const std::string& path, bool positive) {
  if (!value.is_string()) {
    type_error(path, "a duration such as \"10s\"", value);
    return std::nullopt;
  }
  const std::string& text = value.get_ref<const std::string&>();
  std::optional<int64_t> ms = parse_duration_ms(text);
  if (!ms) {
    error(path, quote(text) +
                    " is not a duration: write 1 to 4 parts, each a whole number (up to 5 digits) "
                    "and a unit h, m, s or ms, e.g. \"10s\", \"500ms\", \"1h30m\"");
    return std::nullopt;
  }
  if (positive && *ms == 0) {
    error(path, "must be greater than 0s");
    return std::nullopt;
  }
  return ms;
}

std::optional<std::string> Checker::enumeration(const Json& value, const std::string& path,
                                                const Names& values) {
  std::optional<std::string> text = string(value, path);
  if (!text) return std::nullopt;
  if (std::find(values.begin(), values.end(), *text) != values.end()) return text;
  error(path, quote(*text) + " is not one of " + join_names(values) +
                  did_you_mean(*text, values, /*partial=*/true));
  return std::nullopt;
}

std::vector<Item> Checker::list(const Json& value, const std::string& path, size_t min_items,
                                size_t max_items) {
  std::vector<Item> items;
  if (value.is_null()) {
    if (min_items > 0) error(path, "must have at least " + plural(min_items, "item"));
    return items;
  }
  if (!value.is_array()) {
    type_error(path, "a list", value);
    return items;
  }
  if (value.size() < min_items) error(path, "must have at least " + plural(min_items, "item"));
  if (value.size() > max_items) {
    error(path, "must have at most " + plural(max_items, "item") + ", has " + std::to_string(value.size()));
  }
  for (size_t i = 0; i < value.size(); ++i) items.push_back({&value[i], item_path(path, i)});
  return items;
}

std::optional<std::map<std::string, std::string>> Checker::string_map(const Json& value,
                                                                      const std::string& path) {
  std::map<std::string, std::string> out;
  if (value.is_null()) return out;
  if (!value.is_object()) {
    type_error(path, "a map of strings", value);
    return std::nullopt;
  }
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      type_error(key_path(path, key), "a string", item);
      continue;
    }
    out.emplace(key, item.get<std::string>());
  }
  return out;
}

// ---- MapReader ----

bool MapReader::has(std::string_view key) const { return json_ != nullptr && json_->contains(key); }

const Json* MapReader::raw(std::string_view key) const {
  if (json_ == nullptr) return nullptr;
  auto it = json_->find(key);
  return it == json_->end() ? nullptr : &*it;
}

void MapReader::error(std::string_view key, std::string message) const {
  checker_->error(path_of(key), std::move(message));
}

void MapReader::error_here(std::string message) const { checker_->error(path_, std::move(message)); }

const Json* MapReader::field(std::string_view key, Need need) const {
  if (json_ == nullptr) return nullptr;
  const Json* value = raw(key);
  if (value == nullptr && need == Need::kRequired) error(key, "required field is missing");
  return value;
}

std::optional<std::string> MapReader::string(std::string_view key, Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  return checker_->string(*v, path_of(key));
}

std::optional<int64_t> MapReader::integer(std::string_view key, int64_t min, int64_t max, Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  return checker_->integer(*v, path_of(key), min, max);
}

std::optional<double> MapReader::number(std::string_view key, double min, double max, Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  return checker_->number(*v, path_of(key), min, max);
}

std::optional<bool> MapReader::boolean(std::string_view key, Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  return checker_->boolean(*v, path_of(key));
}

std::optional<int64_t> MapReader::duration(std::string_view key, Need need, bool positive) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  return checker_->duration(*v, path_of(key), positive);
}

std::optional<std::string> MapReader::enumeration(std::string_view key, const Names& values,
                                                  Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  return checker_->enumeration(*v, path_of(key), values);
}

std::optional<MapReader> MapReader::map(std::string_view key, const Names& fields, Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  MapReader inner = checker_->map(*v, path_of(key), fields);
  if (!inner.ok()) return std::nullopt;
  return inner;
}

std::vector<Item> MapReader::list(std::string_view key, size_t min_items, size_t max_items, Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return {};
  return checker_->list(*v, path_of(key), min_items, max_items);
}

std::optional<std::map<std::string, std::string>> MapReader::string_map(std::string_view key,
                                                                        Need need) const {
  const Json* v = field(key, need);
  if (v == nullptr) return std::nullopt;
  return checker_->string_map(*v, path_of(key));
}

size_t MapReader::exactly_one_of(const Names& keys) const {
  if (json_ == nullptr) return 0;
  Names present;
  for (std::string_view key : keys) {
    if (has(key)) present.push_back(key);
  }
  if (present.empty()) {
    error_here("set exactly one of " + join_names(keys));
  } else if (present.size() > 1) {
    error_here("set only one of " + join_names(keys) + ", not " + join_names(present, "and"));
  }
  return present.size();
}

}  // namespace trellis::control
