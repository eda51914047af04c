#include "common/hdr_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace trellis {

HdrHistogram::HdrHistogram(uint64_t highest, int significant_digits)
    : highest_(std::max<uint64_t>(highest, 2)), digits_(std::clamp(significant_digits, 1, 5)) {
  // Exact counters up to 2 * 10^digits make every slot above them narrower
  // than value / 10^digits: the slot width doubles exactly when the values do.
  uint64_t exact = 2;
  for (int i = 0; i < digits_; ++i) exact *= 10;
  uint64_t sub_count = std::bit_ceil(exact);
  sub_mask_ = sub_count - 1;
  sub_half_magnitude_ = std::countr_zero(sub_count) - 1;

  // Power-of-two ranges needed until the first untrackable value exceeds highest_.
  size_t buckets = 1;
  uint64_t untrackable = sub_count;
  while (untrackable <= highest_) {
    ++buckets;
    if (untrackable > (UINT64_MAX >> 1)) break;
    untrackable <<= 1;
  }
  counts_.assign((buckets + 1) << sub_half_magnitude_, 0);
}

size_t HdrHistogram::index_of(uint64_t value) const {
  int bucket = 63 - std::countl_zero(value | sub_mask_) - sub_half_magnitude_;
  uint64_t sub = value >> bucket;
  return (static_cast<size_t>(bucket) << sub_half_magnitude_) + static_cast<size_t>(sub);
}

uint64_t HdrHistogram::value_of(size_t index) const {
  uint64_t half = uint64_t{1} << sub_half_magnitude_;
  int64_t bucket = static_cast<int64_t>(index >> sub_half_magnitude_) - 1;
  uint64_t sub = (index & (half - 1)) + half;
  if (bucket < 0) {
    sub -= half;
    bucket = 0;
  }
  return sub << bucket;
}

uint64_t HdrHistogram::slot_width(size_t index) const {
  int64_t bucket = static_cast<int64_t>(index >> sub_half_magnitude_) - 1;
  return uint64_t{1} << std::max<int64_t>(bucket, 0);
}

uint64_t HdrHistogram::lowest_equivalent(uint64_t value) const {
  return value_of(index_of(std::min(value, highest_)));
}

uint64_t HdrHistogram::highest_equivalent(uint64_t value) const {
  size_t i = index_of(std::min(value, highest_));
  return value_of(i) + slot_width(i) - 1;
}

void HdrHistogram::record(uint64_t value, uint64_t count) {
  if (count == 0) return;
  if (value > highest_) {
    value = highest_;
    saturated_ += count;
  }
  counts_[index_of(value)] += count;
  total_ += count;
  sum_ += value * count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

bool HdrHistogram::merge(const HdrHistogram& other) {
  if (other.highest_ != highest_ || other.digits_ != digits_) return false;
  if (other.total_ == 0) return true;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  sum_ += other.sum_;
  saturated_ += other.saturated_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  return true;
}

void HdrHistogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = sum_ = saturated_ = max_ = 0;
  min_ = UINT64_MAX;
}

uint64_t HdrHistogram::value_at_percentile(double percentile) const {
  if (total_ == 0) return 0;
  if (percentile <= 0) return min_;
  if (percentile >= 100) return max_;
  // The rank of the wanted value, 1-based. The small epsilon keeps a product
  // such as 99.9% of 1000 (999.0000000000001 in binary) from rounding up a rank.
  long double exact = static_cast<long double>(percentile) / 100.0L * static_cast<long double>(total_);
  auto rank = static_cast<uint64_t>(std::ceil(exact - 1e-9L));
  rank = std::clamp<uint64_t>(rank, 1, total_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(value_of(i) + slot_width(i) - 1, min_, max_);
  }
  return max_;
}

}  // namespace trellis
