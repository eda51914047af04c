// Strict, zero-copy HTTP/1.1 message parser: request and response heads, and a
// chunked-body decoder. Anything ambiguous is refused rather than guessed, so no
// request can be read one way here and another way by the upstream (smuggling).
//
// Hand-written on purpose: Debian bookworm ships no maintained HTTP/1 parser
// (http-parser is deprecated upstream and lenient: it accepts obs-fold, bare LF
// and duplicate Content-Length), and these rules are the product.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/header.h"

namespace trellis::http::http1 {

using http::Header;
using http::HeaderList;

// Limits from the proxy's contract: a larger head is answered 431.
inline constexpr size_t kMaxHeadBytes = 60 * 1024;
inline constexpr size_t kMaxHeaderFields = 100;

enum class BodyKind : uint8_t {
  kNone,           // no body (no framing headers on a request; 1xx/204/304/HEAD responses)
  kContentLength,  // exactly content_length bytes
  kChunked,        // Transfer-Encoding: chunked
  kUntilClose,     // response only: body runs until the upstream closes
};

enum class ParseStatus : uint8_t {
  kNeedMore,  // the head is not complete yet; call again with more bytes
  kDone,      // head parsed; `consumed` bytes of the input belong to it
  kError,     // malformed: answer `error_status` and close
};

struct ParseResult {
  ParseStatus status = ParseStatus::kNeedMore;
  size_t consumed = 0;     // bytes of the head, including the final CRLF CRLF (kDone)
  int error_status = 0;    // kError: 400, 431 or 505 for requests; always 502 for responses
  const char* error = "";  // kError: short static reason, e.g. "duplicate Content-Length"
};

// Facts about the message that the proxy needs, derived while parsing so that
// no one has to walk the headers again.
struct MessageInfo {
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;           // HTTP/1.1 default, "Connection: close" clears; HTTP/1.0 needs keep-alive
  bool connection_upgrade = false;  // "upgrade" token present in Connection
  std::string_view upgrade;         // value of the Upgrade header, if any
  bool expect_continue = false;     // request only: "Expect: 100-continue"
  bool te_trailers = false;         // request only: "TE: trailers"
};

struct RequestHead {
  std::string_view method;
  std::string_view target;  // as sent: origin-form, absolute-form, authority-form or "*"
  std::string_view path;    // origin-form path (absolute-form: the path part, "/" if empty)
  std::string_view host;    // Host header, or the authority of an absolute-form target
  int version_minor = 1;    // HTTP/1.<minor>; only 0 and 1 are accepted
  HeaderList headers;       // every field in order, hop-by-hop ones included
  MessageInfo info;
};

struct ResponseHead {
  int status = 0;
  std::string_view reason;
  int version_minor = 1;
  HeaderList headers;
  MessageInfo info;
};

// Parses a request head from the start of `in`. `headers` is cleared and
// refilled. Re-parses from the beginning on every call until kDone, which is
// cheap for heads and keeps the parser stateless.
//
// Refused with 400: request-line or header syntax errors (invalid method token,
// target with controls, spaces or non-ASCII, version other than HTTP/1.0 or 1.1
// — 505 for a well-formed other version), bare LF or CR, whitespace before the
// colon, obs-fold, NUL/CR/LF/other controls in values, missing or duplicate Host
// in HTTP/1.1, both Content-Length and Transfer-Encoding, duplicate or malformed
// Content-Length, Transfer-Encoding other than exactly "chunked" (or anything in
// HTTP/1.0), duplicate Upgrade. Refused with 431: a head over kMaxHeadBytes or
// kMaxHeaderFields. A Content-Length of 0 gives BodyKind::kNone.
//
// `consumed` counts up to four skipped leading empty lines. Without a complete
// head the answer is kNeedMore (consumed 0), except that a bare LF or an input
// already at kMaxHeadBytes fails at once rather than waiting for a terminator.
// `path` is empty for authority-form (CONNECT) and asterisk-form targets, and
// `host` is the Host header for them.
ParseResult parse_request(std::string_view in, RequestHead& out);

// Whether `authority` is a Host this parser accepts: uri-host [":" port],
// no userinfo, a bracketed IPv6 literal or a reg-name. HTTP/2's :authority
// is held to it too, since it becomes the Host of HTTP/1.1 upstreams.
bool valid_host(std::string_view authority);

// Whether every byte of `target` may stand in an HTTP/1.1 request-target:
// visible ASCII except '#' (no space, control or non-ASCII byte). HTTP/2's
// :path is held to it too.
bool valid_target_bytes(std::string_view target);

// Parses a response head. `request_method_head` and a 1xx/204/304 status give
// BodyKind::kNone; no framing header gives kUntilClose (and keep_alive false).
// Same strictness as requests, including the framing rules whatever the status;
// on error the caller answers its client 502. A 2xx answer to CONNECT is a
// tunnel: the caller must not take `info.body` from it.
ParseResult parse_response(std::string_view in, bool request_method_head, ResponseHead& out);

// Incremental decoder for a chunked body. Feed it bytes; it hands back body data
// as views into the input (no copy) and, at the end, the trailer fields.
class ChunkedDecoder {
 public:
  enum class Kind : uint8_t {
    kData,      // `data` is body bytes (a view into the input)
    kNeedMore,  // every byte of the input was consumed or kept for later; feed more
    kDone,      // last chunk and trailers read; `trailers` holds the trailer fields
    kError,     // malformed chunk framing; `error` says why
  };
  struct Step {
    Kind kind = Kind::kNeedMore;
    size_t consumed = 0;    // bytes of the input this step used up
    std::string_view data;  // kData
    const char* error = "";
  };

  // Consumes a prefix of `in`. Call in a loop, advancing by `consumed`, until
  // kNeedMore (then drop `consumed` bytes, keep the rest and append new bytes
  // to it), kDone or kError. `consumed` always covers every framing byte
  // before the step's data, so a kData step's `data` ends exactly at
  // `consumed`. Incomplete framing (a chunk-size line, the CRLF after data, the
  // trailer section) is kept, not consumed, until it is whole; a size line over
  // 4 KiB or a trailer section over kMaxHeadBytes is an error. trailers() views
  // point into the input of the kDone step. After kDone or kError the decoder
  // keeps answering the same until reset().
  Step next(std::string_view in);

  const HeaderList& trailers() const { return trailers_; }
  bool done() const { return state_ == State::kDone; }
  void reset();

 private:
  enum class State : uint8_t { kSize, kData, kDataCrlf, kTrailers, kDone, kError };
  Step fail(size_t consumed, const char* error);

  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  const char* error_ = "";
  HeaderList trailers_;
};

// Forwarding helpers: hop-by-hop fields (RFC 9110 7.6.1: Connection, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding, Upgrade, Trailer, Proxy-Authenticate,
// Proxy-Authorization) and any field named in a Connection header are dropped.
bool is_hop_by_hop(std::string_view name);  // any case
// True if some Connection field of `headers` lists `name` (any case).
bool connection_lists(const HeaderList& headers, std::string_view name);

}  // namespace trellis::http::http1
