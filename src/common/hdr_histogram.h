// A high-dynamic-range histogram: records non-negative integers (latencies in
// microseconds, say) from 1 up to a fixed highest value with a fixed number of
// significant decimal digits, in a fixed amount of memory.
//
// Layout (log-linear, as in Gil Tene's HdrHistogram): values below
// 2 * 10^digits, rounded up to a power of two (the "sub-bucket count", 2048 for
// three digits), each have their own counter; above that, every power-of-two
// range [2^k, 2^(k+1)) is split into sub-bucket-count / 2 equal slots. A slot's
// width is therefore at most value / 1024 for three digits: any value read back
// is within 0.1% of what was recorded. For 1 µs .. 1 hour that is 23,552
// counters (184 KiB), allocated once; record() never allocates.
//
// Hand-written: Debian bookworm ships no C or C++ HdrHistogram.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace trellis {

class HdrHistogram {
 public:
  static constexpr uint64_t kOneHourMicros = 3'600'000'000ull;

  // `highest` >= 2; `significant_digits` in 1..5 (clamped).
  explicit HdrHistogram(uint64_t highest = kOneHourMicros, int significant_digits = 3);

  // Values above highest() are counted as highest() (see saturated()).
  void record(uint64_t value) { record(value, 1); }
  void record(uint64_t value, uint64_t count);

  // Adds `other`'s counts; false (and no change) when the two were built with
  // different highest / significant digits.
  bool merge(const HdrHistogram& other);
  void reset();

  uint64_t count() const { return total_; }
  uint64_t min() const { return total_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  // Mean of the values as recorded (exact, not bucketed; clamped values count as highest()).
  double mean() const { return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0.0; }
  // How many recorded values were above highest() and clamped.
  uint64_t saturated() const { return saturated_; }

  // The smallest recorded value v such that at least `percentile`% of the
  // values are <= v, reported as the highest value of v's slot but never
  // outside [min(), max()]. 0 for an empty histogram; p <= 0 gives min(),
  // p >= 100 gives max().
  uint64_t value_at_percentile(double percentile) const;

  uint64_t highest() const { return highest_; }
  int significant_digits() const { return digits_; }
  // The range of values that share `value`'s counter.
  uint64_t lowest_equivalent(uint64_t value) const;
  uint64_t highest_equivalent(uint64_t value) const;
  size_t counter_count() const { return counts_.size(); }

 private:
  size_t index_of(uint64_t value) const;
  uint64_t value_of(size_t index) const;  // lowest value of the counter's range
  uint64_t slot_width(size_t index) const;

  uint64_t highest_;
  int digits_;
  int sub_half_magnitude_;  // log2(sub-bucket count / 2)
  uint64_t sub_mask_;       // sub-bucket count - 1
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  uint64_t saturated_ = 0;
};

}  // namespace trellis
