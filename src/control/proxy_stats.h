// What the connected proxies hold, asked of their admin endpoints: their
// golden metrics (GET /stats/golden), for `trellis stat` and the dashboard,
// and the configuration in force (GET /config_dump). Every proxy is asked at
// once, each with its own deadline: one that does not answer is reported,
// not waited for.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "control/push_server.h"

namespace trellis::control {

// Runs questions to the proxies off the API's thread: one at a time, in
// order, on a thread of its own, so a proxy slow to answer holds up no other
// API call. At most kMaxWaiting wait; more are refused.
class ProxyQueries {
 public:
  static constexpr size_t kMaxWaiting = 16;

  ProxyQueries();
  ~ProxyQueries();  // runs what waits, then joins
  ProxyQueries(const ProxyQueries&) = delete;
  ProxyQueries& operator=(const ProxyQueries&) = delete;

  // False when kMaxWaiting already wait.
  bool submit(std::function<void()> task);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> waiting_;
  bool stopping_ = false;
  std::thread thread_;
};

// {"bucket_bounds_seconds": [...], "proxies": [{"node_id", "service",
// "namespace", "series": [...]} or {..., "error": "..."}]}.
nlohmann::json collect_golden(const std::vector<ProxyStatus>& proxies, std::chrono::milliseconds timeout);

// What `trellis tap` asks for: the requests to one service, as its own
// proxies see them (inbound), that match.
struct TapQuestion {
  std::string service, namespace_ = "default";
  std::string method;       // exactly; empty: any
  std::string path_prefix;  // empty: any
  // By node id: the number of the last event seen from it (absent: from now).
  std::map<std::string, uint64_t> cursor;
};

// Asks every proxy of the service for its tap's events (GET /tap, with its
// tap key): {"events": [... with "node"], "cursor": "node:n,...", "proxies",
// "missed", "dropped", "errors": ["node: why", ...]}, events in time order.
nlohmann::json collect_tap(const std::vector<ProxyStatus>& proxies, const TapQuestion& question,
                           std::chrono::milliseconds timeout);
// "node:n,node:n" (a cursor collect_tap gave) into TapQuestion::cursor.
std::map<std::string, uint64_t> parse_tap_cursor(std::string_view text);

// The configuration `proxy` has in force, as its /config_dump shows it (it
// holds the paths of key files, never their contents).
Result<nlohmann::json> fetch_config_dump(const ProxyStatus& proxy, std::chrono::milliseconds timeout);

}  // namespace trellis::control
