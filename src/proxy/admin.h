// The admin listener, served on the main thread: /ready, /healthz, /stats
// (Prometheus text format) and /config_dump.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "proxy/event_loop.h"
#include "proxy/snapshot.h"

namespace trellis::proxy {

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class AdminServer final : public IoHandler {
 public:
  using Handler = std::function<AdminResponse(std::string_view method, std::string_view path)>;

  AdminServer(EventLoop& loop, Handler handler);
  ~AdminServer();
  // Binds; false with `error` set.
  bool listen(const SocketAddress& address, std::string& error);
  void on_io(uint32_t events) override;

 private:
  class Session;
  EventLoop& loop_;
  Handler handler_;
  int fd_ = -1;
};

}  // namespace trellis::proxy
