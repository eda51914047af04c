// Counters, gauges and latency histograms. Each worker owns its own copy of
// every block and is its only writer; the admin thread sums the copies when
// /stats is read. Writes are relaxed load+store (a plain mov on x86), so the
// request path never takes a lock or a locked instruction.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/prometheus_text.h"
#include "common/time.h"

namespace trellis::proxy {

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void add(int64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(int64_t n = 1) { add(-n); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Latencies in the buckets of kLatencyBoundsSeconds.
class Histogram {
 public:
  static constexpr size_t kBuckets = kLatencyBuckets;

  void record(Duration d);
  uint64_t bucket(size_t i) const { return buckets_[i].value(); }  // not cumulative
  uint64_t count() const { return count_.value(); }
  uint64_t sum_micros() const { return sum_us_.value(); }

 private:
  Counter buckets_[kBuckets];
  Counter count_;
  Counter sum_us_;
};

// How a `protocol: auto` listener took a connection.
enum class DetectionOutcome : uint8_t {
  kHttp1,    // an HTTP/1.x request line
  kHttp2,    // the HTTP/2 preface
  kTcp,      // other bytes: proxied as TCP
  kTls,      // TLS the listener does not terminate: proxied as TCP
  kTimeout,  // nothing within detect_timeout: proxied as TCP
  kClosed,   // the client left (or failed) before it could be told
};
inline constexpr size_t kDetectionOutcomes = 6;
inline constexpr size_t kGrpcStatuses = 17;

struct ListenerStats {
  Counter connections_total;
  Gauge connections_active;
  Counter bytes_received;
  Counter bytes_sent;
  Counter requests[5];  // by status class 1xx..5xx
  Counter malformed_requests;
  Counter request_head_timeouts;  // answered 408: the head did not arrive whole in time
  Counter request_body_timeouts;  // answered 408: the body came too slowly
  // HTTP/2 connections ended for misbehaving: floods (rapid reset, PING or
  // SETTINGS ACKs the client never reads, CONTINUATION runs), and protocol
  // errors (GOAWAY with an error, a broken preface).
  Counter http2_flood_closes;
  Counter http2_protocol_closes;
  Counter detected[kDetectionOutcomes];  // protocol: auto, by DetectionOutcome
  // gRPC calls by the grpc-status they ended with (0 OK .. 16 UNAUTHENTICATED).
  Counter grpc_status[kGrpcStatuses];
  // Connections refused at accept: the listener's or the proxy's
  // max_connections reached with no idle connection to close instead.
  Counter connections_overflow;
  // Idle keep-alive connections closed to make room for new ones.
  Counter idle_connections_shed;
  Counter rate_limited;        // answered 429 by a rate limit
  Counter rate_limit_delayed;  // held by a leaky-bucket rate limit
  Histogram request_duration;

  void count_status(int status) {
    if (status >= 100 && status < 600) requests[status / 100 - 1].inc();
  }
};

struct ClusterStats {
  Counter connects;
  Counter connect_failures;
  Gauge connections_active;
  Counter requests;
  Counter bytes_sent;
  Counter bytes_received;
  Counter timeouts;
  Counter protocol_errors;
  Counter retries;                 // tries after the first (not the free retry of a stale pooled connection)
  Counter retry_budget_exhausted;  // retries the budget refused
  Counter mirrored;                // copies sent here by a request mirror
  Counter fault_aborts;            // requests answered by an injected fault instead of sent here
  Counter fault_delays;
  Counter overflow[4];       // requests refused by the circuit breaker, by policy::Resource
  Counter concurrency_shed;  // requests refused by the adaptive concurrency limit
};

// Authorization decisions on one listener by one AuthorizationPolicy (or by
// the default action).
struct AuthzStats {
  Counter allowed;
  Counter denied;
};

// Owns every stats block. Used on the main thread only: blocks are created when
// a config is applied (before workers see it) and read when /stats is served.
// How hard the proxy is pressed for memory (runtime/server.cc decides once
// a second): near its heap limit it closes idle keep-alive connections; at
// the limit it also refuses new connections and requests.
enum class OverloadLevel : int { kNone = 0, kShedIdle = 1, kRefuse = 2 };

// The overload manager's state and what it did, for the whole proxy: set by
// the main thread, counted by any worker (rarely: only while overloaded).
struct OverloadState {
  std::atomic<uint64_t> heap_bytes{0};  // allocated through malloc, at the last check
  std::atomic<uint64_t> heap_limit{0};  // 0: no limit
  std::atomic<int> level{0};            // an OverloadLevel
  std::atomic<uint64_t> idle_connections_shed{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> requests_refused{0};

  bool refusing() const {
    return level.load(std::memory_order_relaxed) >= static_cast<int>(OverloadLevel::kRefuse);
  }
};

class GoldenTable;
class Tap;

class StatsRegistry {
 public:
  explicit StatsRegistry(size_t workers);
  ~StatsRegistry();

  // Per-worker blocks for a name; created on first use and kept for the life of
  // the process so counters survive reloads.
  const std::vector<ListenerStats*>& listener(const std::string& name);
  const std::vector<ClusterStats*>& cluster(const std::string& name);
  // `policy` "<namespace>/<name>", or "default" for the default action.
  const std::vector<AuthzStats*>& authz(const std::string& listener, const std::string& policy);

  OverloadState& overload() { return overload_; }
  // Access-log lines over the process's life: written, and dropped (the
  // writer held too much, or the write failed).
  std::atomic<uint64_t>& access_log_lines_written() { return access_lines_written_; }
  std::atomic<uint64_t>& access_log_lines_dropped() { return access_lines_dropped_; }
  // Worker `worker`'s golden metrics (golden.h), for the life of the process.
  GoldenTable* golden(size_t worker) { return golden_[worker].get(); }
  const std::vector<std::unique_ptr<GoldenTable>>& golden_tables() const { return golden_; }
  // The tap on requests (tap.h), for the life of the process.
  Tap& tap() { return *tap_; }

  std::string render_prometheus() const;

  template <class T>
  struct Family {
    std::vector<std::unique_ptr<T>> owned;
    std::vector<T*> per_worker;
  };

 private:
  size_t workers_;
  std::unique_ptr<Tap> tap_;
  std::map<std::string, Family<ListenerStats>> listeners_;
  std::map<std::string, Family<ClusterStats>> clusters_;
  std::map<std::string, Family<AuthzStats>> authz_;  // by "<listener>\n<policy>"
  OverloadState overload_;
  std::atomic<uint64_t> access_lines_written_{0};
  std::atomic<uint64_t> access_lines_dropped_{0};
  std::vector<std::unique_ptr<GoldenTable>> golden_;  // one per worker
};

}  // namespace trellis::proxy
