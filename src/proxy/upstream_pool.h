// Per-worker upstream state of a cluster: the load-balancing cursor and a pool
// of idle keep-alive connections per endpoint. Survives reloads that keep the
// cluster, so warm connections are not thrown away.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/event_loop.h"
#include "proxy/socket.h"
#include "proxy/stats.h"

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

// One upstream TCP connection. Idle ones sit in their endpoint's pool, watched
// for the upstream closing them.
class UpstreamConnection final : public SocketCallbacks, public Deferred {
 public:
  UpstreamConnection(EndpointPool& pool, int fd);
  ~UpstreamConnection() override;

  Socket& socket() { return socket_; }
  Buffer& input() { return in_; }
  EndpointPool& pool() { return pool_; }
  bool reused() const { return requests_ > 0; }
  void set_user(UpstreamUser* user) { user_ = user; }
  void count_request() { ++requests_; }

  void on_readable() override;
  void on_writable() override;
  void on_socket_error(int error) override;

 private:
  friend class EndpointPool;
  EndpointPool& pool_;
  Socket socket_;
  Buffer in_;
  UpstreamUser* user_ = nullptr;
  uint64_t requests_ = 0;
  bool connected_ = false;
  Timer connect_timer_;
  Timer idle_timer_;
};

class EndpointPool {
 public:
  EndpointPool(UpstreamCluster& cluster, EventLoop& loop, const EndpointConfig& endpoint);
  ~EndpointPool();

  const SocketAddress& address() const { return address_; }
  // An idle connection, or a new one (possibly still connecting). Null with
  // `error` set (an errno value) when a socket cannot even be started.
  // `fresh`: never reuse (L4 streams, and retries after a stale connection).
  UpstreamConnection* acquire(UpstreamUser* user, int& error, bool fresh = false);
  // Done with a connection: back to the pool when `reusable`, else closed.
  void release(UpstreamConnection* c, bool reusable);
  void close_idle();
  void retire();  // endpoint left the config: no new use, freed when unused
  bool retired() const { return retired_; }
  bool unused() const { return live_ == 0; }

  UpstreamCluster& cluster() { return cluster_; }
  EventLoop& loop() { return loop_; }

 private:
  friend class UpstreamConnection;
  void destroy(UpstreamConnection* c);

  UpstreamCluster& cluster_;
  EventLoop& loop_;
  SocketAddress address_;
  std::vector<UpstreamConnection*> idle_;  // LIFO: the warmest first
  size_t live_ = 0;
  bool retired_ = false;
};

class UpstreamCluster {
 public:
  UpstreamCluster(EventLoop& loop, std::string name);
  ~UpstreamCluster();

  // Adopts a (possibly changed) config: pools of endpoints that stay are kept.
  void update(const ClusterConfig& config, ClusterStats* stats);
  void retire();  // the cluster left the config
  void close_idle();

  const std::string& name() const { return name_; }
  const ClusterConfig& config() const { return config_; }
  ClusterStats& stats() { return *stats_; }
  // Round robin over the endpoints; null when there are none.
  EndpointPool* pick();
  // Frees retired endpoint pools that nothing uses any more.
  void collect();

 private:
  EventLoop& loop_;
  std::string name_;
  ClusterConfig config_;  // a copy: in-flight requests may outlive the snapshot it came from
  ClusterStats* stats_ = nullptr;
  std::vector<std::unique_ptr<EndpointPool>> pools_;    // current endpoints, in config order
  std::vector<std::unique_ptr<EndpointPool>> retired_;  // waiting for their last connection
  uint64_t rr_next_ = 0;
};

}  // namespace trellis::proxy
