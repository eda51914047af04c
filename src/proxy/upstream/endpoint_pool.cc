#include "proxy/upstream/endpoint_pool.h"

#include <cerrno>

#include "common/text.h"
#include "proxy/upstream/cluster.h"

namespace trellis::proxy {

UpstreamConnection::UpstreamConnection(EndpointPool& pool)
    : pool_(pool),
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
    if (pending_) {
      pending_ = false;
      pool_.cluster().breaker().release(policy::Resource::kPendingRequests);
    }
    if (user_) user_->on_upstream_connected();
    return;
  }
  if (user_) user_->on_upstream_writable();
}

void UpstreamConnection::on_transport_error(int error) {
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

EndpointPool::EndpointPool(UpstreamCluster& cluster, net::EventLoop& loop, const EndpointConfig& endpoint)
    : cluster_(cluster),
      loop_(loop),
      address_(endpoint.address),
      host_id_(fnv1a64(endpoint.address.text)),
      added_at_(loop.now()) {}

EndpointPool::~EndpointPool() {
  close_idle();
  shared_.reset();
}

void EndpointPool::set_transport(std::shared_ptr<net::TransportFactory> transport) {
  if (transport_ && transport_ != transport) close_idle();
  transport_ = std::move(transport);
}

UpstreamConnection* EndpointPool::acquire(UpstreamUser* user, int& error, bool fresh) {
  while (!fresh && !idle_.empty()) {
    UpstreamConnection* c = idle_.back();
    idle_.pop_back();
    c->idle_timer_.cancel();
    if (!c->transport_->open() || c->transport_->failed()) {
      destroy(c);
      continue;
    }
    c->user_ = user;
    return c;
  }
  policy::CircuitBreaker& breaker = cluster_.breaker();
  if (!breaker.try_acquire(policy::Resource::kConnections)) {
    error = kOverflowConnections;
    return nullptr;
  }
  // Until it connects, the request waits for it: a pending request.
  if (!breaker.try_acquire(policy::Resource::kPendingRequests)) {
    breaker.release(policy::Resource::kConnections);
    error = kOverflowPending;
    return nullptr;
  }
  auto* c = new UpstreamConnection(*this);
  c->transport_ = transport_->connect(loop_, address_, c, error);
  cluster_.stats().connects.inc();
  if (!c->transport_) {
    delete c;
    breaker.release(policy::Resource::kPendingRequests);
    breaker.release(policy::Resource::kConnections);
    cluster_.stats().connect_failures.inc();
    return nullptr;
  }
  c->pending_ = true;
  ++live_;
  cluster_.stats().connections_active.add();
  c->user_ = user;
  c->connect_timer_.arm(cluster_.config().connect_timeout);
  return c;
}

void EndpointPool::release(UpstreamConnection* c, bool reusable) {
  c->user_ = nullptr;
  if (!reusable || retired_ || !c->transport_->open() || c->transport_->failed() || !c->in_.empty() ||
      c->transport_->pending_output() > 0 || idle_.size() >= cluster_.config().max_idle_per_endpoint) {
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
  c->transport_->close();
  c->connect_timer_.cancel();
  policy::CircuitBreaker& breaker = cluster_.breaker();
  if (c->pending_) breaker.release(policy::Resource::kPendingRequests);
  c->pending_ = false;
  breaker.release(policy::Resource::kConnections);
  c->idle_timer_.cancel();
  --live_;
  cluster_.stats().connections_active.sub();
  loop_.defer_delete(std::unique_ptr<net::Deferred>(c));
}

void EndpointPool::close_idle() {
  while (!idle_.empty()) destroy(idle_.back());
  if (shared_) shared_->close_idle();
}

void EndpointPool::retire() {
  retired_ = true;
  close_idle();
}

}  // namespace trellis::proxy
