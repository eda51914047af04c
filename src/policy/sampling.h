// Random draws for traffic splitting, fault injection and mirroring.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/random.h"

namespace trellis::policy {

// True for `numerator` out of every `denominator` draws on average; never for
// a numerator of 0, always when numerator >= denominator.
inline bool sampled(uint64_t numerator, uint64_t denominator, Random& random) {
  if (numerator == 0 || denominator == 0) return false;
  if (numerator >= denominator) return true;
  return random.uniform(denominator) < numerator;
}

// The index of an item drawn in proportion to weight_of(item); SIZE_MAX when
// every weight is 0. Stateless, so one route table serves every worker.
template <class T, class WeightOf>
size_t pick_by_weight(const std::vector<T>& items, WeightOf weight_of, Random& random) {
  uint64_t total = 0;
  for (const T& item : items) total += weight_of(item);
  if (total == 0) return SIZE_MAX;
  uint64_t r = random.uniform(total);
  for (size_t i = 0; i < items.size(); ++i) {
    uint64_t w = weight_of(items[i]);
    if (r < w) return i;
    r -= w;
  }
  return items.size() - 1;
}

}  // namespace trellis::policy
