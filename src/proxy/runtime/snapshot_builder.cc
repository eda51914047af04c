#include "proxy/runtime/snapshot_builder.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include "common/text.h"
#include "net/address.h"
#include "net/detecting_transport.h"
#include "net/tls_transport.h"
#include "proxy/http1/upstream_codec.h"
#include "proxy/http2/upstream_codec.h"
#include "proxy/observe/access_log.h"
#include "proxy/security/file_credentials.h"

namespace trellis::proxy {

namespace {

// The protocol a cluster's endpoints speak: chosen here, per cluster, so the
// router and the mirror never make the choice.
std::shared_ptr<const UpstreamCodecFactory> codec_factory_for(const ClusterConfig& c) {
  return c.protocol == UpstreamProtocol::kHttp2 ? Http2UpstreamCodecFactory::shared()
                                                : Http1UpstreamCodecFactory::shared();
}

}  // namespace

SnapshotBuilder::SnapshotBuilder(size_t workers, Random& random)
    : workers_(workers),
      random_(random),
      stats_(workers),
      tracer_(std::make_unique<Tracer>(workers)),
      open_listener_([](const ListenerConfig& l, std::string& error) {
        int fd = net::open_listen_socket(l.address, /*reuse_port=*/true, error);
        return fd < 0 ? nullptr : std::make_shared<ListenSocket>(fd);
      }) {}

// The limiters of a virtual host's routes: those in force where the same
// limit sits at the same place (so a reload keeps their buckets), else new.
// Identical limits on several routes of a listener share one limiter: the
// control plane copies an HTTPRoute's limits onto every route made from it,
// and the user's limit is one limit.
std::vector<std::vector<std::shared_ptr<RouteRateLimiter>>> SnapshotBuilder::rate_limiters_for(
    const ListenerConfig& l, const VirtualHostConfig& vh, const Snapshot* previous,
    std::vector<std::shared_ptr<RouteRateLimiter>>& shared) {
  const ListenerRuntime* old_listener = nullptr;
  size_t old_vhost = SIZE_MAX;
  if (previous) {
    for (const ListenerRuntime& old : previous->listeners) {
      if (old.config->name != l.name) continue;
      for (size_t i = 0; i < old.config->virtual_hosts.size(); ++i)
        if (old.config->virtual_hosts[i].name == vh.name) old_vhost = i;
      if (old_vhost != SIZE_MAX) old_listener = &old;
    }
  }
  std::vector<std::vector<std::shared_ptr<RouteRateLimiter>>> out;
  for (size_t r = 0; r < vh.routes.size(); ++r) {
    std::vector<std::shared_ptr<RouteRateLimiter>> limits;
    for (size_t k = 0; k < vh.routes[r].rate_limits.size(); ++k) {
      const RateLimitConfig& config = vh.routes[r].rate_limits[k];
      std::shared_ptr<RouteRateLimiter> limiter;
      if (old_listener != nullptr && old_vhost < old_listener->rate_limits.size()) {
        const auto& old_routes = old_listener->rate_limits[old_vhost];
        if (r < old_routes.size() && k < old_routes[r].size() &&
            same_rate_limit(old_routes[r][k]->config(), config))
          limiter = old_routes[r][k];
      }
      for (const auto& other : shared)
        if (!limiter && same_rate_limit(other->config(), config)) limiter = other;
      if (!limiter) {
        auto built = RouteRateLimiter::build(config);
        if (!built) {
          spdlog::error("rate limit {} of {}/{}: {}", config.name, l.name, vh.name, built.error().message);
          continue;
        }
        limiter = std::move(*built);
      }
      if (std::find(shared.begin(), shared.end(), limiter) == shared.end()) shared.push_back(limiter);
      limits.push_back(std::move(limiter));
    }
    out.push_back(std::move(limits));
  }
  return out;
}

// The cluster's adaptive limit: kept across reloads that leave its settings
// alone, so what it learned stays.
std::shared_ptr<policy::ConcurrencyLimiter> SnapshotBuilder::concurrency_limiter_for(const ClusterConfig& c,
                                                                                     const Snapshot* previous,
                                                                                     MonoTime now) {
  if (previous) {
    for (const ClusterRuntime& old : previous->clusters) {
      if (old.config->name == c.name && old.concurrency &&
          old.config->adaptive_concurrency == c.adaptive_concurrency)
        return old.concurrency;
    }
  }
  return std::make_shared<policy::ConcurrencyLimiter>(c.adaptive_concurrency, now, random_);
}

// The cluster's detector: the one in force when nothing it depends on
// changed, else a new one that carries over the verdicts of the endpoints
// that stay.
std::shared_ptr<policy::OutlierDetector> SnapshotBuilder::outlier_detector_for(const ClusterConfig& c,
                                                                               const Snapshot* previous) {
  std::vector<uint64_t> ids;
  for (const EndpointConfig& e : c.endpoints) ids.push_back(fnv1a64(e.address.text));
  std::shared_ptr<policy::OutlierDetector> old_detector;
  const ClusterConfig* old_config = nullptr;
  if (previous) {
    for (const ClusterRuntime& old : previous->clusters) {
      if (old.config->name == c.name && old.outlier) {
        old_detector = old.outlier;
        old_config = old.config;
      }
    }
  }
  if (old_detector) {
    bool same_hosts = old_detector->size() == ids.size();
    for (size_t i = 0; same_hosts && i < ids.size(); ++i) same_hosts = old_detector->host_id(i) == ids[i];
    if (same_hosts && old_config->outlier == c.outlier) return old_detector;
  }
  auto detector = std::make_shared<policy::OutlierDetector>(c.outlier, std::move(ids));
  if (old_detector) detector->adopt_state(*old_detector);
  return detector;
}

namespace {

// Where an endpoint must be reached over mTLS and the proxy has no
// certificate yet: connecting fails (fail closed, never plain text).
class NoCertificateFactory final : public net::TransportFactory {
 public:
  std::unique_ptr<net::Transport> accepted(net::EventLoop&, int fd, net::TransportCallbacks*) override {
    ::close(fd);
    return nullptr;
  }
  std::unique_ptr<net::Transport> connect(net::EventLoop&, const net::SocketAddress&,
                                          net::TransportCallbacks*, int& error) override {
    error = EACCES;
    return nullptr;
  }
};

}  // namespace

void SnapshotBuilder::set_mesh_tls(MeshTls tls) {
  mesh_tls_ = std::move(tls);
  tls_server_.reset();
  detecting_.reset();
  tls_clients_.clear();
}

Result<std::shared_ptr<net::TransportFactory>> SnapshotBuilder::gateway_transport(const ListenerConfig& l) {
  GatewayTls& cached = gateway_tls_[l.name];
  if (cached.server && cached.certificates == l.certificates && cached.protocol == l.protocol)
    return cached.server;
  net::TlsContextOptions options;
  options.role = net::TlsRole::kServer;
  // Clients outside the mesh: TLS 1.2 as well (ECDHE and AEAD only), and no
  // client certificate.
  options.allow_tls12 = true;
  options.client_certificate = net::ClientCertificate::kNone;
  // HTTP listeners serve HTTP/2 to clients that offer it; TCP ones carry
  // whatever the client speaks and say nothing.
  if (l.protocol != ListenerProtocol::kTcp) options.alpn = {"h2", "http/1.1"};
  struct Wipe {
    net::TlsContextOptions& o;
    ~Wipe() {
      OPENSSL_cleanse(o.private_key_pem.data(), o.private_key_pem.size());
      for (auto& n : o.server_names) OPENSSL_cleanse(n.private_key_pem.data(), n.private_key_pem.size());
    }
  } wipe{options};
  for (size_t i = 0; i < l.certificates.size(); ++i) {
    const ServerCertificateConfig& c = l.certificates[i];
    auto chain = read_credential_file(c.certificate_chain, "certificate_chain " + c.certificate_chain, false);
    if (!chain) return chain.error();
    auto key = read_credential_file(c.private_key, "private_key " + c.private_key, true);
    if (!key) return key.error();
    if (i == 0) {
      options.certificate_chain_pem = std::move(*chain);
      options.private_key_pem = std::move(*key);
    }
    for (const std::string& name : c.server_names) options.server_names.push_back({name, *chain, *key});
    if (!key->empty()) OPENSSL_cleanse(key->data(), key->size());
  }
  auto context = net::TlsContext::create(options);
  if (!context) return Error{"tls certificates: " + context.error().message};
  auto server = net::TlsTransportFactory::server(std::move(*context));
  if (!server) return server.error();
  cached = {l.certificates, l.protocol, std::move(*server)};
  return cached.server;
}

Result<std::shared_ptr<net::TransportFactory>> SnapshotBuilder::listener_transport(const ListenerConfig& l) {
  if (l.tls == ListenerTls::kOff) return transport_;
  if (l.tls == ListenerTls::kSimple) return gateway_transport(l);
  if (!mesh_tls_.server) {
    // No certificate yet: STRICT refuses everyone, PERMISSIVE serves plain text.
    if (l.tls == ListenerTls::kPermissive) return transport_;
    return std::shared_ptr<net::TransportFactory>();
  }
  if (!tls_server_) {
    auto made = net::TlsTransportFactory::server(mesh_tls_.server);
    if (!made) return made.error();
    tls_server_ = std::move(*made);
  }
  if (l.tls == ListenerTls::kStrict) return tls_server_;
  if (!detecting_)
    detecting_ = std::make_shared<net::DetectingTransportFactory>(
        tls_server_, net::DetectingTransportFactory::kDefaultTimeout, detection_counts_);
  return detecting_;
}

Result<std::shared_ptr<net::TransportFactory>> SnapshotBuilder::origination_transport(
    const ClusterConfig& c) {
  auto& [settings, protocol, factory] = originations_[c.name];
  if (factory && settings == c.tls && protocol == c.protocol) return factory;
  net::TlsContextOptions options;
  options.role = net::TlsRole::kClient;
  options.allow_tls12 = true;  // external services: TLS 1.2 with ECDHE and AEAD, or 1.3
  options.alpn = {c.protocol == UpstreamProtocol::kHttp2 ? "h2" : "http/1.1"};
  if (!c.tls.trust_bundle_pem.empty()) {
    options.trust_bundle_pem = c.tls.trust_bundle_pem;
  } else {
    const std::string& file =
        c.tls.trust_bundle.empty() ? std::string(kSystemTrustBundle) : c.tls.trust_bundle;
    auto bundle = read_credential_file(file, "tls trust_bundle " + file, false);
    if (!bundle) return bundle.error();
    options.trust_bundle_pem = std::move(*bundle);
  }
  auto context = net::TlsContext::create(options);
  if (!context) return Error{"tls: " + context.error().message};
  net::TlsClientOptions client;
  client.verify_name = c.tls.server_name;  // also the SNI, when it is a DNS name
  auto made = net::TlsTransportFactory::client(std::move(*context), std::move(client));
  if (!made) return made.error();
  settings = c.tls;
  protocol = c.protocol;
  factory = std::move(*made);
  return factory;
}

Result<std::shared_ptr<net::TransportFactory>> SnapshotBuilder::endpoint_transport(const ClusterConfig& c,
                                                                                   const EndpointConfig& e) {
  if (e.identity.empty())
    return c.tls.enabled ? origination_transport(c) : std::shared_ptr<net::TransportFactory>();
  if (!mesh_tls_.client)
    return std::shared_ptr<net::TransportFactory>(std::make_shared<NoCertificateFactory>());
  std::shared_ptr<net::TransportFactory>& factory = tls_clients_[e.identity];
  if (!factory) {
    net::TlsClientOptions options;
    options.accepted_identities = {e.identity};
    auto made = net::TlsTransportFactory::client(mesh_tls_.client, std::move(options));
    if (!made) return made.error();
    factory = std::move(*made);
  }
  return factory;
}

Result<std::shared_ptr<Snapshot>> SnapshotBuilder::build(std::shared_ptr<const ProxyConfig> config,
                                                         const Snapshot* previous, MonoTime now) {
  std::string error;
  auto snap = std::make_shared<Snapshot>();
  snap->client_connections = client_connections_;
  snap->overload = &stats_.overload();
  snap->version = ++version_;
  snap->workers = workers_;
  for (size_t i = 0; i < snap->workers; ++i) snap->golden.push_back(stats_.golden(i));
  snap->tap = &stats_.tap();
  if (config->tracing.enabled()) {
    snap->tracer = tracer_.get();
    snap->trace_sampling_per_million = config->tracing.sampling_per_million;
  }
  snap->self_service = config->control_plane.service;
  if (!snap->self_service.empty()) snap->self_namespace = config->control_plane.namespace_;
  snap->config = config;
  for (const ClusterConfig& c : config->clusters) {
    ClusterRuntime rt;
    rt.config = &c;
    rt.stats = stats_.cluster(c.name);
    rt.state = cluster_states_.cluster(c.name);
    rt.transport = transport_;
    for (const EndpointConfig& e : c.endpoints) {
      auto t = endpoint_transport(c, e);
      if (!t)
        return make_error("cluster \"" + c.name + "\": endpoint " + e.address.text + ": " +
                          t.error().message);
      rt.endpoint_transports.push_back(std::move(*t));
    }
    rt.codec = codec_factory_for(c);
    if (c.protocol == UpstreamProtocol::kDownstream) rt.http2_codec = Http2UpstreamCodecFactory::shared();
    rt.sidecar_codec = Http2UpstreamCodecFactory::mesh();
    rt.sidecar_http1_codec = Http1UpstreamCodecFactory::shared();
    rt.sidecar_http1_for_http1 = config->mesh_protocol == MeshProtocol::kDownstream;
    for (const EndpointConfig& e : c.endpoints) rt.sidecars.push_back(!e.identity.empty());
    rt.state->breaker.set_limits(c.circuit_breakers);
    if (c.outlier_enabled) rt.outlier = outlier_detector_for(c, previous);
    if (c.adaptive_concurrency_enabled) rt.concurrency = concurrency_limiter_for(c, previous, now);
    for (const EndpointConfig& e : c.endpoints) rt.endpoints.push_back(rt.state->endpoint(e.address.text));
    rt.state->retain([&](const std::string& address) {
      return std::any_of(c.endpoints.begin(), c.endpoints.end(),
                         [&](const EndpointConfig& e) { return e.address.text == address; });
    });
    snap->clusters.push_back(std::move(rt));
  }
  snap->listeners.reserve(config->listeners.size());
  for (const ListenerConfig& l : config->listeners) {
    ListenerRuntime rt;
    rt.config = &l;
    if (!l.authorization.empty()) {
      auto authorizer = policy::Authorizer::compile(l.authorization);
      if (!authorizer)
        return make_error("listener \"" + l.name + "\": authorization." + authorizer.error().message);
      rt.authorizer = std::move(*authorizer);
      rt.authz_stats.push_back(stats_.authz(l.name, "default"));
      for (const policy::AuthzPolicyConfig& p : l.authorization.policies)
        rt.authz_stats.push_back(stats_.authz(l.name, p.name));
    }
    // Reuse the sockets of a listener on the same address: reloads must not
    // drop connections waiting in the accept queue.
    if (previous) {
      for (const ListenerRuntime& old : previous->listeners) {
        if (old.config->address == l.address) {
          rt.sockets = old.sockets;
          break;
        }
      }
    }
    if (rt.sockets.empty()) {
      for (size_t i = 0; i < workers_; ++i) {
        std::shared_ptr<ListenSocket> socket = open_listener_(l, error);
        if (!socket && !error.empty()) return make_error("listener \"" + l.name + "\": " + error);
        rt.sockets.push_back(std::move(socket));
      }
    }
    std::vector<std::shared_ptr<RouteRateLimiter>> listener_limiters;  // shared by identical limits
    for (const VirtualHostConfig& vh : l.virtual_hosts) {
      std::vector<policy::RouteMatch> routes;
      for (const RouteConfig& r : vh.routes) routes.push_back(r.match);
      rt.rate_limits.push_back(rate_limiters_for(l, vh, previous, listener_limiters));
      auto added = rt.routes.add_virtual_host(vh.domains, routes);
      if (!added)
        return make_error("listener \"" + l.name + "\": virtual host \"" + vh.name +
                          "\": " + added.error().message);
    }
    rt.stats = stats_.listener(l.name);
    auto transport = listener_transport(l);
    if (!transport) return make_error("listener \"" + l.name + "\": " + transport.error().message);
    rt.transport = std::move(*transport);
    if (l.tls == ListenerTls::kStrict || l.tls == ListenerTls::kPermissive) rt.identity = mesh_tls_.identity;
    rt.client_identity_header = l.client_identity_header;
    snap->listeners.push_back(std::move(rt));
  }
  if (!config->access_log.path.empty()) {
    if (previous && previous->access_log && previous->access_log->path() == config->access_log.path &&
        previous->access_log->format() == config->access_log.format) {
      snap->access_log = previous->access_log;
    } else {
      auto log = AccessLog::open(config->access_log.path, config->access_log.format,
                                 &stats_.access_log_lines_written(), &stats_.access_log_lines_dropped());
      if (!log) return make_error(log.error().message);
      snap->access_log = std::move(*log);
    }
  }
  // Spans go to the collector named last; nothing can fail past this point.
  if (config->tracing.enabled())
    tracer_->configure(config->tracing.collector,
                       snap->self_service.empty() ? std::string("trellis-proxy") : snap->self_service);
  return snap;
}

}  // namespace trellis::proxy
