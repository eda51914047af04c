// Spans of sampled requests, exported to an OpenTelemetry collector over
// OTLP/HTTP (JSON, POST /v1/traces) in batches. Each worker hands its
// finished spans to its own bounded queue (a mutex the exporter takes once
// a second, to swap the queue out); a full queue drops the span and counts
// it. The exporter is a thread of its own: a slow or absent collector never
// holds up a request.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "net/address.h"
#include "proxy/observe/trace_context.h"

namespace trellis::proxy {

struct SpanRecord {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_id{};
  bool has_parent = false;
  bool server = false;  // SPAN_KIND_SERVER (inbound), else SPAN_KIND_CLIENT
  bool error = false;
  int64_t start_unix_ns = 0;
  int64_t end_unix_ns = 0;
  std::string name;
  std::vector<std::pair<std::string_view, std::string>> strings;  // attribute names are literals
  std::vector<std::pair<std::string_view, int64_t>> integers;
};

class Tracer {
 public:
  static constexpr size_t kQueuePerWorker = 4096;
  static constexpr size_t kBatch = 512;

  explicit Tracer(size_t workers);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // Where spans go and the service they belong to (OTLP's service.name);
  // starts the exporter on first use. Main thread.
  void configure(const net::SocketAddress& collector, std::string service_name);
  // A finished span of worker `worker`: queued, or dropped when its queue is full.
  void submit(size_t worker, SpanRecord&& span);
  // Counters for /stats.
  void render(std::string& out) const;

  // The OTLP/JSON body for `spans` (exposed for tests).
  static std::string encode(const std::vector<SpanRecord>& spans, const std::string& service_name);

 private:
  struct Queue {
    std::mutex mu;
    std::vector<SpanRecord> spans;
  };
  void run();
  void export_queued();
  bool post(const net::SocketAddress& collector, const std::string& body);

  std::vector<std::unique_ptr<Queue>> queues_;
  std::mutex mu_;  // guards what follows, and the exporter's wake-ups
  std::condition_variable wake_;
  net::SocketAddress collector_;
  std::string service_name_;
  bool stopping_ = false;
  std::thread exporter_;
  std::atomic<uint64_t> exported_{0};
  std::atomic<uint64_t> dropped_queue_full_{0};
  std::atomic<uint64_t> dropped_export_failed_{0};
};

}  // namespace trellis::proxy
