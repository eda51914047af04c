// Load balancing as pure decision logic: given an immutable host set and the
// stats the caller reports, pick the index of the next upstream host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/random.h"
#include "common/time.h"

namespace trellis::policy {

struct Host {
  uint64_t id = 0;      // stable across host-set updates; hashing keys on it
  uint32_t weight = 1;  // 0 takes the host out of rotation
  bool healthy = true;
  bool local = true;  // in the client's own zone (locality-aware balancing)
};

// The hosts of one cluster as one config snapshot sees them. Immutable: a
// membership, weight or health change builds a new HostSet and a new balancer
// (build new state and swap it in, never mutate shared state per request).
class HostSet {
 public:
  HostSet() = default;
  explicit HostSet(std::vector<Host> hosts);

  const std::vector<Host>& hosts() const { return hosts_; }
  size_t size() const { return hosts_.size(); }
  // Indices of the hosts that may be picked: healthy with a non-zero weight.
  const std::vector<size_t>& eligible() const { return eligible_; }
  // Running sum of the eligible hosts' weights: cumulative_[k] is the sum of
  // the weights of eligible()[0..k].
  const std::vector<uint64_t>& cumulative_weight() const { return cumulative_; }
  uint64_t total_weight() const { return cumulative_.empty() ? 0 : cumulative_.back(); }
  bool all_weights_equal() const { return equal_weights_; }

 private:
  std::vector<Host> hosts_;
  std::vector<size_t> eligible_;
  std::vector<uint64_t> cumulative_;
  bool equal_weights_ = true;
};

struct PickContext {
  // The request's hash for the consistent-hashing balancers: the caller hashes
  // the header, the cookie or the source address it was configured with. When
  // absent those balancers pick at random, so a request without the key still
  // gets served.
  std::optional<uint64_t> hash;
  MonoTime now{};
};

enum class LbAlgorithm : unsigned char {
  kRoundRobin,
  kWeightedRoundRobin,  // smooth, as nginx does it: no bursts on the heavy host
  kRandom,
  kWeightedRandom,
  kLeastRequest,  // power of two choices, weight-aware
  kRingHash,
  kMaglev,
  kPeakEwma,  // power of two choices on latency x outstanding requests
};

struct LbOptions {
  // Ring hash: points on the ring per unit of weight. Removing a host moves
  // only the keys it owned as long as total weight x this stays under
  // ring_max_size; past it every host's share is scaled down together.
  uint32_t ring_points_per_weight = 100;
  uint32_t ring_max_size = 1u << 20;
  // Maglev: lookup table size. Must be a prime well above the host count
  // (about 100 x) for an even spread; a non-prime is raised to the next prime.
  uint32_t maglev_table_size = 65537;
  // Peak EWMA: how fast a latency observation fades. A slow host is avoided
  // for a few of these and then probed again.
  Duration ewma_decay = std::chrono::seconds(10);
  // Peak EWMA: the latency assumed for a host not yet observed while no host
  // of the cluster is (otherwise it starts from their median).
  Duration ewma_default_rtt = Millis(30);
  // Locality: prefer hosts marked local. While fewer than this percentage of
  // the local hosts are eligible, that share of traffic spills to the others
  // in proportion (e.g. 35% eligible of a 70% threshold: half the traffic
  // stays local). With 0, traffic leaves the local hosts only when none of
  // them is eligible.
  bool locality_enabled = false;
  uint32_t locality_min_healthy_percent = 70;
};

// What the caller reports back about each host, per balancer.
struct HostStats {
  uint32_t active = 0;  // requests started and not yet completed
  double ewma_ns = 0;   // peak EWMA of latency, as of ewma_at
  MonoTime ewma_at{};
  bool observed = false;  // false until the first completion
  // Peak EWMA: the default estimate of a host not yet observed has started
  // fading (from the first time it was a candidate), so a new host whose
  // real latency beats the default is not starved forever.
  bool default_stamped = false;
};

// One balancer per worker per cluster. Not thread-safe by design: workers
// share nothing on the request path, so each owns its balancer, its cursor and
// its stats, and no pick pays for a lock or an atomic.
class LoadBalancer {
 public:
  LoadBalancer(std::shared_ptr<const HostSet> hosts, Random& random, const LbOptions& options);
  virtual ~LoadBalancer() = default;
  LoadBalancer(const LoadBalancer&) = delete;
  LoadBalancer& operator=(const LoadBalancer&) = delete;

  // The index into hosts().hosts() of the host to use, or SIZE_MAX when no
  // host is eligible.
  virtual size_t choose(const PickContext& ctx) = 0;

  // The caller reports each request it sends to a chosen host (on_start) and
  // its end (on_complete). Least request reads the outstanding count; peak
  // EWMA reads both.
  virtual void on_start(size_t index);
  virtual void on_complete(size_t index, Duration latency, MonoTime now);

  // Carries the per-host stats (outstanding requests, latency estimates) of
  // the hosts that are still present, by Host::id, from the balancer this one
  // replaces: a membership, weight or slow-start change then forgets nothing.
  virtual void adopt_stats(const LoadBalancer& previous);

  const HostSet& hosts() const { return *hosts_; }
  const HostStats& stats(size_t index) const { return stats_[index]; }
  // Peak EWMA's estimate of the host's latency at `now`, in nanoseconds: the
  // last estimate faded toward zero by the time since it was made, so a host
  // avoided for being slow gets retried once the memory of it is old.
  double latency_estimate_ns(size_t index, MonoTime now) const;

 protected:
  // Two distinct eligible hosts, each drawn in proportion to weight; with a
  // single eligible host both are that host.
  std::pair<size_t, size_t> pick_two();
  // One eligible host drawn in proportion to weight.
  size_t pick_weighted();

  std::shared_ptr<const HostSet> hosts_;
  Random& random_;
  LbOptions options_;
  std::vector<HostStats> stats_;
};

// The balancer for `algorithm` over `hosts`. `random` must outlive it. With
// options.locality_enabled, the result prefers the hosts marked local (see
// LbOptions) and balances within each side by `algorithm`.
std::unique_ptr<LoadBalancer> make_load_balancer(LbAlgorithm algorithm, std::shared_ptr<const HostSet> hosts,
                                                 Random& random, const LbOptions& options = {});

// Slow start: the weight to give a host `age` after it joined, so its share
// grows linearly from 10% to full over `window`. Weights are scaled by
// kSlowStartScale (a warmed host gets weight x kSlowStartScale), so callers
// scale every host's weight while any host is warming. The balancer is
// rebuilt with new weights as time passes (see adopt_stats).
inline constexpr uint32_t kSlowStartScale = 100;
uint32_t slow_start_weight(uint32_t weight, Duration age, Duration window);

}  // namespace trellis::policy
