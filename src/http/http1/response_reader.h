// Reads one HTTP/1.1 response at a time with the strict parser, for clients
// that send a request and wait for its answer (the CLI's API client, the load
// generator): the head, then the body however it is framed, kept (up to a
// limit) or dropped as it arrives.
#pragma once

#include <cstdint>
#include <string>

#include "http/http1/parser.h"
#include "net/buffer.h"

namespace trellis::http::http1 {

class ResponseReader {
 public:
  enum class Status : uint8_t { kNeedMore, kComplete, kError };

  // A request was sent; HEAD responses have no body. The body is kept when
  // `keep_body_up_to` > 0, and a longer one is an error.
  void start(bool head_request, size_t keep_body_up_to = 0);
  // Consumes the bytes of `in` that belong to the response. kComplete once its
  // last byte is in; bytes beyond it (the server sending what nobody asked
  // for) are kError, since requests are never pipelined.
  Status on_data(net::Buffer& in);
  // The server closed: completes a body delimited by the close, else kError.
  Status on_eof();

  int status() const { return status_; }
  bool keep_alive() const { return keep_alive_; }
  const char* error() const { return error_; }
  // The body as far as it was kept.
  const std::string& body() const { return body_; }

 private:
  enum class Phase : uint8_t { kHead, kLength, kChunked, kUntilClose, kDone };
  Status fail(const char* error) {
    error_ = error;
    return Status::kError;
  }
  // False (after fail()) when keeping `data` would pass the limit.
  bool keep(std::string_view data);

  ResponseHead head_;
  ChunkedDecoder chunked_;
  Phase phase_ = Phase::kHead;
  uint64_t remaining_ = 0;
  size_t keep_limit_ = 0;
  std::string body_;
  bool head_request_ = false;
  bool keep_alive_ = true;
  int status_ = 0;
  const char* error_ = "";
};

}  // namespace trellis::http::http1
