// HTTP/1.1 server codec for one client connection: strict parsing, body
// de-framing, response framing, keep-alive, pipelining (one exchange at a
// time), lingering close, and the byte tunnel after 101. Everything about
// routing and upstreams is the stream's (http::Router), reached only through
// the neutral interfaces.
#pragma once

#include <netinet/in.h>

#include <string>

#include "http/codec.h"
#include "http/http1/parser.h"
#include "http/http1/wire.h"
#include "net/transport.h"
#include "proxy/http/server_stream.h"
#include "proxy/runtime/worker.h"

namespace trellis::proxy {

class Http1ServerConnection final : public WorkerConnection,
                                    public net::TransportCallbacks,
                                    public http::ResponseEncoder {
 public:
  Http1ServerConnection(Worker& worker, int fd, const sockaddr_storage& peer, size_t listener_index);
  // A connection protocol detection read the first bytes of.
  Http1ServerConnection(Worker& worker, AdoptedConnection adopted);
  ~Http1ServerConnection() override;

  void start_drain() override;
  void abort() override { close(); }
  const ListenerConfig* idle_listener() const override;

  // TransportCallbacks
  void on_readable() override;
  void on_writable() override;
  void on_transport_error(int error) override;

  // http::ResponseEncoder
  void encode_headers(const http::ResponseHeaders& headers, bool end_stream) override;
  void encode_data(std::string_view data, bool end_stream) override;
  void encode_trailers(const http::HeaderList& trailers) override;
  void encode_continue() override;
  void flush() override;
  bool write_blocked() const override;
  void resume_reading() override;
  void reset_stream() override { close(); }

 private:
  Http1ServerConnection(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
                        const sockaddr_storage& peer, size_t listener_index);

  enum class State : uint8_t {
    kIdle,     // waiting for (the rest of) a request head
    kRequest,  // an exchange is in flight
    kDiscard,  // answered before the request ended: reading and dropping the rest of its body
    kTunnel,   // after 101: raw bytes both ways
    kClosing,  // final response sent; dropping input until the client closes
    kClosed,
  };

  void read_client();
  void process_input();
  // Before the first request, the client turned out to speak HTTP/2 (its
  // preface, or ALPN "h2"): the connection goes to Http2ServerConnection.
  void hand_over_to_http2();
  void start_exchange(size_t head_size);
  bool refresh_snapshot();
  // The next piece of the request body in in_, de-framed and consumed; the
  // end of the body sets request_complete_.
  struct BodyStep {
    enum Kind : uint8_t { kData, kEnd, kNeedMore, kError } kind = kData;
    std::string_view data;
    size_t consumed = 0;
    const char* error = "";
  };
  BodyStep take_body();
  void forward_body();
  // Whether the rest of a request answered early can be read and dropped, so
  // the connection serves the next request instead of closing.
  bool can_discard_rest() const;
  void discard_body();
  // Answers `status` and closes; `malformed`: counted as such, the body
  // says "bad request: <reason>" (else the body is `reason`).
  void reject(int status, std::string_view reason, bool malformed = true);
  void finish_response();
  void finish_exchange();
  void pump_tunnel();
  void close_gracefully();
  void close();

  std::shared_ptr<const Snapshot> snapshot_;
  const ListenerRuntime* listener_;
  ListenerStats* stats_;
  std::unique_ptr<net::Transport> client_;
  std::string client_ip_;
  std::string client_address_;
  AuthzClient authz_client_;
  DownstreamContext context_;
  ServerStream& stream();
  std::unique_ptr<ServerStream> stream_;  // one exchange at a time
  net::Buffer in_;                        // client input not yet handled
  net::Buffer out_;                       // staged output, sent by flush()
  State state_ = State::kIdle;

  http::http1::RequestHead head_;
  http::RequestHeaders request_;
  http::http1::BodyKind body_ = http::http1::BodyKind::kNone;
  uint64_t body_remaining_ = 0;
  http::http1::ChunkedDecoder chunked_;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool exchange_done_ = false;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool client_eof_ = false;
  bool tunnel_client_done_ = false;
  bool tunnel_upstream_done_ = false;
  bool in_process_ = false;
  bool served_any_ = false;         // a request (or a malformed one) was seen
  bool awaiting_continue_ = false;  // the client asked for 100 Continue and did not get it
  uint64_t discarded_ = 0;
  int client_minor_ = 1;
  http::http1::ResponseFraming framing_ = http::http1::ResponseFraming::kNone;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;

  net::Timer idle_timer_;
  net::Timer head_timer_;  // from a request head's first byte to its end; and a dropped body's rest
  net::Timer resume_;      // continues with pipelined input outside the previous exchange's stack
};

}  // namespace trellis::proxy
