// Time for the whole project: the monotonic time point type and the Clock
// seam. Event loops read time through a Clock, so the request path, pools,
// health checks and timers run on simulated time in tests; policy code takes
// time points as parameters and reads no clock at all.
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
  virtual MonoTime now() const = 0;

 protected:
  ~Clock() = default;
};

// The one place that reads the real monotonic clock.
class SystemClock final : public Clock {
 public:
  MonoTime now() const override;
  // Stateless: one instance serves every loop.
  static SystemClock& instance();
};

// Time that moves only when a test says so.
class SimulatedClock final : public Clock {
 public:
  // Starts well past the epoch, so "now minus a window" never underflows.
  SimulatedClock() : now_(MonoTime{} + std::chrono::hours(24)) {}
  MonoTime now() const override { return now_; }
  void set(MonoTime t) { now_ = t; }
  void advance(Duration d) { now_ += d; }

 private:
  MonoTime now_;
};

// Wall-clock time as RFC 3339 UTC with milliseconds, for logs.
void format_wall_time_now(char (&out)[48]);

}  // namespace trellis
