// `trellis tap` and `trellis top`: the requests to one service as its own
// proxies see them, live. trellis-control asks each of the service's
// proxies for its tap (GET /v1/tap, admin token), which is on only while
// someone asks; `tap` prints each request, `top` the busiest paths.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
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

constexpr auto kPollEvery = std::chrono::milliseconds(500);

struct TapFlags {
  std::string service;
  std::string namespace_ = "default";
  std::string method;
  std::string path;
  size_t max = 0;              // tap: stop after this many (0: never)
  double duration = 0;         // tap: stop after this many seconds (0: never)
  double window_seconds = 10;  // top
  bool watch = false;          // top
  size_t limit = 20;           // top: rows
  std::string output = "text";
  ConnectionFlags connection;
  std::string command;  // "tap" or "top", for messages
};

// Polls trellis-control for the tap's events, from the first call on.
class TapReader {
 public:
  TapReader(ApiClient& client, const TapFlags& flags) : client_(client), flags_(flags) {}

  // The events since the last call (the first call turns the taps on and
  // gives none); problems go to stderr.
  Result<std::vector<Json>> next() {
    std::string target = "/v1/tap?service=" + url_encode(flags_.service) +
                         "&namespace=" + url_encode(flags_.namespace_) +
                         "&method=" + url_encode(flags_.method) + "&path=" + url_encode(flags_.path);
    if (cursor_) target += "&cursor=" + url_encode(*cursor_);
    Result<ApiReply> reply = client_.call("GET", target);
    if (!reply.ok()) return Error{reply.error().message};
    if (!reply->ok()) return Error{reply->error()};
    const Json& body = reply->body;
    cursor_ = json_string(body, "cursor");
    if (body.value("proxies", 0) == 0 && !warned_none_) {
      print_error(flags_.command, "no proxy of " + flags_.namespace_ + "/" + flags_.service +
                                      " is connected (yet): waiting for one");
      warned_none_ = true;
    }
    for (const Json& e : body.value("errors", Json::array()))
      if (e.is_string()) print_error(flags_.command, "not tapped: proxy " + e.get<std::string>());
    uint64_t missed = body.value("missed", uint64_t{0});
    uint64_t dropped = body.value("dropped", uint64_t{0});
    if (missed > 0 || dropped > dropped_) {
      print_error(flags_.command, fmt::format("{} requests went by unseen (more than the tap holds)",
                                              missed + dropped - std::min(dropped, dropped_)));
      dropped_ = std::max(dropped, dropped_);
    }
    std::vector<Json> events;
    for (const Json& e : body.value("events", Json::array())) events.push_back(e);
    return events;
  }

 private:
  ApiClient& client_;
  const TapFlags& flags_;
  std::optional<std::string> cursor_;
  uint64_t dropped_ = 0;
  bool warned_none_ = false;
};

std::string service_name(const Json& e, const char* service, const char* ns) {
  std::string s = json_string(e, service);
  return s.empty() ? "unknown" : json_string(e, ns) + "/" + s;
}

bool failed(const Json& e) {
  int status = e.value("status", 0);
  return status == 0 || status >= 500 || (e.contains("grpc_status") && e.value("grpc_status", 0) != 0);
}

std::string latency(double micros) {
  return micros < 10000 ? fmt::format("{:.2f}ms", micros / 1000) : fmt::format("{:.0f}ms", micros / 1000);
}

std::string event_line(const Json& e) {
  int64_t ms = e.value("time_ms", int64_t{0});
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  std::string status = std::to_string(e.value("status", 0));
  if (e.contains("grpc_status")) status += fmt::format(" grpc-status {}", e.value("grpc_status", 0));
  return fmt::format("{:02}:{:02}:{:02}.{:03}  {} -> {}  {} {}  {}  {}{}\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ms % 1000, service_name(e, "source_service", "source_namespace"),
                     service_name(e, "destination_service", "destination_namespace"),
                     json_string(e, "method"), json_string(e, "path"), status,
                     latency(e.value("duration_us", 0.0)), e.value("tls", false) ? "  mtls" : "");
}

int run_tap(TapFlags& flags) {
  std::optional<ApiClient> client = make_client("tap", flags.connection);
  if (!client) return kExitUsage;
  flags.command = "tap";
  TapReader reader(*client, flags);
  auto started = std::chrono::steady_clock::now();
  size_t shown = 0;
  for (;;) {
    Result<std::vector<Json>> events = reader.next();
    if (!events) {
      print_error("tap", events.error().message);
      return kExitFailure;
    }
    for (const Json& e : *events) {
      print_out(flags.output == "json" ? e.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n"
                                       : event_line(e));
      if (flags.max > 0 && ++shown >= flags.max) return kExitOk;
    }
    if (flags.duration > 0 &&
        std::chrono::steady_clock::now() - started >= std::chrono::duration<double>(flags.duration))
      return kExitOk;
    std::this_thread::sleep_for(kPollEvery);
  }
}

// ---- top ----------------------------------------------------------------------

struct PathStats {
  std::string source, method, path;
  size_t count = 0, failures = 0;
  double best_us = INFINITY, worst_us = 0, last_us = 0;
};

int run_top(TapFlags& flags) {
  std::optional<ApiClient> client = make_client("top", flags.connection);
  if (!client) return kExitUsage;
  flags.command = "top";
  TapReader reader(*client, flags);
  if (Result<std::vector<Json>> first = reader.next(); !first) {  // turns the taps on
    print_error("top", first.error().message);
    return kExitFailure;
  }
  for (;;) {
    std::map<std::tuple<std::string, std::string, std::string>, PathStats> paths;
    auto until = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        std::chrono::duration<double>(flags.window_seconds));
    while (std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          kPollEvery, until - std::chrono::steady_clock::now()));
      Result<std::vector<Json>> events = reader.next();
      if (!events) {
        print_error("top", events.error().message);
        return kExitFailure;
      }
      for (const Json& e : *events) {
        std::string source = service_name(e, "source_service", "source_namespace");
        PathStats& p = paths[{source, json_string(e, "method"), json_string(e, "path")}];
        std::tie(p.source, p.method, p.path) =
            std::tuple{source, json_string(e, "method"), json_string(e, "path")};
        double us = e.value("duration_us", 0.0);
        ++p.count;
        p.failures += failed(e) ? 1 : 0;
        p.best_us = std::min(p.best_us, us);
        p.worst_us = std::max(p.worst_us, us);
        p.last_us = us;
      }
    }
    std::vector<PathStats> rows;
    for (auto& [key, p] : paths) rows.push_back(std::move(p));
    std::stable_sort(rows.begin(), rows.end(),
                     [](const PathStats& a, const PathStats& b) { return a.count > b.count; });
    if (rows.size() > flags.limit) rows.resize(flags.limit);
    if (flags.output == "json") {
      Json out = Json::array();
      for (const PathStats& p : rows)
        out.push_back({{"source", p.source},
                       {"method", p.method},
                       {"path", p.path},
                       {"count", p.count},
                       {"success_rate", static_cast<double>(p.count - p.failures) / p.count},
                       {"best_seconds", p.best_us / 1e6},
                       {"worst_seconds", p.worst_us / 1e6},
                       {"last_seconds", p.last_us / 1e6}});
      print_out(out.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
    } else if (rows.empty()) {
      print_out(fmt::format("No requests to {}/{} in the last {}s.\n", flags.namespace_, flags.service,
                            flags.window_seconds));
    } else {
      std::vector<TableRow> table;
      for (const PathStats& p : rows)
        table.push_back({p.source, p.method, p.path, std::to_string(p.count),
                         fmt::format("{:.2f}%", 100.0 * static_cast<double>(p.count - p.failures) / p.count),
                         latency(p.best_us), latency(p.worst_us), latency(p.last_us)});
      print_out(
          format_table({"SOURCE", "METHOD", "PATH", "COUNT", "SUCCESS", "BEST", "WORST", "LAST"}, table));
    }
    if (!flags.watch) return kExitOk;
    print_out("\n");
  }
}

void add_common(CLI::App& cmd, TapFlags& flags) {
  cmd.add_option("service", flags.service, "the service whose requests to show (as its own proxies see them)")
      ->required();
  cmd.add_option("-n,--namespace", flags.namespace_, "its namespace")->capture_default_str();
  cmd.add_option("--method", flags.method, "only requests with this method");
  cmd.add_option("--path", flags.path, "only requests whose path starts with this");
  add_connection_options(cmd, flags.connection);
}

}  // namespace

std::function<int()> add_tap_command(CLI::App& app) {
  auto flags = std::make_shared<TapFlags>();
  CLI::App* cmd = app.add_subcommand(
      "tap", "The requests to a service as they happen: source, method, path, status, latency (admin token)");
  add_common(*cmd, *flags);
  cmd->add_option("--max", flags->max, "stop after this many requests");
  cmd->add_option("--duration", flags->duration, "stop after this many seconds")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("-o,--output", flags->output, "text, or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  return [flags] { return run_tap(*flags); };
}

std::function<int()> add_top_command(CLI::App& app) {
  auto flags = std::make_shared<TapFlags>();
  CLI::App* cmd =
      app.add_subcommand("top", "The busiest paths of a service, from its requests live (admin token)");
  add_common(*cmd, *flags);
  cmd->add_option("-w,--window", flags->window_seconds, "seconds of requests each table counts")
      ->check(CLI::Range(0.5, 3600.0))
      ->capture_default_str();
  cmd->add_flag("--watch", flags->watch, "a new table every window, until interrupted");
  cmd->add_option("--limit", flags->limit, "rows, busiest first")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("-o,--output", flags->output, "text (a table) or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  return [flags] { return run_top(*flags); };
}

}  // namespace trellis::cli
