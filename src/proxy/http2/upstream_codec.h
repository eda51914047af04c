// The HTTP/2 upstream codec, on nghttp2: each exchange is a stream on a
// connection that every router of the worker shares with others to the
// same endpoint, up to the endpoint's SETTINGS_MAX_CONCURRENT_STREAMS (and
// at most 100), so load balancing stays per request however few connections
// there are. A new connection opens only when those in use are full.
//
// Flow control runs end to end: response data lets the stream's window open
// only as the client takes it (a slow reader stalls its own stream, never
// the connection), and request data waits, per stream, for the upstream's
// window. A stream the router abandons is reset (CANCEL) and the connection
// goes on serving the others.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nghttp2/nghttp2.h>

#include "http/codec.h"
#include "net/buffer.h"
#include "net/event_loop.h"
#include "proxy/http2/session_io.h"
#include "proxy/upstream/endpoint_pool.h"
#include "proxy/upstream/upstream_codec.h"

namespace trellis::proxy {

class Http2UpstreamCodec;
class Http2Sessions;

// One HTTP/2 connection to an endpoint. It owns itself: it is freed through
// the loop once closed.
class Http2UpstreamSession final : public UpstreamUser, public net::Deferred {
 public:
  // Streams one connection carries at most, whatever the endpoint allows.
  static constexpr uint32_t kMaxStreams = 100;
  // Our receive windows: per stream, and for the whole connection.
  static constexpr int32_t kStreamWindow = 256 * 1024;
  static constexpr int32_t kConnectionWindow = 1024 * 1024;

  Http2UpstreamSession(Http2Sessions& owner, EndpointPool& pool);
  ~Http2UpstreamSession() override;

  // Takes a new connection from the pool and starts the session on it.
  bool open(int& error);
  // Whether another exchange may start here.
  bool has_room() const;
  // Some exchange started here before.
  bool reused() const { return started_ > 1; }

  void attach(Http2UpstreamCodec* codec);
  // The codec is done: its stream, when still open, is reset.
  void detach(Http2UpstreamCodec* codec);
  // Opens the codec's stream; its id, or a negative nghttp2 error.
  int32_t submit(Http2UpstreamCodec* codec, const std::vector<nghttp2_nv>& fields, bool end_stream);
  // The stream has data (or an end) to send again.
  void resume(int32_t stream_id);
  // `n` bytes of the stream's response were taken: its window may open.
  void consume(int32_t stream_id, size_t n);
  void submit_trailers(int32_t stream_id, const std::vector<nghttp2_nv>& fields);
  // Sends what is queued now, or after the receive or send under way.
  void flush();
  // The connection has more unsent than a stream should add to.
  bool write_blocked() const;
  // The codec's client gets what it was given once this read is handled.
  void flush_later(Http2UpstreamCodec* codec);
  const std::string& endpoint() const;
  EndpointPool& pool() { return pool_; }

  // Ends the connection at once; exchanges on it fail with `failure`.
  void close(http::UpstreamFailure failure, std::string_view detail);
  // Closes it when it serves no exchange.
  void close_if_idle();

  // UpstreamUser
  void on_upstream_connected() override;
  void on_upstream_readable() override;
  void on_upstream_writable() override;
  void on_upstream_error(int error, bool during_connect) override;

 private:
  struct Callbacks;

  void receive();
  void flush_responses();
  void send();
  void after_io();
  void idle_check();

  Http2Sessions& owner_;
  EndpointPool& pool_;
  const net::TransportFactory* transport_;  // what the connection was made over
  UpstreamConnection* conn_ = nullptr;
  nghttp2_session* session_ = nullptr;
  net::Buffer output_;
  std::vector<Http2UpstreamCodec*> attached_;
  std::vector<Http2UpstreamCodec*> drained_;   // scratch
  std::vector<Http2UpstreamCodec*> to_flush_;  // given response bytes in this read
  uint64_t started_ = 0;                       // exchanges attached so far
  bool connected_ = false;
  bool going_away_ = false;  // the endpoint sent GOAWAY, or we are closing
  bool closed_ = false;
  bool in_recv_ = false;
  bool in_send_ = false;
  bool send_wanted_ = false;
  net::Timer idle_timer_;
  net::Timer deferred_;  // sends and notifies outside the caller's stack
};

// The HTTP/2 connections to one endpoint, kept with its pool.
class Http2Sessions final : public SharedConnections {
 public:
  ~Http2Sessions() override;
  void close_idle() override;

  // A connection with room for another exchange, else a new one; null with
  // `error` set when none can be had.
  Http2UpstreamSession* session_for(EndpointPool& pool, int& error);
  void remove(Http2UpstreamSession* session);

 private:
  std::vector<Http2UpstreamSession*> sessions_;
};

class Http2UpstreamCodec final : public UpstreamCodec {
 public:
  // `mesh`: see Http2UpstreamCodecFactory.
  Http2UpstreamCodec(net::EventLoop& loop, http::ResponseDecoder& decoder, bool mesh);
  ~Http2UpstreamCodec() override;

  // UpstreamCodec
  bool start(EndpointPool& pool, bool fresh, bool head_request, int& error) override;
  bool active() const override { return session_ != nullptr; }
  void finish(bool keep) override;
  void set_decoder(http::ResponseDecoder& decoder) override { decoder_ = &decoder; }
  bool reused_connection() const override { return reused_ || refused_; }
  bool response_bytes_seen() const override { return bytes_seen_; }
  bool response_complete() const override { return response_complete_; }
  bool multiplexed() const override { return true; }

  // http::RequestEncoder
  void encode_headers(const http::RequestHeaders& headers, bool end_stream) override;
  void encode_data(std::string_view data, bool end_stream) override;
  void encode_trailers(const http::HeaderList& trailers) override;
  void flush() override;
  bool write_blocked() const override;
  void resume_reading() override;

 private:
  friend class Http2UpstreamSession;
  struct Field {
    size_t at, name, value;
  };

  // From the session, about this codec's stream.
  void add_field(std::string_view name, std::string_view value);
  void reset_fields();
  void headers_received(bool end_stream);
  void data_received(std::string_view data);
  void end_received();
  // The stream closed; `error_code` is the RST_STREAM code, 0 when it ended
  // normally.
  void stream_closed(uint32_t error_code);
  // The connection failed under the stream.
  void connection_failed(http::UpstreamFailure failure, std::string_view detail);
  long read_body(uint8_t* buf, size_t length, uint32_t* flags);
  bool room_again();
  void notify_drained();

  void fail(http::UpstreamFailure failure, std::string_view detail);
  void response_head(bool end_stream);
  // Tells the decoder to send what it staged, unless this exchange was
  // finished meanwhile.
  void flush_response(Http2UpstreamSession* session, int32_t id);
  // What the stream owes the windows when it goes.
  size_t take_unconsumed();

  http::ResponseDecoder* decoder_;
  Http2UpstreamSession* session_ = nullptr;
  int32_t stream_id_ = 0;
  bool mesh_;
  bool head_request_ = false;
  bool reused_ = false;
  bool refused_ = false;  // the endpoint did not process the stream: safe to send again
  bool bytes_seen_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool stream_open_ = false;
  bool body_end_ = false;       // the request's end is staged
  bool request_ended_ = false;  // and handed to nghttp2
  bool waiting_for_room_ = false;
  bool too_large_ = false;
  net::Buffer body_;                // request data not yet taken by nghttp2
  http2::FieldBlock fields_out_;    // the request's head
  http2::FieldBlock trailers_out_;  // its trailers, until its data is sent
  size_t unconsumed_ = 0;           // response data delivered and not yet let into the window
  // The field section being received (the head, then trailers).
  std::string storage_;
  std::vector<Field> fields_;
  size_t header_bytes_ = 0;
  http::ResponseHeaders response_;
  http::HeaderList trailers_in_;
  std::string failure_detail_;
  http::UpstreamFailure failure_ = http::UpstreamFailure::kReset;
  net::Timer fail_later_;  // reports a failure found while encoding, from the loop
};

class Http2UpstreamCodecFactory final : public UpstreamCodecFactory {
 public:
  // `mesh`: the endpoints are sidecars, told the protocol of HTTP/1.x
  // clients (http2::kOriginalProtocol).
  explicit Http2UpstreamCodecFactory(bool mesh) : mesh_(mesh) {}
  std::unique_ptr<UpstreamCodec> make(net::EventLoop& loop, http::ResponseDecoder& decoder) const override;
  static const std::shared_ptr<const UpstreamCodecFactory>& shared();
  static const std::shared_ptr<const UpstreamCodecFactory>& mesh();

 private:
  bool mesh_;
};

}  // namespace trellis::proxy
