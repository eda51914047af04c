// `trellis stat`: success rate, request rate and latency per service, route
// or workload, from what the proxies count (their golden metrics, which
// trellis-control gathers): two readings a window apart, and the difference.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/table.h"
#include "http/http1/blocking_client.h"
#include "net/address.h"

namespace trellis::cli {
namespace {

struct StatFlags {
  std::string what = "services";
  std::string namespace_;
  double window_seconds = 10;
  bool watch = false;
  std::string output = "table";
  std::string prometheus;  // http://ip:port of a Prometheus that scrapes the proxies; empty: ask the proxies
  ConnectionFlags connection;
};

// One series' numbers: requests and the latency buckets.
struct Counts {
  double success = 0, failure = 0, tls = 0;
  std::vector<double> buckets;

  // Adds `o` (`sign` -1: takes it away).
  void add(const Counts& o, double sign = 1) {
    success += sign * o.success;
    failure += sign * o.failure;
    tls += sign * o.tls;
    if (buckets.size() < o.buckets.size()) buckets.resize(o.buckets.size());
    for (size_t i = 0; i < o.buckets.size(); ++i) buckets[i] += sign * o.buckets[i];
  }
};

struct Reading {
  std::vector<double> bounds;
  // By (node, series key): counts since each proxy started.
  std::map<std::pair<std::string, std::string>, std::pair<Json, Counts>> series;
  std::vector<std::string> errors;
};

double number(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0;
}

Counts counts_of(const Json& s) {
  Counts c;
  c.success = number(s, "success");
  c.failure = number(s, "failure");
  bool tls = s.value("tls", false);
  c.tls = tls ? c.success + c.failure : 0;
  if (s.contains("duration_buckets") && s["duration_buckets"].is_array())
    for (const Json& b : s["duration_buckets"]) c.buckets.push_back(b.is_number() ? b.get<double>() : 0);
  return c;
}

Result<Reading> read_once(ApiClient& client) {
  Result<ApiReply> reply = client.call("GET", "/v1/golden");
  if (!reply.ok()) return Error{reply.error().message};
  if (!reply->ok()) return Error{reply->error()};
  Reading r;
  const Json& body = reply->body;
  if (body.contains("bucket_bounds_seconds"))
    for (const Json& b : body["bucket_bounds_seconds"]) r.bounds.push_back(b.get<double>());
  for (const Json& p : body.value("proxies", Json::array())) {
    std::string node = json_string(p, "node_id");
    if (p.contains("error")) {
      r.errors.push_back(node + ": " + json_string(p, "error"));
      continue;
    }
    for (const Json& s : p.value("series", Json::array())) {
      std::string key = fmt::format(
          "{}|{}|{}|{}|{}|{}|{}", json_string(s, "direction"), json_string(s, "source_service"),
          json_string(s, "source_namespace"), json_string(s, "destination_service"),
          json_string(s, "destination_namespace"), json_string(s, "route"), s.value("tls", false));
      r.series[{node, key}] = {s, counts_of(s)};
    }
  }
  return r;
}

// The latency below which `q` of the requests ended, interpolated in its
// bucket as Prometheus' histogram_quantile does; NaN without requests.
double quantile(const std::vector<double>& buckets, const std::vector<double>& bounds, double q) {
  double total = 0;
  for (double b : buckets) total += b;
  if (total <= 0) return NAN;
  double rank = q * total, below = 0, lower = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    double upper = i < bounds.size() ? bounds[i] : (bounds.empty() ? 0 : bounds.back());
    if (below + buckets[i] >= rank) {
      if (i >= bounds.size()) return upper;  // +Inf: the highest bound
      return lower + (upper - lower) * (buckets[i] > 0 ? (rank - below) / buckets[i] : 0);
    }
    below += buckets[i];
    lower = upper;
  }
  return bounds.empty() ? NAN : bounds.back();
}

struct Row {
  std::string ns, name, route;
  Counts counts;
  // p50, p95 and p99 in seconds when Prometheus gave them (NaN: none);
  // else they come from the buckets of `counts`.
  std::optional<std::array<double, 3>> quantiles;
};

constexpr std::array<double, 3> kQuantiles = {0.5, 0.95, 0.99};

double row_quantile(const Row& r, const std::vector<double>& bounds, size_t i) {
  return r.quantiles ? (*r.quantiles)[i] : quantile(r.counts.buckets, bounds, kQuantiles[i]);
}

std::vector<Row> rows_of(const StatFlags& flags, const Reading& before, const Reading& after) {
  std::map<std::tuple<std::string, std::string, std::string>, Row> rows;
  for (const auto& [id, value] : after.series) {
    const auto& [json, now] = value;
    Counts delta = now;
    if (auto it = before.series.find(id); it != before.series.end()) {
      const Counts& was = it->second.second;
      // A proxy that restarted counts from zero again.
      if (now.success + now.failure >= was.success + was.failure) delta.add(was, -1);
    }
    std::string direction = json_string(json, "direction");
    std::string ns = json_string(json, "destination_namespace");
    std::string service = json_string(json, "destination_service");
    if (!flags.namespace_.empty() && ns != flags.namespace_) continue;
    Row* row = nullptr;
    if (flags.what == "services" && direction == "inbound") {
      row = &rows[{ns, service, ""}];
      row->name = service;
    } else if (flags.what == "routes" && direction == "outbound") {
      std::string route = json_string(json, "route");
      row = &rows[{ns, service, route}];
      row->name = service;
      row->route = route.empty() ? "[default]" : route;
    } else if (flags.what == "workloads" && direction == "inbound") {
      row = &rows[{ns, id.first, ""}];
      row->name = id.first;
    }
    if (row == nullptr) continue;
    row->ns = ns.empty() ? "unknown" : ns;
    row->counts.add(delta);
  }
  std::vector<Row> out;
  for (auto& [key, row] : rows) out.push_back(std::move(row));
  return out;
}

std::string percent(double part, double whole) {
  return whole > 0 ? fmt::format("{:.2f}%", 100 * part / whole) : "-";
}

std::string millis(double seconds) {
  if (std::isnan(seconds)) return "-";
  return seconds < 0.01 ? fmt::format("{:.2f}ms", seconds * 1000) : fmt::format("{:.0f}ms", seconds * 1000);
}

Json json_of(const StatFlags& flags, const std::vector<Row>& rows, const std::vector<double>& bounds) {
  Json out = Json::array();
  for (const Row& r : rows) {
    double total = r.counts.success + r.counts.failure;
    Json j{{"namespace", r.ns},
           {flags.what == "workloads" ? "workload" : "service", r.name},
           {"requests", total},
           {"rps", total / flags.window_seconds},
           {"success_rate", total > 0 ? Json(r.counts.success / total) : Json()},
           {"tls_share", total > 0 ? Json(r.counts.tls / total) : Json()}};
    if (flags.what == "routes") j["route"] = r.route;
    const char* names[] = {"p50_seconds", "p95_seconds", "p99_seconds"};
    for (size_t i = 0; i < kQuantiles.size(); ++i) {
      double v = row_quantile(r, bounds, i);
      j[names[i]] = std::isnan(v) ? Json() : Json(v);
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::string table_of(const StatFlags& flags, const std::vector<Row>& rows,
                     const std::vector<double>& bounds) {
  if (rows.empty())
    return fmt::format("No traffic to any {} in the last {}s.\n", flags.what.substr(0, flags.what.size() - 1),
                       flags.window_seconds);
  TableRow head = {"NAMESPACE", flags.what == "workloads" ? "WORKLOAD" : "SERVICE"};
  if (flags.what == "routes") head.push_back("ROUTE");
  for (const char* h : {"SUCCESS", "RPS", "P50", "P95", "P99", "TLS"}) head.push_back(h);
  std::vector<TableRow> table;
  for (const Row& r : rows) {
    double total = r.counts.success + r.counts.failure;
    TableRow row = {r.ns, r.name};
    if (flags.what == "routes") row.push_back(r.route);
    row.push_back(percent(r.counts.success, total));
    row.push_back(fmt::format("{:.1f}", total / flags.window_seconds));
    for (size_t i = 0; i < kQuantiles.size(); ++i) row.push_back(millis(row_quantile(r, bounds, i)));
    row.push_back(percent(r.counts.tls, total));
    table.push_back(std::move(row));
  }
  return format_table(head, table);
}

// ---- from Prometheus ----------------------------------------------------------

// A PromQL string literal holding `text`.
std::string promql_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

class PrometheusClient {
 public:
  // `url` is "http://ip:port", optionally with a path prefix.
  static Result<PrometheusClient> make(std::string_view url) {
    if (!url.starts_with("http://"))
      return Error{"--prometheus " + std::string(url) + ": must be http://IP:PORT (https is not supported)"};
    std::string_view rest = url.substr(7);
    size_t slash = rest.find('/');
    PrometheusClient c;
    std::string error;
    std::string authority(rest.substr(0, slash));
    if (authority.starts_with("localhost:")) authority = "127.0.0.1" + authority.substr(9);
    if (!net::parse_socket_address(authority, c.address_, error))
      return Error{"--prometheus " + std::string(url) + ": " + error};
    c.host_ = authority;
    if (slash != std::string_view::npos) c.prefix_ = std::string(rest.substr(slash));
    while (c.prefix_.ends_with('/')) c.prefix_.pop_back();
    return c;
  }

  // The instant vector `promql` evaluates to at `at` (Unix seconds): each
  // sample's labels and value.
  Result<std::vector<std::pair<Json, double>>> query(const std::string& promql, double at) const {
    std::string request = "GET " + prefix_ + "/api/v1/query?query=" + url_encode(promql) +
                          fmt::format("&time={:.3f}", at) + " HTTP/1.1\r\nHost: " + host_ +
                          "\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
    auto answer = http::http1::blocking_exchange(address_, request, std::chrono::seconds(10), 64 << 20);
    if (!answer) return Error{"Prometheus: " + answer.error().message};
    Json body = Json::parse(answer->body, nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return Error{"Prometheus answered " + std::to_string(answer->status) + " without JSON"};
    if (body.value("status", "") != "success")
      return Error{"Prometheus refused " + promql + ": " + json_string(body, "error")};
    std::vector<std::pair<Json, double>> out;
    for (const Json& r : body["data"].value("result", Json::array())) {
      const Json& value = r["value"];
      if (!value.is_array() || value.size() != 2 || !value[1].is_string()) continue;
      out.emplace_back(r.value("metric", Json::object()),
                       std::strtod(value[1].get<std::string>().c_str(), nullptr));
    }
    return out;
  }

 private:
  net::SocketAddress address_;
  std::string host_;
  std::string prefix_;
};

// The rows of the last `window` from the proxies' golden metrics as
// Prometheus holds them: increase() for the counts, histogram_quantile()
// over rate() for the latencies.
Result<std::vector<Row>> prometheus_rows(const StatFlags& flags, const PrometheusClient& prometheus) {
  bool routes = flags.what == "routes";
  std::string by = flags.what == "workloads" ? "destination_namespace, node"
                   : routes                  ? "destination_namespace, destination_service, route"
                                             : "destination_namespace, destination_service";
  std::string selector = routes ? "direction=\"outbound\"" : "direction=\"inbound\"";
  if (!flags.namespace_.empty()) selector += ",destination_namespace=" + promql_string(flags.namespace_);
  std::string range = fmt::format("[{}ms]", static_cast<int64_t>(flags.window_seconds * 1000));
  auto key = [&](const Json& m) {
    return std::tuple{json_string(m, "destination_namespace"),
                      json_string(m, flags.what == "workloads" ? "node" : "destination_service"),
                      routes ? json_string(m, "route") : std::string()};
  };
  std::map<std::tuple<std::string, std::string, std::string>, Row> rows;
  // Every query at one instant, so that their figures add up.
  double at = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto counts = [&](const std::string& extra, double Counts::*field) -> Result<bool> {
    auto samples = prometheus.query(
        fmt::format("sum by ({}) (increase(trellis_requests_total{{{}{}}}{}))", by, selector, extra, range),
        at);
    if (!samples) return Error{samples.error().message};
    for (const auto& [labels, value] : *samples) {
      Row& row = rows[key(labels)];
      std::tie(row.ns, row.name, row.route) = key(labels);
      row.counts.*field = value;
    }
    return true;
  };
  // failure holds every request until the successes are taken out below
  // (what is not a success is a failure, as the proxies' own JSON counts).
  for (auto [extra, field] : {std::pair{"", &Counts::failure},
                              {",classification=\"success\"", &Counts::success},
                              {",tls=\"true\"", &Counts::tls}}) {
    if (Result<bool> ok = counts(extra, field); !ok) return Error{ok.error().message};
  }
  for (auto& [k, row] : rows) {
    row.counts.failure = std::max(0.0, row.counts.failure - row.counts.success);
    row.quantiles = std::array<double, 3>{NAN, NAN, NAN};
  }
  for (size_t i = 0; i < kQuantiles.size(); ++i) {
    auto samples = prometheus.query(
        fmt::format(
            "histogram_quantile({}, sum by ({}, le) (rate(trellis_request_duration_seconds_bucket{{{}}}{})))",
            kQuantiles[i], by, selector, range),
        at);
    if (!samples) return Error{samples.error().message};
    for (const auto& [labels, value] : *samples)
      if (auto it = rows.find(key(labels)); it != rows.end()) (*it->second.quantiles)[i] = value;
  }
  std::vector<Row> out;
  for (auto& [k, row] : rows) {
    if (row.route.empty() && routes) row.route = "[default]";
    if (row.counts.success + row.counts.failure > 0) out.push_back(std::move(row));
  }
  return out;
}

int run_stat_from_prometheus(const StatFlags& flags) {
  Result<PrometheusClient> prometheus = PrometheusClient::make(flags.prometheus);
  if (!prometheus) {
    print_error("stat", prometheus.error().message);
    return kExitUsage;
  }
  while (true) {
    Result<std::vector<Row>> rows = prometheus_rows(flags, *prometheus);
    if (!rows) {
      print_error("stat", rows.error().message);
      return kExitFailure;
    }
    if (flags.output == "json") {
      print_out(json_of(flags, *rows, {}).dump(2) + "\n");
    } else {
      print_out(table_of(flags, *rows, {}));
    }
    if (!flags.watch) return kExitOk;
    print_out("\n");
    std::this_thread::sleep_for(std::chrono::duration<double>(flags.window_seconds));
  }
}

// ---- from the proxies -----------------------------------------------------------

int run_stat(const StatFlags& flags) {
  if (!flags.prometheus.empty()) return run_stat_from_prometheus(flags);
  std::optional<ApiClient> client = make_client("stat", flags.connection);
  if (!client) return kExitUsage;
  Result<Reading> before = read_once(*client);
  if (!before.ok()) {
    print_error("stat", before.error().message);
    return kExitFailure;
  }
  while (true) {
    std::this_thread::sleep_for(std::chrono::duration<double>(flags.window_seconds));
    Result<Reading> after = read_once(*client);
    if (!after.ok()) {
      print_error("stat", after.error().message);
      return kExitFailure;
    }
    std::vector<Row> rows = rows_of(flags, *before, *after);
    if (flags.output == "json") {
      print_out(json_of(flags, rows, after->bounds).dump(2) + "\n");
    } else {
      std::string text = table_of(flags, rows, after->bounds);
      for (const std::string& e : after->errors) text += "not counted: proxy " + e + "\n";
      print_out(text);
    }
    if (!flags.watch) return kExitOk;
    print_out("\n");
    before = std::move(after);
  }
}

}  // namespace

std::function<int()> add_stat_command(CLI::App& app) {
  auto flags = std::make_shared<StatFlags>();
  CLI::App* cmd = app.add_subcommand(
      "stat",
      "Success rate, requests per second and latency per service, route or workload, from the proxies");
  cmd->add_option("what", flags->what,
                  "services (as their own proxies see them), routes (as callers see them) or workloads")
      ->check(CLI::IsMember({"services", "routes", "workloads"}))
      ->capture_default_str();
  cmd->add_option("-n,--namespace", flags->namespace_, "only this namespace's services");
  cmd->add_option("-w,--window", flags->window_seconds, "seconds between the two readings")
      ->check(CLI::Range(0.5, 3600.0))
      ->capture_default_str();
  cmd->add_flag("--watch", flags->watch, "read again every window, until interrupted");
  cmd->add_option("--prometheus", flags->prometheus,
                  "http://IP:PORT of a Prometheus that scrapes the proxies: the figures of the last window, "
                  "from it, at once (instead of reading the proxies twice)")
      ->envname("TRELLIS_PROMETHEUS");
  cmd->add_option("-o,--output", flags->output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_stat(*flags); };
}

}  // namespace trellis::cli
