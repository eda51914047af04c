// The main thread's watch over endpoints. Active health checks: each endpoint
// of each cluster with a health check is probed from the main thread's loop
// (once per proxy, not once per worker), and its verdict published through its
// EndpointState for the workers. Outlier detection: each cluster's detector is
// ticked every interval (success-rate verdicts, ejections that end).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/random.h"
#include "net/event_loop.h"
#include "proxy/runtime/snapshot.h"

namespace trellis::proxy {

class HealthChecker {
 public:
  // `seed`: the checks' jitter (tests fix it).
  explicit HealthChecker(net::EventLoop& loop, uint64_t seed = FastRandom::os_seed());
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Follows the config in force: checks start for new endpoints, stop for
  // endpoints (or clusters) that left or no longer want them, and take up
  // changed settings. An endpoint whose check carries on keeps its verdict.
  void update(const Snapshot& snapshot);
  // Stops every check (drain).
  void stop();

  class Check;

 private:
  net::EventLoop& loop_;
  FastRandom random_;
  std::map<std::string, std::unique_ptr<Check>> checks_;  // by "cluster\naddress"
  struct OutlierTicker;
  std::map<std::string, std::unique_ptr<OutlierTicker>> tickers_;  // by cluster name
};

}  // namespace trellis::proxy
