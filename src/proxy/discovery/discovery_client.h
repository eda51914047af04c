// The proxy's side of the control-plane stream: says who it is, applies each
// configuration update through the same path as a reload (refused whole when
// anything is wrong: NACK, the last good config stays), ACKs what it applied,
// heartbeats for its own instance, and reconnects with jittered exponential
// backoff. With the control plane gone the proxy keeps serving its last
// configuration unchanged (static stability).
//
// The stream runs over TLS, verifying that the server is trellis-control
// (spiffe://<trust domain>/ns/trellis-system/sa/trellis-control). Without a
// certificate yet, the proxy proves who it is with its join token and sends
// its CSR in the hello; the certificate comes back on the stream. After
// that it connects with its certificate (mTLS) and renews it on the stream
// at half-life.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/random.h"
#include "http/grpc_stream.h"
#include "net/event_loop.h"
#include "net/transport.h"
#include "proxy/config/config.h"
#include "proxy/discovery/merge.h"
#include "proxy/security/certificate_manager.h"

namespace trellis::proxy {

struct DiscoveryStatus {
  bool connected = false;
  uint64_t applied_version = 0;
  uint64_t refused_version = 0;
  std::string last_error;
  uint64_t connects = 0;
  uint64_t updates = 0;
  uint64_t refused = 0;
};

class DiscoveryClient final : public http::grpc::StreamCallbacks {
 public:
  // Applies a merged config; false with `error` set when it cannot be put in
  // force (the caller keeps the old one).
  using Apply = std::function<bool(std::shared_ptr<const ProxyConfig>, std::string& error)>;

  // A new certificate was installed in the manager (the caller rebuilds its
  // snapshot with it).
  using CertificateInstalled = std::function<void()>;

  // `certificates` (the caller's, on the same thread) is where the proxy's
  // key, CSR and certificates live; it must outlive the client.
  // `connect_over`, for tests only: every connection over it instead of TLS.
  DiscoveryClient(net::EventLoop& loop, Apply apply, CertificateManager& certificates,
                  CertificateInstalled installed,
                  std::shared_ptr<net::TransportFactory> connect_over = nullptr);
  ~DiscoveryClient();

  // (Re)starts the stream with this bootstrap; keeps what the control plane
  // sent so far until the new stream brings its full config.
  void start(std::shared_ptr<const ProxyConfig> bootstrap);
  void stop();
  // The admin endpoint's tap key, sent with each hello (never logged).
  void set_tap_key(std::string key) { tap_key_ = std::move(key); }
  const DynamicConfig& dynamic() const { return dynamic_; }
  const DiscoveryStatus& status() const { return status_; }
  // The bootstrap merged with the last dynamic config the proxy accepted.
  ConfigLoad merged(const ProxyConfig& bootstrap) const { return merge_dynamic_config(bootstrap, dynamic_); }

  void on_stream_ready() override;
  void on_stream_message(std::string_view payload) override;
  void on_stream_closed(int grpc_status, std::string_view message) override;

 private:
  void connect();
  void schedule_reconnect();
  void send_heartbeat();
  void send(const v1::ProxyMessage& message);
  // The TLS client the next connection uses: with the proxy's certificate
  // when it has a valid one, else with none, trusting the bootstrap bundle.
  Result<std::shared_ptr<net::TransportFactory>> control_transport();
  bool has_valid_certificate() const;
  void on_certificate(const v1::Certificate& certificate);
  void acknowledge_bundle(const std::string& bundle_pem);
  void renew();
  void arm_renewal();

  Apply apply_;
  CertificateManager& certificates_;
  CertificateInstalled installed_;
  std::shared_ptr<net::TransportFactory> connect_over_;
  std::shared_ptr<const ProxyConfig> bootstrap_;
  http::grpc::StreamClient stream_;
  DynamicConfig dynamic_;
  DiscoveryStatus status_;
  std::string tap_key_;
  FastRandom random_{FastRandom::os_seed()};
  Duration backoff_{};
  bool stopped_ = true;
  bool renewal_outstanding_ = false;
  bool renew_again_ = false;               // asked to renew while a renewal was outstanding
  bool attempt_uses_certificate_ = false;  // the current connection shows the certificate
  bool attempt_ready_ = false;             // the current connection got its stream up
  bool token_next_ = false;                // the next connection joins with the token
  std::string bundle_sha256_;              // of the trust bundle in force
  net::Timer reconnect_timer_;
  net::Timer heartbeat_timer_;
  net::Timer renewal_timer_;
};

}  // namespace trellis::proxy
