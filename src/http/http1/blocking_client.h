// One HTTP/1.1 exchange over a new plain TCP connection, blocking: for the
// few requests made off the request path, from a thread of their own or a
// command (a proxy exporting spans, trellis-control asking proxies for their
// metrics). Each step (connect, send, every read) waits at most `timeout`;
// the response is read with the strict parser, its body kept up to
// `max_body`.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/result.h"
#include "net/address.h"

namespace trellis::http::http1 {

struct BlockingResponse {
  int status = 0;
  std::string body;
};

// `request` is the whole request, head and body, sent as it is; its
// answer, or why there is none ("cannot connect to 1.2.3.4:80: ...").
Result<BlockingResponse> blocking_exchange(const net::SocketAddress& to, std::string_view request,
                                           std::chrono::milliseconds timeout, size_t max_body);

}  // namespace trellis::http::http1
