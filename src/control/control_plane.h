// trellis-control's core: the store, the registry, the tokens and the push
// server, and the JSON API over them (every call but /healthz and /ready
// with a bearer token, docs/control-plane.md). The API and timers run on the main event loop; the
// push server's streams run on gRPC threads. One mutex guards the store and
// the registry (the control plane is not on any request path); changes ask
// for a push, which the main loop runs once per burst.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/random.h"
#include "common/result.h"
#include "control/ca/certificate_authority.h"
#include "control/metrics.h"
#include "control/proxy_stats.h"
#include "control/push_server.h"
#include "control/registry.h"
#include "control/sqlite_store.h"
#include "control/tokens.h"
#include "http/api_server.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::control {

struct ControlPlaneOptions {
  std::string data_dir = "trellis-data";
  std::string grpc_address = "127.0.0.1:15010";
  std::string http_address = "127.0.0.1:15011";
  // The trust domain of every identity the mesh CA issues.
  std::string trust_domain = "cluster.local";
  // An operator's intermediate CA (certificate chain up to the root, and its
  // key); both empty: the CA's own root in <data_dir>/ca.
  std::string ca_certificate_file;
  std::string ca_key_file;
  // DNS names clients use for the control plane, put in its serving
  // certificate (besides localhost and the addresses it listens on).
  std::vector<std::string> server_names;
};

// Files in the data directory besides the store and the CA.
inline constexpr const char* kTrustBundleFile = "trust-bundle.pem";  // what proxies and the CLI trust
inline constexpr const char* kServerKeyFile = "tls/server.key";      // the serving certificate's key, 0600
inline constexpr const char* kServerCertificateFile = "tls/server.crt";

class ControlPlane final : public PushSource {
 public:
  // Opens the store and starts the push server. On the first start (when no
  // admin token is in force) it writes one to <data_dir>/admin-token.
  static Result<std::unique_ptr<ControlPlane>> create(net::EventLoop& loop,
                                                      const ControlPlaneOptions& options);
  // `trellis-control --new-admin-token`: a new bootstrap admin token in
  // <data_dir>/admin-token, the earlier ones revoked. Safe while another
  // trellis-control runs on the same directory. Returns the file's path.
  static Result<std::string> new_admin_token(const std::string& data_dir);
  ~ControlPlane() override;

  int grpc_port() const { return grpc_port_; }
  // The JSON API (docs/control-plane.md).
  http::ApiResponse handle(const http::ApiRequest& request);
  // The methods handle() serves, for the ApiServer in front of it.
  static std::vector<std::string> api_methods() { return {"GET", "HEAD", "POST", "PUT", "DELETE"}; }
  void shutdown();
  const CertificateAuthority& ca() const { return *ca_; }
  // What the JSON API is served over: TLS with the serving certificate.
  // `listener` hears of each new one (the certificate renewed), on the
  // main loop.
  std::shared_ptr<net::TransportFactory> api_transport() const { return api_transport_; }
  void on_api_transport(std::function<void(std::shared_ptr<net::TransportFactory>)> listener) {
    api_transport_listener_ = std::move(listener);
  }

  // PushSource
  MeshView mesh_view() override;
  Result<ProxyIdentity> verify_join_token(std::string_view secret) override;
  Result<Signed> sign_proxy_certificate(std::string_view csr_pem, const ProxyIdentity& identity) override;
  std::string trust_domain() override { return ca_->trust_domain(); }
  std::string trust_bundle_pem() override;
  std::string issuer_of(std::string_view certificate_pem) override;
  Result<bool> proxy_connected(const v1::Hello& hello) override;
  void proxy_heartbeat(const v1::Hello& hello) override;
  ControlMetrics* metrics() override { return &metrics_; }

 private:
  ControlPlane(net::EventLoop& loop, std::unique_ptr<SqliteStore> store);
  // Issues the serving certificate and writes it, its key and the trust
  // bundle to the data directory, where the gRPC server reads them.
  Result<bool> write_server_credentials();
  // <data_dir>/<name>.
  std::string data_file(const char* name) const;
  // <data_dir>/trust-bundle.pem, for the proxies and the CLI.
  Result<bool> write_trust_bundle(const std::string& pem) const;
  void renew_server_credentials();
  // MeshConfig's mtls.certificateLifetime, or the default.
  std::chrono::seconds workload_lifetime();
  void request_push();
  void expire();

  http::ApiResponse put_resource(std::string_view body);
  http::ApiResponse get_resources(std::string_view kind, std::string_view ns, std::string_view name,
                                  std::string_view query);
  http::ApiResponse delete_resource(std::string_view kind, std::string_view ns, std::string_view name,
                                    std::string_view query);
  http::ApiResponse register_instance(std::string_view body);
  http::ApiResponse heartbeat(std::string_view id);
  http::ApiResponse deregister(std::string_view id);
  http::ApiResponse services();
  http::ApiResponse instances(std::string_view ns, std::string_view service);
  http::ApiResponse status();
  http::ApiResponse prometheus_targets();
  http::ApiResponse metrics_page();
  http::ApiResponse proxy_config(const http::ApiRequest& request, std::string_view node_id);
  // Answers `request` later with what `ask` gives, run by proxy_queries_
  // (503 when too many wait).
  http::ApiResponse ask_proxies(const http::ApiRequest& request, std::function<http::ApiResponse()> ask);
  http::ApiResponse check();
  http::ApiResponse ca_status();
  http::ApiResponse ca_rotate(std::string_view body);
  http::ApiResponse create_token(std::string_view body, const TokenRecord& caller);
  http::ApiResponse list_tokens();
  http::ApiResponse revoke_token(std::string_view id, const TokenRecord& caller);
  // The caller's token, or the 401/403 answer (nullopt token) for `request`.
  std::optional<http::ApiResponse> authorize(const http::ApiRequest& request, TokenRecord& caller);

  net::EventLoop& loop_;
  std::mutex mu_;
  ControlMetrics metrics_;
  std::unique_ptr<Store> store_;  // the SQLite store, timed
  SystemWallClock clock_;
  FastRandom random_{FastRandom::os_seed()};
  std::unique_ptr<Registry> registry_;
  OpenSslSecretSource secrets_;
  std::unique_ptr<Tokens> tokens_;
  std::unique_ptr<CertificateAuthority> ca_;  // rotation steps under mu_
  ControlPlaneOptions options_;
  SystemTime server_renew_at_{};
  int64_t rotation_began_ms_ = 0;  // when the new root was added to the bundle
  int64_t started_ms_ = 0;         // when this process started
  std::shared_ptr<net::TransportFactory> api_transport_;
  std::function<void(std::shared_ptr<net::TransportFactory>)> api_transport_listener_;
  PushServer push_;
  int grpc_port_ = 0;
  std::atomic<bool> push_pending_{false};
  // The store revision the last push round started from: every change up to
  // it has reached (or been found not to concern) every connected proxy.
  std::atomic<uint64_t> pushed_revision_{0};
  net::Timer push_timer_;
  net::Timer expiry_timer_;
  net::Timer server_renewal_timer_;
  // Last: its thread ends before anything above goes.
  ProxyQueries proxy_queries_;
};

}  // namespace trellis::control
