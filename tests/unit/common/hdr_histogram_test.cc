#include "common/hdr_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace trellis {
namespace {

// Three significant digits: a value read back is within 1/1024 of the truth.
constexpr double kRelativeError = 1.0 / 1024;

// The exact percentile by the same definition (smallest value with at least
// p% of the values at or below it).
uint64_t exact_percentile(std::vector<uint64_t> values, double p) {
  std::sort(values.begin(), values.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100 * static_cast<double>(values.size()) - 1e-9));
  rank = std::clamp<size_t>(rank, 1, values.size());
  return values[rank - 1];
}

void expect_close(uint64_t got, uint64_t want, const char* what) {
  double tolerance = std::max(1.0, static_cast<double>(want) * kRelativeError);
  EXPECT_LE(std::fabs(static_cast<double>(got) - static_cast<double>(want)), tolerance)
      << what << ": got " << got << ", want " << want;
}

TEST(HdrHistogram, EmptyReportsZeros) {
  HdrHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.value_at_percentile(50), 0u);
}

TEST(HdrHistogram, SmallValuesAreExact) {
  HdrHistogram h;
  for (uint64_t v = 0; v < 2048; ++v) h.record(v);
  EXPECT_EQ(h.value_at_percentile(50), 1023u);
  EXPECT_EQ(h.value_at_percentile(100), 2047u);
  EXPECT_EQ(h.min(), 0u);
  for (uint64_t v : {0ull, 1ull, 7ull, 999ull, 2047ull}) {
    EXPECT_EQ(h.lowest_equivalent(v), v);
    EXPECT_EQ(h.highest_equivalent(v), v);
  }
}

TEST(HdrHistogram, UniformDistributionPercentilesWithinPrecision) {
  HdrHistogram h;
  std::vector<uint64_t> values;
  for (uint64_t v = 1; v <= 1'000'000; ++v) {
    h.record(v);
    values.push_back(v);
  }
  EXPECT_EQ(h.count(), 1'000'000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 1'000'000u);
  EXPECT_DOUBLE_EQ(h.mean(), 500'000.5);
  for (double p : {1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99}) {
    expect_close(h.value_at_percentile(p), exact_percentile(values, p), "uniform");
  }
}

TEST(HdrHistogram, SkewedLatencyLikeDistributionWithinPrecision) {
  // Log-normal around 50 µs with a long tail, as loopback latencies look.
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(std::log(50.0), 1.0);
  HdrHistogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 200'000; ++i) {
    auto v = static_cast<uint64_t>(dist(rng));
    h.record(v);
    values.push_back(v);
  }
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    expect_close(h.value_at_percentile(p), exact_percentile(values, p), "lognormal");
  }
  EXPECT_EQ(h.max(), *std::max_element(values.begin(), values.end()));
}

TEST(HdrHistogram, BucketWidthStaysWithinThreeDigits) {
  HdrHistogram h;
  for (uint64_t v : {2048ull, 4095ull, 123'456ull, 9'999'999ull, 3'599'999'999ull}) {
    uint64_t lo = h.lowest_equivalent(v);
    uint64_t hi = h.highest_equivalent(v);
    EXPECT_LE(lo, v);
    EXPECT_GE(hi, v);
    EXPECT_LE(static_cast<double>(hi - lo + 1), static_cast<double>(v) * kRelativeError) << v;
  }
}

TEST(HdrHistogram, PercentilesStayWithinMinAndMax) {
  HdrHistogram h;
  h.record(123'457);
  // The slot of 123457 is wider than one; a lone value must still come back as itself.
  EXPECT_EQ(h.value_at_percentile(50), 123'457u);
  EXPECT_EQ(h.value_at_percentile(0), 123'457u);
  EXPECT_EQ(h.value_at_percentile(100), 123'457u);
}

TEST(HdrHistogram, ExtremesAreClampedAndCounted) {
  HdrHistogram h;  // 1 hour in µs
  h.record(0);
  h.record(HdrHistogram::kOneHourMicros);
  h.record(HdrHistogram::kOneHourMicros * 10);
  h.record(UINT64_MAX);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.saturated(), 2u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), HdrHistogram::kOneHourMicros);
  EXPECT_EQ(h.value_at_percentile(100), HdrHistogram::kOneHourMicros);
  EXPECT_EQ(h.value_at_percentile(25), 0u);
  EXPECT_EQ(h.value_at_percentile(50), HdrHistogram::kOneHourMicros);
}

TEST(HdrHistogram, FullRangeHistogramHandlesTheLargestValues) {
  HdrHistogram h(UINT64_MAX, 3);
  h.record(UINT64_MAX);
  h.record(1);
  EXPECT_EQ(h.saturated(), 0u);
  EXPECT_EQ(h.max(), UINT64_MAX);
  EXPECT_EQ(h.value_at_percentile(100), UINT64_MAX);
}

TEST(HdrHistogram, MemoryIsBoundedByTheRange) {
  // 22 power-of-two ranges of 1024 counters (plus one) cover 1 µs .. 1 h.
  EXPECT_EQ(HdrHistogram().counter_count(), 23u * 1024);
  EXPECT_LT(HdrHistogram(1000, 2).counter_count(), 1024u);
}

TEST(HdrHistogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> dist(1.0 / 300);
  HdrHistogram a, b, all;
  for (int i = 0; i < 50'000; ++i) {
    auto v = static_cast<uint64_t>(dist(rng));
    (i % 3 == 0 ? a : b).record(v);
    all.record(v);
  }
  ASSERT_TRUE(a.merge(b));
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double p : {50.0, 90.0, 99.0, 99.9})
    EXPECT_EQ(a.value_at_percentile(p), all.value_at_percentile(p)) << p;
}

TEST(HdrHistogram, MergeRefusesADifferentLayout) {
  HdrHistogram a;
  HdrHistogram b(1'000'000, 2);
  b.record(5);
  EXPECT_FALSE(a.merge(b));
  EXPECT_EQ(a.count(), 0u);
}

TEST(HdrHistogram, RecordWithCountAndReset) {
  HdrHistogram h;
  h.record(100, 99);
  h.record(10'000, 1);
  EXPECT_EQ(h.count(), 100u);
  EXPECT_EQ(h.value_at_percentile(99), 100u);
  expect_close(h.value_at_percentile(99.5), 10'000, "p99.5");
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.value_at_percentile(50), 0u);
}

}  // namespace
}  // namespace trellis
