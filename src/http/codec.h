// The seams between HTTP codecs and the protocol-neutral stream. A server codec
// (downstream) turns bytes into RequestDecoder calls and implements
// ResponseEncoder; a client codec (upstream) implements RequestEncoder and
// turns the upstream's bytes into ResponseDecoder calls. The stream in the
// middle (routing, and the filters that later issues add) sees only these.
#pragma once

#include <string_view>

#include "http/message.h"

namespace trellis::http {

// Implemented by a downstream codec, for the stream's response.
class ResponseEncoder {
 public:
  virtual void encode_headers(const ResponseHeaders& headers, bool end_stream) = 0;
  virtual void encode_data(std::string_view data, bool end_stream) = 0;
  // Ends the stream.
  virtual void encode_trailers(const HeaderList& trailers) = 0;
  // "100 Continue" to a client that waits for it.
  virtual void encode_continue() = 0;
  // Sends what the encode calls staged (one write for a small response).
  virtual void flush() = 0;
  // The client is not keeping up: stop producing response data until
  // RequestDecoder::on_downstream_drained().
  virtual bool write_blocked() const = 0;
  // The stream can take request data again (after RequestDecoder::blocked()).
  virtual void resume_reading() = 0;
  // Abandons the stream; the codec decides what that means on its wire.
  virtual void reset_stream() = 0;

 protected:
  ~ResponseEncoder() = default;
};

// Implemented by the stream, called by a downstream codec.
class RequestDecoder {
 public:
  virtual void decode_headers(const RequestHeaders& headers, bool end_stream) = 0;
  virtual void decode_data(std::string_view data, bool end_stream) = 0;
  // Ends the request.
  virtual void decode_trailers(const HeaderList& trailers) = 0;
  // The codec delivered all it had for now: forward what was staged.
  virtual void flush() = 0;
  // True while request data must wait (the upstream is not keeping up).
  virtual bool blocked() const = 0;
  // The client caught up with the response: produce more.
  virtual void on_downstream_drained() = 0;
  // The client is gone or sent something malformed: abandon the request.
  virtual void on_downstream_reset() = 0;

 protected:
  ~RequestDecoder() = default;
};

// Implemented by an upstream codec, for the stream's request.
class RequestEncoder {
 public:
  virtual void encode_headers(const RequestHeaders& headers, bool end_stream) = 0;
  virtual void encode_data(std::string_view data, bool end_stream) = 0;
  virtual void encode_trailers(const HeaderList& trailers) = 0;
  virtual void flush() = 0;
  virtual bool write_blocked() const = 0;
  // The stream can take response data again (after ResponseDecoder::blocked()).
  virtual void resume_reading() = 0;

 protected:
  ~RequestEncoder() = default;
};

enum class UpstreamFailure : unsigned char {
  kConnectFailed,   // refused, unreachable
  kConnectTimeout,  // no connection within the cluster's connect timeout
  kReset,           // the connection broke after it was established
  kProtocolError,   // the upstream's response was malformed
};

// Implemented by the stream, called by an upstream codec.
class ResponseDecoder {
 public:
  virtual void decode_response_headers(const ResponseHeaders& headers, bool end_stream) = 0;
  virtual void decode_response_data(std::string_view data, bool end_stream) = 0;
  virtual void decode_response_trailers(const HeaderList& trailers) = 0;
  virtual void flush_response() = 0;
  virtual bool response_blocked() const = 0;
  // The upstream caught up with the request: produce more.
  virtual void on_upstream_drained() = 0;
  // `detail`: a short reason for the error body and the logs.
  virtual void on_upstream_failure(UpstreamFailure failure, std::string_view detail) = 0;

 protected:
  ~ResponseDecoder() = default;
};

}  // namespace trellis::http
