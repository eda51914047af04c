// HTTP/1.1 wire form <-> protocol-neutral messages. Inbound heads lose their
// hop-by-hop fields and framing; outbound heads are rebuilt canonically from
// the neutral message, never copied from input bytes, so the framing the next
// hop sees is always the framing this proxy decided on.
#pragma once

#include <string_view>

#include "http/http1/parser.h"
#include "http/message.h"
#include "net/buffer.h"

namespace trellis::http::http1 {

// Parsed request head -> neutral request. Views point into the parser's input.
void to_neutral(const RequestHead& head, http::RequestHeaders& out);
// Parsed response head -> neutral response.
void to_neutral(const ResponseHead& head, bool head_request, http::ResponseHeaders& out);

// The request as sent upstream: origin-form target, HTTP/1.1, Host first (the
// request's authority, else `fallback_authority`), the end-to-end fields, then
// canonical framing and, for upgrades, Connection: upgrade.
void serialize_request(const http::RequestHeaders& req, std::string_view fallback_authority,
                       net::Buffer& out);

enum class ResponseFraming : unsigned char {
  kNone,           // no body follows
  kContentLength,  // Content-Length: n
  kChunked,        // Transfer-Encoding: chunked
  kClose,          // body until the connection closes (HTTP/1.0 clients)
};

// How a response is framed for a client of HTTP/1.<client_minor>: a body of
// unknown length is chunked for 1.1 clients, so their connection stays usable.
ResponseFraming response_framing(const http::ResponseHeaders& resp, int client_minor);

void serialize_response(const http::ResponseHeaders& resp, ResponseFraming framing, bool close,
                        int client_minor, net::Buffer& out);

// "0\r\n", the forwardable trailer fields, "\r\n".
void serialize_last_chunk(const HeaderList& trailers, net::Buffer& out);
// "<hex size>\r\n<data>\r\n"
void serialize_chunk(std::string_view data, net::Buffer& out);

std::string_view reason_phrase(int status);

}  // namespace trellis::http::http1
