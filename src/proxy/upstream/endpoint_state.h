// What the whole proxy knows about each endpoint's health: written by the main
// thread (active health checks), read by every worker when it rebuilds its
// balancer. Outlier verdicts live in the cluster's policy::OutlierDetector. Kept by cluster name and endpoint
// address across reloads, so a verdict survives a config change.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "policy/circuit_breaker.h"

namespace trellis::proxy {

struct EndpointState {
  std::atomic<bool> failing_checks{false};  // active health checks say it is down

  bool available() const { return !failing_checks.load(std::memory_order_relaxed); }
};

// One cluster's endpoint states. Workers notice a change by its epoch: one
// relaxed load per pick, and a rebuild of their balancer when it moved.
class ClusterState {
 public:
  // Main thread only: the state of the endpoint at `address`, created healthy.
  std::shared_ptr<EndpointState> endpoint(const std::string& address) {
    auto& slot = endpoints_[address];
    if (!slot) slot = std::make_shared<EndpointState>();
    return slot;
  }
  // Main thread only: drops the states of endpoints no longer configured.
  template <class KeepFn>
  void retain(KeepFn keep) {
    std::erase_if(endpoints_, [&](const auto& entry) { return !keep(entry.first); });
  }

  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  // The cluster's circuit breaker: exact counts over all workers (one atomic
  // per limit), kept across reloads so what is open stays counted.
  policy::CircuitBreaker breaker;

  // After changing an endpoint's state: tells the workers to look again.
  void changed() { epoch_.fetch_add(1, std::memory_order_acq_rel); }

 private:
  std::map<std::string, std::shared_ptr<EndpointState>> endpoints_;
  std::atomic<uint64_t> epoch_{0};
};

// Main thread only: the cluster states by cluster name, for the life of the process.
class ClusterStateRegistry {
 public:
  std::shared_ptr<ClusterState> cluster(const std::string& name) {
    auto& slot = clusters_[name];
    if (!slot) slot = std::make_shared<ClusterState>();
    return slot;
  }

 private:
  std::map<std::string, std::shared_ptr<ClusterState>> clusters_;
};

}  // namespace trellis::proxy
