// Durations as Trellis reads them everywhere: the bootstrap file, the mesh
// resources and the command line share one grammar. A duration is one or
// more parts, each a decimal number and a unit, added up: "250ms", "1.5s",
// "1h30m", "100us". Units: ns, us (or µs), ms, s, m, h. No sign, no spaces.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/result.h"

namespace trellis {

struct DurationLimits {
  // Longer is refused: "must be at most <max_text>".
  std::chrono::nanoseconds max = std::chrono::hours(24 * 365 * 100);
  std::string_view max_text = "100 years";
  // Finer is refused: "must be a whole number of milliseconds".
  std::chrono::nanoseconds resolution = std::chrono::nanoseconds(1);
};

// The duration, or what is wrong with it (a message for after the field's name).
Result<std::chrono::nanoseconds> parse_duration(std::string_view text, const DurationLimits& limits = {});

// The Gateway API's narrower form of a Duration (GEP-2257), which resources
// keep to where the Gateway API defines the field: 1 to 4 parts, each a
// whole number of up to 5 digits and a unit h, m, s or ms.
bool is_gateway_api_duration(std::string_view text);

}  // namespace trellis
