// A small HTTP/1.1 server on the main thread for control endpoints: the
// proxy's admin listener (/ready, /healthz, /stats, /config_dump) and the
// control plane's JSON API. Requests are handled one at a time per
// connection; bodies are read whole (Content-Length or chunked, bounded).
//
// Both listen on addresses a browser on the same machine can reach, so the
// server refuses, before any handler runs, what a web page could make a
// browser send (RequestScreen below): a Host that is not this server's (DNS
// rebinding), a write from a foreign Origin, a write whose body is not JSON
// (an HTML form or a "simple" cross-site request), and OPTIONS (no CORS: no
// Access-Control-* field is ever sent).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "http/header.h"
#include "net/address.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::http {

struct ApiResponse;
// The answer to a request its handler gives later (ApiRequest::answer_later).
using Reply = std::function<void(ApiResponse)>;

struct ApiRequest {
  std::string_view method;
  std::string_view path;   // without the query
  std::string_view query;  // after '?', may be empty
  std::string_view body;
  std::span<const Header> headers;  // every field as received, in order

  // For an answer that takes time (asking other servers): the handler calls
  // this, returns ApiResponse::pending_answer(), and calls the Reply once,
  // from any thread. The connection waits for it (its next requests too);
  // the views above end when the handler returns. A Reply called after the
  // client left or the server is gone does nothing.
  std::function<Reply()> answer_later;

  // The first value of the field named `lower_name` (given in lower case),
  // or "" when there is none.
  std::string_view header(std::string_view lower_name) const;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Further response fields, e.g. {"www-authenticate", "Bearer"}. Fields
  // that could break the head (CR, LF or NUL in the value, a name that is
  // not a token) or the framing (Content-Length, Transfer-Encoding,
  // Connection) turn the answer into a 500; Access-Control-* fields are
  // dropped.
  std::vector<std::pair<std::string, std::string>> headers;
  bool pending = false;  // the answer comes through a Reply

  static ApiResponse pending_answer() {
    ApiResponse r;
    r.pending = true;
    return r;
  }
};

// Where a connection arrived: the listen address, or for a wildcard listener
// the address the client reached (what a Host naming this server can say).
struct LocalEndpoint {
  std::string ip;  // canonical text, IPv6 without brackets; an IPv4-mapped IPv6 as IPv4
  uint16_t port = 0;
  bool loopback = false;  // 127.0.0.0/8 or ::1: then "localhost" names it too
};
LocalEndpoint local_endpoint(const sockaddr_storage& address);

// A Host field value or a configured name: "name[:port]", "ip:port" or
// "[ip6]:port", the host in lower case (an IP address in its canonical
// text); nothing when malformed.
struct Authority {
  std::string host;
  int port = -1;  // -1: none given
  bool ip = false;
};
std::optional<Authority> parse_authority(std::string_view text);

struct ApiServerOptions {
  // Names besides the connection's own address (and "localhost" on
  // loopback) that a request's Host may carry: a DNS name in front of the
  // server. "api.example.com" matches that name with any port or none;
  // "api.example.com:8443" only that port. IP literals work too.
  std::vector<std::string> host_names;
  // Methods handed to the handler; any other is answered 405 with an Allow
  // field. OPTIONS is never served, whatever this says.
  std::vector<std::string> methods = {"GET", "HEAD"};
  // Plain TCP; a TLS factory serves the same API over TLS.
  std::shared_ptr<net::TransportFactory> transport = net::PlainTransportFactory::shared();
};

// The checks every request passes before its handler sees it, in order:
//   Host names this server (see ApiServerOptions::host_names)  else 421
//   the method is served (OPTIONS never is)                     else 405
//   a write (not GET or HEAD) with an Origin field comes from
//     this server's own origin (http or https, a Host above)    else 403
//   a write's body, when it has one, is application/json
//     (parameters such as charset allowed)                      else 415
// A pure function of the request, so it is tested without sockets.
class RequestScreen {
 public:
  explicit RequestScreen(const ApiServerOptions& options);

  // The refusal to send, or nullopt when the handler may have the request.
  std::optional<ApiResponse> check(const ApiRequest& request, const LocalEndpoint& local) const;

  // `host` is a Host field value: "ip:port", "[ip6]:port" or "name[:port]";
  // without a port it means 80 or 443, the ports browsers leave out.
  bool host_allowed(std::string_view host, const LocalEndpoint& local) const;
  // `origin` is an Origin field value: "http://host[:port]" or "https://...";
  // "null" and anything else is not this server's.
  bool origin_allowed(std::string_view origin, const LocalEndpoint& local) const;

  // Whether `name` can be one of ApiServerOptions::host_names: a DNS name or
  // an IP literal ("[v6]" bracketed), with an optional port.
  static bool valid_host_name(std::string_view name);

 private:
  struct Name {
    std::string host;  // as parse_authority() gives it
    int port = -1;     // -1: any
  };
  bool allowed(const std::string& host, int port, const LocalEndpoint& local) const;

  std::vector<Name> names_;
  std::vector<std::string> methods_;
  std::string allow_;  // the Allow field of a 405
};

class ApiServer final : public net::IoHandler {
 public:
  using Handler = std::function<ApiResponse(const ApiRequest& request)>;
  // Request bodies larger than this are answered 413.
  static constexpr size_t kMaxBody = 8 * 1024 * 1024;

  ApiServer(net::EventLoop& loop, Handler handler, ApiServerOptions options = {});
  ~ApiServer();
  // Binds; false with `error` set.
  bool listen(const net::SocketAddress& address, std::string& error);
  // The address bound (the actual port when listen() was given port 0).
  const net::SocketAddress& address() const { return address_; }
  // Connections accepted from now on use `transport` (a renewed serving
  // certificate); open ones keep theirs.
  void set_transport(std::shared_ptr<net::TransportFactory> transport) { transport_ = std::move(transport); }
  void on_io(uint32_t events) override;

 private:
  class Session;
  // What a Reply holds of the server: where to post the answer, until the
  // server is gone.
  struct Link {
    std::mutex mu;
    net::EventLoop* loop = nullptr;
    ApiServer* server = nullptr;
  };
  net::EventLoop& loop_;
  Handler handler_;
  std::shared_ptr<net::TransportFactory> transport_;
  RequestScreen screen_;
  int fd_ = -1;
  net::SocketAddress address_;
  std::unordered_map<uint64_t, Session*> sessions_;  // open ones, by id
  uint64_t next_session_id_ = 0;
  std::shared_ptr<Link> link_;
};

}  // namespace trellis::http
