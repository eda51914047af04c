#include "common/prometheus_text.h"

#include <fmt/format.h>

namespace trellis {

size_t latency_bucket(Duration d) {
  double seconds = std::chrono::duration<double>(d).count();
  size_t i = 0;
  while (i < kLatencyBuckets - 1 && seconds > kLatencyBoundsSeconds[i]) ++i;
  return i;
}

void append_metric_header(std::string& out, std::string_view name, std::string_view type,
                          std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void append_histogram(std::string& out, std::string_view name, std::string_view labels,
                      std::span<const uint64_t, kLatencyBuckets> buckets, uint64_t count,
                      double sum_seconds) {
  auto it = std::back_inserter(out);
  std::string_view comma = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t b = 0; b < kLatencyBuckets; ++b) {
    cumulative += buckets[b];
    if (b + 1 < kLatencyBuckets)
      fmt::format_to(it, "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, comma, kLatencyBoundsSeconds[b],
                     cumulative);
    else
      fmt::format_to(it, "{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, comma, cumulative);
  }
  if (labels.empty()) {
    fmt::format_to(it, "{}_sum {}\n{}_count {}\n", name, sum_seconds, name, count);
  } else {
    fmt::format_to(it, "{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, sum_seconds, name, labels,
                   count);
  }
}

}  // namespace trellis
