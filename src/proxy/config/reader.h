// Reading a parsed bootstrap YAML tree field by field: each read_* checks one
// value's type and range and reports what is wrong at its line, column and
// field path, then lets the caller go on, so one pass finds every error.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "proxy/config/checks.h"
#include "proxy/config/config.h"

namespace trellis::proxy::config_yaml {

// A node with what to blame for it: its field path, the position of its value,
// and the position of its key (same as the value for list items).
struct Located {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;
  YAML::Mark key_mark;
};

// A map section whose keys have been checked against the fields it allows.
class Fields {
 public:
  explicit Fields(Located self) : self_(std::move(self)) {}

  const Located& self() const { return self_; }
  void add(std::string key, Located value) { entries_.emplace_back(std::move(key), std::move(value)); }
  std::optional<Located> get(std::string_view key) const;
  // Which of `keys` are set, in the order the keys are given.
  std::vector<Located> present(std::initializer_list<std::string_view> keys) const;

 private:
  Located self_;
  std::vector<std::pair<std::string, Located>> entries_;
};

class Reader {
 public:
  Reader(std::string file, std::vector<ConfigError>& errors) : file_(std::move(file)), errors_(errors) {}

  void error(const YAML::Mark& mark, std::string path, std::string message);
  void error(const Located& at, std::string message) { error(at.mark, at.path, std::move(message)); }
  // Blames the key: for fields that should not be there at all.
  void key_error(const Located& at, std::string message) { error(at.key_mark, at.path, std::move(message)); }
  // Reports `problem`, if any; true when there is none.
  bool check(const Located& at, const Problem& problem);

  std::optional<Fields> read_map(const Located& at, std::initializer_list<std::string_view> allowed);
  std::optional<Located> required(const Fields& fields, std::string_view key);
  // A map whose keys are data (labels, headers): key and value of each entry,
  // both scalars, in file order. Entries that are not are reported and skipped.
  std::optional<std::vector<std::pair<Located, Located>>> read_scalar_map(const Located& at,
                                                                          std::string_view shape);
  std::optional<std::vector<Located>> read_list(const Located& at);

  bool read_string(const Located& at, std::string& out);
  bool read_name(const Located& at, std::string& out);
  bool read_duration(const Located& at, Millis& out);
  // For timers that are always armed: a zero there would close connections the
  // moment they open or go idle, not turn the timer off.
  bool read_positive_duration(const Located& at, Millis& out);
  bool read_integer(const Located& at, int64_t min, int64_t max, int64_t& out);
  template <class T>
  bool read_integer(const Located& at, int64_t min, int64_t max, T& out) {
    int64_t value = 0;
    if (!read_integer(at, min, max, value)) return false;
    out = static_cast<T>(value);
    return true;
  }
  bool read_bool(const Located& at, bool& out);
  // A percentage from 0 to 100 with at most four decimals, kept exact as
  // numerator / denominator: "0.5" is 5 / 1000, "25" is 25 / 100.
  bool read_percent(const Located& at, uint32_t& numerator, uint32_t& denominator);
  bool read_address(const Located& at, net::SocketAddress& out);
  // A string that must be one of `choices`; its index in them.
  bool read_choice(const Located& at, std::string_view what, std::span<const std::string_view> choices,
                   size_t& index);

 private:
  std::string file_;
  std::vector<ConfigError>& errors_;
};

// A share read by read_percent, in parts per million (exact: it keeps at most
// four decimals of a percent).
uint32_t per_million(uint32_t numerator, uint32_t denominator);

// yaml-cpp counts from 0; messages count from 1, with 0 for unknown.
inline int to_one_based(int zero_based) { return zero_based >= 0 ? zero_based + 1 : 0; }

}  // namespace trellis::proxy::config_yaml
