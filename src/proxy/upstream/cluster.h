// Per-worker upstream state of a cluster: its load balancer, its retry budget
// and an EndpointPool per endpoint. Survives reloads that keep the cluster, so
// warm connections and latency estimates are not thrown away.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/random.h"
#include "net/event_loop.h"
#include "net/transport.h"
#include "policy/concurrency_limiter.h"
#include "policy/load_balancer.h"
#include "policy/outlier_detector.h"
#include "policy/retry.h"
#include "proxy/config/config.h"
#include "proxy/observe/stats.h"
#include "proxy/upstream/endpoint_pool.h"
#include "proxy/upstream/endpoint_state.h"
#include "proxy/upstream/upstream_codec.h"

namespace trellis::proxy {

// One load-balancing decision, to report the request's start and end against.
struct UpstreamPick {
  EndpointPool* pool = nullptr;  // null: no endpoint is available
  size_t index = SIZE_MAX;       // in the balancer that chose it
  uint64_t generation = 0;       // which balancer that was
  uint64_t host_id = 0;
};

// What every worker shares about a cluster: built by the main thread with each
// snapshot, kept across reloads where nothing it depends on changed.
struct ClusterShared {
  // Health verdicts: atomics the main thread writes and workers read.
  std::shared_ptr<ClusterState> state;
  std::vector<std::shared_ptr<EndpointState>> endpoints;  // aligned with config->endpoints
  // Outlier detection, one per cluster for the whole proxy (null when off);
  // its hosts are the config's endpoints, in order. Workers report outcomes,
  // the main thread ticks it.
  std::shared_ptr<policy::OutlierDetector> outlier;
  // Adaptive concurrency (null when off).
  std::shared_ptr<policy::ConcurrencyLimiter> concurrency;
  // What the cluster's connections run over (plain TCP, or TLS), and per
  // endpoint (aligned with config->endpoints): mTLS to a sidecar expecting
  // its identity, else the cluster's.
  std::shared_ptr<net::TransportFactory> transport;
  std::vector<std::shared_ptr<net::TransportFactory>> endpoint_transports;
  const std::shared_ptr<net::TransportFactory>& transport_for(size_t endpoint) const {
    return endpoint < endpoint_transports.size() && endpoint_transports[endpoint]
               ? endpoint_transports[endpoint]
               : transport;
  }
  // The protocol its HTTP exchanges speak: the cluster's own, except with
  // endpoints that are sidecars (aligned with config->endpoints), which
  // are spoken to in HTTP/2 whatever the application speaks, and in
  // HTTP/1.1 for upgrades (HTTP/2 carries none) and, with the proxy's
  // mesh_protocol "downstream", for every HTTP/1.x client's request. A
  // cluster that follows the client's protocol has http2_codec for HTTP/2
  // requests.
  std::shared_ptr<const UpstreamCodecFactory> codec;
  std::shared_ptr<const UpstreamCodecFactory> http2_codec;
  std::shared_ptr<const UpstreamCodecFactory> sidecar_codec;
  std::shared_ptr<const UpstreamCodecFactory> sidecar_http1_codec;
  bool sidecar_http1_for_http1 = false;
  std::vector<bool> sidecars;
};

class UpstreamCluster {
 public:
  UpstreamCluster(net::EventLoop& loop, Random& random, std::string name);
  ~UpstreamCluster();

  // Adopts a (possibly changed) config: pools of endpoints that stay are kept,
  // and the balancer is rebuilt with their stats. `local_zone` is the
  // proxy's zone (locality-aware balancing); `workers` shares the retry
  // budget's floor.
  void update(const ClusterConfig& config, ClusterStats* stats, const ClusterShared& shared,
              const std::string& local_zone, size_t workers);
  void retire();  // the cluster left the config
  void close_idle();

  const std::string& name() const { return name_; }
  const ClusterConfig& config() const { return config_; }
  ClusterStats& stats() { return *stats_; }
  policy::RetryBudget& retry_budget() { return budget_; }
  policy::CircuitBreaker& breaker() { return shared_.state->breaker; }
  // The cluster's adaptive concurrency limit; null when off.
  const std::shared_ptr<policy::ConcurrencyLimiter>& concurrency() const { return shared_.concurrency; }
  net::TransportFactory& transport() { return *shared_.transport; }
  // What speaks to the endpoint of `pick`; `upgrade`: for a request that
  // asks to switch protocols.
  // The codec for an exchange with `pick`'s endpoint; `upgrade`: the request
  // asks to switch protocols; `http2_request`: its client spoke HTTP/2.
  const UpstreamCodecFactory& codec_factory(const UpstreamPick& pick, bool upgrade, bool http2_request) const;

  // The balancer's choice for a request (ctx.hash for the hashing balancers).
  UpstreamPick pick(const policy::PickContext& ctx);
  // A request was sent on `pick` / its response ended (or the try failed)
  // `latency` after it was sent. Picks made before a rebuild are matched to
  // the same endpoint in the new balancer.
  void on_start(const UpstreamPick& pick);
  void on_complete(const UpstreamPick& pick, Duration latency);
  // How a try on `pick` ended, for outlier detection (a no-op when it is off).
  void report(const UpstreamPick& pick, policy::OutlierDetector::Outcome outcome);
  // Frees retired endpoint pools that nothing uses any more.
  void collect();

 private:
  void rebuild();
  size_t current_index(const UpstreamPick& pick) const;

  net::EventLoop& loop_;
  Random& random_;
  std::string name_;
  ClusterConfig config_;  // a copy: in-flight requests may outlive the snapshot it came from
  ClusterStats* stats_ = nullptr;
  std::string local_zone_;
  std::vector<std::unique_ptr<EndpointPool>> pools_;    // current endpoints, in config order
  std::vector<std::unique_ptr<EndpointPool>> retired_;  // waiting for their last connection
  std::unique_ptr<policy::LoadBalancer> lb_;            // over pools_, same order
  uint64_t generation_ = 0;
  ClusterShared shared_;     // endpoints and outlier hosts aligned with pools_
  uint64_t seen_epoch_ = 0;  // the health verdicts lb_ was built with
  uint64_t seen_outlier_epoch_ = 0;
  policy::RetryBudget budget_{20, 10};
  net::Timer slow_start_timer_;  // rebuilds while an endpoint is warming up
};

}  // namespace trellis::proxy
