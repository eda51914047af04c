// Small text helpers shared by the config loaders.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace trellis {

// Levenshtein distance, for "did you mean ...?" suggestions on unknown fields.
size_t edit_distance(std::string_view a, std::string_view b);

// Field paths in error messages: "listeners[0].routes" style.
std::string field_path(std::string_view parent, std::string_view key);  // parent.key
std::string item_path(std::string_view parent, size_t index);           // parent[index]

}  // namespace trellis
