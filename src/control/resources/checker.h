// The walker every kind's validation is written with: it reads a JSON value
// against the shape the kind expects and records a FieldError, with the full
// path from the document root, for each problem, so one pass reports all of
// them. Type checks come before every read, so nothing here throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/text.h"
#include "control/resource.h"

namespace trellis::control {

using Names = std::vector<std::string_view>;

enum class Need { kOptional, kRequired };

// Paths as users read them: "spec.rules[0].backendRefs[1].weight", and
// "metadata.labels[app]" for a key of a free-form map.
using ::trellis::field_path;
using ::trellis::item_path;
std::string key_path(std::string_view parent, std::string_view key);

std::string quote(std::string_view text);
// "A, B or C" (or "A, B and C" with last = "and").
std::string join_names(const Names& names, std::string_view last = "or");
// " (did you mean \"X\"?)" when `given` is a near miss of a candidate, else "".
// With `partial`, a candidate that contains `given` counts too (for values:
// "Prefix" for "PathPrefix"; for field names it would mislead).
std::string did_you_mean(std::string_view given, const Names& candidates, bool partial = false);

// One element of a list, with its path.
struct Item {
  const Json* json;
  std::string path;
};

class Checker;

// A map being read. The fields it may hold are given when it is opened, and
// unknown ones (typos) are reported then. Reads of absent optional fields
// return nothing and report nothing; a missing required field is reported as
// "required field is missing". A field written with no value (null) counts as
// present: for a map or list it is empty, for a scalar it is a type error.
class MapReader {
 public:
  MapReader(Checker* checker, const Json* json, std::string path)
      : checker_(checker), json_(json), path_(std::move(path)) {}

  // False when the value was not a map (already reported); every read then
  // returns nothing.
  bool ok() const { return json_ != nullptr; }
  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const { return field_path(path_, key); }
  bool has(std::string_view key) const;
  const Json* raw(std::string_view key) const;

  void error(std::string_view key, std::string message) const;
  void error_here(std::string message) const;

  std::optional<std::string> string(std::string_view key, Need need = Need::kOptional) const;
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max,
                                 Need need = Need::kOptional) const;
  std::optional<double> number(std::string_view key, double min, double max,
                               Need need = Need::kOptional) const;
  std::optional<bool> boolean(std::string_view key, Need need = Need::kOptional) const;
  // Milliseconds. With `positive`, "0s" is refused.
  std::optional<int64_t> duration(std::string_view key, Need need = Need::kOptional,
                                  bool positive = false) const;
  std::optional<std::string> enumeration(std::string_view key, const Names& values,
                                         Need need = Need::kOptional) const;
  std::optional<MapReader> map(std::string_view key, const Names& fields, Need need = Need::kOptional) const;
  // The elements; empty when absent or not a list. Size limits are reported
  // but every element is still returned, so that each gets checked.
  std::vector<Item> list(std::string_view key, size_t min_items, size_t max_items,
                         Need need = Need::kOptional) const;
  // The entries whose values are strings; the others are reported.
  std::optional<std::map<std::string, std::string>> string_map(std::string_view key,
                                                               Need need = Need::kOptional) const;

  // How many of `keys` are present; reports at this map's path when that is
  // not exactly one ("set exactly one of a, b or c").
  size_t exactly_one_of(const Names& keys) const;

 private:
  const Json* field(std::string_view key, Need need) const;

  Checker* checker_;
  const Json* json_;  // null when the value was not a map
  std::string path_;
};

class Checker {
 public:
  explicit Checker(std::vector<FieldError>& errors) : errors_(errors) {}

  void error(std::string path, std::string message);
  size_t error_count() const { return errors_.size(); }

  // Value-level reads, for list elements and the document root.
  MapReader map(const Json& value, std::string path, const Names& fields);
  std::optional<std::string> string(const Json& value, const std::string& path);
  std::optional<int64_t> integer(const Json& value, const std::string& path, int64_t min, int64_t max);
  std::optional<double> number(const Json& value, const std::string& path, double min, double max);
  std::optional<bool> boolean(const Json& value, const std::string& path);
  std::optional<int64_t> duration(const Json& value, const std::string& path, bool positive);
  std::optional<std::string> enumeration(const Json& value, const std::string& path, const Names& values);
  std::vector<Item> list(const Json& value, const std::string& path, size_t min_items, size_t max_items);
  std::optional<std::map<std::string, std::string>> string_map(const Json& value, const std::string& path);

 private:
  void type_error(const std::string& path, std::string_view expected, const Json& got);

  std::vector<FieldError>& errors_;
};

}  // namespace trellis::control
