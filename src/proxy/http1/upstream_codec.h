// HTTP/1.1 client codec for one exchange on a pooled upstream connection:
// serializes the neutral request canonically, parses the response strictly and
// hands it to the stream as neutral messages. After a 101 both directions are
// raw bytes.
#pragma once

#include <string_view>

#include "proxy/buffer.h"
#include "proxy/event_loop.h"
#include "proxy/http/codec.h"
#include "proxy/http1/parser.h"
#include "proxy/upstream_pool.h"

namespace trellis::proxy::http1 {

class UpstreamCodec final : public UpstreamUser, public http::RequestEncoder {
 public:
  UpstreamCodec(EventLoop& loop, http::ResponseDecoder& decoder);

  // Binds a connection for one exchange; `head_request` tells the response
  // parser that no body follows.
  void attach(UpstreamConnection* connection, bool head_request);
  // Unbinds and returns the connection (the caller releases it to its pool).
  UpstreamConnection* detach();
  bool attached() const { return conn_ != nullptr; }
  // Whether the connection may serve another request: the whole request was
  // sent, the whole response read, and the upstream keeps the connection.
  bool reusable() const;
  bool reused_connection() const { return reused_; }
  bool response_bytes_seen() const { return bytes_seen_; }

  // RequestEncoder
  void encode_headers(const http::RequestHeaders& headers, bool end_stream) override;
  void encode_data(std::string_view data, bool end_stream) override;
  void encode_trailers(const HeaderList& trailers) override;
  void flush() override;
  bool write_blocked() const override;
  void resume_reading() override;

  // UpstreamUser
  void on_upstream_connected() override;
  void on_upstream_readable() override;
  void on_upstream_writable() override;
  void on_upstream_error(int error, bool during_connect) override;

 private:
  void read();
  // False when the exchange ended or this codec was detached meanwhile.
  bool process();
  bool forward_body(Buffer& in);
  void fail(http::UpstreamFailure failure, std::string_view detail);

  EventLoop& loop_;
  http::ResponseDecoder& decoder_;
  UpstreamConnection* conn_ = nullptr;
  Buffer out_;  // staged request bytes, sent by flush()

  // Request side.
  bool request_chunked_ = false;
  bool request_complete_ = false;
  bool upgrade_requested_ = false;
  uint64_t request_remaining_ = 0;

  // Response side.
  bool head_request_ = false;
  bool reused_ = false;
  bool bytes_seen_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool tunnel_ = false;
  bool write_failed_ = false;
  ResponseHead head_;
  http::ResponseHeaders response_;
  BodyKind body_ = BodyKind::kNone;
  uint64_t remaining_ = 0;
  ChunkedDecoder chunked_;
  Timer fail_later_;  // reports a failed write outside the caller's stack
};

}  // namespace trellis::proxy::http1
