// Passive outlier detection for one cluster: ejects hosts whose answers show
// they are failing (consecutive errors, a success rate far below the others).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/time.h"

namespace trellis::policy {

struct OutlierConfig {
  // Consecutive 5xx answers (gateway errors included) that eject a host; 0: off.
  uint32_t consecutive_5xx = 5;
  // Consecutive gateway errors that eject a host; 0: off.
  uint32_t consecutive_gateway_errors = 0;
  struct SuccessRate {
    bool enabled = false;
    uint32_t minimum_hosts = 5;     // hosts with enough requests needed to judge any
    uint32_t request_volume = 100;  // requests in an interval for a host to count
    double stdev_factor = 1.9;      // eject below mean - stdev_factor x stdev
    bool operator==(const SuccessRate&) const = default;
  } success_rate;
  // How often the owner calls tick(): the success-rate window and the
  // resolution of un-ejection.
  Duration interval = std::chrono::seconds(10);
  // An ejection lasts base_ejection_time x the times the host has been
  // ejected (decayed by one for each interval it then stays healthy), capped
  // at max_ejection_time.
  Duration base_ejection_time = std::chrono::seconds(30);
  Duration max_ejection_time = std::chrono::seconds(300);
  // Ejecting a host that would bring the ejected share above this percentage
  // is refused. As in Envoy (since 1.31), this holds for the first host too:
  // with the default 10%, clusters of fewer than 10 hosts eject nothing
  // unless always_eject_one_host is set, which allows one ejection whatever
  // the percentage.
  uint32_t max_ejection_percent = 10;
  bool always_eject_one_host = false;
  // The load balancer ignores ejection and health (uses every host) while
  // fewer than this percentage of hosts are available; see in_panic().
  uint32_t panic_threshold_percent = 50;

  bool operator==(const OutlierConfig&) const = default;
};

// True when fewer than `panic_threshold_percent` of `total` hosts are
// available (neither ejected nor failing health checks): the balancer should
// then spread over all hosts, since concentrating the whole load on the few
// left would take them down too. Never with no hosts or a threshold of 0.
constexpr bool in_panic(size_t available, size_t total, uint32_t panic_threshold_percent) {
  if (total == 0) return false;
  return static_cast<uint64_t>(available) * 100 < static_cast<uint64_t>(total) * panic_threshold_percent;
}

// One detector per cluster for the whole proxy. Hosts are indices 0..n-1 of
// the host set it was built for, each with a stable id.
//
// Threads: report(), is_ejected(), ejected_count(), epoch(), snapshot() and
// stats() may be called by any worker at any time and never lock. report()
// touches only the host's own cache line: a success is plain loads (plus one
// add while the success-rate rule is on), a failure one to three adds; the
// shared counters are written only when a host is ejected. tick() and
// adopt_state() belong to one thread, the owner's main thread: tick() every
// `interval`, adopt_state() before the detector is published to workers.
//
// Ejection is time-based: is_ejected(i, now) turns false at the exact end of
// the ejection. The bookkeeping (ejected_count, the epoch, the backoff decay)
// settles at the next tick(), as Envoy un-ejects only on its interval timer;
// until then the host still counts against max_ejection_percent and cannot be
// ejected again.
class OutlierDetector {
 public:
  enum class Outcome : uint8_t {
    kSuccess,
    k5xx,           // any 5xx answer that is not a gateway error
    kGatewayError,  // 502, 503, 504, connect failure, reset, timeout; also a 5xx
  };

  // Which rule ejected a host, for stats and logs.
  struct Stats {
    uint64_t ejections_consecutive_5xx = 0;
    uint64_t ejections_gateway_errors = 0;
    uint64_t ejections_success_rate = 0;
    uint64_t ejections_refused = 0;  // detected, but max_ejection_percent said no
  };

  struct TickResult {
    uint32_t ejected = 0;    // by the success-rate rule
    uint32_t unejected = 0;  // ejection time over
  };

  OutlierDetector(const OutlierConfig& config, std::vector<uint64_t> host_ids);
  OutlierDetector(const OutlierDetector&) = delete;
  OutlierDetector& operator=(const OutlierDetector&) = delete;

  // The answer of one request to host `index`. True when this report ejected
  // the host: the caller publishes the change at once (the epoch has moved).
  // An index out of range is ignored.
  bool report(size_t index, Outcome outcome, MonoTime now);

  // Every `interval`, from one thread: ends the success-rate window (ejecting
  // outliers), returns hosts whose ejection is over, and decays the backoff
  // of hosts that stayed in service.
  TickResult tick(MonoTime now);

  // Carries each host's state (ejection, backoff, counters) from the detector
  // this one replaces, matching hosts by id; hosts new to the set start
  // clean. Call before publishing this detector; `previous` may still be
  // receiving reports (those that land after the copy are lost, which only
  // delays a detection).
  void adopt_state(const OutlierDetector& previous);

  bool is_ejected(size_t index, MonoTime now) const;
  // Hosts ejected and not yet returned by tick().
  uint32_t ejected_count() const { return ejected_count_.load(std::memory_order_acquire); }
  // Moves on every ejection and un-ejection: a worker that caches a view of
  // the healthy hosts compares it with one load to know when to rebuild.
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  size_t size() const { return size_; }
  uint64_t host_id(size_t index) const { return ids_[index]; }
  // One host's state as of now, for the admin page and tests (each field is
  // read on its own: a snapshot under concurrent reports is not atomic).
  struct HostSnapshot {
    // When the current ejection ends; MonoTime::min() when in service.
    MonoTime ejected_until = MonoTime::min();
    // Times ejected, less one for each healthy interval since: the next
    // ejection lasts base_ejection_time x (this + 1), capped.
    uint32_t multiplier = 0;
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway_errors = 0;
    // The current success-rate window (counted only when that rule is on).
    uint32_t window_requests = 0;
    uint32_t window_successes = 0;
  };
  HostSnapshot snapshot(size_t index) const;
  Stats stats() const;
  const OutlierConfig& config() const { return config_; }

 private:
  struct alignas(64) HostState {
    std::atomic<uint32_t> consecutive_5xx{0};
    std::atomic<uint32_t> consecutive_gateway{0};
    // The success-rate window: requests in the low 32 bits, successes in the
    // high 32, so one add counts both and one exchange reads both.
    std::atomic<uint64_t> window{0};
    // Nanoseconds on the monotonic clock the ejection ends at; kNotEjected
    // when in service. Ejecting and un-ejecting are compare-and-swaps on it,
    // so exactly one thread wins each.
    std::atomic<int64_t> ejected_until{kNotEjected};
    // Times ejected, decayed by tick(); drives the ejection time.
    std::atomic<uint32_t> multiplier{0};
  };
  static constexpr int64_t kNotEjected = INT64_MIN;

  enum class Rule : uint8_t { kConsecutive5xx, kGatewayErrors, kSuccessRate };
  bool try_eject(size_t index, Rule rule, int64_t now_ns);
  // Reserves one place under max_ejection_percent; false when none is left.
  bool reserve_ejection();

  OutlierConfig config_;
  std::vector<uint64_t> ids_;
  size_t size_;
  std::unique_ptr<HostState[]> hosts_;
  alignas(64) std::atomic<uint32_t> ejected_count_{0};
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> ejections_[3] = {};
  std::atomic<uint64_t> refused_{0};
};

}  // namespace trellis::policy
