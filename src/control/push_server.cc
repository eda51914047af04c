#include "control/push_server.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <atomic>
#include <chrono>
#include <deque>

#include "common/spiffe.h"
#include "control/metrics.h"
#include "net/tls_identity.h"
#include "net/tls_pem.h"
#include "trellis/v1/discovery.grpc.pb.h"

namespace trellis::control {
namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Versions are unique across all streams and only grow, also across restarts
// of the control plane (they start from the wall clock in milliseconds), so a
// proxy can tell any two updates apart.
std::atomic<uint64_t> g_next_version{static_cast<uint64_t>(wall_ms())};

// Deterministic bytes (map fields in key order), so equal objects compare equal.
template <class M>
std::string canonical(const M& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

// What a proxy should run, as canonical bytes only: an update parses back just
// the objects that changed. (Keeping message copies as well tripled the
// memory per session: 190 MiB for 1,000 proxies instead of 84.)
struct Desired {
  std::map<std::string, std::string> listener_bytes;
  std::map<std::string, std::string> cluster_bytes;
  std::map<std::string, std::string> policy_bytes;
};

Desired to_desired(const v1::ConfigUpdate& full) {
  Desired d;
  for (const v1::Listener& l : full.listeners()) {
    d.listener_bytes[l.name()] = canonical(l);
  }
  for (const v1::Cluster& c : full.clusters()) {
    d.cluster_bytes[c.name()] = canonical(c);
  }
  for (const v1::Policy& p : full.policies()) {
    d.policy_bytes[p.key()] = canonical(p);
  }
  return d;
}

// The certificate the proxy showed: gRPC verified its chain against the
// trust bundle during the handshake (GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY).
struct PeerCertificate {
  std::string pem;       // "" when it showed none
  std::string identity;  // its SPIFFE ID; "-" when it carries no single one
};

PeerCertificate peer_certificate(grpc::CallbackServerContext* ctx) {
  PeerCertificate out;
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  if (!auth) return out;
  std::vector<grpc::string_ref> pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return out;
  out.pem.assign(pem[0].data(), pem[0].size());
  auto certificates = net::read_pem_certificates(out.pem);
  std::string identity;
  if (certificates && !certificates->empty()) identity = net::spiffe_identity((*certificates)[0].get());
  // A certificate without exactly one SPIFFE ID proves nothing here.
  out.identity = identity.empty() ? "-" : identity;
  return out;
}

// Certificate requests a proxy may make on one stream: a renewal is due at
// half-life (a minute at the shortest lifetime) or on a rotation step, so
// more than one a second is a proxy gone wrong, or a hostile one.
constexpr auto kMinCertificateInterval = std::chrono::seconds(1);

}  // namespace

class PushServer::Session final : public grpc::ServerBidiReactor<v1::ProxyMessage, v1::ControlMessage> {
 public:
  Session(PushServer& server, std::string peer, PeerCertificate certificate)
      : server_(server), certificate_(std::move(certificate)) {
    status_.peer = std::move(peer);
    status_.connected_at_ms = wall_ms();
    server_.add(this);
    StartRead(&in_);
  }

  // Recomputes this proxy's configuration from `mesh` and sends the difference.
  void refresh(const MeshView& mesh) {
    std::lock_guard lock(mu_);
    if (!have_hello_ || finishing_) return;
    desired_ = to_desired(build_proxy_config(mesh, hello_));
    try_send_locked();
  }

  ProxyStatus status() {
    std::lock_guard lock(mu_);
    return status_;
  }

  void send_certificate_message(const v1::Certificate& message) {
    std::lock_guard lock(mu_);
    if (!have_hello_ || finishing_) return;
    pending_certificates_.push_back(message);
    try_send_locked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The proxy went away or half-closed: end the stream once no write is pending.
      bool finish_now = false;
      {
        std::lock_guard lock(mu_);
        finishing_ = true;
        if (!writing_ && !finished_) finish_now = finished_ = true;
      }
      // Outside the lock: finishing may end the reactor.
      if (finish_now) Finish(grpc::Status::OK);
      return;
    }
    switch (in_.kind_case()) {
      case v1::ProxyMessage::kHello:
        if (!on_hello()) return;
        break;
      case v1::ProxyMessage::kAck: {
        std::lock_guard lock(mu_);
        status_.acked_version = in_.ack().version();
        count_answer(in_.ack().version(), true);
        break;
      }
      case v1::ProxyMessage::kNack: {
        std::lock_guard lock(mu_);
        status_.nacked_version = in_.nack().version();
        count_answer(in_.nack().version(), false);
        status_.nack_error = in_.nack().error();
        spdlog::warn("proxy {} refused config version {}: {}", status_.node_id, in_.nack().version(),
                     in_.nack().error());
        break;
      }
      case v1::ProxyMessage::kCertificateRequest:
        on_certificate_request();
        break;
      case v1::ProxyMessage::kTrustBundleAck: {
        std::lock_guard lock(mu_);
        status_.trust_bundle_sha256 = in_.trust_bundle_ack().sha256();
        break;
      }
      case v1::ProxyMessage::kHeartbeat: {
        v1::Hello hello;
        {
          std::lock_guard lock(mu_);
          if (!have_hello_) break;
          hello = hello_;
        }
        server_.source_.proxy_heartbeat(hello);
        break;
      }
      default:
        break;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    bool finish_now = false;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      out_ = v1::ControlMessage();  // Clear() would keep every endpoint allocated
      if (!ok) finishing_ = true;
      if (finishing_) {
        if (!finished_) finish_now = finished_ = true;
      } else {
        try_send_locked();
      }
    }
    if (finish_now) Finish(grpc::Status::OK);
  }

  void OnDone() override {
    server_.remove(this);
    delete this;
  }

 private:
  // Ends the stream before anything was sent on it; returns false.
  bool refuse(grpc::StatusCode code, const std::string& message) {
    spdlog::warn("proxy stream from {} refused: {}", status_.peer, message);
    {
      std::lock_guard lock(mu_);
      finishing_ = finished_ = true;
    }
    Finish(grpc::Status(code, message));
    return false;
  }

  // Who the proxy is: its certificate's identity, else its join token's.
  Result<ProxyIdentity> authenticate(const v1::Hello& hello) {
    const std::string& identity = certificate_.identity;
    if (identity == "-")
      return Error{"the client certificate carries no single SPIFFE ID: it is not a mesh certificate"};
    if (!identity.empty()) {
      auto id = SpiffeId::parse(identity);
      if (!id) return Error{"client certificate: " + id.error().message};
      std::string domain = server_.source_.trust_domain();
      if (id->trust_domain != domain)
        return Error{"client certificate " + identity + " is not of this mesh's trust domain " + domain};
      if (id->namespace_ == kControlNamespace)
        return Error{"client certificate " + identity + " is the control plane's, not a proxy's"};
      return ProxyIdentity{id->namespace_, id->service_account, "certificate"};
    }
    if (!hello.join_token().empty()) return server_.source_.verify_join_token(hello.join_token());
    return Error{
        "no credentials: a sidecar proves who it is with a join token on its first connection "
        "(control_plane.join_token_file; `trellis token create --kind join`), then with its mesh "
        "certificate"};
  }

  // False when the stream was ended.
  bool on_hello() {
    v1::Hello hello = in_.hello();
    {
      // One identity per stream: a later hello changes nothing (and must
      // not end a stream that may have a write in flight).
      std::lock_guard lock(mu_);
      if (have_hello_) return true;
    }
    if (hello.node().id().empty())
      return refuse(grpc::StatusCode::INVALID_ARGUMENT, "hello: node.id is required");
    Result<ProxyIdentity> who = authenticate(hello);
    if (!who)
      return refuse(grpc::StatusCode::UNAUTHENTICATED,
                    "proxy " + hello.node().id() + ": " + who.error().message);
    // A sidecar is configured as, and registers instances of, its own
    // identity's service only: its service account is its service's name.
    std::string ns = hello.node().namespace_().empty() ? "default" : hello.node().namespace_();
    const std::string& service = hello.node().service();
    const std::string& account =
        hello.node().service_account().empty() ? service : hello.node().service_account();
    if (ns != who->namespace_ || service != who->service_account || account != who->service_account) {
      return refuse(grpc::StatusCode::PERMISSION_DENIED,
                    "proxy " + hello.node().id() + " says it is service " + service + " in namespace " + ns +
                        ", but its " + who->proven_by + " is for service account " + who->service_account +
                        " in namespace " + who->namespace_ +
                        ": a sidecar joins only as the service its identity names");
    }
    std::string identity = "spiffe://" + server_.source_.trust_domain() + "/ns/" + ns + "/sa/" + account;
    if (auto holder = server_.claim_node(hello.node().id(), identity, this)) {
      return refuse(grpc::StatusCode::PERMISSION_DENIED,
                    "proxy " + hello.node().id() + ": that node id is connected already as " + *holder);
    }
    // Registering its instance changes the mesh: every proxy (this one
    // included) is refreshed by the push that follows.
    if (auto registered = server_.source_.proxy_connected(hello); !registered)
      return refuse(grpc::StatusCode::PERMISSION_DENIED,
                    "proxy " + hello.node().id() + ": " + registered.error().message);
    if (!hello.csr_pem().empty()) {
      auto certificate = server_.source_.sign_proxy_certificate(hello.csr_pem(), *who);
      if (!certificate)
        return refuse(
            grpc::StatusCode::INVALID_ARGUMENT,
            "proxy " + hello.node().id() + ": certificate request refused: " + certificate.error().message);
      std::lock_guard lock(mu_);
      pending_certificates_.push_back(std::move(certificate->certificate));
      status_.certificate_issuer = certificate->issuer;
      ++status_.certificates_issued;
      if (ControlMetrics* metrics = server_.source_.metrics()) metrics->certificate_issued();
      last_signed_ = std::chrono::steady_clock::now();
    } else {
      // A proxy back with its certificate may have missed a rotation step:
      // it gets the roots in force now (and says which it has), and renews
      // at once when its certificate is not from the issuer in force.
      v1::Certificate bundle;
      bundle.set_trust_bundle_pem(server_.source_.trust_bundle_pem());
      std::string issuer = certificate_.pem.empty() ? "" : server_.source_.issuer_of(certificate_.pem);
      bundle.set_renew(issuer.empty());
      std::lock_guard lock(mu_);
      status_.certificate_issuer = std::move(issuer);
      pending_certificates_.push_back(std::move(bundle));
    }
    {
      std::lock_guard lock(mu_);
      hello_ = hello;
      identity_ = *who;
      have_hello_ = true;
      status_.node_id = hello.node().id();
      status_.service = service;
      status_.namespace_ = ns;
      status_.admin_address = hello.admin_address();
      status_.tap_key = hello.tap_key();
      status_.upstreams.clear();
      for (const std::string& u : hello.upstream_services())
        status_.upstreams.push_back(parse_service_ref(u, ns));
      status_.identity = std::move(identity);
    }
    spdlog::info("proxy {} ({}.{}, by {}) connected from {}", hello.node().id(), service, ns, who->proven_by,
                 status_.peer);
    refresh(server_.source_.mesh_view());
    return true;
  }

  // A renewal: a new CSR signed for the identity the stream proved.
  void on_certificate_request() {
    ProxyIdentity who;
    {
      std::lock_guard lock(mu_);
      if (!have_hello_) return;
      who = identity_;
      auto now = std::chrono::steady_clock::now();
      if (now - last_signed_ < kMinCertificateInterval || pending_certificates_.size() >= kMaxPending) {
        // Answered, so the proxy retries later, but nothing is signed and
        // nothing more is queued for a proxy that does not read.
        if (pending_certificates_.size() < kMaxPending) {
          v1::Certificate refused;
          refused.set_error("too many certificate requests: at most one a second");
          pending_certificates_.push_back(std::move(refused));
          try_send_locked();
        }
        return;
      }
      last_signed_ = now;
    }
    auto certificate = server_.source_.sign_proxy_certificate(in_.certificate_request().csr_pem(), who);
    std::lock_guard lock(mu_);
    if (certificate) {
      pending_certificates_.push_back(std::move(certificate->certificate));
      status_.certificate_issuer = certificate->issuer;
      ++status_.certificates_issued;
      if (ControlMetrics* metrics = server_.source_.metrics()) metrics->certificate_issued();
    } else {
      spdlog::warn("proxy {}: certificate request refused: {}", status_.node_id, certificate.error().message);
      v1::Certificate refused;
      refused.set_error(certificate.error().message);
      pending_certificates_.push_back(std::move(refused));
    }
    try_send_locked();
  }

  // The proxy answered `version`: push latency, when it is the last sent.
  void count_answer(uint64_t version, bool acked) {
    ControlMetrics* metrics = server_.source_.metrics();
    if (metrics == nullptr || version != status_.sent_version || version == answered_version_) return;
    answered_version_ = version;
    metrics->config_answered(acked, std::chrono::steady_clock::now() - sent_at_);
  }

  void try_send_locked() {
    if (writing_ || finishing_) return;
    // Certificates first: the config that follows may need them.
    if (!pending_certificates_.empty()) {
      *out_.mutable_certificate() = std::move(pending_certificates_.front());
      pending_certificates_.pop_front();
      writing_ = true;
      StartWrite(&out_);
      return;
    }
    if (!have_hello_) return;
    v1::ConfigUpdate update;
    bool full = !sent_any_;
    update.set_full(full);
    for (const auto& [name, bytes] : desired_.listener_bytes) {
      auto it = sent_listeners_.find(name);
      if (full || it == sent_listeners_.end() || it->second != bytes)
        update.add_listeners()->ParseFromString(bytes);
    }
    for (const auto& [name, bytes] : desired_.cluster_bytes) {
      auto it = sent_clusters_.find(name);
      if (full || it == sent_clusters_.end() || it->second != bytes)
        update.add_clusters()->ParseFromString(bytes);
    }
    for (const auto& [key, bytes] : desired_.policy_bytes) {
      auto it = sent_policies_.find(key);
      if (full || it == sent_policies_.end() || it->second != bytes)
        update.add_policies()->ParseFromString(bytes);
    }
    if (!full) {
      for (const auto& [name, bytes] : sent_listeners_)
        if (!desired_.listener_bytes.count(name)) update.add_removed_listeners(name);
      for (const auto& [name, bytes] : sent_clusters_)
        if (!desired_.cluster_bytes.count(name)) update.add_removed_clusters(name);
      for (const auto& [key, bytes] : sent_policies_)
        if (!desired_.policy_bytes.count(key)) update.add_removed_policies(key);
      if (update.listeners_size() == 0 && update.clusters_size() == 0 && update.policies_size() == 0 &&
          update.removed_listeners_size() == 0 && update.removed_clusters_size() == 0 &&
          update.removed_policies_size() == 0)
        return;  // nothing changed for this proxy
    }
    update.set_version(g_next_version.fetch_add(1));
    sent_listeners_ = desired_.listener_bytes;
    sent_clusters_ = desired_.cluster_bytes;
    sent_policies_ = desired_.policy_bytes;
    sent_any_ = true;
    status_.sent_version = update.version();
    sent_at_ = std::chrono::steady_clock::now();
    if (ControlMetrics* metrics = server_.source_.metrics()) metrics->config_sent();
    status_.listeners = desired_.listener_bytes.size();
    status_.clusters = desired_.cluster_bytes.size();
    status_.policies = desired_.policy_bytes.size();
    *out_.mutable_update() = std::move(update);
    writing_ = true;
    StartWrite(&out_);
  }

  PushServer& server_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point sent_at_{};  // of status_.sent_version
  uint64_t answered_version_ = 0;
  v1::ProxyMessage in_;  // only touched by the read chain
  v1::ControlMessage out_;
  v1::Hello hello_;
  ProxyIdentity identity_;
  const PeerCertificate certificate_;
  // Certificates and trust bundles not yet written, a few at most.
  static constexpr size_t kMaxPending = 4;
  std::deque<v1::Certificate> pending_certificates_;
  std::chrono::steady_clock::time_point last_signed_{};
  bool have_hello_ = false;
  bool writing_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  bool sent_any_ = false;
  Desired desired_;
  std::map<std::string, std::string> sent_listeners_;
  std::map<std::string, std::string> sent_clusters_;
  std::map<std::string, std::string> sent_policies_;
  ProxyStatus status_;
};

class PushServer::Service final : public v1::ProxyDiscovery::CallbackService {
 public:
  explicit Service(PushServer& server) : server_(server) {}
  grpc::ServerBidiReactor<v1::ProxyMessage, v1::ControlMessage>* Stream(
      grpc::CallbackServerContext* ctx) override {
    return new Session(server_, ctx->peer(), peer_certificate(ctx));
  }

 private:
  PushServer& server_;
};

PushServer::PushServer(PushSource& source) : source_(source), service_(std::make_unique<Service>(*this)) {}

PushServer::~PushServer() { shutdown(); }

Result<int> PushServer::start(const std::string& address, const TlsFiles& tls) {
  // Checks the files every few seconds: a renewed serving certificate or a
  // rotated trust bundle applies to new connections without a restart.
  constexpr unsigned kRefreshSeconds = 5;
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.private_key, tls.certificate_chain, tls.trust_bundle, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  // A certificate is asked for and verified when shown; a proxy without one
  // yet proves who it is with a join token in its hello.
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::experimental::TlsServerCredentials(options), &port);
  builder.RegisterService(service_.get());
  // Dead proxies are noticed by keepalive, not only by the next write.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) return Error{"cannot listen for proxies on " + address};
  return port;
}

void PushServer::shutdown() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
    server_.reset();
  }
}

void PushServer::add(Session* s) {
  std::lock_guard lock(mu_);
  sessions_.insert(s);
}

void PushServer::remove(Session* s) {
  std::lock_guard lock(mu_);
  sessions_.erase(s);
  auto node = node_of_.find(s);
  if (node == node_of_.end()) return;
  auto held = nodes_.find(node->second);
  if (held != nodes_.end() && held->second.session == s) nodes_.erase(held);
  node_of_.erase(node);
}

std::optional<std::string> PushServer::claim_node(const std::string& node_id, const std::string& identity,
                                                  Session* s) {
  std::lock_guard lock(mu_);
  auto [it, added] = nodes_.try_emplace(node_id, NodeHolder{s, identity});
  if (!added) {
    if (it->second.identity != identity) return it->second.identity;
    it->second.session = s;  // the same proxy back on a new stream
  }
  node_of_[s] = node_id;
  return std::nullopt;
}

void PushServer::push_all() {
  MeshView mesh = source_.mesh_view();
  std::lock_guard lock(mu_);
  for (Session* s : sessions_) s->refresh(mesh);
}

void PushServer::broadcast_trust_bundle(const std::string& bundle_pem, bool renew) {
  v1::Certificate message;
  message.set_trust_bundle_pem(bundle_pem);
  message.set_renew(renew);
  std::lock_guard lock(mu_);
  for (Session* s : sessions_) s->send_certificate_message(message);
}

std::vector<ProxyStatus> PushServer::status() {
  std::vector<ProxyStatus> out;
  std::lock_guard lock(mu_);
  for (Session* s : sessions_) {
    ProxyStatus st = s->status();
    if (!st.node_id.empty()) out.push_back(std::move(st));
  }
  std::sort(out.begin(), out.end(),
            [](const ProxyStatus& a, const ProxyStatus& b) { return a.node_id < b.node_id; });
  return out;
}

}  // namespace trellis::control
