// L4 proxying: bytes both ways between a client and one upstream endpoint, with
// half-close carried across and bounded buffering (a slow reader stops the
// other side from being read).
#pragma once

#include <netinet/in.h>

#include "net/transport.h"
#include "proxy/runtime/worker.h"
#include "proxy/upstream/cluster.h"

namespace trellis::proxy {

class GoldenEntry;

class TcpSession final : public WorkerConnection, public net::TransportCallbacks, public UpstreamUser {
 public:
  TcpSession(Worker& worker, int fd, const sockaddr_storage& peer, size_t listener_index);
  // A connection protocol detection read the first bytes of: they go to the
  // upstream first.
  TcpSession(Worker& worker, AdoptedConnection adopted);
  ~TcpSession() override;

  void start_drain() override;
  void abort() override { close(); }

  // Client connection.
  void on_readable() override;
  void on_writable() override;
  void on_transport_error(int error) override;
  // Upstream connection.
  void on_upstream_connected() override;
  void on_upstream_readable() override;
  void on_upstream_writable() override;
  void on_upstream_error(int error, bool during_connect) override;

 private:
  TcpSession(Worker& worker, std::shared_ptr<const Snapshot> snapshot, const sockaddr_storage& peer,
             size_t listener_index);
  // Authorizes the connection and connects upstream.
  void start();
  // Moves bytes from `from` to `to` until `from` has no more or `to` is full.
  // Returns false when the session was closed.
  bool pump(net::Transport& from, net::Transport& to, bool& from_eof, Counter& counter, Counter& counter2);
  bool pump_client();
  bool pump_upstream();
  void maybe_finish();
  void close();
  // Counts the connection open in the golden metrics; `pool`: the endpoint
  // it goes to, null when it goes nowhere.
  void count_open(EndpointPool* pool);

  std::shared_ptr<const Snapshot> snapshot_;
  const ListenerRuntime& listener_;
  ListenerStats& stats_;
  std::unique_ptr<net::Transport> client_;
  sockaddr_storage peer_;
  UpstreamConnection* upstream_ = nullptr;
  std::string upstream_address_;
  std::string denied_by_;  // what refused the connection at accept
  GoldenEntry* golden_ = nullptr;
  uint16_t flags_ = 0;  // ResponseFlag: why it went nowhere
  net::Buffer scratch_;
  net::Buffer initial_;  // read by protocol detection, for the upstream
  bool connected_ = false;
  bool client_eof_ = false;
  bool upstream_eof_ = false;
  bool closed_ = false;
  MonoTime started_;
  net::Timer idle_timer_;
};

}  // namespace trellis::proxy
