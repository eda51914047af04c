// Small text helpers shared by the config loaders.
#pragma once

#include <cstddef>
#include <string_view>

namespace trellis {

// Levenshtein distance, for "did you mean ...?" suggestions on unknown fields.
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace trellis
