#include "proxy/upstream_pool.h"

#include <cerrno>

#include "proxy/net.h"

namespace trellis::proxy {

UpstreamConnection::UpstreamConnection(EndpointPool& pool, int fd)
    : pool_(pool),
      socket_(pool.loop(), fd, this, /*connecting=*/true),
      connect_timer_(pool.loop(),
                     [this] {
                       pool_.cluster().stats().connect_failures.inc();
                       if (user_) user_->on_upstream_error(ETIMEDOUT, true);
                     }),
      idle_timer_(pool.loop(), [this] { pool_.destroy(this); }) {}

UpstreamConnection::~UpstreamConnection() = default;

void UpstreamConnection::on_readable() {
  if (user_) {
    user_->on_upstream_readable();
    return;
  }
  // Idle in the pool: the upstream closed it (or sent something it should not).
  pool_.destroy(this);
}

void UpstreamConnection::on_writable() {
  if (!connected_) {
    connected_ = true;
    connect_timer_.cancel();
    if (user_) user_->on_upstream_connected();
    return;
  }
  if (user_) user_->on_upstream_writable();
}

void UpstreamConnection::on_socket_error(int error) {
  bool during_connect = !connected_;
  if (during_connect) {
    connect_timer_.cancel();
    pool_.cluster().stats().connect_failures.inc();
  }
  if (user_) {
    user_->on_upstream_error(error, during_connect);
  } else {
    pool_.destroy(this);
  }
}

EndpointPool::EndpointPool(UpstreamCluster& cluster, EventLoop& loop, const EndpointConfig& endpoint)
    : cluster_(cluster), loop_(loop), address_(endpoint.address) {}

EndpointPool::~EndpointPool() { close_idle(); }

UpstreamConnection* EndpointPool::acquire(UpstreamUser* user, int& error, bool fresh) {
  while (!fresh && !idle_.empty()) {
    UpstreamConnection* c = idle_.back();
    idle_.pop_back();
    c->idle_timer_.cancel();
    if (!c->socket_.open() || c->socket_.failed()) {
      destroy(c);
      continue;
    }
    c->user_ = user;
    return c;
  }
  int fd = start_connect(address_, error);
  cluster_.stats().connects.inc();
  if (fd < 0) {
    cluster_.stats().connect_failures.inc();
    return nullptr;
  }
  auto* c = new UpstreamConnection(*this, fd);
  ++live_;
  cluster_.stats().connections_active.add();
  c->user_ = user;
  c->connect_timer_.arm(cluster_.config().connect_timeout);
  return c;
}

void EndpointPool::release(UpstreamConnection* c, bool reusable) {
  c->user_ = nullptr;
  if (!reusable || retired_ || !c->socket_.open() || c->socket_.failed() || !c->in_.empty() ||
      c->socket_.pending_output() > 0 || idle_.size() >= cluster_.config().max_idle_per_endpoint) {
    destroy(c);
    return;
  }
  c->in_.release();
  c->idle_timer_.arm(cluster_.config().idle_timeout);
  idle_.push_back(c);
}

void EndpointPool::destroy(UpstreamConnection* c) {
  for (size_t i = 0; i < idle_.size(); ++i) {
    if (idle_[i] == c) {
      idle_.erase(idle_.begin() + static_cast<long>(i));
      break;
    }
  }
  c->user_ = nullptr;
  c->socket_.close();
  c->connect_timer_.cancel();
  c->idle_timer_.cancel();
  --live_;
  cluster_.stats().connections_active.sub();
  loop_.defer_delete(std::unique_ptr<Deferred>(c));
}

void EndpointPool::close_idle() {
  while (!idle_.empty()) destroy(idle_.back());
}

void EndpointPool::retire() {
  retired_ = true;
  close_idle();
}

UpstreamCluster::UpstreamCluster(EventLoop& loop, std::string name)
    : loop_(loop), name_(std::move(name)) {}

UpstreamCluster::~UpstreamCluster() = default;

void UpstreamCluster::update(const ClusterConfig& config, ClusterStats* stats) {
  config_ = config;
  stats_ = stats;
  std::vector<std::unique_ptr<EndpointPool>> next;
  for (const EndpointConfig& e : config.endpoints) {
    std::unique_ptr<EndpointPool> pool;
    for (auto& old : pools_) {
      if (old && old->address() == e.address) {
        pool = std::move(old);
        break;
      }
    }
    if (!pool) pool = std::make_unique<EndpointPool>(*this, loop_, e);
    next.push_back(std::move(pool));
  }
  for (auto& old : pools_) {
    if (!old) continue;
    old->retire();
    retired_.push_back(std::move(old));
  }
  pools_ = std::move(next);
  collect();
}

void UpstreamCluster::retire() {
  for (auto& p : pools_) {
    p->retire();
    retired_.push_back(std::move(p));
  }
  pools_.clear();
  collect();
}

void UpstreamCluster::close_idle() {
  for (auto& p : pools_) p->close_idle();
}

void UpstreamCluster::collect() {
  std::erase_if(retired_, [](const std::unique_ptr<EndpointPool>& p) { return p->unused(); });
}

EndpointPool* UpstreamCluster::pick() {
  if (pools_.empty()) return nullptr;
  return pools_[rr_next_++ % pools_.size()].get();
}

}  // namespace trellis::proxy
