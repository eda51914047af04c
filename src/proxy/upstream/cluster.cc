#include "proxy/upstream/cluster.h"

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "common/text.h"

namespace trellis::proxy {

UpstreamCluster::UpstreamCluster(net::EventLoop& loop, Random& random, std::string name)
    : loop_(loop), random_(random), name_(std::move(name)), slow_start_timer_(loop, [this] { rebuild(); }) {}

UpstreamCluster::~UpstreamCluster() = default;

void UpstreamCluster::update(const ClusterConfig& config, ClusterStats* stats, const ClusterShared& shared,
                             const std::string& local_zone, size_t workers) {
  shared_ = shared;
  bool budget_changed = config.retry.budget_percent != config_.retry.budget_percent ||
                        config.retry.budget_min_per_second != config_.retry.budget_min_per_second ||
                        stats_ == nullptr;
  config_ = config;
  stats_ = stats;
  local_zone_ = local_zone;
  if (budget_changed) {
    // Each worker sees its share of the requests, so it gets its share of the floor.
    budget_ = policy::RetryBudget(config.retry.budget_percent,
                                  static_cast<double>(config.retry.budget_min_per_second) /
                                      static_cast<double>(std::max<size_t>(workers, 1)));
  }
  std::vector<std::unique_ptr<EndpointPool>> next;
  for (size_t i = 0; i < config.endpoints.size(); ++i) {
    const EndpointConfig& e = config.endpoints[i];
    std::unique_ptr<EndpointPool> pool;
    for (auto& old : pools_) {
      if (old && old->address() == e.address) {
        pool = std::move(old);
        break;
      }
    }
    if (!pool) pool = std::make_unique<EndpointPool>(*this, loop_, e);
    pool->set_transport(shared.transport_for(i));
    next.push_back(std::move(pool));
  }
  for (auto& old : pools_) {
    if (!old) continue;
    old->retire();
    retired_.push_back(std::move(old));
  }
  pools_ = std::move(next);
  rebuild();
  collect();
}

// A new immutable host set and balancer, carrying the old one's per-host
// stats: built on every config change and, while endpoints warm up, as their
// slow-start weights grow.
void UpstreamCluster::rebuild() {
  const LoadBalancerConfig& lb = config_.lb;
  MonoTime now = loop_.now();
  // Read the epoch before the verdicts: a change made meanwhile shows as a
  // newer epoch at the next pick, and the balancer is built again.
  seen_epoch_ = shared_.state ? shared_.state->epoch() : 0;
  seen_outlier_epoch_ = shared_.outlier ? shared_.outlier->epoch() : 0;
  std::vector<bool> up(pools_.size(), true);
  size_t available = 0;
  for (size_t i = 0; i < pools_.size(); ++i) {
    const auto& outlier = shared_.outlier;
    up[i] = (i >= shared_.endpoints.size() || shared_.endpoints[i]->available()) &&
            !(outlier && i < outlier->size() && outlier->is_ejected(i, now));
    available += up[i];
  }
  // Panic: when too few endpoints are available, the verdicts are more
  // likely wrong than the endpoints: spread over all of them.
  // (The threshold is the outlier config's, whose default also applies when
  // outlier detection is off and only health checks give verdicts.)
  bool panic = policy::in_panic(available, pools_.size(), config_.outlier.panic_threshold_percent);
  Duration window = lb.slow_start_window;
  bool warming = false;
  std::vector<policy::Host> hosts;
  hosts.reserve(pools_.size());
  for (size_t i = 0; i < pools_.size(); ++i) {
    const EndpointConfig& e = config_.endpoints[i];
    policy::Host h;
    h.id = pools_[i]->host_id();
    h.weight = e.weight;
    h.local = !local_zone_.empty() && e.zone == local_zone_;
    h.healthy = panic || up[i];
    if (window.count() > 0) {
      Duration age = now - pools_[i]->added_at();
      warming = warming || age < window;
      h.weight = policy::slow_start_weight(e.weight, age, window);
    }
    hosts.push_back(h);
  }
  policy::LbAlgorithm algorithm = lb.algorithm;
  // Slow start works through weights: the unweighted algorithms take their
  // weighted form, with every warmed endpoint at the same weight.
  if (window.count() > 0) {
    if (algorithm == policy::LbAlgorithm::kRoundRobin || algorithm == policy::LbAlgorithm::kRandom) {
      for (size_t i = 0; i < hosts.size(); ++i) {
        Duration age = now - pools_[i]->added_at();
        hosts[i].weight = policy::slow_start_weight(1, age, window);
      }
      algorithm = algorithm == policy::LbAlgorithm::kRoundRobin ? policy::LbAlgorithm::kWeightedRoundRobin
                                                                : policy::LbAlgorithm::kWeightedRandom;
    }
  }
  auto set = std::make_shared<const policy::HostSet>(std::move(hosts));
  policy::LbOptions options;
  // A fixed number of points per unit of weight, whatever else is in the
  // set: an endpoint that leaves takes only its own points (and keys) along.
  options.ring_points_per_weight = lb.ring_points;
  options.locality_enabled = lb.locality_enabled;
  options.locality_min_healthy_percent = lb.locality_min_healthy_percent;
  auto next = policy::make_load_balancer(algorithm, std::move(set), random_, options);
  if (lb_) next->adopt_stats(*lb_);
  lb_ = std::move(next);
  ++generation_;
  if (warming) {
    slow_start_timer_.arm(std::max<Duration>(window / 20, Millis(50)));
  } else {
    slow_start_timer_.cancel();
  }
}

const UpstreamCodecFactory& UpstreamCluster::codec_factory(const UpstreamPick& pick, bool upgrade,
                                                           bool http2_request) const {
  bool sidecar =
      pick.index < shared_.sidecars.size() && shared_.sidecars[pick.index] && shared_.sidecar_codec;
  if (sidecar)
    return upgrade || (!http2_request && shared_.sidecar_http1_for_http1) ? *shared_.sidecar_http1_codec
                                                                          : *shared_.sidecar_codec;
  if (http2_request && !upgrade && shared_.http2_codec) return *shared_.http2_codec;
  return *shared_.codec;
}

void UpstreamCluster::retire() {
  for (auto& p : pools_) {
    p->retire();
    retired_.push_back(std::move(p));
  }
  pools_.clear();
  slow_start_timer_.cancel();
  collect();
}

void UpstreamCluster::close_idle() {
  for (auto& p : pools_) p->close_idle();
}

void UpstreamCluster::collect() {
  std::erase_if(retired_, [](const std::unique_ptr<EndpointPool>& p) { return p->unused(); });
}

UpstreamPick UpstreamCluster::pick(const policy::PickContext& ctx) {
  UpstreamPick out;
  if ((shared_.state && shared_.state->epoch() != seen_epoch_) ||
      (shared_.outlier && shared_.outlier->epoch() != seen_outlier_epoch_))
    rebuild();
  if (!lb_ || pools_.empty()) return out;
  size_t index = lb_->choose(ctx);
  if (index >= pools_.size()) return out;
  out.pool = pools_[index].get();
  out.index = index;
  out.generation = generation_;
  out.host_id = out.pool->host_id();
  return out;
}

size_t UpstreamCluster::current_index(const UpstreamPick& pick) const {
  if (pick.pool == nullptr || !lb_) return SIZE_MAX;
  if (pick.generation == generation_) return pick.index;
  for (size_t i = 0; i < pools_.size(); ++i)
    if (pools_[i]->host_id() == pick.host_id) return i;
  return SIZE_MAX;  // the endpoint left
}

void UpstreamCluster::on_start(const UpstreamPick& pick) {
  size_t index = current_index(pick);
  if (index != SIZE_MAX) lb_->on_start(index);
}

void UpstreamCluster::report(const UpstreamPick& pick, policy::OutlierDetector::Outcome outcome) {
  const auto& outlier = shared_.outlier;
  if (!outlier || pick.pool == nullptr) return;
  size_t index = current_index(pick);
  if (index >= outlier->size() || outlier->host_id(index) != pick.host_id) return;
  if (outlier->report(index, outcome, loop_.now()))
    spdlog::warn("outlier detection: {} endpoint {} ejected", name_, pools_[index]->address().text);
}

void UpstreamCluster::on_complete(const UpstreamPick& pick, Duration latency) {
  size_t index = current_index(pick);
  if (index != SIZE_MAX) lb_->on_complete(index, latency, loop_.now());
}

}  // namespace trellis::proxy
