// Shared by the fuzz targets: an assertion that survives release builds and
// ends the process the way both libFuzzer and corpus_runner recognise as a
// failure (abort), after saying which invariant broke.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

// True if `part` is empty or lies entirely inside `whole`: parsers hand back
// views, and one that points outside its input is a use-after-free waiting for
// the buffer to move.
inline bool view_inside(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  const auto begin = reinterpret_cast<uintptr_t>(whole.data());
  const auto end = begin + whole.size();
  const auto p = reinterpret_cast<uintptr_t>(part.data());
  return p >= begin && p <= end && part.size() <= end - p;
}

// A cheap deterministic hash of the input, for choosing split points and chunk
// sizes that the fuzzer can still steer by changing bytes.
inline size_t input_hash(std::string_view in) {
  size_t h = 1469598103934665603ull;
  for (unsigned char c : in) h = (h ^ c) * 1099511628211ull;
  return h;
}
