#include "http/grpc_stream.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>

#include "net/address.h"
#include "net/buffer.h"
#include "net/transport.h"

namespace trellis::http::grpc {
namespace {

constexpr size_t kPrefixSize = 5;
// Receive window of the stream and of the connection. Received bytes are
// handed back to the window as whole messages are delivered, so a server
// cannot run more than this ahead of the messages we have taken.
constexpr int32_t kReceiveWindow = 1 << 20;
// A message larger than half the window could never complete if its bytes
// waited for delivery; once this much of an accepted message is buffered, it
// is given back early (the whole message has to be held anyway).
constexpr size_t kEarlyConsumeBytes = kReceiveWindow / 2;
// What one socket write carries at most; a larger backlog goes out in several.
constexpr size_t kWriteBatchBytes = 64 * 1024;
// A message buffer larger than this is freed after delivery: the stream is
// idle most of its life and the sidecar's idle memory is budgeted.
constexpr size_t kKeptMessageCapacity = 64 * 1024;

std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  // nghttp2 copies the names and values on submission (NGHTTP2_NV_FLAG_NONE).
  return {const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
          const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// grpc-message is percent-encoded; a malformed escape is kept as it is.
std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hex_digit(in[i + 1]);
      int lo = hex_digit(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

bool parse_number(std::string_view text, int& out) {
  if (text.empty() || text.size() > 9) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out >= 0;
}

std::string errno_text(int error) { return error ? std::strerror(error) : "socket failed"; }

}  // namespace

class StreamClient::Connection final : public net::TransportCallbacks, public net::Deferred {
 public:
  Connection(StreamClient& client, const StreamOptions& options, std::string server_text);
  ~Connection() override;

  // Starts the connect and queues the connection preface and the request.
  // False when the HTTP/2 session cannot be set up; nothing is called back then.
  bool begin(const net::SocketAddress& server, std::string_view authority, std::string_view path);
  bool ready() const { return ready_ && !closed_; }
  bool send(std::string_view payload);
  void finish();
  // Closes everything without a callback and hands this object to deferred deletion.
  void detach();

  void on_readable() override;
  void on_writable() override;
  void on_transport_error(int error) override;

 private:
  static ssize_t read_outgoing(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                               nghttp2_data_source*, void* user);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t name_len,
                       const uint8_t* value, size_t value_len, uint8_t flags, void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static int on_error(nghttp2_session*, int code, const char* msg, size_t len, void* user);

  // nghttp2 callbacks return this to stop the session once the stream is over.
  int verdict() const { return closed_ ? NGHTTP2_ERR_CALLBACK_FAILURE : 0; }
  void frame_received(const nghttp2_frame& frame);
  void headers_received(const nghttp2_frame& frame);
  void remote_ended();
  void data_received(const uint8_t* data, size_t len);
  // False when the stream closed during the callback.
  bool deliver(std::string_view payload);
  void consume_received();

  void schedule_flush();
  void flush();
  void check_session();
  void send_ping();
  // Ends the stream and reports `status` (at most once), then lets go of this object.
  void close_with(int status, std::string message);

  StreamClient* client_;  // null once detached
  const StreamOptions options_;
  const std::string server_text_;
  nghttp2_session* session_ = nullptr;
  std::unique_ptr<net::Transport> socket_;
  int connect_error_ = 0;  // the connect failed at once
  int32_t stream_id_ = -1;

  bool ready_ = false;
  bool closed_ = false;
  bool finishing_ = false;
  bool resume_pending_ = false;
  bool ping_outstanding_ = false;

  // Response headers and trailers.
  bool response_started_ = false;
  int http_status_ = 0;
  bool has_content_type_ = false;
  bool grpc_content_type_ = false;
  int grpc_status_ = -1;
  bool bad_grpc_status_ = false;
  std::string grpc_message_;

  // The message being received.
  uint8_t prefix_[kPrefixSize] = {};
  size_t prefix_have_ = 0;
  size_t expected_ = 0;
  std::string message_;
  size_t unconsumed_ = 0;  // received, not yet returned to the windows

  net::Buffer in_;
  net::Buffer out_;
  net::Buffer send_queue_;  // framed messages not yet taken by nghttp2
  std::string session_error_;

  net::Timer connect_timer_;
  net::Timer keepalive_timer_;
  net::Timer ping_timer_;
  net::Timer flush_timer_;  // zero delay: many send() calls, one write
};

StreamClient::Connection::Connection(StreamClient& client, const StreamOptions& options,
                                     std::string server_text)
    : client_(&client),
      options_(options),
      server_text_(std::move(server_text)),
      connect_timer_(client.loop_,
                     [this] {
                       if (connect_error_ != 0) {
                         close_with(kStatusUnavailable,
                                    "connect to " + server_text_ + ": " + errno_text(connect_error_));
                       } else {
                         close_with(kStatusUnavailable, "connect to " + server_text_ + ": timed out");
                       }
                     }),
      keepalive_timer_(client.loop_, [this] { send_ping(); }),
      ping_timer_(client.loop_,
                  [this] {
                    close_with(kStatusUnavailable,
                               "keepalive: no PING ACK from " + server_text_ + " in time");
                  }),
      flush_timer_(client.loop_, [this] { flush(); }) {}

StreamClient::Connection::~Connection() {
  if (session_) nghttp2_session_del(session_);
}

bool StreamClient::Connection::begin(const net::SocketAddress& server, std::string_view authority,
                                     std::string_view path) {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(callbacks, &on_error);
  nghttp2_option* option = nullptr;
  if (nghttp2_option_new(&option) != 0) {
    nghttp2_session_callbacks_del(callbacks);
    return false;
  }
  // Windows open only as messages are delivered (consume_received()).
  nghttp2_option_set_no_auto_window_update(option, 1);
  int rv = nghttp2_session_client_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kReceiveWindow)},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kReceiveWindow) != 0) {
    return false;
  }
  const nghttp2_nv headers[] = {
      header(":method", "POST"),
      header(":scheme", options_.scheme),
      header(":path", path),
      header(":authority", authority.empty() ? std::string_view(server_text_) : authority),
      header("content-type", "application/grpc"),
      header("te", "trailers"),
      header("user-agent", "trellis-proxy"),
  };
  nghttp2_data_provider provider{};
  provider.read_callback = &read_outgoing;
  stream_id_ = nghttp2_submit_request(session_, nullptr, headers, std::size(headers), &provider, nullptr);
  if (stream_id_ < 0) return false;

  socket_ = options_.transport->connect(client_->loop_, server, this, connect_error_);
  if (!socket_) {
    // Reported like any other connect failure, from the loop, never from inside start().
    connect_timer_.arm(Duration::zero());
    return true;
  }
  connect_timer_.arm(options_.connect_timeout);
  // The preface and the request wait in the socket's buffer for the connect.
  schedule_flush();
  return true;
}

bool StreamClient::Connection::send(std::string_view payload) {
  if (!ready() || finishing_ || payload.size() > UINT32_MAX) return false;
  const auto size = static_cast<uint32_t>(payload.size());
  const char prefix[kPrefixSize] = {0, static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                                    static_cast<char>(size >> 8), static_cast<char>(size)};
  send_queue_.append(std::string_view(prefix, kPrefixSize));
  send_queue_.append(payload);
  resume_pending_ = true;
  schedule_flush();
  return true;
}

void StreamClient::Connection::finish() {
  if (closed_ || finishing_) return;
  finishing_ = true;
  resume_pending_ = true;
  schedule_flush();
}

void StreamClient::Connection::detach() {
  if (closed_) return;
  closed_ = true;
  connect_timer_.cancel();
  keepalive_timer_.cancel();
  ping_timer_.cancel();
  flush_timer_.cancel();
  if (socket_) socket_->close();
  StreamClient* client = client_;
  client_ = nullptr;
  if (client) client->drop_connection();
}

void StreamClient::Connection::close_with(int status, std::string message) {
  if (closed_) return;
  StreamClient* client = client_;
  detach();
  // `message` is a local: it outlives whatever the callback does to the client.
  if (client) client->callbacks_.on_stream_closed(status, message);
}

void StreamClient::Connection::on_readable() {
  if (closed_) return;
  bool received = false;
  // Reads until drained (edge-triggered). The pass is bounded all the same:
  // window updates go out only in the flush after it, so a server cannot send
  // much more than one receive window meanwhile.
  for (;;) {
    net::ReadResult r = socket_->read(in_);
    if (r == net::ReadResult::kData) {
      received = true;
      ssize_t rv =
          nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in_.data()), in_.size());
      in_.clear();
      if (closed_) return;
      if (rv < 0) {
        in_.release();
        close_with(kStatusUnavailable, std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(rv)));
        return;
      }
      continue;
    }
    if (r == net::ReadResult::kAgain) break;
    int error = errno;
    in_.release();
    close_with(kStatusUnavailable, r == net::ReadResult::kEof
                                       ? "connection closed by " + server_text_
                                       : "read from " + server_text_ + ": " + errno_text(error));
    return;
  }
  in_.release();
  // Anything received shows the peer alive: the idle clock starts over.
  if (received && ready_ && !ping_outstanding_) keepalive_timer_.arm(options_.keepalive_interval);
  flush();
  check_session();
}

void StreamClient::Connection::on_writable() { flush(); }

void StreamClient::Connection::on_transport_error(int error) {
  if (ready_) {
    close_with(kStatusUnavailable, "connection to " + server_text_ + ": " + errno_text(error));
  } else {
    close_with(kStatusUnavailable, "connect to " + server_text_ + ": " + errno_text(error));
  }
}

void StreamClient::Connection::schedule_flush() {
  if (!closed_) flush_timer_.arm(Duration::zero());
}

// Everything nghttp2 has to send goes out in as few socket writes as possible;
// while the kernel holds back, the rest waits for on_writable().
void StreamClient::Connection::flush() {
  flush_timer_.cancel();
  if (closed_ || !socket_) return;
  if (resume_pending_) {
    resume_pending_ = false;
    // Fails harmlessly when the data source is not deferred.
    nghttp2_session_resume_data(session_, stream_id_);
  }
  while (socket_->pending_output() == 0 && nghttp2_session_want_write(session_)) {
    while (out_.size() < kWriteBatchBytes) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (closed_) return;
      if (n < 0) {
        close_with(kStatusUnavailable, std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(n)));
        return;
      }
      if (n == 0) break;
      out_.append(as_view(data, static_cast<size_t>(n)));
    }
    if (out_.empty()) break;
    if (!socket_->write(out_)) {
      close_with(kStatusUnavailable, "write to " + server_text_ + ": " + errno_text(socket_->error()));
      return;
    }
  }
  out_.release();
}

// nghttp2 stops wanting to read and write after a connection error it has
// answered with GOAWAY, or after the server's GOAWAY once nothing is left.
void StreamClient::Connection::check_session() {
  if (closed_ || nghttp2_session_want_read(session_) || nghttp2_session_want_write(session_)) {
    return;
  }
  close_with(kStatusUnavailable,
             session_error_.empty() ? "HTTP/2 session ended" : "HTTP/2: " + session_error_);
}

void StreamClient::Connection::send_ping() {
  if (closed_ || !ready_ || ping_outstanding_) return;
  if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr) != 0) return;
  ping_outstanding_ = true;
  ping_timer_.arm(options_.keepalive_timeout);
  flush();
}

ssize_t StreamClient::Connection::read_outgoing(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                                                uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* self = static_cast<Connection*>(user);
  net::Buffer& queue = self->send_queue_;
  size_t n = std::min(length, queue.size());
  if (n > 0) {
    std::memcpy(buf, queue.data(), n);
    queue.consume(n);
  }
  if (queue.empty()) {
    queue.release();
    if (self->finishing_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;  // send() or finish() resumes it
    }
  }
  return static_cast<ssize_t>(n);
}

int StreamClient::Connection::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<Connection*>(user);
  if (frame->hd.stream_id == self->stream_id_) {
    self->http_status_ = 0;
    self->has_content_type_ = false;
    self->grpc_content_type_ = false;
  }
  return 0;
}

int StreamClient::Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                                        size_t name_len, const uint8_t* value, size_t value_len, uint8_t,
                                        void* user) {
  auto* self = static_cast<Connection*>(user);
  if (frame->hd.stream_id != self->stream_id_) return 0;
  std::string_view n = as_view(name, name_len);
  std::string_view v = as_view(value, value_len);
  if (n == ":status") {
    if (!parse_number(v, self->http_status_)) self->http_status_ = 0;
  } else if (n == "content-type") {
    self->has_content_type_ = true;
    // "application/grpc", optionally "+proto" or ";params".
    constexpr std::string_view kGrpc = "application/grpc";
    self->grpc_content_type_ = v.substr(0, kGrpc.size()) == kGrpc &&
                               (v.size() == kGrpc.size() || v[kGrpc.size()] == '+' || v[kGrpc.size()] == ';');
  } else if (n == "grpc-status") {
    self->bad_grpc_status_ = !parse_number(v, self->grpc_status_);
  } else if (n == "grpc-message") {
    self->grpc_message_ = percent_decode(v);
  }
  return 0;
}

int StreamClient::Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<Connection*>(user);
  if (!self->closed_) self->frame_received(*frame);
  return self->verdict();
}

void StreamClient::Connection::frame_received(const nghttp2_frame& frame) {
  switch (frame.hd.type) {
    case NGHTTP2_SETTINGS:
      // The server speaks HTTP/2: the stream, submitted with the preface, is usable.
      if ((frame.hd.flags & NGHTTP2_FLAG_ACK) == 0 && !ready_) {
        ready_ = true;
        connect_timer_.cancel();
        keepalive_timer_.arm(options_.keepalive_interval);
        client_->callbacks_.on_stream_ready();
      }
      break;
    case NGHTTP2_PING:
      if ((frame.hd.flags & NGHTTP2_FLAG_ACK) != 0 && ping_outstanding_) {
        ping_outstanding_ = false;
        ++client_->pings_acked_;
        ping_timer_.cancel();
        keepalive_timer_.arm(options_.keepalive_interval);
      }
      break;
    case NGHTTP2_GOAWAY:
      // A graceful GOAWAY that still covers our stream lets it run to its end.
      if (frame.goaway.error_code != NGHTTP2_NO_ERROR || frame.goaway.last_stream_id < stream_id_) {
        std::string reason = "GOAWAY from " + server_text_ + ": ";
        reason += nghttp2_http2_strerror(frame.goaway.error_code);
        if (frame.goaway.opaque_data_len > 0) {
          reason += " (";
          reason += as_view(frame.goaway.opaque_data, frame.goaway.opaque_data_len);
          reason += ')';
        }
        close_with(kStatusUnavailable, std::move(reason));
      }
      break;
    case NGHTTP2_HEADERS:
      if (frame.hd.stream_id == stream_id_) headers_received(frame);
      break;
    case NGHTTP2_DATA:
      if (frame.hd.stream_id == stream_id_ && (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        remote_ended();
      }
      break;
    default:
      break;
  }
}

void StreamClient::Connection::headers_received(const nghttp2_frame& frame) {
  const bool end_stream = (frame.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (!response_started_) {
    if (http_status_ >= 100 && http_status_ < 200) return;  // interim response
    response_started_ = true;
    if (http_status_ != 200) {
      close_with(kStatusInternal, "HTTP status " + std::to_string(http_status_) + " from " + server_text_);
      return;
    }
    // A trailers-only response may leave the content-type out.
    if (has_content_type_ ? !grpc_content_type_ : !end_stream) {
      close_with(kStatusInternal, "response from " + server_text_ + " is not application/grpc");
      return;
    }
  }
  // Trailers always end the stream (nghttp2 enforces it).
  if (end_stream) remote_ended();
}

void StreamClient::Connection::remote_ended() {
  if (bad_grpc_status_ || grpc_status_ < 0) {
    close_with(kStatusInternal, "response from " + server_text_ + " without a valid grpc-status");
    return;
  }
  if (grpc_status_ == kStatusOk && prefix_have_ > 0) {
    close_with(kStatusInternal, "stream from " + server_text_ + " ended inside a message");
    return;
  }
  close_with(grpc_status_, std::move(grpc_message_));
}

int StreamClient::Connection::on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                                            size_t len, void* user) {
  auto* self = static_cast<Connection*>(user);
  if (!self->closed_ && stream_id == self->stream_id_) self->data_received(data, len);
  return self->verdict();
}

void StreamClient::Connection::data_received(const uint8_t* data, size_t len) {
  while (len > 0) {
    if (prefix_have_ < kPrefixSize) {
      size_t take = std::min(kPrefixSize - prefix_have_, len);
      std::memcpy(prefix_ + prefix_have_, data, take);
      prefix_have_ += take;
      unconsumed_ += take;
      data += take;
      len -= take;
      if (prefix_have_ < kPrefixSize) return;
      if (prefix_[0] > 1) {
        close_with(kStatusUnavailable, "malformed message prefix from " + server_text_);
        return;
      }
      if (prefix_[0] == 1) {
        // We never offer grpc-accept-encoding, so a compressed message is a server bug.
        close_with(kStatusInternal,
                   "compressed message from " + server_text_ + " without a negotiated encoding");
        return;
      }
      expected_ = (size_t{prefix_[1]} << 24) | (size_t{prefix_[2]} << 16) | (size_t{prefix_[3]} << 8) |
                  size_t{prefix_[4]};
      if (expected_ > options_.max_message_bytes) {
        close_with(kStatusUnavailable, "message of " + std::to_string(expected_) + " bytes from " +
                                           server_text_ + " exceeds the limit of " +
                                           std::to_string(options_.max_message_bytes));
        return;
      }
      if (expected_ == 0 && !deliver({})) return;
      continue;
    }
    size_t missing = expected_ - message_.size();
    if (message_.empty() && len >= missing) {
      // The whole message is in this chunk: delivered without a copy.
      unconsumed_ += missing;
      std::string_view payload = as_view(data, missing);
      data += missing;
      len -= missing;
      if (!deliver(payload)) return;
      continue;
    }
    size_t take = std::min(missing, len);
    if (message_.empty()) message_.reserve(std::min(expected_, size_t{kReceiveWindow}));
    message_.append(reinterpret_cast<const char*>(data), take);
    unconsumed_ += take;
    data += take;
    len -= take;
    if (message_.size() == expected_) {
      if (!deliver(message_)) return;
    } else if (unconsumed_ >= kEarlyConsumeBytes) {
      consume_received();
    }
  }
}

bool StreamClient::Connection::deliver(std::string_view payload) {
  prefix_have_ = 0;
  expected_ = 0;
  consume_received();
  client_->callbacks_.on_stream_message(payload);
  if (closed_) return false;
  if (message_.capacity() > kKeptMessageCapacity) {
    std::string().swap(message_);
  } else {
    message_.clear();
  }
  return true;
}

void StreamClient::Connection::consume_received() {
  if (unconsumed_ == 0) return;
  nghttp2_session_consume(session_, stream_id_, unconsumed_);
  unconsumed_ = 0;
}

int StreamClient::Connection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                              void* user) {
  auto* self = static_cast<Connection*>(user);
  if (self->closed_ || stream_id != self->stream_id_) return self->verdict();
  if (error_code != NGHTTP2_NO_ERROR) {
    self->close_with(kStatusUnavailable, std::string("stream reset (") + nghttp2_http2_strerror(error_code) +
                                             ") with " + self->server_text_);
  } else {
    // Both sides ended without trailers being seen; remote_ended() reports first otherwise.
    self->close_with(kStatusInternal, "stream with " + self->server_text_ + " ended without status");
  }
  return self->verdict();
}

int StreamClient::Connection::on_error(nghttp2_session*, int, const char* msg, size_t len, void* user) {
  static_cast<Connection*>(user)->session_error_.assign(msg, len);
  return 0;
}

StreamClient::StreamClient(net::EventLoop& loop, StreamCallbacks& callbacks, StreamOptions options)
    : loop_(loop), callbacks_(callbacks), options_(options) {}

StreamClient::~StreamClient() { reset(); }

bool StreamClient::start(const net::SocketAddress& server, std::string authority, std::string path) {
  if (connection_ || server.length == 0 || path.empty()) return false;
  auto connection = std::make_unique<Connection>(*this, options_, server.text);
  if (!connection->begin(server, authority, path)) return false;
  connection_ = std::move(connection);
  return true;
}

bool StreamClient::send(std::string_view payload) { return connection_ && connection_->send(payload); }

void StreamClient::finish() {
  if (connection_) connection_->finish();
}

void StreamClient::reset() {
  if (connection_) connection_->detach();
}

bool StreamClient::open() const { return connection_ && connection_->ready(); }

// Events of this loop iteration may still point at the connection's socket
// and timers, and a callback may be on the stack: it dies at the iteration's end.
void StreamClient::drop_connection() {
  if (connection_) loop_.defer_delete(std::move(connection_));
}

}  // namespace trellis::http::grpc
