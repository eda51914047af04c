// A small blocking HTTP/1.1 client for trellis-control's JSON API: one
// connection per request, a deadline on the whole exchange, and errors a
// person can act on. Blocking sockets are fine here: the CLI does one thing
// at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "cli/credentials.h"
#include "cli/yaml_json.h"
#include "common/result.h"
#include "common/text.h"
#include "net/address.h"
#include "net/tls_context.h"

namespace trellis::cli {

inline constexpr std::string_view kDefaultServer = "127.0.0.1:15011";

// --server when given, else $TRELLIS_SERVER, else kDefaultServer.
std::string default_server();

// "IP:PORT", "[IPv6]:PORT" or "localhost:PORT", optionally after "https://"
// and before a "/"; an error message when malformed (or "http://": the API
// is served over TLS only).
Result<net::SocketAddress> parse_server_address(std::string_view text);

struct HttpResponse {
  int status = 0;
  std::string body;
};

// The API's answer: the status and the body as JSON. A body that is not JSON
// (a proxy in between, an old server) is kept as {"error": <text>}.
struct ApiReply {
  int status = 0;
  Json body;

  bool ok() const { return status >= 200 && status < 300; }
  // body["error"] when it is a string, else a line naming the status.
  std::string error() const;
};

class ApiClient {
 public:
  explicit ApiClient(net::SocketAddress server, std::chrono::milliseconds timeout = std::chrono::seconds(15));

  const std::string& server() const { return server_.text; }
  // Sent as "Authorization: Bearer <token>" with every request when not empty.
  void set_credential(Credential credential) { credential_ = std::move(credential); }
  // The roots the server's certificate must chain to; the certificate must
  // also name the server's IP address. Needed before send().
  Result<bool> set_trust_bundle(const std::string& pem);

  // Sends one request and reads the whole response (Content-Length, chunked,
  // or until the server closes). Errors read like "cannot reach
  // trellis-control at 127.0.0.1:15011: Connection refused".
  Result<HttpResponse> send(std::string_view method, std::string_view target, std::string_view body = {},
                            std::string_view content_type = "application/json") const;

  // send() with a JSON body (none when `body` is null) and a JSON answer. A
  // 401's error says how to give a token, or which token was refused.
  Result<ApiReply> call(std::string_view method, std::string_view target, const Json& body = nullptr) const;

 private:
  net::SocketAddress server_;
  std::chrono::milliseconds timeout_;
  Credential credential_;
  std::shared_ptr<const net::TlsContext> tls_;
};

}  // namespace trellis::cli
