#include "proxy/observe/golden.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <functional>
#include <map>
#include <tuple>

namespace trellis::proxy {

std::pair<std::string_view, std::string_view> service_of_identity(std::string_view identity) {
  constexpr std::string_view kScheme = "spiffe://";
  if (!identity.starts_with(kScheme)) return {};
  std::string_view rest = identity.substr(kScheme.size());
  size_t ns = rest.find("/ns/");
  if (ns == std::string_view::npos) return {};
  rest = rest.substr(ns + 4);
  size_t sa = rest.find("/sa/");
  if (sa == std::string_view::npos || sa == 0) return {};
  std::string_view account = rest.substr(sa + 4);
  if (account.empty() || account.find('/') != std::string_view::npos) return {};
  return {account, rest.substr(0, sa)};
}

GoldenLabels golden_labels(Direction direction, std::string_view self_service,
                           std::string_view self_namespace, std::string_view peer_identity,
                           const ClusterConfig* cluster, bool upstream_tls) {
  GoldenLabels labels;
  labels.direction = direction;
  if (direction == Direction::kInbound) {
    // The caller is who its certificate says; without one, unknown.
    std::tie(labels.source_service, labels.source_namespace) = service_of_identity(peer_identity);
    labels.tls = !peer_identity.empty();
    labels.destination_service = self_service;
    labels.destination_namespace = self_namespace;
  } else {
    labels.source_service = self_service;
    labels.source_namespace = self_namespace;
    if (cluster != nullptr) {
      labels.destination_service =
          cluster->service.empty() ? std::string_view(cluster->name) : cluster->service;
      labels.destination_namespace = cluster->service_namespace;
      labels.tls = upstream_tls;
    }
  }
  return labels;
}

void GoldenEntry::record_request(int status, int grpc_status, Duration elapsed, uint64_t request_bytes,
                                 uint64_t response_bytes) {
  const uint32_t key = encode(status, grpc_status) + 1;
  Counter* counter = &other_;
  for (Slot& s : slots_) {
    uint32_t k = s.key.load(std::memory_order_relaxed);
    if (k == key) {
      counter = &s.count;
      break;
    }
    if (k == 0) {  // the first free slot: this pair is new (slots fill in order)
      s.key.store(key, std::memory_order_release);
      counter = &s.count;
      break;
    }
  }
  counter->inc();
  duration_[golden_failure(status, grpc_status) ? 1 : 0].record(elapsed);
  request_bytes_.inc(request_bytes);
  response_bytes_.inc(response_bytes);
}

size_t GoldenTable::Hash::operator()(const GoldenLabels& l) const {
  std::hash<std::string_view> h;
  size_t v = static_cast<size_t>(l.direction) * 2 + (l.tls ? 1 : 0);
  for (std::string_view s :
       {l.source_service, l.source_namespace, l.destination_service, l.destination_namespace, l.route})
    v = v * 1000003 ^ h(s);
  return v;
}

GoldenEntry& GoldenTable::entry(const GoldenLabels& labels) {
  auto it = index_.find(labels);
  if (it != index_.end()) return *it->second;
  if (index_.size() >= kMaxEntries) {
    if (overflow_ == nullptr) {
      constexpr std::string_view kOverflow = "overflow";
      overflow_ = &make({labels.direction, false, kOverflow, kOverflow, kOverflow, kOverflow, kOverflow});
    }
    return *overflow_;
  }
  GoldenEntry& e = make(labels);
  index_.emplace(e.labels_, &e);
  return e;
}

GoldenEntry& GoldenTable::make(const GoldenLabels& labels) {
  auto e = std::make_unique<GoldenEntry>();
  e->source_service_ = labels.source_service;
  e->source_namespace_ = labels.source_namespace;
  e->destination_service_ = labels.destination_service;
  e->destination_namespace_ = labels.destination_namespace;
  e->route_ = labels.route;
  e->labels_ = {labels.direction,
                labels.tls,
                e->source_service_,
                e->source_namespace_,
                e->destination_service_,
                e->destination_namespace_,
                e->route_};
  GoldenEntry& ref = *e;
  std::lock_guard lock(mu_);
  entries_.push_back(std::move(e));
  return ref;
}

namespace {

// A label set's numbers summed over the workers.
struct Sum {
  const GoldenLabels* labels = nullptr;   // of the first entry summed (entries live as long as the process)
  std::map<uint32_t, uint64_t> statuses;  // by GoldenEntry::encode
  uint64_t other = 0;
  struct Durations {
    std::array<uint64_t, Histogram::kBuckets> buckets{};
    uint64_t count = 0;
    uint64_t sum_us = 0;
  } durations[2];
  uint64_t request_bytes = 0, response_bytes = 0;
  uint64_t tcp_opened = 0, tcp_closed = 0, tcp_received = 0, tcp_sent = 0;
};

void append_value(std::string& out, std::string_view v) {
  if (v.empty()) v = "unknown";
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
}

// direction="...",source_service="...",... (names and values checked at
// config time; escaped anyway).
std::string label_text(const GoldenLabels& l) {
  std::string out = "direction=\"";
  out += l.direction == Direction::kInbound ? "inbound" : "outbound";
  out += "\",source_service=\"";
  append_value(out, l.source_service);
  out += "\",source_namespace=\"";
  append_value(out, l.source_namespace);
  out += "\",destination_service=\"";
  append_value(out, l.destination_service);
  out += "\",destination_namespace=\"";
  append_value(out, l.destination_namespace);
  out += "\",route=\"";
  for (char c : l.route) out += c == '"' || c == '\\' ? '_' : c;
  out += "\",tls=\"";
  out += l.tls ? "true" : "false";
  out += '"';
  return out;
}

// Every worker's entries, summed by label set (keyed by label_text).
std::map<std::string, Sum> sum_tables(const std::vector<std::unique_ptr<GoldenTable>>& tables) {
  std::map<std::string, Sum> sums;
  for (const auto& table : tables) {
    table->for_each([&](const GoldenEntry& e) {
      Sum& s = sums[label_text(e.labels())];
      if (s.labels == nullptr) s.labels = &e.labels();
      for (size_t i = 0; i < GoldenEntry::kSlots; ++i) {
        uint32_t key = e.slot(i).key.load(std::memory_order_acquire);
        if (key == 0) break;
        s.statuses[key - 1] += e.slot(i).count.value();
      }
      s.other += e.other_statuses();
      for (int f = 0; f < 2; ++f) {
        const Histogram& h = e.duration(f == 1);
        for (size_t b = 0; b < Histogram::kBuckets; ++b) s.durations[f].buckets[b] += h.bucket(b);
        s.durations[f].count += h.count();
        s.durations[f].sum_us += h.sum_micros();
      }
      s.request_bytes += e.request_bytes();
      s.response_bytes += e.response_bytes();
      s.tcp_opened += e.tcp_opened();
      s.tcp_closed += e.tcp_closed();
      s.tcp_received += e.tcp_received();
      s.tcp_sent += e.tcp_sent();
    });
  }
  return sums;
}

}  // namespace

void render_golden_json(const std::vector<std::unique_ptr<GoldenTable>>& tables, std::string& out) {
  nlohmann::json series = nlohmann::json::array();
  for (const auto& [key, s] : sum_tables(tables)) {
    uint64_t failure = 0, success = 0;
    nlohmann::json codes = nlohmann::json::object();  // "503": n (0: no answer), whatever the gRPC status
    for (const auto& [code, n] : s.statuses) {
      auto [status, grpc] = GoldenEntry::decode(code);
      (golden_failure(status, grpc) ? failure : success) += n;
      nlohmann::json& count = codes[std::to_string(status)];
      count = (count.is_null() ? 0 : count.get<uint64_t>()) + n;
    }
    nlohmann::json buckets = nlohmann::json::array();
    for (size_t b = 0; b < Histogram::kBuckets; ++b)
      buckets.push_back(s.durations[0].buckets[b] + s.durations[1].buckets[b]);
    const GoldenLabels& l = *s.labels;
    series.push_back({{"direction", l.direction == Direction::kInbound ? "inbound" : "outbound"},
                      {"source_service", l.source_service},
                      {"source_namespace", l.source_namespace},
                      {"destination_service", l.destination_service},
                      {"destination_namespace", l.destination_namespace},
                      {"route", l.route},
                      {"tls", l.tls},
                      {"success", success},
                      {"failure", failure + s.other},
                      {"status_codes", std::move(codes)},
                      {"duration_buckets", std::move(buckets)},
                      {"tcp_opened", s.tcp_opened},
                      {"tcp_received_bytes", s.tcp_received},
                      {"tcp_sent_bytes", s.tcp_sent}});
  }
  nlohmann::json bounds = nlohmann::json::array();
  for (double b : kLatencyBoundsSeconds) bounds.push_back(b);
  out = nlohmann::json{{"bucket_bounds_seconds", std::move(bounds)}, {"series", std::move(series)}}.dump();
}

void render_golden(const std::vector<std::unique_ptr<GoldenTable>>& tables, std::string& out) {
  std::map<std::string, Sum> sums = sum_tables(tables);
  auto it = std::back_inserter(out);
  auto has_requests = [](const Sum& s) { return s.durations[0].count + s.durations[1].count > 0; };

  append_metric_header(
      out, "trellis_requests_total", "counter",
      "HTTP requests by who called whom (direction inbound: counted by the destination's proxy; outbound: "
      "by the source's), route, status code (0: no answer), gRPC status and classification (failure: 5xx, "
      "no answer, or a gRPC status other than OK).");
  for (const auto& [labels, s] : sums) {
    for (const auto& [key, n] : s.statuses) {
      auto [status, grpc] = GoldenEntry::decode(key);
      fmt::format_to(
          it, "trellis_requests_total{{{},status_code=\"{}\",grpc_status=\"{}\",classification=\"{}\"}} {}\n",
          labels, status, grpc >= 0 ? fmt::to_string(grpc) : std::string(),
          golden_failure(status, grpc) ? "failure" : "success", n);
    }
    if (s.other > 0)
      fmt::format_to(
          it, "trellis_requests_total{{{},status_code=\"other\",grpc_status=\"\",classification=\"\"}} {}\n",
          labels, s.other);
  }
  append_metric_header(
      out, "trellis_request_duration_seconds", "histogram",
      "Time from the request head to the last response byte, by the labels of trellis_requests_total "
      "except status codes.");
  for (const auto& [labels, s] : sums) {
    for (int f = 0; f < 2; ++f) {
      const Sum::Durations& d = s.durations[f];
      if (d.count == 0) continue;
      append_histogram(out, "trellis_request_duration_seconds",
                       fmt::format("{},classification=\"{}\"", labels, f == 1 ? "failure" : "success"),
                       d.buckets, d.count, static_cast<double>(d.sum_us) / 1e6);
    }
  }
  append_metric_header(out, "trellis_request_bytes_total", "counter",
                       "Request bytes received from clients, bodies included.");
  for (const auto& [labels, s] : sums)
    if (has_requests(s))
      fmt::format_to(it, "trellis_request_bytes_total{{{}}} {}\n", labels, s.request_bytes);
  append_metric_header(out, "trellis_response_bytes_total", "counter",
                       "Response bytes sent to clients, bodies included.");
  for (const auto& [labels, s] : sums)
    if (has_requests(s))
      fmt::format_to(it, "trellis_response_bytes_total{{{}}} {}\n", labels, s.response_bytes);

  struct Tcp {
    const char* name;
    const char* help;
    uint64_t Sum::*field;
  };
  static constexpr Tcp kTcp[] = {
      {"trellis_tcp_connections_opened_total", "TCP connections proxied as TCP, opened.", &Sum::tcp_opened},
      {"trellis_tcp_connections_closed_total", "TCP connections proxied as TCP, closed.", &Sum::tcp_closed},
      {"trellis_tcp_received_bytes_total", "Bytes received from the clients of TCP connections.",
       &Sum::tcp_received},
      {"trellis_tcp_sent_bytes_total", "Bytes sent to the clients of TCP connections.", &Sum::tcp_sent},
  };
  for (const Tcp& t : kTcp) {
    append_metric_header(out, t.name, "counter", t.help);
    for (const auto& [labels, s] : sums)
      if (s.tcp_opened > 0) fmt::format_to(it, "{}{{{}}} {}\n", t.name, labels, s.*(t.field));
  }
}

}  // namespace trellis::proxy
