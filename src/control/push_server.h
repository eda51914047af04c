// The gRPC side of trellis-control: one bidirectional stream per proxy. A new
// stream gets the proxy's whole configuration; afterwards only what changed is
// sent, each update with a version the proxy ACKs or NACKs. Writes per stream
// never overlap and coalesce: while one is in flight, later changes wait and
// go out as one diff against what the proxy has.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "control/snapshot_builder.h"
#include "trellis/v1/discovery.pb.h"

namespace grpc {
class Server;
}

namespace trellis::control {

// What the push server needs from the rest of the control plane. Called from
// gRPC threads: implementations synchronize themselves.
class PushSource {
 public:
  virtual ~PushSource() = default;
  virtual MeshView mesh_view() = 0;
  // A proxy said hello (and may front an instance to register).
  virtual void proxy_connected(const v1::Hello& hello) = 0;
  virtual void proxy_heartbeat(const v1::Hello& hello) = 0;
};

struct ProxyStatus {
  std::string node_id;
  std::string service;
  std::string namespace_;
  std::string peer;
  int64_t connected_at_ms = 0;
  uint64_t sent_version = 0;
  uint64_t acked_version = 0;
  uint64_t nacked_version = 0;
  std::string nack_error;
  size_t listeners = 0;
  size_t clusters = 0;
  size_t policies = 0;
};

class PushServer {
 public:
  explicit PushServer(PushSource& source);
  ~PushServer();

  // Listens on `address` ("ip:port"; port 0 picks one); returns the port.
  Result<int> start(const std::string& address);
  void shutdown();

  // Recomputes every proxy's configuration and sends what changed.
  void push_all();
  std::vector<ProxyStatus> status();

  class Session;
  class Service;

 private:
  friend class Session;
  void add(Session* s);
  void remove(Session* s);

  PushSource& source_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mu_;  // guards sessions_
  std::set<Session*> sessions_;
};

}  // namespace trellis::control
