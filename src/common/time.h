// Time for the whole project: a monotonic time point type and the Clock seam,
// so that policy code can run on a fake clock in tests.
#pragma once

#include <chrono>
#include <cstdint>

namespace trellis {

using MonoTime = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;
using Millis = std::chrono::milliseconds;
using Micros = std::chrono::microseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;
};

// The one place that reads the real monotonic clock.
class MonotonicClock final : public Clock {
 public:
  MonoTime now() const override;
};

// Wall-clock time as RFC 3339 UTC with milliseconds, for logs.
void format_wall_time_now(char (&out)[48]);

}  // namespace trellis
