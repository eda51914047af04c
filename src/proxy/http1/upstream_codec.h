// The HTTP/1.1 upstream codec: one exchange at a time on a connection of its
// own from the endpoint's pool; serializes the neutral request canonically,
// parses the response strictly and hands it on as neutral messages. After a
// 101 both directions are raw bytes.
#pragma once

#include <string_view>

#include "http/codec.h"
#include "http/http1/parser.h"
#include "net/buffer.h"
#include "net/event_loop.h"
#include "proxy/upstream/cluster.h"
#include "proxy/upstream/upstream_codec.h"

namespace trellis::proxy {

class Http1UpstreamCodec final : public UpstreamCodec, public UpstreamUser {
 public:
  Http1UpstreamCodec(net::EventLoop& loop, http::ResponseDecoder& decoder);
  ~Http1UpstreamCodec() override;

  // UpstreamCodec
  bool start(EndpointPool& pool, bool fresh, bool head_request, int& error) override;
  bool active() const override { return conn_ != nullptr; }
  void finish(bool keep) override;
  void set_decoder(http::ResponseDecoder& decoder) override { decoder_ = &decoder; }
  bool reused_connection() const override { return reused_; }
  bool response_bytes_seen() const override { return bytes_seen_; }
  bool response_complete() const override { return response_complete_; }

  // http::RequestEncoder
  void encode_headers(const http::RequestHeaders& headers, bool end_stream) override;
  void encode_data(std::string_view data, bool end_stream) override;
  void encode_trailers(const http::HeaderList& trailers) override;
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
  bool forward_body(net::Buffer& in);
  void fail(http::UpstreamFailure failure, std::string_view detail);
  // Whether the connection may serve another request: the whole request was
  // sent, the whole response read, and the upstream keeps the connection.
  bool reusable() const;

  http::ResponseDecoder* decoder_;
  UpstreamConnection* conn_ = nullptr;
  net::Buffer out_;  // staged request bytes, sent by flush()

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
  http::http1::ResponseHead head_;
  http::ResponseHeaders response_;
  http::http1::BodyKind body_ = http::http1::BodyKind::kNone;
  uint64_t remaining_ = 0;
  http::http1::ChunkedDecoder chunked_;
  net::Timer fail_later_;  // reports a failed write outside the caller's stack
};

class Http1UpstreamCodecFactory final : public UpstreamCodecFactory {
 public:
  std::unique_ptr<UpstreamCodec> make(net::EventLoop& loop, http::ResponseDecoder& decoder) const override;
  static const std::shared_ptr<const UpstreamCodecFactory>& shared();
};

}  // namespace trellis::proxy
