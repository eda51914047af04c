// Randomness as a seam: policy code takes Random& so tests can seed it.
#pragma once

#include <cstdint>

namespace trellis {

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next() = 0;
  // Uniform in [0, n); n > 0.
  uint64_t uniform(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
};

// SplitMix64: fast, small state, good enough for load balancing and request ids
// (not for secrets). One per worker; never shared between threads.
class FastRandom final : public Random {
 public:
  explicit FastRandom(uint64_t seed) : state_(seed) {}
  // Seeded from the operating system's entropy: the one place that reads it.
  static uint64_t os_seed();
  uint64_t next() override {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

}  // namespace trellis
