// A worker: one thread, one event loop, its own SO_REUSEPORT accept sockets,
// connection pools and stats copies. A connection lives on one worker for life
// and workers share nothing on the request path.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/random.h"
#include "net/buffer.h"
#include "net/event_loop.h"
#include "net/transport.h"
#include "proxy/runtime/snapshot.h"
#include "proxy/upstream/cluster.h"

namespace trellis::proxy {

class Worker;

// A client connection taken over from protocol detection (`protocol: auto`):
// its transport, the bytes already read from it, and where it came from.
struct AdoptedConnection {
  std::shared_ptr<const Snapshot> snapshot;  // the one it was accepted under
  std::unique_ptr<net::Transport> client;
  net::Buffer input;
  sockaddr_storage peer;
  size_t listener_index;
};

// Base of every connection a worker owns, so it can drain or close them all.
class WorkerConnection : public net::Deferred {
 public:
  explicit WorkerConnection(Worker& worker);
  ~WorkerConnection() override;
  // Drain: finish what is in flight, then close. Idle connections close now.
  virtual void start_drain() = 0;
  // Close immediately.
  virtual void abort() = 0;
  // The listener of a connection that waits for its client's next request
  // with nothing in flight (shed first when connections run short); null
  // while it is busy, or for kinds never shed.
  virtual const ListenerConfig* idle_listener() const { return nullptr; }

 protected:
  // Moves a connection of `listener` to the worker's current snapshot, so
  // that new requests follow config changes (those under way keep theirs):
  // the listener of the same name there, its stats taking over the
  // connection. False when that listener is gone.
  bool follow_snapshot(std::shared_ptr<const Snapshot>& snapshot, const ListenerRuntime*& listener,
                       ListenerStats*& stats) const;

  Worker& worker_;

 private:
  friend class Worker;
  std::list<WorkerConnection*>::iterator self_;
};

class Worker {
 public:
  // `clock`: the loop's time (a SimulatedClock in tests, which then drive
  // loop() themselves instead of calling start()). `seed`: the worker's
  // randomness (balancers, jitter, request ids).
  Worker(size_t index, std::shared_ptr<const Snapshot> initial, Clock& clock = SystemClock::instance(),
         uint64_t seed = FastRandom::os_seed());
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  // From the main thread: adopt a new snapshot (listeners, routes, clusters).
  // `applied`, if any, runs on the worker thread once the snapshot is in force there.
  void update(std::shared_ptr<const Snapshot> snapshot, std::function<void()> applied = {});
  // From the main thread: stop accepting, let in-flight requests finish.
  void drain();
  // From the main thread: memory runs short; close every idle keep-alive
  // client connection and pooled upstream connection.
  void shed_idle_connections();
  // From the main thread: close everything and stop the thread.
  void stop();
  // Open client connections, readable from any thread.
  int64_t connections() const { return connections_.load(std::memory_order_relaxed); }

  // On the worker thread only.
  size_t index() const { return index_; }
  net::EventLoop& loop() { return loop_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  bool draining() const { return draining_; }
  UpstreamCluster& cluster(size_t index) { return *clusters_[index]; }
  Random& random() { return random_; }
  // Scratch space for formatting on this worker's thread (access-log lines).
  std::string& scratch() { return scratch_; }
  // Appends one access-log line (without newline) for the current snapshot's log.
  void log_access(const std::string& line);
  // Serves a connection accepted on the snapshot's listener `listener_index`
  // (`fd` goes to the listener's transport factory).
  void adopt_connection(size_t listener_index, int fd, const sockaddr_storage& peer);

  // For WorkerConnection.
  void add_connection(WorkerConnection* c);
  void remove_connection(WorkerConnection* c);

 private:
  class Acceptor;
  void apply(std::shared_ptr<const Snapshot> snapshot);
  void accept_ready(Acceptor& acceptor);
  // Empty when a connection accepted on `listener` may stay (an idle one
  // closed to make room when a limit is reached); else the answer that
  // refuses it.
  std::string_view admit(const ListenerRuntime& listener, ListenerStats& stats);
  // Starts closing the oldest idle connection (of `listener` when given).
  bool shed_idle(const ListenerConfig* listener);
  void flush_access_log();
  void close_all();

  size_t index_;
  net::EventLoop loop_;
  std::thread thread_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::map<std::string, std::unique_ptr<UpstreamCluster>> cluster_state_;
  std::vector<UpstreamCluster*> clusters_;  // aligned with snapshot_->clusters
  std::vector<std::unique_ptr<UpstreamCluster>> retired_clusters_;
  std::list<WorkerConnection*> connections_list_;
  std::atomic<int64_t> connections_{0};
  std::shared_ptr<std::atomic<int64_t>> client_connections_;  // of the whole proxy
  bool draining_ = false;
  std::string access_buffer_;
  uint64_t access_lines_ = 0;  // in access_buffer_
  std::string scratch_;
  FastRandom random_;
  std::shared_ptr<AccessLog> access_log_;
  std::unique_ptr<net::Timer> access_flush_timer_;
};

}  // namespace trellis::proxy
