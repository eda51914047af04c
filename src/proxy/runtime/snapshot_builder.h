// Builds the runtime form of a config, the snapshot every worker adopts:
// listening sockets, stats blocks, route tables, and the state shared by all
// workers (health verdicts, breakers, rate-limit buckets, outlier detectors,
// adaptive limits). Whatever the previous snapshot holds that the new config
// leaves alone is carried over, so a reload keeps queued connections, bucket
// levels, ejections and what the limits learned.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/random.h"
#include "common/result.h"
#include "net/detecting_transport.h"
#include "net/tls_context.h"
#include "net/transport.h"
#include "proxy/observe/tracer.h"
#include "proxy/runtime/snapshot.h"

namespace trellis::proxy {

// The proxy's workload credentials as TLS contexts (immutable, shared by
// every worker); null until it has a certificate.
struct MeshTls {
  std::shared_ptr<const net::TlsContext> server;  // mTLS: client certificates required
  std::shared_ptr<const net::TlsContext> client;
  std::string identity;  // the proxy's own SPIFFE ID
};

class SnapshotBuilder {
 public:
  // Binds a listener's socket for one worker; null with `error` set when it
  // cannot. Tests give one that binds nothing (connections then arrive
  // through the listener's transport, not an accept).
  using OpenListener =
      std::function<std::shared_ptr<ListenSocket>(const ListenerConfig&, std::string& error)>;

  SnapshotBuilder(size_t workers, Random& random);
  // What tests replace: how listeners are bound, what connections run over.
  void set_open_listener(OpenListener open) { open_listener_ = std::move(open); }
  void set_transport(std::shared_ptr<net::TransportFactory> transport) { transport_ = std::move(transport); }
  // New credentials: the next snapshot's TLS listeners and mTLS endpoints
  // use them (open connections keep theirs).
  void set_mesh_tls(MeshTls tls);
  const MeshTls& mesh_tls() const { return mesh_tls_; }
  // The next build reads gateway listeners' certificate files again (SIGHUP);
  // until then they are read once per listener and file names.
  void reload_certificate_files() { gateway_tls_.clear(); }

  // The snapshot for `config`, reusing what `previous` (may be null) holds.
  // Fails only when a socket cannot be bound or an access log opened.
  Result<std::shared_ptr<Snapshot>> build(std::shared_ptr<const ProxyConfig> config, const Snapshot* previous,
                                          MonoTime now);

  StatsRegistry& stats() { return stats_; }
  // Where workers' spans go, for the life of the process.
  Tracer& tracer() { return *tracer_; }
  // How connections to PERMISSIVE listeners were told apart, over the
  // process's life.
  const net::DetectionCounts& detection_counts() const { return *detection_counts_; }

 private:
  std::vector<std::vector<std::shared_ptr<RouteRateLimiter>>> rate_limiters_for(
      const ListenerConfig& l, const VirtualHostConfig& vh, const Snapshot* previous,
      std::vector<std::shared_ptr<RouteRateLimiter>>& shared);
  std::shared_ptr<policy::OutlierDetector> outlier_detector_for(const ClusterConfig& c,
                                                                const Snapshot* previous);
  std::shared_ptr<policy::ConcurrencyLimiter> concurrency_limiter_for(const ClusterConfig& c,
                                                                      const Snapshot* previous, MonoTime now);
  // Null: the listener refuses connections (it serves mTLS, and the proxy
  // has no certificate yet).
  Result<std::shared_ptr<net::TransportFactory>> listener_transport(const ListenerConfig& l);
  // Null: the cluster's transport (plain text).
  Result<std::shared_ptr<net::TransportFactory>> endpoint_transport(const ClusterConfig& c,
                                                                    const EndpointConfig& e);
  // TLS origination for `c` (UpstreamTlsConfig), kept while its settings stay.
  Result<std::shared_ptr<net::TransportFactory>> origination_transport(const ClusterConfig& c);

  size_t workers_;
  Random& random_;
  uint64_t version_ = 0;
  StatsRegistry stats_;
  std::unique_ptr<Tracer> tracer_;
  ClusterStateRegistry cluster_states_;
  OpenListener open_listener_;
  std::shared_ptr<net::TransportFactory> transport_ = net::PlainTransportFactory::shared();
  MeshTls mesh_tls_;
  // Made from mesh_tls_, kept while it stays: reloads keep resumable sessions.
  std::shared_ptr<net::TransportFactory> tls_server_;
  std::shared_ptr<net::TransportFactory> detecting_;  // PERMISSIVE: TLS or plain text
  std::shared_ptr<net::DetectionCounts> detection_counts_ = std::make_shared<net::DetectionCounts>();
  std::map<std::string, std::shared_ptr<net::TransportFactory>> tls_clients_;  // by expected identity
  // Gateway listeners (ListenerTls::kSimple), by listener name: the files
  // they were made from, and the server they serve with.
  struct GatewayTls {
    std::vector<ServerCertificateConfig> certificates;
    ListenerProtocol protocol = ListenerProtocol::kHttp;
    std::shared_ptr<net::TransportFactory> server;
  };
  std::map<std::string, GatewayTls> gateway_tls_;
  // TLS origination per cluster, with the settings and protocol (its ALPN) it was made for.
  struct Origination {
    UpstreamTlsConfig settings;
    UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
    std::shared_ptr<net::TransportFactory> factory;
  };
  std::map<std::string, Origination> originations_;
  std::shared_ptr<std::atomic<int64_t>> client_connections_ = std::make_shared<std::atomic<int64_t>>(0);
  Result<std::shared_ptr<net::TransportFactory>> gateway_transport(const ListenerConfig& l);
};

}  // namespace trellis::proxy
