#include "control/push_server.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>

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

}  // namespace

class PushServer::Session final : public grpc::ServerBidiReactor<v1::ProxyMessage, v1::ControlMessage> {
 public:
  Session(PushServer& server, std::string peer) : server_(server) {
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
        break;
      }
      case v1::ProxyMessage::kNack: {
        std::lock_guard lock(mu_);
        status_.nacked_version = in_.nack().version();
        status_.nack_error = in_.nack().error();
        spdlog::warn("proxy {} refused config version {}: {}", status_.node_id, in_.nack().version(),
                     in_.nack().error());
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
  // False when the stream was ended.
  bool on_hello() {
    v1::Hello hello = in_.hello();
    if (hello.node().id().empty()) {
      {
        std::lock_guard lock(mu_);
        finishing_ = finished_ = true;
      }
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello: node.id is required"));
      return false;
    }
    {
      std::lock_guard lock(mu_);
      if (have_hello_) return true;  // one identity per stream
      hello_ = hello;
      have_hello_ = true;
      status_.node_id = hello.node().id();
      status_.service = hello.node().service();
      status_.namespace_ = hello.node().namespace_().empty() ? "default" : hello.node().namespace_();
    }
    spdlog::info("proxy {} ({}) connected from {}", hello.node().id(), hello.node().service(), status_.peer);
    // Registering its instance changes the mesh: every proxy (this one
    // included) is refreshed by the push that follows.
    server_.source_.proxy_connected(hello);
    refresh(server_.source_.mesh_view());
    return true;
  }

  void try_send_locked() {
    if (writing_ || finishing_) return;
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
    status_.listeners = desired_.listener_bytes.size();
    status_.clusters = desired_.cluster_bytes.size();
    status_.policies = desired_.policy_bytes.size();
    *out_.mutable_update() = std::move(update);
    writing_ = true;
    StartWrite(&out_);
  }

  PushServer& server_;
  std::mutex mu_;
  v1::ProxyMessage in_;  // only touched by the read chain
  v1::ControlMessage out_;
  v1::Hello hello_;
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
    return new Session(server_, ctx->peer());
  }

 private:
  PushServer& server_;
};

PushServer::PushServer(PushSource& source) : source_(source), service_(std::make_unique<Service>(*this)) {}

PushServer::~PushServer() { shutdown(); }

Result<int> PushServer::start(const std::string& address) {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
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
}

void PushServer::push_all() {
  MeshView mesh = source_.mesh_view();
  std::lock_guard lock(mu_);
  for (Session* s : sessions_) s->refresh(mesh);
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
