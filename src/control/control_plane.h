// trellis-control's core: the store, the registry and the push server, and
// the JSON API over them. The API and timers run on the main event loop; the
// push server's streams run on gRPC threads. One mutex guards the store and
// the registry (the control plane is not on any request path); changes ask
// for a push, which the main loop runs once per burst.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "common/random.h"
#include "common/result.h"
#include "control/push_server.h"
#include "control/registry.h"
#include "control/sqlite_store.h"
#include "http/api_server.h"
#include "net/event_loop.h"

namespace trellis::control {

struct ControlPlaneOptions {
  std::string data_dir = "trellis-data";
  std::string grpc_address = "127.0.0.1:15010";
  std::string http_address = "127.0.0.1:15011";
};

class ControlPlane final : public PushSource {
 public:
  static Result<std::unique_ptr<ControlPlane>> create(net::EventLoop& loop,
                                                      const ControlPlaneOptions& options);
  ~ControlPlane() override;

  int grpc_port() const { return grpc_port_; }
  // The JSON API (docs/control-api.md).
  http::ApiResponse handle(const http::ApiRequest& request);
  void shutdown();

  // PushSource
  MeshView mesh_view() override;
  void proxy_connected(const v1::Hello& hello) override;
  void proxy_heartbeat(const v1::Hello& hello) override;

 private:
  ControlPlane(net::EventLoop& loop, std::unique_ptr<SqliteStore> store);
  void request_push();
  void expire();

  http::ApiResponse put_resource(std::string_view body);
  http::ApiResponse get_resources(std::string_view kind, std::string_view ns, std::string_view name,
                                  std::string_view query);
  http::ApiResponse delete_resource(std::string_view kind, std::string_view ns, std::string_view name,
                                    std::string_view query);
  http::ApiResponse register_instance(std::string_view body);
  http::ApiResponse heartbeat(std::string_view id);
  http::ApiResponse deregister(std::string_view id);
  http::ApiResponse services();
  http::ApiResponse instances(std::string_view ns, std::string_view service);
  http::ApiResponse status();

  net::EventLoop& loop_;
  std::mutex mu_;
  std::unique_ptr<SqliteStore> store_;
  SystemWallClock clock_;
  FastRandom random_{FastRandom::os_seed()};
  std::unique_ptr<Registry> registry_;
  PushServer push_;
  int grpc_port_ = 0;
  std::atomic<bool> push_pending_{false};
  // The store revision the last push round started from: every change up to
  // it has reached (or been found not to concern) every connected proxy.
  std::atomic<uint64_t> pushed_revision_{0};
  net::Timer push_timer_;
  net::Timer expiry_timer_;
};

}  // namespace trellis::control
