#include "proxy/discovery/discovery_client.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace trellis::proxy {
namespace {

constexpr auto kBackoffBase = std::chrono::milliseconds(200);
constexpr auto kBackoffMax = std::chrono::seconds(15);
constexpr const char* kStreamPath = "/trellis.v1.ProxyDiscovery/Stream";

}  // namespace

namespace {

http::grpc::StreamOptions stream_options(std::shared_ptr<net::TransportFactory> transport) {
  http::grpc::StreamOptions options;
  options.transport = std::move(transport);
  return options;
}

}  // namespace

DiscoveryClient::DiscoveryClient(net::EventLoop& loop, Apply apply,
                                 std::shared_ptr<net::TransportFactory> transport)
    : apply_(std::move(apply)),
      stream_(loop, *this, stream_options(std::move(transport))),
      reconnect_timer_(loop, [this] { connect(); }),
      heartbeat_timer_(loop, [this] { send_heartbeat(); }) {}

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
}

void DiscoveryClient::stop() {
  stopped_ = true;
  reconnect_timer_.cancel();
  heartbeat_timer_.cancel();
  stream_.reset();
  status_.connected = false;
}

void DiscoveryClient::connect() {
  if (stopped_) return;
  const ControlPlaneConfig& cp = bootstrap_->control_plane;
  ++status_.connects;
  stream_.reset();
  if (!stream_.start(cp.address, cp.address.text, kStreamPath)) schedule_reconnect();
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
  if (cp.has_instance) {
    v1::LocalInstance* inst = hello->mutable_instance();
    inst->set_address(cp.instance_address.text);
    inst->set_app_address(cp.app_address.text);
    inst->set_weight(cp.weight);
    inst->set_ttl_seconds(static_cast<uint32_t>(std::max<int64_t>(1, cp.ttl.count() / 1000)));
    for (const auto& [k, v] : cp.labels) (*inst->mutable_labels())[k] = v;
  }
  if (cp.has_outbound) hello->set_outbound_address(cp.outbound_address.text);
  for (const std::string& s : cp.upstream_services) hello->add_upstream_services(s);
  hello->set_current_version(status_.applied_version);
  send(message);
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
  if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size())) || !message.has_update()) {
    spdlog::warn("control plane: unreadable message ({} bytes) ignored", payload.size());
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

void DiscoveryClient::on_stream_closed(int grpc_status, std::string_view message) {
  status_.connected = false;
  heartbeat_timer_.cancel();
  if (stopped_) return;
  spdlog::warn("control plane {}: stream closed ({} {}); serving the last config, reconnecting",
               bootstrap_->control_plane.address.text, grpc_status, message);
  schedule_reconnect();
}

}  // namespace trellis::proxy
