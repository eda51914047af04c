// The gRPC side of trellis-control: one bidirectional stream per proxy. A new
// stream gets the proxy's whole configuration; afterwards only what changed is
// sent, each update with a version the proxy ACKs or NACKs. Writes per stream
// never overlap and coalesce: while one is in flight, later changes wait and
// go out as one diff against what the proxy has.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "control/snapshot_builder.h"
#include "trellis/v1/discovery.pb.h"

namespace grpc {
class Server;
}

namespace trellis::control {

class ControlMetrics;

// Who a stream's proxy proved to be: the namespace and service account of
// its join token, or of its mesh certificate's SPIFFE ID.
struct ProxyIdentity {
  std::string namespace_;
  std::string service_account;
  std::string proven_by;  // "join token tok-1a2b3c4d", "certificate": for logs, never a secret
};

// What the push server needs from the rest of the control plane. Called from
// gRPC threads: implementations synchronize themselves.
class PushSource {
 public:
  virtual ~PushSource() = default;
  virtual MeshView mesh_view() = 0;
  // The identity a join token grants, or why none (never quoting the secret).
  virtual Result<ProxyIdentity> verify_join_token(std::string_view secret) = 0;
  // Signs a proxy's CSR for `identity` (never for what the CSR names).
  struct Signed {
    v1::Certificate certificate;
    std::string issuer;  // SHA-256 fingerprint of the issuing CA certificate
  };
  virtual Result<Signed> sign_proxy_certificate(std::string_view csr_pem, const ProxyIdentity& identity) = 0;
  // The trust domain of every identity the mesh CA issues.
  virtual std::string trust_domain() = 0;
  // Every root the mesh trusts now (PEM).
  virtual std::string trust_bundle_pem() = 0;
  // The fingerprint of the issuer in force when it signed this certificate
  // (PEM, the proxy's own), "" when another did.
  virtual std::string issuer_of(std::string_view certificate_pem) = 0;
  // A proxy said hello (and may front an instance to register). Refused when
  // its node id is the id of an instance of another service.
  virtual Result<bool> proxy_connected(const v1::Hello& hello) = 0;
  virtual void proxy_heartbeat(const v1::Hello& hello) = 0;
  // Where pushes, their answers and certificates are counted; null: nowhere.
  virtual ControlMetrics* metrics() { return nullptr; }
};

struct ProxyStatus {
  std::string node_id;
  std::string service;
  std::string namespace_;
  std::string peer;
  std::string admin_address;  // as the proxy says, unchecked
  std::string identity;       // spiffe://..., once authenticated
  int64_t connected_at_ms = 0;
  uint64_t certificates_issued = 0;
  std::string certificate_issuer;   // fingerprint of what signed its last certificate
  std::string trust_bundle_sha256;  // the bundle it last said it has in force
  uint64_t sent_version = 0;
  uint64_t acked_version = 0;
  uint64_t nacked_version = 0;
  std::string nack_error;
  size_t listeners = 0;
  size_t clusters = 0;
  size_t policies = 0;
  std::vector<ServiceRef> upstreams;  // the services it says its application calls
  std::string tap_key;                // what its admin endpoint's /tap wants; never shown
};

class PushServer {
 public:
  explicit PushServer(PushSource& source);
  ~PushServer();

  // Where the serving certificate comes from: files the control plane
  // rewrites on renewal or root rotation, read again every few seconds.
  struct TlsFiles {
    std::string private_key;        // PEM, mode 0600
    std::string certificate_chain;  // the leaf, then its intermediates
    std::string trust_bundle;       // the roots client certificates must chain to
  };

  // Listens on `address` ("ip:port"; port 0 picks one) over TLS: the proxies
  // verify the server's identity, and a proxy that shows a certificate must
  // chain to the trust bundle (one without a certificate proves who it is
  // with a join token). Returns the port.
  Result<int> start(const std::string& address, const TlsFiles& tls);
  void shutdown();

  // Recomputes every proxy's configuration and sends what changed.
  void push_all();
  // Sends every connected proxy the mesh's new trust bundle (a root
  // rotation step); with `renew`, asks each for a new certificate at once.
  void broadcast_trust_bundle(const std::string& bundle_pem, bool renew);
  std::vector<ProxyStatus> status();

  class Session;
  class Service;

 private:
  friend class Session;
  void add(Session* s);
  void remove(Session* s);
  // Records that `s` is node `node_id` with `identity`; refused, giving the
  // holder's identity, when another connected proxy has that id as another
  // identity.
  std::optional<std::string> claim_node(const std::string& node_id, const std::string& identity, Session* s);

  PushSource& source_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  struct NodeHolder {
    Session* session;
    std::string identity;
  };
  std::mutex mu_;  // guards sessions_ and nodes_
  std::set<Session*> sessions_;
  std::map<std::string, NodeHolder> nodes_;  // by node id
  std::map<Session*, std::string> node_of_;
};

}  // namespace trellis::control
