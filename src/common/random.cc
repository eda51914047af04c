#include "common/random.h"

#include <sys/random.h>

#include <chrono>

namespace trellis {

uint64_t FastRandom::os_seed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) {
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return seed;
}

}  // namespace trellis
