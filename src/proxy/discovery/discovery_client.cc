#include "proxy/discovery/discovery_client.h"

#include <algorithm>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include "common/spiffe.h"
#include "common/text.h"
#include "net/tls_pem.h"
#include "net/tls_transport.h"
#include "proxy/security/file_credentials.h"

namespace trellis::proxy {
namespace {

constexpr auto kBackoffBase = std::chrono::milliseconds(200);
constexpr auto kBackoffMax = std::chrono::seconds(15);
constexpr const char* kStreamPath = "/trellis.v1.ProxyDiscovery/Stream";
// A renewal asked on the stream and not answered by then counts as failed.
constexpr auto kRenewalAnswerTimeout = std::chrono::seconds(30);
constexpr auto kRenewAgainDelay = std::chrono::seconds(2);

// A secret's text, wiped when done.
struct WipedText {
  std::string text;
  ~WipedText() { OPENSSL_cleanse(text.data(), text.size()); }
};

}  // namespace

DiscoveryClient::DiscoveryClient(net::EventLoop& loop, Apply apply, CertificateManager& certificates,
                                 CertificateInstalled installed,
                                 std::shared_ptr<net::TransportFactory> connect_over)
    : apply_(std::move(apply)),
      certificates_(certificates),
      installed_(std::move(installed)),
      connect_over_(std::move(connect_over)),
      stream_(loop, *this),
      reconnect_timer_(loop, [this] { connect(); }),
      heartbeat_timer_(loop, [this] { send_heartbeat(); }),
      renewal_timer_(loop, [this] { renew(); }) {}

DiscoveryClient::~DiscoveryClient() { stop(); }

void DiscoveryClient::start(std::shared_ptr<const ProxyConfig> bootstrap) {
  // A new bootstrap may say something new in its hello: always a new stream.
  // The config in force stays meanwhile.
  bootstrap_ = std::move(bootstrap);
  stopped_ = false;
  reconnect_timer_.cancel();
  heartbeat_timer_.cancel();
  stream_.reset();
  status_.connected = false;
  connect();
  arm_renewal();
}

void DiscoveryClient::stop() {
  stopped_ = true;
  reconnect_timer_.cancel();
  heartbeat_timer_.cancel();
  renewal_timer_.cancel();
  stream_.reset();
  status_.connected = false;
}

void DiscoveryClient::connect() {
  if (stopped_) return;
  const ControlPlaneConfig& cp = bootstrap_->control_plane;
  ++status_.connects;
  stream_.reset();
  auto transport = control_transport();
  if (!transport) {
    status_.last_error = transport.error().message;
    spdlog::error("control plane {}: {}", cp.address.text, transport.error().message);
    schedule_reconnect();
    return;
  }
  stream_.set_transport(std::move(*transport), "https");
  attempt_ready_ = false;
  if (!stream_.start(cp.address, cp.address.text, kStreamPath)) schedule_reconnect();
}

bool DiscoveryClient::has_valid_certificate() const {
  const auto& current = certificates_.current();
  return current && current->control && std::chrono::system_clock::now() < current->not_after;
}

Result<std::shared_ptr<net::TransportFactory>> DiscoveryClient::control_transport() {
  // With a certificate the control plane no longer trusts (a proxy cut off
  // through a whole root rotation), every attempt with it fails: after one
  // such failure the next attempt joins again with the token.
  attempt_uses_certificate_ = has_valid_certificate() && !token_next_;
  if (connect_over_) return connect_over_;
  const ControlPlaneConfig& cp = bootstrap_->control_plane;
  std::shared_ptr<const net::TlsContext> context;
  if (attempt_uses_certificate_) {
    context = certificates_.current()->control;
  } else {
    // No certificate yet (or an expired one): a client without one, trusting
    // the roots of the bootstrap file; the join token proves who we are.
    auto bundle = read_credential_file(cp.trust_bundle, "trust_bundle " + cp.trust_bundle, false);
    if (!bundle) return bundle.error();
    net::TlsContextOptions options;
    options.role = net::TlsRole::kClient;
    options.trust_bundle_pem = std::move(*bundle);
    options.alpn = {"h2"};
    auto made = net::TlsContext::create(options);
    if (!made) return Error{"trust_bundle " + cp.trust_bundle + ": " + made.error().message};
    context = std::move(*made);
  }
  net::TlsClientOptions client;
  auto control = SpiffeId::make(cp.trust_domain, kControlNamespace, kControlServiceAccount);
  if (!control) return control.error();
  client.accepted_identities = {control->to_string()};
  auto factory = net::TlsTransportFactory::client(std::move(context), std::move(client));
  if (!factory) return factory.error();
  return std::shared_ptr<net::TransportFactory>(std::move(*factory));
}

void DiscoveryClient::schedule_reconnect() {
  if (stopped_) return;
  // Exponential, with full jitter: a fleet that lost its control plane at the
  // same moment does not come back at the same moment.
  backoff_ =
      backoff_ == Duration::zero() ? Duration(kBackoffBase) : std::min<Duration>(backoff_ * 2, kBackoffMax);
  auto span = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(backoff_).count());
  Duration wait = std::chrono::milliseconds(span / 2 + random_.uniform(span / 2 + 1));
  reconnect_timer_.arm(wait);
}

void DiscoveryClient::send(const v1::ProxyMessage& message) { stream_.send(message.SerializeAsString()); }

void DiscoveryClient::on_stream_ready() {
  const ControlPlaneConfig& cp = bootstrap_->control_plane;
  v1::ProxyMessage message;
  v1::Hello* hello = message.mutable_hello();
  v1::Node* node = hello->mutable_node();
  node->set_id(cp.node_id);
  node->set_service(cp.service);
  node->set_namespace_(cp.namespace_);
  node->set_zone(cp.zone);
  node->set_proxy_version("trellis-proxy");
  node->set_service_account(cp.service);
  attempt_ready_ = true;
  if (!attempt_uses_certificate_) {
    WipedText token;
    auto read = read_credential_file(cp.join_token_file, "join_token_file " + cp.join_token_file, true);
    if (!read) {
      // Without a token the control plane refuses the stream and says why;
      // the file may be written later, so keep trying.
      spdlog::error("control plane: {}", read.error().message);
    } else {
      token.text = std::move(*read);
      hello->set_join_token(std::string(trim(token.text)));
    }
  }
  // A certificate with the hello: the first one, one that is due, or a new
  // one when joining with the token again (the one held is not trusted).
  if (!attempt_uses_certificate_ ||
      std::chrono::system_clock::now() >= certificates_.next_renewal(std::chrono::system_clock::now()))
    hello->set_csr_pem(certificates_.csr_pem());
  if (cp.has_instance) {
    v1::LocalInstance* inst = hello->mutable_instance();
    inst->set_address(cp.instance_address.text);
    inst->set_app_address(cp.app_address.text);
    inst->set_weight(cp.weight);
    inst->set_ttl_seconds(static_cast<uint32_t>(std::max<int64_t>(1, cp.ttl.count() / 1000)));
    for (const auto& [k, v] : cp.labels) (*inst->mutable_labels())[k] = v;
    for (const ServicePort& p : cp.ports) {
      v1::ServicePort* out = inst->add_ports();
      out->set_name(p.name);
      out->set_port(p.port);
      out->set_target_port(p.target_port);
      out->set_protocol(p.protocol);
    }
  }
  if (cp.has_outbound) hello->set_outbound_address(cp.outbound_address.text);
  hello->set_admin_address(bootstrap_->admin.address.text);
  hello->set_tap_key(tap_key_);
  for (const std::string& s : cp.upstream_services) hello->add_upstream_services(s);
  hello->set_current_version(status_.applied_version);
  send(message);
  // The hello held the token: wipe the serialized copies' source.
  if (!hello->join_token().empty())
    OPENSSL_cleanse(hello->mutable_join_token()->data(), hello->join_token().size());
  status_.connected = true;
  spdlog::info("control plane {}: connected", cp.address.text);
  if (cp.has_instance) heartbeat_timer_.arm(std::max<Duration>(cp.ttl / 3, std::chrono::milliseconds(100)));
}

void DiscoveryClient::send_heartbeat() {
  if (!stream_.open()) return;
  v1::ProxyMessage message;
  message.mutable_heartbeat();
  send(message);
  heartbeat_timer_.arm(std::max<Duration>(bootstrap_->control_plane.ttl / 3, std::chrono::milliseconds(100)));
}

void DiscoveryClient::on_stream_message(std::string_view payload) {
  v1::ControlMessage message;
  if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    spdlog::warn("control plane: unreadable message ({} bytes) ignored", payload.size());
    return;
  }
  if (message.has_certificate()) {
    on_certificate(message.certificate());
    return;
  }
  if (!message.has_update()) {
    spdlog::warn("control plane: message of an unknown kind ({} bytes) ignored", payload.size());
    return;
  }
  const v1::ConfigUpdate& update = message.update();
  ++status_.updates;
  // Try the update on a copy: a refused one must leave nothing behind.
  DynamicConfig next = dynamic_;
  next.apply(update);
  ConfigLoad merged = merge_dynamic_config(*bootstrap_, next);
  std::string error;
  bool ok = merged.ok();
  if (!ok) {
    for (size_t i = 0; i < merged.errors.size(); ++i) {
      if (i) error += "; ";
      error += merged.errors[i].path + ": " + merged.errors[i].message;
    }
  } else {
    merged.config.source = "control plane version " + std::to_string(update.version());
    ok = apply_(std::make_shared<const ProxyConfig>(std::move(merged.config)), error);
  }
  v1::ProxyMessage reply;
  if (ok) {
    dynamic_ = std::move(next);
    status_.applied_version = update.version();
    backoff_ = Duration::zero();  // a working control plane resets the backoff
    reply.mutable_ack()->set_version(update.version());
    spdlog::info(
        "control plane: config version {} in force ({} listener(s), {} cluster(s) from the control plane)",
        update.version(), dynamic_.listeners.size(), dynamic_.clusters.size());
  } else {
    ++status_.refused;
    status_.refused_version = update.version();
    status_.last_error = error;
    reply.mutable_nack()->set_version(update.version());
    reply.mutable_nack()->set_error(error);
    spdlog::error("control plane: config version {} refused, the previous one stays in force: {}",
                  update.version(), error);
  }
  send(reply);
}

void DiscoveryClient::on_certificate(const v1::Certificate& certificate) {
  SystemTime now = std::chrono::system_clock::now();
  if (certificate.certificate_pem().empty() && certificate.error().empty()) {
    // A root rotation step: new roots to trust, maybe a new certificate to get.
    auto updated = certificates_.update_trust_bundle(certificate.trust_bundle_pem(), now);
    if (!updated) {
      spdlog::error("control plane: new trust bundle refused, the previous one stays: {}",
                    updated.error().message);
    } else {
      spdlog::info("control plane: new trust bundle in force");
      if (installed_) installed_();
      acknowledge_bundle(certificate.trust_bundle_pem());
    }
    if (certificate.renew()) {
      // The answer to a request already made may come from the old issuer:
      // ask again once it is in.
      if (renewal_outstanding_) {
        renew_again_ = true;
      } else {
        renewal_timer_.cancel();
        renew();
      }
    }
    return;
  }
  renewal_outstanding_ = false;
  if (!certificate.error().empty()) {
    spdlog::error("control plane: certificate request refused: {}", certificate.error());
    certificates_.renewal_failed(now);
  } else {
    auto installed = certificates_.install(certificate.certificate_pem(), certificate.chain_pem(),
                                           certificate.trust_bundle_pem(), now);
    if (!installed) {
      spdlog::error("control plane: certificate refused, the previous one stays: {}",
                    installed.error().message);
    } else {
      const TlsCredentials& c = *certificates_.current();
      spdlog::info("certificate for {} in force, valid until {}", c.identity, format_utc(c.not_after));
      token_next_ = false;
      if (installed_) installed_();
      acknowledge_bundle(certificate.trust_bundle_pem());
    }
  }
  if (renew_again_) {
    // Not at once: the control plane signs one request a second per proxy.
    renew_again_ = false;
    renewal_timer_.arm(kRenewAgainDelay);
    return;
  }
  arm_renewal();
}

void DiscoveryClient::acknowledge_bundle(const std::string& bundle_pem) {
  bundle_sha256_ = net::sha256_hex(bundle_pem);
  v1::ProxyMessage message;
  message.mutable_trust_bundle_ack()->set_sha256(bundle_sha256_);
  send(message);
}

void DiscoveryClient::arm_renewal() {
  // The first certificate is asked for in every hello until it comes.
  if (stopped_ || !certificates_.current()) return;
  SystemTime now = std::chrono::system_clock::now();
  auto wait = certificates_.next_renewal(now) - now;
  renewal_timer_.arm(
      std::max<Duration>(std::chrono::duration_cast<Duration>(wait), std::chrono::milliseconds(1)));
}

void DiscoveryClient::renew() {
  if (stopped_) return;
  if (renewal_outstanding_) {
    // Asked and not answered in time.
    renewal_outstanding_ = false;
    spdlog::warn("control plane: no answer to the certificate renewal; retrying");
    certificates_.renewal_failed(std::chrono::system_clock::now());
    arm_renewal();
    return;
  }
  if (!stream_.open()) {
    certificates_.renewal_failed(std::chrono::system_clock::now());
    arm_renewal();
    return;
  }
  v1::ProxyMessage message;
  message.mutable_certificate_request()->set_csr_pem(certificates_.csr_pem());
  send(message);
  // The answer re-arms the timer; none by then counts as a failure.
  renewal_outstanding_ = true;
  renewal_timer_.arm(kRenewalAnswerTimeout);
  spdlog::info("control plane: renewing the certificate for {}", certificates_.identity());
}

void DiscoveryClient::on_stream_closed(int grpc_status, std::string_view message) {
  status_.connected = false;
  // A certificate that got no stream up may no longer be trusted (a proxy
  // cut off through a whole root rotation): the next attempt joins with the
  // token. After a token attempt, whatever became of it, the next one shows
  // the certificate again if one is held: a join token expires, and a
  // refused or expired token must not keep a certified proxy out.
  token_next_ = attempt_uses_certificate_ && !attempt_ready_;
  if (renewal_outstanding_) {
    // Its answer cannot come on another stream.
    renewal_outstanding_ = false;
    certificates_.renewal_failed(std::chrono::system_clock::now());
    arm_renewal();
  }
  heartbeat_timer_.cancel();
  if (stopped_) return;
  spdlog::warn("control plane {}: stream closed ({} {}); serving the last config, reconnecting",
               bootstrap_->control_plane.address.text, grpc_status, message);
  schedule_reconnect();
}

}  // namespace trellis::proxy
