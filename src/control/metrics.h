// trellis-control's own metrics, served at GET /metrics: config pushes and
// their answers, push latency, certificates, store latency, and gauges of
// the proxies, registry and resources read when the page is made. Written
// from the gRPC and API threads under one mutex: control-plane events come
// a few hundred a second at most.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/prometheus_text.h"
#include "common/time.h"

namespace trellis::control {

// The store calls, for trellis_control_store_call_duration_seconds.
enum class StoreCall : uint8_t {
  kPut,
  kGet,
  kList,
  kRemove,
  kUpsertInstance,
  kRemoveInstance,
  kInstances,
  kTouchInstance,
  kInsertToken,
  kGetToken,
  kTokens,
  kRevokeToken,
  kRevision,
};
inline constexpr size_t kStoreCalls = 13;

// The address Prometheus scrapes a proxy at: the admin address it gave, with
// its own IP (as the control plane sees the connection, gRPC's
// "ipv4:1.2.3.4:5678" or "ipv6:[::1]:5678") for an unspecified one. Null for
// an address that is neither its own IP nor, for a proxy on this host,
// loopback: a proxy may only have itself scraped.
std::optional<std::string> scrape_target(const std::string& admin_address, const std::string& peer);

class ControlMetrics {
 public:
  void store_call(StoreCall call, Duration took);
  void config_sent();
  // A proxy answered the last config sent to it: ACK, or NACK (refused).
  void config_answered(bool acked, Duration since_sent);
  void certificate_issued();

  // What is read when the page is made.
  struct Gauges {
    size_t proxies_connected = 0;
    size_t proxies_in_sync = 0;   // acknowledged the last config sent
    size_t proxies_refusing = 0;  // whose last answer was a NACK of the last config sent
    size_t services = 0;
    size_t instances = 0;
    uint64_t revision = 0;
    std::vector<std::pair<std::string, size_t>> resources;  // by kind
  };
  std::string render(const Gauges& gauges) const;

 private:
  struct Latency {
    std::array<uint64_t, kLatencyBuckets> buckets{};
    uint64_t count = 0;
    double sum_seconds = 0;
    void record(Duration d);
  };
  mutable std::mutex mu_;
  std::array<Latency, kStoreCalls> store_;
  Latency push_;
  uint64_t configs_sent_ = 0;
  uint64_t acks_ = 0;
  uint64_t nacks_ = 0;
  uint64_t certificates_ = 0;
};

}  // namespace trellis::control
