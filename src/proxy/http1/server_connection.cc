#include "proxy/http1/server_connection.h"

#include <fmt/format.h>

#include "net/address.h"
#include "proxy/http2/server_connection.h"

namespace trellis::proxy {
namespace {

// Stop reading a peer while the other side has this much unsent.
constexpr size_t kHighWatermark = 256 * 1024;
// How long a closing connection may keep sending bytes that are dropped.
constexpr auto kLingerTime = std::chrono::seconds(2);
// The most of a request body answered early (a 404, a 429, an upstream's
// early answer) that is read and dropped to keep the connection: past it,
// the connection is closed instead.
constexpr uint64_t kDiscardLimit = 64 * 1024;

}  // namespace

Http1ServerConnection::Http1ServerConnection(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
                                             const sockaddr_storage& peer, size_t listener_index)
    : WorkerConnection(worker),
      snapshot_(std::move(snapshot)),
      listener_(&snapshot_->listeners[listener_index]),
      stats_(listener_->stats[worker.index()]),
      client_ip_(net::format_address(peer, /*ip_only=*/true)),
      client_address_(net::format_address(peer)),
      authz_client_(authz_client_of(peer, listener_->config->address, {})),
      idle_timer_(worker.loop(), [this] { close(); }),
      head_timer_(worker.loop(),
                  [this] {
                    // The rest of a body being dropped after an early
                    // answer did not come in time either.
                    if (state_ == State::kDiscard) {
                      close_gracefully();
                      return;
                    }
                    // A head trickled in (slowloris) or stalled: whatever
                    // came is dropped and the client told.
                    if (state_ != State::kIdle) return;
                    stats_->request_head_timeouts.inc();
                    reject(408,
                           fmt::format("request head not received within {} ms\n",
                                       listener_->config->request_head_timeout.count()),
                           /*malformed=*/false);
                  }),
      resume_(worker.loop(), [this] {
        if (state_ == State::kTunnel) {
          pump_tunnel();
          return;
        }
        process_input();
        read_client();
      }) {
  stats_->connections_active.add();
  idle_timer_.arm(listener_->config->idle_timeout);
}

Http1ServerConnection::Http1ServerConnection(Worker& worker, int fd, const sockaddr_storage& peer,
                                             size_t listener_index)
    : Http1ServerConnection(worker, worker.snapshot(), peer, listener_index) {
  client_ = listener_->transport->accepted(worker.loop(), fd, this);
  // The request may have arrived with the handshake: read it now. A client
  // that sent nothing yet holds no input block meanwhile (an idle flood).
  read_client();
  if (in_.empty() && state_ == State::kIdle) in_.release();
}

Http1ServerConnection::Http1ServerConnection(Worker& worker, AdoptedConnection adopted)
    : Http1ServerConnection(worker, std::move(adopted.snapshot), adopted.peer, adopted.listener_index) {
  client_ = std::move(adopted.client);
  client_->set_callbacks(this);
  in_ = std::move(adopted.input);
  process_input();
  read_client();
}

Http1ServerConnection::~Http1ServerConnection() { close(); }

// Made with the first request: a connection that never sends one (a flood
// of idle connections) costs no router.
ServerStream& Http1ServerConnection::stream() {
  if (!stream_) stream_ = make_server_stream(worker_, *this);
  return *stream_;
}

const ListenerConfig* Http1ServerConnection::idle_listener() const {
  return state_ == State::kIdle && in_.empty() ? listener_->config : nullptr;
}

void Http1ServerConnection::start_drain() {
  keep_alive_ = false;
  if (state_ == State::kIdle && in_.empty()) close();
}

// ---- input ------------------------------------------------------------------

void Http1ServerConnection::on_readable() { read_client(); }

void Http1ServerConnection::read_client() {
  for (;;) {
    if (state_ == State::kClosed) return;
    if (state_ == State::kTunnel) {
      pump_tunnel();
      return;
    }
    if (state_ == State::kRequest) {
      // Backpressure: leave the bytes in the socket while the upstream is
      // full; resume_reading() continues.
      if (!request_complete_ && stream_->blocked()) return;
      // A pipelined request waits; hold at most one block of it.
      if (request_complete_ && in_.size() >= net::Buffer::kBlockSize) return;
    }
    size_t n = 0;
    net::ReadResult r = client_->read(in_, net::Buffer::kBlockSize, &n);
    if (r == net::ReadResult::kAgain) return;
    if (r == net::ReadResult::kError) {
      close();
      return;
    }
    if (r == net::ReadResult::kEof) {
      client_eof_ = true;
      // A client that half-closes after a whole request still gets its answer;
      // one that leaves mid-request or between requests is simply gone.
      if (state_ != State::kRequest || !request_complete_) close();
      return;
    }
    stats_->bytes_received.inc(n);
    if (state_ == State::kClosing) {
      in_.clear();
      continue;
    }
    idle_timer_.arm(listener_->config->idle_timeout);
    process_input();
  }
}

void Http1ServerConnection::process_input() {
  if (in_process_) return;
  in_process_ = true;
  while (state_ != State::kClosed && !in_.empty()) {
    if (state_ == State::kIdle && !served_any_) {
      Http2Preface preface = http2_preface(in_.view());
      if (client_->alpn() == "h2" || preface == Http2Preface::kYes) {
        hand_over_to_http2();
        break;
      }
      if (preface == Http2Preface::kMaybe) {  // too soon to tell
        if (!head_timer_.armed()) head_timer_.arm(listener_->config->request_head_timeout);
        break;
      }
    }
    if (state_ == State::kIdle) {
      http::http1::ParseResult pr = http::http1::parse_request(in_.view(), head_);
      if (pr.status == http::http1::ParseStatus::kNeedMore) {
        // The whole head must come within the timeout of its first byte,
        // however it trickles in.
        if (!head_timer_.armed()) head_timer_.arm(listener_->config->request_head_timeout);
        break;
      }
      head_timer_.cancel();
      if (pr.status == http::http1::ParseStatus::kError) {
        reject(pr.error_status, pr.error);
        break;
      }
      start_exchange(pr.consumed);
      continue;
    }
    if (state_ == State::kRequest && !request_complete_) {
      forward_body();
      if (state_ == State::kRequest && !request_complete_) break;
      continue;
    }
    if (state_ == State::kDiscard) {
      discard_body();
      if (state_ == State::kDiscard) break;
      continue;
    }
    break;
  }
  if (state_ == State::kRequest) stream_->flush();
  in_process_ = false;
}

bool Http1ServerConnection::refresh_snapshot() {
  return follow_snapshot(snapshot_, listener_, stats_);  // false: the listener is gone: answer, then close
}

void Http1ServerConnection::hand_over_to_http2() {
  Http2Handover handover{snapshot_,      listener_,  stats_,          std::move(client_),
                         std::move(in_), client_ip_, client_address_, authz_client_};
  // Closed without closing the transport, and still counted as active: the
  // HTTP/2 connection takes both over.
  state_ = State::kClosed;
  idle_timer_.cancel();
  head_timer_.cancel();
  resume_.cancel();
  out_.release();
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
  new Http2ServerConnection(worker_, std::move(handover));
}

void Http1ServerConnection::start_exchange(size_t head_size) {
  served_any_ = true;
  idle_timer_.cancel();
  state_ = State::kRequest;
  head_request_ = head_.method == "HEAD";
  client_minor_ = head_.version_minor;
  keep_alive_ = keep_alive_ && head_.info.keep_alive && !worker_.draining();
  body_ = head_.info.body;
  body_remaining_ = head_.info.content_length;
  chunked_.reset();
  request_complete_ = body_ == http::http1::BodyKind::kNone;
  awaiting_continue_ = head_.info.expect_continue;
  response_started_ = response_complete_ = exchange_done_ = false;
  bytes_in_ = head_size;
  bytes_out_ = 0;
  bool listener_current = refresh_snapshot();
  authz_client_.identity = client_->peer_identity();  // verified by the TLS handshake, if any
  context_ = {snapshot_, listener_, stats_, client_ip_, client_address_, authz_client_};
  stream().begin(context_);
  http::http1::to_neutral(head_, request_);
  // The head's bytes stay in memory until the next read; the router copies
  // what it keeps before returning.
  in_.consume(head_size);
  if (!listener_current) {
    keep_alive_ = false;
    stream_->reply_local(503, "listener removed\n");
    return;
  }
  if (request_.method == "CONNECT") {
    stream_->reply_local(405, "CONNECT is not supported\n");
    return;
  }
  bool end_stream = request_complete_ && request_.upgrade.empty();
  stream_->decode_headers(request_, end_stream);
}

Http1ServerConnection::BodyStep Http1ServerConnection::take_body() {
  using Kind = http::http1::ChunkedDecoder::Kind;
  BodyStep out;
  if (body_ == http::http1::BodyKind::kContentLength) {
    size_t n = in_.size() < body_remaining_ ? in_.size() : static_cast<size_t>(body_remaining_);
    // The view stays valid after consume(): it moves offsets, not bytes.
    out.data = std::string_view(in_.data(), n);
    out.consumed = n;
    in_.consume(n);
    body_remaining_ -= n;
    if (body_remaining_ == 0) request_complete_ = true;
    return out;
  }
  http::http1::ChunkedDecoder::Step step = chunked_.next(in_.view());
  out.consumed = step.consumed;
  in_.consume(step.consumed);
  switch (step.kind) {
    case Kind::kData:
      out.data = step.data;
      break;
    case Kind::kDone:
      request_complete_ = true;
      out.kind = BodyStep::kEnd;
      break;
    case Kind::kNeedMore:
      out.kind = BodyStep::kNeedMore;
      break;
    case Kind::kError:
      out.kind = BodyStep::kError;
      out.error = step.error;
      break;
  }
  return out;
}

void Http1ServerConnection::forward_body() {
  while (state_ == State::kRequest && !request_complete_ && !in_.empty()) {
    if (stream_->blocked()) return;
    BodyStep step = take_body();
    bytes_in_ += step.consumed;
    switch (step.kind) {
      case BodyStep::kData:
        stream_->decode_data(step.data, request_complete_);
        break;
      case BodyStep::kEnd:
        if (chunked_.trailers().empty()) {
          stream_->decode_data({}, true);
        } else {
          stream_->decode_trailers(chunked_.trailers());
        }
        break;
      case BodyStep::kNeedMore:
        return;
      case BodyStep::kError:
        in_.clear();
        reject(400, step.error);
        return;
    }
  }
}

bool Http1ServerConnection::can_discard_rest() const {
  // A client still waiting for 100 Continue may never send the body: what
  // it sends next could be read as a body, or a body as a request.
  if (awaiting_continue_ || !head_.info.keep_alive) return false;
  if (body_ == http::http1::BodyKind::kContentLength) return body_remaining_ <= kDiscardLimit;
  return body_ == http::http1::BodyKind::kChunked;  // bounded while it is read
}

void Http1ServerConnection::discard_body() {
  while (state_ == State::kDiscard && !in_.empty()) {
    BodyStep step = take_body();
    discarded_ += step.consumed;
    if (step.kind == BodyStep::kError || discarded_ > kDiscardLimit) {
      close_gracefully();
      return;
    }
    if (step.kind == BodyStep::kNeedMore) return;
    if (request_complete_) {
      if (!keep_alive_) {  // a drain began meanwhile
        close_gracefully();
        return;
      }
      state_ = State::kIdle;
      head_timer_.cancel();
      idle_timer_.arm(listener_->config->idle_timeout);
      return;
    }
  }
}

// A malformed request: answered here and never forwarded (what was already
// forwarded of a bad chunked body is cut off with its upstream connection).
void Http1ServerConnection::reject(int status, std::string_view reason, bool malformed) {
  served_any_ = true;
  if (malformed) stats_->malformed_requests.inc();
  keep_alive_ = false;
  if (state_ == State::kIdle) {
    state_ = State::kRequest;
    head_request_ = false;
    client_minor_ = 1;
    response_started_ = response_complete_ = exchange_done_ = false;
    request_complete_ = false;
    bytes_in_ = in_.size();
    bytes_out_ = 0;
    refresh_snapshot();
    authz_client_.identity = client_->peer_identity();  // verified by the TLS handshake, if any
    context_ = {snapshot_, listener_, stats_, client_ip_, client_address_, authz_client_};
    stream().begin(context_);
  } else {
    stream_->on_downstream_reset();
  }
  in_.clear();
  if (response_started_) {
    close();
    return;
  }
  if (malformed) {
    stream_->reply_local(status, fmt::format("bad request: {}\n", reason));
  } else {
    stream_->reply_local(status, reason);
  }
}

// ---- output -----------------------------------------------------------------

void Http1ServerConnection::encode_headers(const http::ResponseHeaders& headers, bool end_stream) {
  if (state_ != State::kRequest) return;
  response_started_ = true;
  if (headers.status == 101) {
    http::http1::serialize_response(headers, http::http1::ResponseFraming::kNone, false, client_minor_, out_);
    flush();
    state_ = State::kTunnel;
    // Bytes the client sent after its request belong to the new protocol.
    resume_.arm(Duration::zero());
    return;
  }
  // An early answer (before the whole request was read) keeps the connection
  // only when the rest of the request can be read and dropped; otherwise it
  // cannot be told from a next request.
  if (!request_complete_ && !can_discard_rest()) keep_alive_ = false;
  // A 408 says the proxy stopped waiting for this client (RFC 9110 15.5.9).
  if (headers.status == 408) keep_alive_ = false;
  framing_ = http::http1::response_framing(headers, client_minor_);
  if (framing_ == http::http1::ResponseFraming::kClose) keep_alive_ = false;
  http::http1::serialize_response(headers, framing_, !keep_alive_, client_minor_, out_);
  if (end_stream) finish_response();
}

void Http1ServerConnection::encode_data(std::string_view data, bool end_stream) {
  if (state_ == State::kTunnel) {
    if (!data.empty()) {
      out_.append(data);
      flush();
    }
    if (end_stream) {
      tunnel_upstream_done_ = true;
      flush();
      client_->shutdown_write();
      pump_tunnel();
    }
    return;
  }
  if (state_ != State::kRequest || response_complete_) return;
  if (framing_ == http::http1::ResponseFraming::kChunked) {
    http::http1::serialize_chunk(data, out_);
    if (end_stream) out_.append("0\r\n\r\n");
  } else if (framing_ != http::http1::ResponseFraming::kNone && !data.empty()) {
    if (out_.empty()) {
      // Nothing staged before it: send straight from the caller's buffer.
      bytes_out_ += data.size();
      stats_->bytes_sent.inc(data.size());
      if (!client_->write(data)) {
        close();
        return;
      }
    } else {
      out_.append(data);
    }
  }
  if (end_stream) {
    finish_response();
  } else if (out_.size() >= net::Buffer::kBlockSize) {
    flush();
  }
}

void Http1ServerConnection::encode_trailers(const http::HeaderList& trailers) {
  if (state_ != State::kRequest || response_complete_) return;
  if (framing_ == http::http1::ResponseFraming::kChunked) {
    http::http1::serialize_last_chunk(trailers, out_);
  }
  // Other framings have no place for trailers: they are dropped.
  finish_response();
}

void Http1ServerConnection::encode_continue() {
  awaiting_continue_ = false;
  out_.append("HTTP/1.1 100 Continue\r\n\r\n");
  flush();
}

void Http1ServerConnection::flush() {
  if (out_.empty() || state_ == State::kClosed) return;
  bytes_out_ += out_.size();
  stats_->bytes_sent.inc(out_.size());
  if (!client_->write(out_)) close();
}

bool Http1ServerConnection::write_blocked() const { return client_->pending_output() >= kHighWatermark; }

void Http1ServerConnection::resume_reading() {
  if (state_ == State::kRequest && !request_complete_) {
    process_input();
    read_client();
  } else if (state_ == State::kTunnel) {
    pump_tunnel();
  }
}

void Http1ServerConnection::on_writable() {
  if (state_ == State::kClosed) return;
  if (state_ == State::kClosing) {
    if (client_eof_) close();
    return;
  }
  if (state_ == State::kTunnel) {
    pump_tunnel();
    return;
  }
  // The client caught up: let the response flow again.
  if (state_ == State::kRequest && response_started_ && !response_complete_) stream_->on_downstream_drained();
}

void Http1ServerConnection::on_transport_error(int) { close(); }

// ---- completion -------------------------------------------------------------

void Http1ServerConnection::finish_response() {
  response_complete_ = true;
  flush();
  if (state_ == State::kClosed) return;
  finish_exchange();
}

void Http1ServerConnection::finish_exchange() {
  if (exchange_done_) return;
  exchange_done_ = true;
  stream_->end(bytes_in_, bytes_out_);
  if (!keep_alive_ || client_eof_ || (!request_complete_ && !can_discard_rest())) {
    close_gracefully();
    return;
  }
  if (!request_complete_) {
    state_ = State::kDiscard;
    discarded_ = 0;
    idle_timer_.arm(listener_->config->idle_timeout);
    // At most 64 KiB are left (kDiscardLimit): they have the body's grace, no more.
    if (listener_->config->request_body_timeout.count() > 0)
      head_timer_.arm(listener_->config->request_body_timeout);
    // Not from here: this runs inside the stream's call stack.
    if (!in_.empty() || client_->read_ready()) resume_.arm(Duration::zero());
    return;
  }
  state_ = State::kIdle;
  idle_timer_.arm(listener_->config->idle_timeout);
  if (!in_.empty() || client_->read_ready()) {
    // Not from here: this runs inside the stream's call stack.
    resume_.arm(Duration::zero());
  } else {
    in_.release();  // idle keep-alive connections hold no buffer
    if (out_.empty()) out_.release();
  }
}

void Http1ServerConnection::pump_tunnel() {
  if (state_ != State::kTunnel) return;
  idle_timer_.arm(listener_->config->idle_timeout);
  while (state_ == State::kTunnel && !tunnel_client_done_) {
    if (!in_.empty()) {
      if (stream_->blocked()) break;
      bytes_in_ += in_.size();
      stream_->decode_data(in_.view(), false);
      in_.clear();
      stream_->flush();
      continue;
    }
    if (stream_->blocked()) break;
    size_t n = 0;
    net::ReadResult r = client_->read(in_, net::Buffer::kBlockSize, &n);
    if (r == net::ReadResult::kAgain) break;
    if (r == net::ReadResult::kError) {
      close();
      return;
    }
    if (r == net::ReadResult::kEof) {
      tunnel_client_done_ = true;
      stream_->decode_data({}, true);
      break;
    }
    stats_->bytes_received.inc(n);
  }
  if (state_ == State::kTunnel && tunnel_client_done_ && tunnel_upstream_done_ &&
      client_->pending_output() == 0) {
    exchange_done_ = true;
    stream_->end(bytes_in_, bytes_out_);
    close();
  }
}

void Http1ServerConnection::close_gracefully() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosing;
  in_.clear();
  // Send what is pending, then FIN, and keep reading (and dropping) for a
  // moment: closing with unread input would send a reset that can destroy
  // the response before the client reads it.
  client_->shutdown_write();
  idle_timer_.arm(kLingerTime);
  if (client_eof_ && client_->pending_output() == 0) close();
}

void Http1ServerConnection::close() {
  if (state_ == State::kClosed) return;
  bool in_flight = (state_ == State::kRequest || state_ == State::kTunnel) && !exchange_done_;
  state_ = State::kClosed;
  idle_timer_.cancel();
  head_timer_.cancel();
  resume_.cancel();
  if (in_flight) {
    stream_->on_downstream_reset();
    if (response_started_) stream_->end(bytes_in_, bytes_out_);  // a tunnel's 101 counts
  }
  stats_->connections_active.sub();
  client_->close();
  in_.release();
  out_.release();
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

}  // namespace trellis::proxy
