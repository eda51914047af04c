// A tap on the requests this proxy handles, for `trellis tap` and `trellis
// top`: off until someone asks its admin endpoint for events (then a request
// costs one relaxed load), on while asked at least every kIdle.
//
// While on, each worker queues an event per request, up to kPerWorker
// between two reads (more are dropped and counted). The admin thread moves
// them into a ring of the last kRing events, each numbered, which readers
// page through with the number of the last event they saw.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace trellis::proxy {

struct TapEvent {
  uint64_t seq = 0;  // numbered by the ring
  int64_t start_unix_ms = 0;
  uint32_t duration_us = 0;
  int status = 0;        // 0: no answer
  int grpc_status = -1;  // -1: not a gRPC call, or none
  bool inbound = false;
  bool tls = false;
  std::string method, authority, path;  // the path cut at kMaxPath bytes
  std::string source_service, source_namespace, destination_service, destination_namespace, route;
  std::string upstream;  // the endpoint's address, or ""
};

// Which events a reader wants; empty fields take any.
struct TapFilter {
  std::string method;       // exactly
  std::string path_prefix;  // the path starts with it
  std::string direction;    // "inbound" or "outbound"
  bool matches(const TapEvent& e) const;
};

class Tap {
 public:
  static constexpr size_t kPerWorker = 4096;
  static constexpr size_t kRing = 16384;
  static constexpr size_t kMaxPath = 512;
  static constexpr std::chrono::seconds kIdle{10};

  explicit Tap(size_t workers);

  // Worker threads: whether to record, and the record.
  bool on() const { return on_.load(std::memory_order_relaxed); }
  void record(size_t worker, TapEvent event);

  // The admin thread. Turns the tap on (a reader asked at `now`).
  void keep_on(std::chrono::steady_clock::time_point now);
  // Turns it off and forgets its events when nobody asked for kIdle; true
  // while it stays on.
  bool expire(std::chrono::steady_clock::time_point now);

  struct Page {
    std::vector<const TapEvent*> events;  // valid until the next call
    uint64_t last = 0;                    // the number to ask after next time
    uint64_t missed = 0;                  // events after `after` already gone from the ring
    uint64_t dropped = 0;                 // events workers could not queue, since the tap came on
  };
  // The number of the newest event (0: none yet).
  uint64_t newest() {
    drain();
    return next_seq_ - 1;
  }
  // Up to `max` events numbered after `after` that pass `filter`.
  Page read(uint64_t after, const TapFilter& filter, size_t max);

 private:
  struct Queue {
    std::mutex mu;
    std::vector<TapEvent> events;
    uint64_t dropped = 0;
  };
  void drain();

  std::atomic<bool> on_{false};
  std::vector<std::unique_ptr<Queue>> queues_;
  std::deque<TapEvent> ring_;
  uint64_t next_seq_ = 1;
  uint64_t dropped_ = 0;
  std::chrono::steady_clock::time_point last_asked_{};
};

}  // namespace trellis::proxy
