// A client for one gRPC bidirectional stream over cleartext HTTP/2, run on the
// proxy's own event loop: the control-plane stream without grpc++'s threads and memory.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/time.h"
#include "net/address.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::http::grpc {

// gRPC status codes this client produces itself.
inline constexpr int kStatusOk = 0;
inline constexpr int kStatusInternal = 13;
inline constexpr int kStatusUnavailable = 14;

// Called on the loop's thread. Any callback may call reset(), start() or
// destroy the StreamClient.
class StreamCallbacks {
 public:
  // HTTP/2 is up (the server's SETTINGS arrived) and the stream is open: send() works.
  virtual void on_stream_ready() = 0;
  // One whole gRPC message, length prefix removed. Valid during the call only.
  virtual void on_stream_message(std::string_view payload) = 0;
  // Exactly once per successful start(), unless reset() or the client's
  // destruction came first: the
  // grpc-status of the trailers (or of a trailers-only response), 14
  // (UNAVAILABLE) on transport failures, 13 (INTERNAL) on a malformed response.
  virtual void on_stream_closed(int grpc_status, std::string_view message) = 0;

 protected:
  ~StreamCallbacks() = default;
};

struct StreamOptions {
  // Until the TCP connection is up and the server's HTTP/2 SETTINGS arrived.
  Duration connect_timeout = std::chrono::seconds(5);
  // A PING goes out after this long without receiving anything.
  Duration keepalive_interval = std::chrono::seconds(15);
  // No PING ACK by then: the stream closes with UNAVAILABLE.
  Duration keepalive_timeout = std::chrono::seconds(10);
  // A larger incoming message closes the stream with UNAVAILABLE.
  size_t max_message_bytes = 64 * 1024 * 1024;
  // What the connection runs over (plain TCP, or TLS).
  std::shared_ptr<net::TransportFactory> transport = net::PlainTransportFactory::shared();
  // The requests' :scheme: "https" over TLS.
  std::string scheme = "http";
};

// One stream at a time, on one connection of its own. Not thread-safe: every
// call happens on the loop's thread.
class StreamClient {
 public:
  StreamClient(net::EventLoop& loop, StreamCallbacks& callbacks, StreamOptions options = {});
  ~StreamClient();  // like reset()
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Connects (h2c with prior knowledge) and opens one stream: POST `path`,
  // content-type application/grpc, te: trailers. False, with no callback to
  // follow, only when it cannot even start: a stream is already started (call
  // reset() first) or the address is empty. Connect errors come back through
  // on_stream_closed, never from inside start().
  bool start(const net::SocketAddress& server, std::string authority, std::string path);
  // Queues one message (5-byte prefix: uncompressed flag + length). False
  // unless open() and not finish()ed.
  bool send(std::string_view payload);
  // Half-close: END_STREAM once the queued messages are sent. Messages keep arriving.
  void finish();
  // Drops the connection and everything queued now; no on_stream_closed follows.
  void reset();
  // What the next start() connects over (a TLS client with a new
  // certificate); the open stream keeps its own.
  void set_transport(std::shared_ptr<net::TransportFactory> transport, std::string scheme) {
    options_.transport = std::move(transport);
    options_.scheme = std::move(scheme);
  }
  // Between on_stream_ready and the end of the stream.
  bool open() const;
  // Keepalive PINGs the server acknowledged, over the client's life.
  uint64_t pings_acked() const { return pings_acked_; }

 private:
  class Connection;  // one start(): socket, HTTP/2 session, the stream
  friend class Connection;
  void drop_connection();

  net::EventLoop& loop_;
  StreamCallbacks& callbacks_;
  uint64_t pings_acked_ = 0;
  StreamOptions options_;
  std::unique_ptr<Connection> connection_;
};

}  // namespace trellis::http::grpc
