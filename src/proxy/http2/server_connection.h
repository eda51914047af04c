// HTTP/2 server codec for one client connection, on nghttp2: h2c with prior
// knowledge, and h2 chosen by ALPN over TLS. The HTTP/1.1 codec accepts every
// connection and hands it over here when the first bytes are the HTTP/2
// connection preface or ALPN said "h2". Each stream is one exchange with a
// ServerStream of its own, so the requests of one connection are routed,
// balanced, limited and answered independently.
//
// nghttp2 checks the framing and the messages (RFC 9113 §8.1-8.3: pseudo-
// header fields, connection-specific fields, field names and values,
// content-length against the DATA received); on top of that a request
// without an authority, or whose host differs from its :authority, is
// answered 400 and one with too large a header section 431. A malformed
// request is never forwarded. Request bodies are flow-controlled per stream:
// the window opens only as the upstream takes the data, so a slow upstream
// stalls its stream and nothing else.
#pragma once

#include <netinet/in.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/buffer.h"
#include "net/transport.h"
#include "proxy/http/server_stream.h"
#include "proxy/http2/priority_scan.h"
#include "proxy/runtime/worker.h"

struct nghttp2_session;

namespace trellis::proxy::http2 {
class FieldBlock;
}

namespace trellis::proxy {

// Whether the client's first bytes are the HTTP/2 connection preface
// ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"): kMaybe while they are a proper
// beginning of it.
enum class Http2Preface : uint8_t { kNo, kYes, kMaybe };
Http2Preface http2_preface(std::string_view input);

// A connection the HTTP/1.1 codec hands over before it served any request.
struct Http2Handover {
  std::shared_ptr<const Snapshot> snapshot;
  const ListenerRuntime* listener = nullptr;
  ListenerStats* stats = nullptr;  // counts this connection as active already
  std::unique_ptr<net::Transport> client;
  net::Buffer input;  // read and not yet handled: the preface, maybe more
  std::string client_ip;
  std::string client_address;
  AuthzClient authz_client;
};

class Http2ServerConnection final : public WorkerConnection, public net::TransportCallbacks {
 public:
  // Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
  static constexpr uint32_t kMaxConcurrentStreams = 100;
  // Each stream's receive window, and the connection's.
  static constexpr int32_t kStreamWindow = 256 * 1024;
  static constexpr int32_t kConnectionWindow = 1024 * 1024;

  Http2ServerConnection(Worker& worker, Http2Handover handover);
  ~Http2ServerConnection() override;

  void start_drain() override;
  void abort() override { close(); }
  const ListenerConfig* idle_listener() const override {
    return open_.empty() && !closed_ && !draining_ ? listener_->config : nullptr;
  }

  // TransportCallbacks
  void on_readable() override;
  void on_writable() override;
  void on_transport_error(int error) override;

  class Stream;

 private:
  friend class Stream;
  struct Callbacks;

  bool start_session();
  void receive();
  // Sends what nghttp2 has queued, up to the transport's high watermark.
  void send();
  // Sends now, or after the receive or send under way.
  void flush();
  void after_io();
  // Records that the client sent HEADERS on stream `id`; false when `id` is
  // one it skipped earlier (a connection error).
  bool note_stream_id(int32_t id);
  void stream_closed(Stream* stream, uint32_t error_code);
  void count_misbehaving(bool flood);
  void reap();
  void close();

  std::shared_ptr<const Snapshot> snapshot_;
  const ListenerRuntime* listener_;
  ListenerStats* stats_;
  std::unique_ptr<net::Transport> client_;
  net::Buffer input_;
  net::Buffer output_;  // frames gathered for one write
  std::string client_ip_;
  std::string client_address_;
  AuthzClient authz_client_;
  nghttp2_session* session_ = nullptr;
  std::vector<std::unique_ptr<Stream>> open_;         // by creation
  std::vector<std::unique_ptr<Stream>> graveyard_;    // closed, freed at the next safe point
  std::vector<std::unique_ptr<Stream>> spare_;        // ended whole, ready for another exchange
  std::vector<Stream*> drained_;                      // scratch: producers with room again
  std::vector<Stream*> unflushed_;                    // request data given to their routers this read
  std::unique_ptr<http2::FieldBlock> response_head_;  // scratch: nghttp2 copies a head when submitted
  size_t waiting_ = 0;                                // streams whose producer waits for room
  bool in_recv_ = false;
  bool in_send_ = false;
  bool send_wanted_ = false;
  bool closed_ = false;
  bool draining_ = false;
  bool misbehaved_ = false;      // counted as a flood or a protocol error
  bool head_timed_out_ = false;  // ended by request_head_timeout
  uint64_t resets_received_ = 0;
  uint32_t empty_frames_ = 0;  // empty DATA frames in a row
  http2::PriorityScan priority_scan_;
  size_t scanned_ = 0;  // bytes of input_ the scan has seen
  // The highest stream id the client opened, and the last few runs of ids it
  // skipped (first, last): never opened, so a HEADERS frame on one is a
  // connection error (RFC 9113 §5.1.1), where one on a stream it did open
  // may be trailers that crossed our RST_STREAM and is ignored.
  int32_t highest_stream_id_ = 0;
  std::vector<std::pair<int32_t, int32_t>> skipped_ids_;

  net::Timer idle_timer_;
  net::Timer trim_timer_;  // spare streams back to a few once idle
  // A header section must arrive whole within the listener's
  // request_head_timeout of its first frame (they cannot interleave: at most
  // one is under way per connection).
  net::Timer head_timer_;
  net::Timer deferred_;  // sends and frees outside the stream's call stack
};

}  // namespace trellis::proxy
