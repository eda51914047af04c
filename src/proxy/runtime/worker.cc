#include "proxy/runtime/worker.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <spdlog/spdlog.h>

#include "net/address.h"
#include "net/buffer.h"
#include "proxy/http1/server_connection.h"
#include "proxy/observe/access_log.h"
#include "proxy/runtime/protocol_detector.h"
#include "proxy/tcp/tcp_session.h"

namespace trellis::proxy {

// Accepts on one listener's socket for this worker.
class Worker::Acceptor final : public net::IoHandler {
 public:
  Acceptor(Worker& worker, std::shared_ptr<ListenSocket> socket, size_t listener_index)
      : worker_(worker),
        socket_(std::move(socket)),
        listener_index_(listener_index),
        resume_(worker.loop_, [this] {
          paused_ = false;
          worker_.loop_.add_level_read(socket_->fd, this);
        }) {
    worker_.loop_.add_level_read(socket_->fd, this);
  }
  ~Acceptor() {
    if (!paused_) worker_.loop_.remove(socket_->fd);
  }
  void on_io(uint32_t) override { worker_.accept_ready(*this); }

  // Out of file descriptors: a level-triggered socket would wake the loop
  // at once again, so accepting stops for a moment.
  void pause() {
    if (paused_) return;
    paused_ = true;
    worker_.loop_.remove(socket_->fd);
    resume_.arm(std::chrono::milliseconds(100));
  }

  Worker& worker_;
  std::shared_ptr<ListenSocket> socket_;
  size_t listener_index_;
  bool paused_ = false;
  net::Timer resume_;
};

namespace {

// A connection over the limits. A plain HTTP listener answers 503 before
// closing, so that the client learns why; the others (TLS, TCP, auto) close.
// `answer`: what a plain HTTP client is told.
void refuse(const ListenerRuntime& listener, int fd, std::string_view answer) {
  if (listener.config->protocol == ListenerProtocol::kHttp && listener.config->tls == ListenerTls::kOff) {
    // What the client sent first is read, so that closing sends no reset
    // that could destroy the answer before the client reads it.
    char discard[4096];
    for (int i = 0; i < 16 && ::recv(fd, discard, sizeof discard, MSG_DONTWAIT) > 0; ++i) {
    }
    (void)!::send(fd, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  ::close(fd);
}

constexpr std::string_view kTooManyConnections =
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n"
    "connection: close\r\n\r\ntoo many connections\n";
constexpr std::string_view kOverloaded =
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 24\r\n"
    "connection: close\r\n\r\noverloaded: memory full\n";

}  // namespace

WorkerConnection::WorkerConnection(Worker& worker) : worker_(worker) { worker_.add_connection(this); }
WorkerConnection::~WorkerConnection() { worker_.remove_connection(this); }

bool WorkerConnection::follow_snapshot(std::shared_ptr<const Snapshot>& snapshot,
                                       const ListenerRuntime*& listener, ListenerStats*& stats) const {
  const auto& current = worker_.snapshot();
  if (current == snapshot) return true;
  for (const ListenerRuntime& l : current->listeners) {
    if (l.config->name != listener->config->name) continue;
    stats->connections_active.sub();
    stats = l.stats[worker_.index()];
    stats->connections_active.add();
    snapshot = current;
    listener = &l;
    return true;
  }
  return false;
}

void Worker::add_connection(WorkerConnection* c) {
  connections_list_.push_front(c);
  c->self_ = connections_list_.begin();
  connections_.fetch_add(1, std::memory_order_relaxed);
  client_connections_->fetch_add(1, std::memory_order_relaxed);
}

void Worker::remove_connection(WorkerConnection* c) {
  connections_list_.erase(c->self_);
  connections_.fetch_sub(1, std::memory_order_relaxed);
  client_connections_->fetch_sub(1, std::memory_order_relaxed);
}

Worker::Worker(size_t index, std::shared_ptr<const Snapshot> initial, Clock& clock, uint64_t seed)
    : index_(index),
      loop_(clock),
      client_connections_(initial->client_connections ? initial->client_connections
                                                      : std::make_shared<std::atomic<int64_t>>(0)),
      random_(seed) {
  access_flush_timer_ = std::make_unique<net::Timer>(loop_, [this] { flush_access_log(); });
  apply(std::move(initial));
}

Worker::~Worker() {
  if (thread_.joinable()) {
    stop();
  } else {
    close_all();  // driven by a test: no thread ran the loop
  }
  acceptors_.clear();
}

void Worker::start() {
  thread_ = std::thread([this] {
    loop_.update_now();
    loop_.run();
    close_all();
  });
}

void Worker::close_all() {
  // Loop stopped: close whatever is left while the loop still exists.
  std::vector<WorkerConnection*> open(connections_list_.begin(), connections_list_.end());
  for (WorkerConnection* c : open) c->abort();
  loop_.run_deferred();
  flush_access_log();
  acceptors_.clear();
  for (auto& [name, cluster] : cluster_state_) cluster->retire();
  for (auto& cluster : retired_clusters_) cluster->retire();
  loop_.run_deferred();
}

void Worker::update(std::shared_ptr<const Snapshot> snapshot, std::function<void()> applied) {
  loop_.post([this, snapshot = std::move(snapshot), applied = std::move(applied)]() mutable {
    apply(std::move(snapshot));
    if (applied) applied();
  });
}

void Worker::drain() {
  loop_.post([this] {
    draining_ = true;
    // shutdown() on a listening socket makes the kernel refuse new connections
    // at once instead of queueing them for an accept that will never come.
    for (auto& a : acceptors_) ::shutdown(a->socket_->fd, SHUT_RDWR);
    acceptors_.clear();
    std::vector<WorkerConnection*> open(connections_list_.begin(), connections_list_.end());
    for (WorkerConnection* c : open) c->start_drain();
    for (auto& [name, cluster] : cluster_state_) cluster->close_idle();
    flush_access_log();
  });
}

void Worker::shed_idle_connections() {
  loop_.post([this] {
    std::vector<WorkerConnection*> idle;
    for (WorkerConnection* c : connections_list_)
      if (c->idle_listener() != nullptr) idle.push_back(c);
    for (WorkerConnection* c : idle) c->start_drain();  // idle: closes now
    if (!idle.empty())
      snapshot_->overload->idle_connections_shed.fetch_add(idle.size(), std::memory_order_relaxed);
    for (auto& [name, cluster] : cluster_state_) cluster->close_idle();
    net::Buffer::free_pool();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  loop_.stop();
  thread_.join();
}

void Worker::apply(std::shared_ptr<const Snapshot> snapshot) {
  // Listeners: keep acceptors whose socket is still in the config, add new ones.
  std::vector<std::unique_ptr<Acceptor>> acceptors;
  if (!draining_) {
    for (size_t i = 0; i < snapshot->listeners.size(); ++i) {
      const auto& socket = snapshot->listeners[i].sockets[index_];
      if (!socket) continue;  // not bound (tests bring connections through the transport)
      std::unique_ptr<Acceptor> acceptor;
      for (auto& old : acceptors_) {
        if (old && old->socket_ == socket) {
          acceptor = std::move(old);
          break;
        }
      }
      if (!acceptor) acceptor = std::make_unique<Acceptor>(*this, socket, i);
      acceptor->listener_index_ = i;
      acceptors.push_back(std::move(acceptor));
    }
  }
  acceptors_ = std::move(acceptors);

  // Clusters: per-worker state survives by name.
  std::map<std::string, std::unique_ptr<UpstreamCluster>> state;
  clusters_.clear();
  for (const ClusterRuntime& c : snapshot->clusters) {
    auto it = cluster_state_.find(c.config->name);
    std::unique_ptr<UpstreamCluster> cluster;
    if (it != cluster_state_.end()) {
      cluster = std::move(it->second);
      cluster_state_.erase(it);
    } else {
      cluster = std::make_unique<UpstreamCluster>(loop_, random_, c.config->name);
    }
    cluster->update(*c.config, c.stats[index_], c, snapshot->config->zone, snapshot->workers);
    clusters_.push_back(cluster.get());
    state.emplace(c.config->name, std::move(cluster));
  }
  for (auto& [name, gone] : cluster_state_) {
    // In-flight requests may still hold its connections: keep the object
    // until the process ends (clusters rarely disappear; the cost is small).
    gone->retire();
    retired_clusters_.push_back(std::move(gone));
  }
  cluster_state_ = std::move(state);

  if (snapshot->access_log != access_log_) {
    flush_access_log();
    access_log_ = snapshot->access_log;
  }
  snapshot_ = std::move(snapshot);
}

void Worker::accept_ready(Acceptor& acceptor) {
  const ListenerRuntime& listener = snapshot_->listeners[acceptor.listener_index_];
  ListenerStats& stats = *listener.stats[index_];
  // Bounded per wake-up so one busy listener cannot starve the rest of the loop.
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage peer;
    int error = 0;
    int fd = net::accept_connection(acceptor.socket_->fd, peer, error);
    if (fd < 0) {
      if (error == EMFILE || error == ENFILE) {
        // No descriptor left: the connection waits in the backlog while an
        // idle one is closed to make room, or for a moment.
        stats.connections_overflow.inc();
        if (shed_idle(nullptr)) {
          stats.idle_connections_shed.inc();
        } else {
          acceptor.pause();
        }
      } else if (error != EAGAIN && error != EWOULDBLOCK && error != EINTR && error != ECONNABORTED) {
        spdlog::warn("accept on {}: {}", listener.config->address.text, strerror(error));
      }
      return;
    }
    stats.connections_total.inc();
    if (std::string_view refusal = admit(listener, stats); !refusal.empty()) {
      refuse(listener, fd, refusal);
      continue;
    }
    adopt_connection(acceptor.listener_index_, fd, peer);
  }
}

std::string_view Worker::admit(const ListenerRuntime& listener, ListenerStats& stats) {
  const ListenerConfig& config = *listener.config;
  const ListenerConfig* full = nullptr;  // the listener whose limit is reached, if that one
  bool over = false;
  if (config.max_connections > 0) {
    int64_t open = 0;
    for (const ListenerStats* s : listener.stats) open += s->connections_active.value();
    if (open >= config.max_connections) {
      over = true;
      full = &config;
    }
  }
  if (!over && client_connections_->load(std::memory_order_relaxed) >= snapshot_->config->max_connections)
    over = true;
  const bool heap_full = snapshot_->overload->refusing();
  if (!over && !heap_full) return {};
  // An idle keep-alive connection makes room: it costs its client a
  // reconnect, where refusing costs the new client its request.
  if (shed_idle(full)) {
    stats.idle_connections_shed.inc();
    return {};
  }
  stats.connections_overflow.inc();
  if (!heap_full) return kTooManyConnections;
  snapshot_->overload->connections_refused.fetch_add(1, std::memory_order_relaxed);
  return kOverloaded;
}

bool Worker::shed_idle(const ListenerConfig* listener) {
  // Oldest first: the list has the newest at its front.
  for (auto it = connections_list_.rbegin(); it != connections_list_.rend(); ++it) {
    const ListenerConfig* idle = (*it)->idle_listener();
    if (idle == nullptr || (listener != nullptr && idle->name != listener->name)) continue;
    (*it)->start_drain();  // idle: closes now
    return true;
  }
  return false;
}

void Worker::adopt_connection(size_t listener_index, int fd, const sockaddr_storage& peer) {
  if (!snapshot_->listeners[listener_index].transport) {
    // An mTLS listener of a proxy that has no certificate yet: fail closed.
    ::close(fd);
    return;
  }
  // Each owns itself and frees itself through the loop when it closes.
  ListenerProtocol protocol = snapshot_->listeners[listener_index].config->protocol;
  if (protocol == ListenerProtocol::kTcp) {
    new TcpSession(*this, fd, peer, listener_index);
  } else if (protocol == ListenerProtocol::kAuto) {
    new ProtocolDetector(*this, fd, peer, listener_index);
  } else {
    new Http1ServerConnection(*this, fd, peer, listener_index);
  }
}

void Worker::log_access(const std::string& line) {
  if (!access_log_) return;
  access_buffer_.append(line);
  access_buffer_.push_back('\n');
  ++access_lines_;
  if (access_buffer_.size() >= 32 * 1024) {
    flush_access_log();
  } else if (!access_flush_timer_->armed()) {
    access_flush_timer_->arm(std::chrono::milliseconds(100));
  }
}

void Worker::flush_access_log() {
  if (access_buffer_.empty() || !access_log_) {
    access_buffer_.clear();
    access_lines_ = 0;
    return;
  }
  // The writer thread writes the whole buffer at once: never interleaved
  // with another worker's lines, and never holding up this loop.
  access_log_->submit(std::move(access_buffer_), access_lines_);
  access_buffer_ = std::string();
  access_buffer_.reserve(4096);
  access_lines_ = 0;
}

}  // namespace trellis::proxy
