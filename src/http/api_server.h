// A small HTTP/1.1 server on the main thread for control endpoints: the
// proxy's admin listener (/ready, /healthz, /stats, /config_dump) and the
// control plane's JSON API. Requests are handled one at a time per
// connection; bodies are read whole (Content-Length or chunked, bounded).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>

#include "net/address.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::http {

struct ApiRequest {
  std::string_view method;
  std::string_view path;   // without the query
  std::string_view query;  // after '?', may be empty
  std::string_view body;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class ApiServer final : public net::IoHandler {
 public:
  using Handler = std::function<ApiResponse(const ApiRequest& request)>;
  // Request bodies larger than this are answered 413.
  static constexpr size_t kMaxBody = 8 * 1024 * 1024;

  ApiServer(net::EventLoop& loop, Handler handler,
            std::shared_ptr<net::TransportFactory> transport = net::PlainTransportFactory::shared());
  ~ApiServer();
  // Binds; false with `error` set.
  bool listen(const net::SocketAddress& address, std::string& error);
  void on_io(uint32_t events) override;

 private:
  class Session;
  net::EventLoop& loop_;
  Handler handler_;
  std::shared_ptr<net::TransportFactory> transport_;
  int fd_ = -1;
  std::unordered_set<Session*> sessions_;  // open ones
};

}  // namespace trellis::http
