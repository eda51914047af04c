// `trellis stat`: success rate, request rate and latency per service, route
// or workload, from what the proxies count (their golden metrics, which
// trellis-control gathers): two readings a window apart, and the difference.
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/table.h"

namespace trellis::cli {
namespace {

struct StatFlags {
  std::string what = "services";
  std::string namespace_;
  double window_seconds = 10;
  bool watch = false;
  std::string output = "table";
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
};

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
    for (auto [name, q] : {std::pair{"p50_seconds", 0.5}, {"p95_seconds", 0.95}, {"p99_seconds", 0.99}}) {
      double v = quantile(r.counts.buckets, bounds, q);
      j[name] = std::isnan(v) ? Json() : Json(v);
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
    for (double q : {0.5, 0.95, 0.99}) row.push_back(millis(quantile(r.counts.buckets, bounds, q)));
    row.push_back(percent(r.counts.tls, total));
    table.push_back(std::move(row));
  }
  return format_table(head, table);
}

int run_stat(const StatFlags& flags) {
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
  cmd->add_option("-o,--output", flags->output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_stat(*flags); };
}

}  // namespace trellis::cli
