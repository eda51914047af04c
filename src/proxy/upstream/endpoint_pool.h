// A worker's connections to one endpoint: the ones in use, and a LIFO of idle
// keep-alive ones (the warmest first), each watched for the upstream closing
// it. Connections run over the cluster's transport and count against its
// circuit breaker (max_connections, max_pending_requests).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/time.h"
#include "net/address.h"
#include "net/buffer.h"
#include "net/event_loop.h"
#include "net/transport.h"
#include "proxy/config/config.h"

namespace trellis::proxy {

class EndpointPool;
class UpstreamCluster;

// Who is using a pooled connection right now.
class UpstreamUser {
 public:
  virtual void on_upstream_connected() = 0;
  virtual void on_upstream_readable() = 0;
  virtual void on_upstream_writable() = 0;
  virtual void on_upstream_error(int error, bool during_connect) = 0;

 protected:
  ~UpstreamUser() = default;
};

// One upstream connection, over the cluster's transport. Idle ones sit in
// their endpoint's pool, watched for the upstream closing them.
class UpstreamConnection final : public net::TransportCallbacks, public net::Deferred {
 public:
  explicit UpstreamConnection(EndpointPool& pool);
  ~UpstreamConnection() override;

  net::Transport& transport() { return *transport_; }
  net::Buffer& input() { return in_; }
  EndpointPool& pool() { return pool_; }
  bool reused() const { return requests_ > 0; }
  void set_user(UpstreamUser* user) { user_ = user; }
  void count_request() { ++requests_; }

  void on_readable() override;
  void on_writable() override;
  void on_transport_error(int error) override;

 private:
  friend class EndpointPool;
  EndpointPool& pool_;
  std::unique_ptr<net::Transport> transport_;  // set right after construction
  net::Buffer in_;
  UpstreamUser* user_ = nullptr;
  uint64_t requests_ = 0;
  bool connected_ = false;
  bool pending_ = false;  // holds a pending-request slot until connected
  net::Timer connect_timer_;
  net::Timer idle_timer_;
};

// Connections whose exchanges share them (HTTP/2's streams), kept with the
// endpoint's pool so that every router of the worker finds them. They hold
// pooled connections of their own (acquired fresh, released when they close).
class SharedConnections {
 public:
  virtual ~SharedConnections() = default;
  // Closes those that serve no exchange; after retire(), the others close
  // as their last exchange ends.
  virtual void close_idle() = 0;
};

// acquire() errors that are not errno values.
inline constexpr int kOverflowConnections = -1;  // the cluster's max_connections
inline constexpr int kOverflowPending = -2;      // its max_pending_requests (waiting for a connect)

class EndpointPool {
 public:
  EndpointPool(UpstreamCluster& cluster, net::EventLoop& loop, const EndpointConfig& endpoint);
  ~EndpointPool();

  const net::SocketAddress& address() const { return address_; }
  // Stable across reloads and processes: what hashing balancers key on.
  uint64_t host_id() const { return host_id_; }
  MonoTime added_at() const { return added_at_; }
  // An idle connection, or a new one (possibly still connecting). Null with
  // `error` set when a socket cannot even be started (an errno value), or when
  // a new connection would pass the circuit breaker (kOverflowConnections,
  // kOverflowPending). `fresh`: never reuse (L4 streams, and retries after a
  // stale connection).
  UpstreamConnection* acquire(UpstreamUser* user, int& error, bool fresh = false);
  // Done with a connection: back to the pool when `reusable`, else closed.
  void release(UpstreamConnection* c, bool reusable);
  void close_idle();
  void retire();  // endpoint left the config: no new use, freed when unused
  bool unused() const { return live_ == 0; }
  bool retired() const { return retired_; }
  // The shared connections to this endpoint, made by the codec that uses
  // them (null until one does).
  SharedConnections* shared_connections() const { return shared_.get(); }
  void set_shared_connections(std::unique_ptr<SharedConnections> shared) { shared_ = std::move(shared); }

  UpstreamCluster& cluster() { return cluster_; }
  net::EventLoop& loop() { return loop_; }
  // What new connections run over (the endpoint's mTLS, or the cluster's);
  // set by the cluster on every update. Connections in use keep theirs; idle
  // ones made another way (another identity, older credentials) are closed.
  void set_transport(std::shared_ptr<net::TransportFactory> transport);
  // What new connections run over now: a shared connection made over
  // another takes no new exchanges.
  const net::TransportFactory* transport_factory() const { return transport_.get(); }
  // Whether new connections run over TLS (a sidecar's mTLS, or the cluster's).
  bool tls() const { return transport_.get() != net::PlainTransportFactory::shared().get(); }

 private:
  friend class UpstreamConnection;
  void destroy(UpstreamConnection* c);

  UpstreamCluster& cluster_;
  net::EventLoop& loop_;
  net::SocketAddress address_;
  uint64_t host_id_;
  MonoTime added_at_;
  std::vector<UpstreamConnection*> idle_;  // LIFO: the warmest first
  size_t live_ = 0;
  bool retired_ = false;
  std::shared_ptr<net::TransportFactory> transport_;
  std::unique_ptr<SharedConnections> shared_;  // last: closed while the pool still works
};

}  // namespace trellis::proxy
