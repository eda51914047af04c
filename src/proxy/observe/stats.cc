#include "proxy/observe/stats.h"

#include <fmt/format.h>

#include <array>

#include "policy/circuit_breaker.h"
#include "proxy/observe/golden.h"
#include "proxy/observe/tap.h"

namespace trellis::proxy {

void Histogram::record(Duration d) {
  auto us = std::chrono::duration_cast<Micros>(d).count();
  if (us < 0) us = 0;
  buckets_[latency_bucket(Micros(us))].inc();
  count_.inc();
  sum_us_.inc(static_cast<uint64_t>(us));
}

namespace {

template <class S>
const std::vector<S*>& get_or_create(std::map<std::string, StatsRegistry::Family<S>>& families,
                                     const std::string& name, size_t workers) {
  auto& f = families[name];
  if (f.per_worker.empty()) {
    for (size_t i = 0; i < workers; ++i) {
      f.owned.push_back(std::make_unique<S>());
      f.per_worker.push_back(f.owned.back().get());
    }
  }
  return f.per_worker;
}

template <class T, class F>
uint64_t sum(const std::vector<T*>& blocks, F get) {
  uint64_t total = 0;
  for (const T* b : blocks) total += get(*b);
  return total;
}

template <class T, class F>
int64_t sum_gauge(const std::vector<T*>& blocks, F get) {
  int64_t total = 0;
  for (const T* b : blocks) total += get(*b);
  return total;
}

}  // namespace

StatsRegistry::StatsRegistry(size_t workers) : workers_(workers), tap_(std::make_unique<Tap>(workers)) {
  for (size_t i = 0; i < workers; ++i) golden_.push_back(std::make_unique<GoldenTable>());
}

StatsRegistry::~StatsRegistry() = default;

const std::vector<ListenerStats*>& StatsRegistry::listener(const std::string& name) {
  return get_or_create(listeners_, name, workers_);
}

const std::vector<ClusterStats*>& StatsRegistry::cluster(const std::string& name) {
  return get_or_create(clusters_, name, workers_);
}

const std::vector<AuthzStats*>& StatsRegistry::authz(const std::string& listener, const std::string& policy) {
  return get_or_create(authz_, listener + "\n" + policy, workers_);
}

std::string StatsRegistry::render_prometheus() const {
  std::string out;
  out.reserve(8192);
  auto it = std::back_inserter(out);

  auto listener_counter = [&](const char* name, const char* help, auto get) {
    append_metric_header(out, name, "counter", help);
    for (auto& [lname, f] : listeners_)
      fmt::format_to(it, "{}{{listener=\"{}\"}} {}\n", name, lname, sum(f.per_worker, get));
  };
  auto cluster_counter = [&](const char* name, const char* help, auto get) {
    append_metric_header(out, name, "counter", help);
    for (auto& [cname, f] : clusters_)
      fmt::format_to(it, "{}{{cluster=\"{}\"}} {}\n", name, cname, sum(f.per_worker, get));
  };

  append_metric_header(out, "trellis_downstream_connections_active", "gauge", "Open client connections.");
  for (auto& [lname, f] : listeners_)
    fmt::format_to(
        it, "trellis_downstream_connections_active{{listener=\"{}\"}} {}\n", lname,
        sum_gauge(f.per_worker, [](const ListenerStats& s) { return s.connections_active.value(); }));
  listener_counter("trellis_downstream_connections_total", "Client connections accepted.",
                   [](const ListenerStats& s) { return s.connections_total.value(); });
  listener_counter("trellis_downstream_bytes_received_total", "Bytes received from clients.",
                   [](const ListenerStats& s) { return s.bytes_received.value(); });
  listener_counter("trellis_downstream_bytes_sent_total", "Bytes sent to clients.",
                   [](const ListenerStats& s) { return s.bytes_sent.value(); });
  listener_counter("trellis_http_malformed_requests_total",
                   "Requests refused as malformed (400/431), never forwarded.",
                   [](const ListenerStats& s) { return s.malformed_requests.value(); });
  listener_counter("trellis_http_request_head_timeouts_total",
                   "Requests whose head (HTTP/2: header section) did not arrive whole within the listener's "
                   "request_head_timeout of its first byte: answered 408, the connection closed.",
                   [](const ListenerStats& s) { return s.request_head_timeouts.value(); });
  listener_counter("trellis_http_request_body_timeouts_total",
                   "Requests whose body came slower than the listener's request_body_timeout and "
                   "request_body_min_rate allow: answered 408.",
                   [](const ListenerStats& s) { return s.request_body_timeouts.value(); });
  append_metric_header(
      out, "trellis_http2_misbehaving_connections_total", "counter",
      "HTTP/2 client connections ended for misbehaving: flood (rapid reset, unread PING or SETTINGS "
      "acknowledgements, CONTINUATION runs) or protocol (a connection error).");
  for (auto& [lname, f] : listeners_) {
    fmt::format_to(it, "trellis_http2_misbehaving_connections_total{{listener=\"{}\",reason=\"flood\"}} {}\n",
                   lname,
                   sum(f.per_worker, [](const ListenerStats& s) { return s.http2_flood_closes.value(); }));
    fmt::format_to(
        it, "trellis_http2_misbehaving_connections_total{{listener=\"{}\",reason=\"protocol\"}} {}\n", lname,
        sum(f.per_worker, [](const ListenerStats& s) { return s.http2_protocol_closes.value(); }));
  }
  append_metric_header(
      out, "trellis_protocol_detection_total", "counter",
      "Connections to protocol: auto listeners, by what their first bytes were taken for: http1, http2, "
      "or proxied as TCP (tcp: other bytes, tls: TLS not terminated here, timeout: nothing within "
      "detect_timeout); closed: the client left first.");
  static constexpr const char* kOutcomes[kDetectionOutcomes] = {"http1", "http2",   "tcp",
                                                                "tls",   "timeout", "closed"};
  for (auto& [lname, f] : listeners_)
    for (size_t o = 0; o < kDetectionOutcomes; ++o)
      fmt::format_to(it, "trellis_protocol_detection_total{{listener=\"{}\",outcome=\"{}\"}} {}\n", lname,
                     kOutcomes[o],
                     sum(f.per_worker, [o](const ListenerStats& s) { return s.detected[o].value(); }));
  append_metric_header(
      out, "trellis_grpc_requests_total", "counter",
      "gRPC calls (content-type application/grpc) by the grpc-status they ended with, from the "
      "upstream's trailers or the proxy's own answer: an error is a 200 to HTTP, not a success.");
  for (auto& [lname, f] : listeners_)
    for (size_t code = 0; code < kGrpcStatuses; ++code) {
      uint64_t n = sum(f.per_worker, [code](const ListenerStats& s) { return s.grpc_status[code].value(); });
      if (n > 0)
        fmt::format_to(it, "trellis_grpc_requests_total{{listener=\"{}\",grpc_status=\"{}\"}} {}\n", lname,
                       code, n);
    }
  listener_counter("trellis_downstream_connections_overflow_total",
                   "Client connections refused at accept: max_connections (the listener's or the proxy's) "
                   "reached, or no file descriptor left, with no idle connection to close instead.",
                   [](const ListenerStats& s) { return s.connections_overflow.value(); });
  listener_counter("trellis_downstream_idle_connections_shed_total",
                   "Idle keep-alive client connections closed to make room for a new one.",
                   [](const ListenerStats& s) { return s.idle_connections_shed.value(); });
  listener_counter("trellis_http_rate_limited_total", "Requests answered 429 by a rate limit.",
                   [](const ListenerStats& s) { return s.rate_limited.value(); });
  listener_counter("trellis_http_rate_limit_delayed_total", "Requests held by a leaky-bucket rate limit.",
                   [](const ListenerStats& s) { return s.rate_limit_delayed.value(); });

  append_metric_header(out, "trellis_http_requests_total", "counter",
                       "HTTP requests answered, by status class.");
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (auto& [lname, f] : listeners_)
    for (size_t c = 0; c < 5; ++c)
      fmt::format_to(it, "trellis_http_requests_total{{listener=\"{}\",code_class=\"{}\"}} {}\n", lname,
                     kClasses[c],
                     sum(f.per_worker, [c](const ListenerStats& s) { return s.requests[c].value(); }));

  append_metric_header(out, "trellis_http_request_duration_seconds", "histogram",
                       "Time from the request head to the last response byte.");
  for (auto& [lname, f] : listeners_) {
    std::array<uint64_t, Histogram::kBuckets> buckets{};
    for (size_t b = 0; b < Histogram::kBuckets; ++b)
      buckets[b] = sum(f.per_worker, [b](const ListenerStats& s) { return s.request_duration.bucket(b); });
    uint64_t sum_us =
        sum(f.per_worker, [](const ListenerStats& s) { return s.request_duration.sum_micros(); });
    append_histogram(out, "trellis_http_request_duration_seconds", fmt::format("listener=\"{}\"", lname),
                     buckets,
                     sum(f.per_worker, [](const ListenerStats& s) { return s.request_duration.count(); }),
                     static_cast<double>(sum_us) / 1e6);
  }

  append_metric_header(out, "trellis_upstream_connections_active", "gauge", "Open upstream connections.");
  for (auto& [cname, f] : clusters_)
    fmt::format_to(
        it, "trellis_upstream_connections_active{{cluster=\"{}\"}} {}\n", cname,
        sum_gauge(f.per_worker, [](const ClusterStats& s) { return s.connections_active.value(); }));
  cluster_counter("trellis_upstream_connects_total", "Upstream connections opened.",
                  [](const ClusterStats& s) { return s.connects.value(); });
  cluster_counter("trellis_upstream_connect_failures_total", "Upstream connects that failed or timed out.",
                  [](const ClusterStats& s) { return s.connect_failures.value(); });
  cluster_counter("trellis_upstream_requests_total", "Requests sent upstream.",
                  [](const ClusterStats& s) { return s.requests.value(); });
  cluster_counter("trellis_upstream_bytes_sent_total", "Bytes sent to upstreams.",
                  [](const ClusterStats& s) { return s.bytes_sent.value(); });
  cluster_counter("trellis_upstream_bytes_received_total", "Bytes received from upstreams.",
                  [](const ClusterStats& s) { return s.bytes_received.value(); });
  cluster_counter("trellis_upstream_timeouts_total", "Upstream requests that timed out.",
                  [](const ClusterStats& s) { return s.timeouts.value(); });
  cluster_counter("trellis_upstream_protocol_errors_total", "Malformed or reset upstream responses.",
                  [](const ClusterStats& s) { return s.protocol_errors.value(); });
  cluster_counter("trellis_upstream_retries_total", "Retries sent upstream.",
                  [](const ClusterStats& s) { return s.retries.value(); });
  cluster_counter("trellis_upstream_retry_budget_exhausted_total",
                  "Retries not made because the retry budget was spent.",
                  [](const ClusterStats& s) { return s.retry_budget_exhausted.value(); });
  cluster_counter("trellis_upstream_mirrored_total", "Mirrored copies of requests sent upstream.",
                  [](const ClusterStats& s) { return s.mirrored.value(); });
  cluster_counter("trellis_upstream_fault_aborts_total", "Requests answered by an injected abort.",
                  [](const ClusterStats& s) { return s.fault_aborts.value(); });
  cluster_counter("trellis_upstream_fault_delays_total", "Requests held by an injected delay.",
                  [](const ClusterStats& s) { return s.fault_delays.value(); });
  cluster_counter("trellis_upstream_concurrency_shed_total",
                  "Requests shed by the adaptive concurrency limit.",
                  [](const ClusterStats& s) { return s.concurrency_shed.value(); });
  append_metric_header(out, "trellis_upstream_overflow_total", "counter",
                       "Requests (and retries) refused because a circuit-breaker limit was reached.");
  for (auto& [cname, f] : clusters_) {
    for (size_t r = 0; r < policy::kResourceCount; ++r) {
      fmt::format_to(it, "trellis_upstream_overflow_total{{cluster=\"{}\",limit=\"{}\"}} {}\n", cname,
                     policy::name_of(static_cast<policy::Resource>(r)),
                     sum(f.per_worker, [r](const ClusterStats& s) { return s.overflow[r].value(); }));
    }
  }
  append_metric_header(
      out, "trellis_authz_decisions_total", "counter",
      "Authorization decisions by listener, deciding policy (or the default action) and decision.");
  for (auto& [key, f] : authz_) {
    const size_t cut = key.find('\n');
    const std::string_view listener = std::string_view(key).substr(0, cut);
    const std::string_view policy = std::string_view(key).substr(cut + 1);
    fmt::format_to(
        it, "trellis_authz_decisions_total{{listener=\"{}\",policy=\"{}\",decision=\"allow\"}} {}\n",
        listener, policy, sum(f.per_worker, [](const AuthzStats& s) { return s.allowed.value(); }));
    fmt::format_to(it,
                   "trellis_authz_decisions_total{{listener=\"{}\",policy=\"{}\",decision=\"deny\"}} {}\n",
                   listener, policy, sum(f.per_worker, [](const AuthzStats& s) { return s.denied.value(); }));
  }

  const auto relaxed = std::memory_order_relaxed;
  append_metric_header(
      out, "trellis_overload_heap_bytes", "gauge",
      "Memory allocated by the proxy (malloc): checked once a second with a heap limit, every 10 s "
      "without one.");
  fmt::format_to(it, "trellis_overload_heap_bytes {}\n", overload_.heap_bytes.load(relaxed));
  append_metric_header(out, "trellis_overload_heap_limit_bytes", "gauge",
                       "The proxy's max_heap_bytes; 0: no limit.");
  fmt::format_to(it, "trellis_overload_heap_limit_bytes {}\n", overload_.heap_limit.load(relaxed));
  append_metric_header(
      out, "trellis_overload_level", "gauge",
      "0: normal; 1: at 90% of max_heap_bytes, idle keep-alive connections are closed; 2: at the limit, new "
      "connections and requests are refused too.");
  fmt::format_to(it, "trellis_overload_level {}\n", overload_.level.load(relaxed));
  append_metric_header(out, "trellis_overload_idle_connections_shed_total", "counter",
                       "Idle keep-alive client connections closed because memory ran short.");
  fmt::format_to(it, "trellis_overload_idle_connections_shed_total {}\n",
                 overload_.idle_connections_shed.load(relaxed));
  append_metric_header(
      out, "trellis_overload_refused_total", "counter",
      "Client connections (closed at once, or 503 on plain HTTP) and requests (503) refused at the heap "
      "limit.");
  fmt::format_to(it, "trellis_overload_refused_total{{what=\"connection\"}} {}\n",
                 overload_.connections_refused.load(relaxed));
  fmt::format_to(it, "trellis_overload_refused_total{{what=\"request\"}} {}\n",
                 overload_.requests_refused.load(relaxed));
  append_metric_header(
      out, "trellis_access_log_lines_total", "counter",
      "Access-log lines: written, or dropped (8 MiB were waiting for a slow file or pipe, or "
      "the write failed).");
  fmt::format_to(it, "trellis_access_log_lines_total{{outcome=\"written\"}} {}\n",
                 access_lines_written_.load(relaxed));
  fmt::format_to(it, "trellis_access_log_lines_total{{outcome=\"dropped\"}} {}\n",
                 access_lines_dropped_.load(relaxed));
  render_golden(golden_, out);
  return out;
}

}  // namespace trellis::proxy
