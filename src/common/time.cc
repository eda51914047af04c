#include "common/time.h"

#include <cstdio>
#include <ctime>

namespace trellis {

MonoTime SystemClock::now() const { return std::chrono::steady_clock::now(); }

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

void format_wall_time_now(char (&out)[48]) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  // Fields are bounded by gmtime_r; the casts tell the compiler so.
  std::snprintf(out, sizeof(out), "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
                static_cast<unsigned>(t.tm_year + 1900) % 10000u, static_cast<unsigned>(t.tm_mon + 1) % 100u,
                static_cast<unsigned>(t.tm_mday) % 100u, static_cast<unsigned>(t.tm_hour) % 100u,
                static_cast<unsigned>(t.tm_min) % 100u, static_cast<unsigned>(t.tm_sec) % 100u,
                static_cast<unsigned>(ts.tv_nsec / 1000000) % 1000u);
}

}  // namespace trellis
