// The immutable runtime form of a config, shared by all workers. The main
// thread builds it (binding sockets, creating stats blocks), then posts it to
// every worker; nothing in it changes afterwards.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "policy/authorization.h"
#include "policy/route_table.h"
#include "proxy/config/config.h"
#include "proxy/http/rate_limits.h"
#include "proxy/observe/stats.h"
#include "proxy/upstream/cluster.h"
#include "proxy/upstream/endpoint_state.h"

namespace trellis::proxy {

class AccessLog;
class GoldenTable;
class Tap;
class Tracer;

// A bound, listening socket; closed when the last snapshot or worker using it lets go.
struct ListenSocket {
  int fd = -1;
  explicit ListenSocket(int f) : fd(f) {}
  ~ListenSocket() {
    if (fd >= 0) ::close(fd);
  }
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
};

struct ListenerRuntime {
  const ListenerConfig* config = nullptr;
  std::vector<std::shared_ptr<ListenSocket>> sockets;  // one per worker (SO_REUSEPORT)
  policy::RouteTable routes;
  // [virtual host][route][limit], aligned with the config; shared by all
  // workers (the buckets are exact for the whole proxy).
  std::vector<std::vector<std::vector<std::shared_ptr<RouteRateLimiter>>>> rate_limits;
  std::vector<ListenerStats*> stats;  // one per worker
  // What the listener's connections run over (plain TCP, or TLS); null:
  // connections are refused (an mTLS listener before the proxy has a
  // certificate).
  std::shared_ptr<net::TransportFactory> transport;
  // The proxy's SPIFFE ID on an mTLS listener (x-forwarded-client-cert By=).
  std::string identity;
  // ListenerConfig::client_identity_header.
  std::string client_identity_header;
  // Who may use the listener; empty when everyone may.
  std::optional<policy::Authorizer> authorizer;
  // [deciding policy + 1][worker]; [0] counts the default action's decisions.
  std::vector<std::vector<AuthzStats*>> authz_stats;
};

// A cluster's config, its stats blocks, and what the workers share about it.
struct ClusterRuntime : ClusterShared {
  const ClusterConfig* config = nullptr;
  std::vector<ClusterStats*> stats;  // one per worker
};

struct Snapshot {
  uint64_t version = 0;
  size_t workers = 1;
  std::shared_ptr<const ProxyConfig> config;
  std::vector<ListenerRuntime> listeners;
  std::vector<ClusterRuntime> clusters;
  std::shared_ptr<AccessLog> access_log;  // null when off
  // Client connections open on all workers (ProxyConfig::max_connections):
  // one counter for the proxy's life, handed from snapshot to snapshot.
  std::shared_ptr<std::atomic<int64_t>> client_connections;
  // The overload manager's verdict (in the stats registry, which outlives
  // every snapshot).
  OverloadState* overload = nullptr;
  // Each worker's golden metrics (in the stats registry), and who this
  // proxy is in them: its service and namespace (empty: unknown).
  std::vector<GoldenTable*> golden;
  // The tap (in the stats registry): each request recorded while it is on.
  Tap* tap = nullptr;
  std::string self_service;
  std::string self_namespace;
  // Where sampled requests' spans go (null: tracing off), and the share of
  // new traces sampled here.
  Tracer* tracer = nullptr;
  uint32_t trace_sampling_per_million = 0;
};

}  // namespace trellis::proxy
