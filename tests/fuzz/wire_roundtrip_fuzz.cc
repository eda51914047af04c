// Parse -> to_neutral -> serialize, for requests (client -> upstream) and
// responses (upstream -> client). The proxy never copies head bytes through; it
// rebuilds every head it sends, so the guarantees checked here are what stands
// between a hostile peer and the next hop:
//   - the head sent is well-formed: no CR or LF except as line ends, nothing
//     after the first empty line, so no field can smuggle in another line;
//   - read back by the same strict parser it is the same message: method,
//     path, host, status, end-to-end fields in order;
//   - its framing delivers exactly the body the proxy itself read, so the next
//     hop and the proxy agree on where the message ends;
//   - serializing what was read back gives the same bytes again.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "http/http1/wire.h"
#include "http/message.h"
#include "http1_invariants.h"
#include "net/buffer.h"

using namespace fuzz_http1;
using trellis::http::RequestHeaders;
using trellis::http::ResponseHeaders;
using trellis::http::http1::is_hop_by_hop;
using trellis::http::http1::kMaxHeadBytes;
using trellis::http::http1::kMaxHeaderFields;
using trellis::http::http1::parse_request;
using trellis::http::http1::parse_response;
using trellis::http::http1::reason_phrase;
using trellis::http::http1::response_framing;
using trellis::http::http1::ResponseFraming;
using trellis::http::http1::serialize_request;
using trellis::http::http1::serialize_response;
using trellis::http::http1::to_neutral;
using trellis::net::Buffer;

namespace {

// Line structure of a serialized head: CR and LF only as CRLF, and the first
// empty line is the end of the input.
void check_wire_lines(std::string_view wire) {
  for (size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r') CHECK(i + 1 < wire.size() && wire[i + 1] == '\n');
    if (wire[i] == '\n') CHECK(i > 0 && wire[i - 1] == '\r');
    CHECK(wire[i] != '\0');
  }
  CHECK(wire.size() >= 4);
  CHECK(wire.find("\r\n\r\n") == wire.size() - 4);
  // Every line after the start line is "name: value".
  size_t line = wire.find("\r\n") + 2;
  while (line < wire.size() - 2) {
    const size_t end = wire.find("\r\n", line);
    const std::string_view field = wire.substr(line, end - line);
    const size_t colon = field.find(": ");
    CHECK(colon != std::string_view::npos && colon > 0);
    CHECK(is_token(field.substr(0, colon)));
    line = end + 2;
  }
}

// The parser's inbound limits are the proxy's policy for what it accepts, not
// a property of the heads it writes: rebuilt fields ("name: value") can be a
// little longer than they arrived, and framing fields are added. A head over
// those limits is checked for its line structure only.
bool within_parser_limits(std::string_view wire) {
  size_t lines = 0;
  for (size_t i = wire.find("\r\n"); i != std::string_view::npos; i = wire.find("\r\n", i + 2)) ++lines;
  // Every line but the start line and the final empty one is a field.
  return wire.size() <= kMaxHeadBytes && lines - 2 <= kMaxHeaderFields;
}

// Fields of `headers` whose names are not in `dropped`.
HeaderList without(const HeaderList& headers, std::initializer_list<std::string_view> dropped) {
  HeaderList out;
  for (const Header& h : headers) {
    bool drop = false;
    for (std::string_view name : dropped) drop = drop || iequal(h.name, name);
    if (!drop) out.push_back(h);
  }
  return out;
}

// The fields a head may carry to the next hop: none that is hop-by-hop, named
// in Connection, or framing; for requests neither Host (rebuilt) nor Expect
// (answered by the proxy itself).
HeaderList forwardable(const HeaderList& headers, bool request) {
  HeaderList out;
  for (const Header& h : headers) {
    if (is_hop_by_hop(h.name) || iequal(h.name, "content-length")) continue;
    if (list_has(headers, "connection", h.name)) continue;
    if (request && (iequal(h.name, "host") || iequal(h.name, "expect"))) continue;
    out.push_back(h);
  }
  return out;
}

// ---- requests -----------------------------------------------------------------

// What the upstream codec passes when the request has no authority (an
// HTTP/1.0 request without Host): the endpoint's address.
constexpr std::string_view kEndpoint = "192.0.2.1:8080";

std::string serialize(const RequestHeaders& req) {
  trellis::net::Buffer out;
  serialize_request(req, kEndpoint, out);
  return std::string(out.view());
}

void check_request_round_trip(std::string_view in) {
  RequestHead head;
  if (parse_request(in, head).status != ParseStatus::kDone) return;

  RequestHeaders neutral;
  to_neutral(head, neutral);
  CHECK(neutral.method == head.method);
  CHECK(neutral.authority == head.host);
  CHECK(same_headers(neutral.headers, forwardable(head.headers, /*request=*/true)));
  CHECK(neutral.has_body == (head.info.body != BodyKind::kNone));

  const std::string wire = serialize(neutral);
  check_wire_lines(wire);
  if (!within_parser_limits(wire)) return;

  RequestHead again;
  const ParseResult r = parse_request(wire, again);
  if (r.status == ParseStatus::kError) std::fprintf(stderr, "re-parse: %d %s\n", r.error_status, r.error);
  CHECK(r.status == ParseStatus::kDone);
  CHECK(r.consumed == wire.size());
  CHECK(again.version_minor == 1);
  CHECK(again.method == head.method);
  CHECK(again.path == head.path);
  CHECK(again.host == (head.host.empty() ? kEndpoint : head.host));

  // Same body framing, so the upstream reads exactly the body the proxy forwards.
  CHECK(again.info.body == head.info.body);
  if (head.info.body == BodyKind::kContentLength)
    CHECK(again.info.content_length == head.info.content_length);
  // The proxy answers Expect itself; an upgrade is passed on explicitly.
  CHECK(!again.info.expect_continue);
  CHECK(again.info.upgrade == neutral.upgrade);
  CHECK(again.info.connection_upgrade == !neutral.upgrade.empty());

  // End-to-end fields arrive unchanged and in order, between what the proxy adds.
  CHECK(same_headers(
      without(again.headers, {"host", "content-length", "transfer-encoding", "upgrade", "connection"}),
      neutral.headers));

  // Serializing what was read back changes nothing.
  RequestHeaders neutral_again;
  to_neutral(again, neutral_again);
  CHECK(serialize(neutral_again) == wire);
}

// ---- responses ----------------------------------------------------------------

std::string serialize(const ResponseHeaders& resp, ResponseFraming framing, bool close, int client_minor) {
  trellis::net::Buffer out;
  serialize_response(resp, framing, close, client_minor, out);
  return std::string(out.view());
}

// How the server picks the framing: 101 switches protocols, everything else
// follows response_framing.
ResponseFraming framing_for(const ResponseHeaders& resp, int client_minor) {
  return resp.status == 101 ? ResponseFraming::kNone : response_framing(resp, client_minor);
}

void check_response_round_trip(std::string_view in, bool head_request, int client_minor, bool close) {
  ResponseHead head;
  if (parse_response(in, head_request, head).status != ParseStatus::kDone) return;
  // Other 1xx answers are consumed by the proxy and never serialized.
  if (head.status < 200 && head.status != 101) return;
  if (head.status == 101) close = false;

  ResponseHeaders neutral;
  to_neutral(head, head_request, neutral);
  CHECK(neutral.status == head.status);
  CHECK(same_headers(neutral.headers, forwardable(head.headers, /*request=*/false)));

  // The client must be told exactly the body the proxy will read from the upstream.
  const ResponseFraming framing = framing_for(neutral, client_minor);
  switch (head.info.body) {
    case BodyKind::kNone:
      CHECK(framing == ResponseFraming::kNone);
      break;
    case BodyKind::kContentLength:
      CHECK(framing == ResponseFraming::kContentLength);
      CHECK(neutral.content_length == static_cast<int64_t>(head.info.content_length));
      break;
    case BodyKind::kChunked:
    case BodyKind::kUntilClose:
      CHECK(framing == (client_minor == 1 ? ResponseFraming::kChunked : ResponseFraming::kClose));
      break;
  }

  const std::string wire = serialize(neutral, framing, close, client_minor);
  check_wire_lines(wire);
  if (!within_parser_limits(wire)) return;

  ResponseHead again;
  const ParseResult r = parse_response(wire, head_request, again);
  if (r.status == ParseStatus::kError) std::fprintf(stderr, "re-parse: %s\n", r.error);
  CHECK(r.status == ParseStatus::kDone);
  CHECK(r.consumed == wire.size());
  CHECK(again.status == head.status);
  CHECK(again.reason == (head.reason.empty() ? reason_phrase(head.status) : head.reason));

  switch (framing) {
    case ResponseFraming::kNone:
      CHECK(again.info.body == BodyKind::kNone);
      break;
    case ResponseFraming::kContentLength:
      CHECK(again.info.body == BodyKind::kContentLength);
      CHECK(again.info.content_length == head.info.content_length);
      break;
    case ResponseFraming::kChunked:
      CHECK(again.info.body == BodyKind::kChunked);
      break;
    case ResponseFraming::kClose:
      CHECK(again.info.body == BodyKind::kUntilClose);
      break;
  }
  if (head.status == 101) {
    CHECK(again.info.connection_upgrade);
    CHECK(again.info.upgrade == head.info.upgrade);
  } else {
    CHECK(again.info.keep_alive == !(close || framing == ResponseFraming::kClose));
  }

  CHECK(same_headers(without(again.headers, {"content-length", "transfer-encoding", "upgrade", "connection"}),
                     neutral.headers));

  ResponseHeaders neutral_again;
  to_neutral(again, head_request, neutral_again);
  CHECK(serialize(neutral_again, framing_for(neutral_again, client_minor), close, client_minor) == wire);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // The same bytes are tried both ways; only one can parse.
  check_request_round_trip(in);
  for (bool head_request : {false, true}) {
    for (int client_minor : {0, 1}) {
      for (bool close : {false, true}) check_response_round_trip(in, head_request, client_minor, close);
    }
  }
  return 0;
}
