#include "proxy/observe/tracer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <chrono>

#include "common/prometheus_text.h"
#include "common/quiet_thread.h"
#include "http/http1/blocking_client.h"

namespace trellis::proxy {
namespace {

using Json = nlohmann::ordered_json;

constexpr auto kExportInterval = std::chrono::seconds(1);
constexpr std::chrono::seconds kExportTimeout(2);

Json string_attribute(std::string_view key, const std::string& value) {
  return Json{{"key", key}, {"value", Json{{"stringValue", value}}}};
}

}  // namespace

Tracer::Tracer(size_t workers) {
  for (size_t i = 0; i < workers; ++i) queues_.push_back(std::make_unique<Queue>());
}

Tracer::~Tracer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (exporter_.joinable()) exporter_.join();
}

void Tracer::configure(const net::SocketAddress& collector, std::string service_name) {
  {
    std::lock_guard lock(mu_);
    collector_ = collector;
    service_name_ = std::move(service_name);
  }
  if (!exporter_.joinable()) exporter_ = quiet_thread([this] { run(); });
}

void Tracer::submit(size_t worker, SpanRecord&& span) {
  Queue& q = *queues_[worker];
  std::lock_guard lock(q.mu);
  if (q.spans.size() >= kQueuePerWorker) {
    dropped_queue_full_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  q.spans.push_back(std::move(span));
}

void Tracer::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, kExportInterval);
    if (stopping_) break;
    lock.unlock();
    export_queued();
    lock.lock();
  }
}

void Tracer::export_queued() {
  std::vector<SpanRecord> spans;
  for (auto& q : queues_) {
    std::vector<SpanRecord> taken;
    {
      std::lock_guard lock(q->mu);
      taken.swap(q->spans);
    }
    for (SpanRecord& s : taken) spans.push_back(std::move(s));
  }
  if (spans.empty()) return;
  net::SocketAddress collector;
  std::string service;
  {
    std::lock_guard lock(mu_);
    collector = collector_;
    service = service_name_;
  }
  for (size_t at = 0; at < spans.size(); at += kBatch) {
    std::vector<SpanRecord> batch(
        std::make_move_iterator(spans.begin() + static_cast<std::ptrdiff_t>(at)),
        std::make_move_iterator(spans.begin() +
                                static_cast<std::ptrdiff_t>(std::min(spans.size(), at + kBatch))));
    if (collector.length != 0 && post(collector, encode(batch, service))) {
      exported_.fetch_add(batch.size(), std::memory_order_relaxed);
    } else {
      dropped_export_failed_.fetch_add(batch.size(), std::memory_order_relaxed);
    }
  }
}

std::string Tracer::encode(const std::vector<SpanRecord>& spans, const std::string& service_name) {
  Json out = Json::array();
  for (const SpanRecord& s : spans) {
    Json attributes = Json::array();
    for (const auto& [key, value] : s.strings) attributes.push_back(string_attribute(key, value));
    for (const auto& [key, value] : s.integers)
      attributes.push_back(Json{{"key", key}, {"value", Json{{"intValue", std::to_string(value)}}}});
    Json span{{"traceId", to_hex(s.trace_id)},
              {"spanId", to_hex(s.span_id)},
              {"name", s.name},
              {"kind", s.server ? 2 : 3},  // SPAN_KIND_SERVER, SPAN_KIND_CLIENT
              {"startTimeUnixNano", std::to_string(s.start_unix_ns)},
              {"endTimeUnixNano", std::to_string(s.end_unix_ns)},
              {"attributes", std::move(attributes)},
              {"status", Json{{"code", s.error ? 2 : 0}}}};  // STATUS_CODE_ERROR, STATUS_CODE_UNSET
    if (s.has_parent) span["parentSpanId"] = to_hex(s.parent_id);
    out.push_back(std::move(span));
  }
  Json resource{{"attributes", Json::array({string_attribute("service.name", service_name)})}};
  Json body{{"resourceSpans",
             Json::array({Json{{"resource", std::move(resource)},
                               {"scopeSpans", Json::array({Json{{"scope", Json{{"name", "trellis-proxy"}}},
                                                                {"spans", std::move(out)}}})}}})}};
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool Tracer::post(const net::SocketAddress& collector, const std::string& body) {
  std::string request = fmt::format(
      "POST /v1/traces HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
      "Connection: close\r\n\r\n",
      collector.text, body.size());
  request += body;
  auto answer = http::http1::blocking_exchange(collector, request, kExportTimeout, /*max_body=*/0);
  if (!answer) {
    spdlog::debug("tracing: export failed: {}", answer.error().message);
    return false;
  }
  if (answer->status / 100 != 2) {
    spdlog::debug("tracing: the collector at {} answered {}", collector.text, answer->status);
    return false;
  }
  return true;  // the collector took the batch
}

void Tracer::render(std::string& out) const {
  append_metric_header(
      out, "trellis_tracing_spans_total", "counter",
      "Spans of sampled requests by what became of them: exported to the collector, or dropped "
      "(queue_full: the worker's queue held 4,096; export_failed: the collector did not take "
      "them).");
  auto it = std::back_inserter(out);
  fmt::format_to(it, "trellis_tracing_spans_total{{outcome=\"exported\"}} {}\n", exported_.load());
  fmt::format_to(it, "trellis_tracing_spans_total{{outcome=\"queue_full\"}} {}\n",
                 dropped_queue_full_.load());
  fmt::format_to(it, "trellis_tracing_spans_total{{outcome=\"export_failed\"}} {}\n",
                 dropped_export_failed_.load());
}

}  // namespace trellis::proxy
