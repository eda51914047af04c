// Protocol-neutral HTTP messages: what every codec (HTTP/1.1 now, HTTP/2 next)
// produces and consumes. Only end-to-end fields travel here; hop-by-hop fields
// and framing belong to the codecs, which rebuild their own on output.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/time.h"
#include "http/header.h"

namespace trellis::http {

struct RequestHeaders {
  std::string_view method;
  std::string_view scheme = "http";
  std::string_view authority;   // host[:port]
  std::string_view path;        // origin-form target with query; "*" for OPTIONS *
  HeaderList headers;           // end-to-end fields, in the order received
  int64_t content_length = -1;  // body length when known; -1 when streamed without one
  bool has_body = false;
  bool expect_continue = false;  // the client waits for 100 Continue before the body
  std::string_view upgrade;      // protocol the client asks to switch to; empty when none
  std::string_view protocol;     // "HTTP/1.1", "HTTP/1.0"...: for logs

  // Back to a default request; the field list keeps its capacity.
  void reset() {
    HeaderList fields = std::move(headers);
    fields.clear();
    *this = {};
    headers = std::move(fields);
  }
};

struct ResponseHeaders {
  int status = 200;
  std::string_view reason;      // may be empty: the encoder picks the standard one
  HeaderList headers;           // end-to-end fields
  int64_t content_length = -1;  // as the upstream declared it, -1 when unknown
  bool has_body = true;         // false for HEAD responses, 204 and 304
  std::string_view upgrade;     // 101: the protocol switched to
};

// An owned copy of request headers whose views point into its own storage, so
// a stream can keep its request after the codec's input buffer moves on.
// Reused from request to request: no allocation once warm.
class RequestHeadersCopy {
 public:
  void assign(const RequestHeaders& src);
  // Adds a field; name and value are copied.
  void add(std::string_view name, std::string_view value);
  // Replaces every field of that name (lower case) by one with this value.
  void set(std::string_view lower_name, std::string_view value);
  // Removes every field of that name (lower case).
  void remove(std::string_view lower_name);
  void set_authority(std::string_view authority);
  void set_path(std::string_view path);
  RequestHeaders& get() { return headers_; }
  const RequestHeaders& get() const { return headers_; }

 private:
  std::string_view keep(std::string_view s);
  void reserve(size_t more);

  RequestHeaders headers_;
  std::string storage_;
};

// First value of a field, or empty.
std::string_view find_header(const HeaderList& headers, std::string_view lower_name);

// A gRPC message: content-type application/grpc, or application/grpc+proto
// and the like.
bool is_grpc(const HeaderList& headers);
// The grpc-status of a response's trailers (or of a trailers-only
// response's headers): its code, UNKNOWN (2) for one past UNAUTHENTICATED
// (16); -1 when there is none or it is not a number.
int grpc_status(const HeaderList& fields);
// A grpc-timeout value (1 to 8 digits and a unit: H, M, S, m, u or n) as a
// duration; false when it is not one.
bool parse_grpc_timeout(std::string_view value, Duration& out);

}  // namespace trellis::http
