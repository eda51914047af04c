// The Prometheus text exposition format, as both the proxy's /stats and
// trellis-control's /metrics write it, and the latency buckets they share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/time.h"

namespace trellis {

// Upper bounds in seconds of every latency histogram, from under a
// millisecond to a minute; +Inf is implicit.
inline constexpr double kLatencyBoundsSeconds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
inline constexpr size_t kLatencyBuckets = sizeof(kLatencyBoundsSeconds) / sizeof(double) + 1;

// The bucket `d` falls in (kLatencyBuckets - 1: +Inf).
size_t latency_bucket(Duration d);

// "# HELP name help\n# TYPE name type\n".
void append_metric_header(std::string& out, std::string_view name, std::string_view type,
                          std::string_view help);

// A histogram's _bucket (cumulative, le as Prometheus writes it), _sum and
// _count lines. `labels`: `a="b",c="d"` without braces, or empty;
// `buckets`: counts per bucket, not cumulative.
void append_histogram(std::string& out, std::string_view name, std::string_view labels,
                      std::span<const uint64_t, kLatencyBuckets> buckets, uint64_t count, double sum_seconds);

}  // namespace trellis
