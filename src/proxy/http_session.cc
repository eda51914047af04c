#include "proxy/http_session.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "proxy/access_log.h"
#include "proxy/http1/serialize.h"
#include "proxy/net.h"

namespace trellis::proxy {
namespace {

using http1::BodyKind;
using http1::ChunkedDecoder;
using http1::ParseStatus;

// Stop reading a peer while the other side has this much unsent.
constexpr size_t kHighWatermark = 256 * 1024;
// How long a closing connection may keep sending us bytes we discard.
constexpr auto kLingerTime = std::chrono::seconds(2);

void format_request_id(Random& random, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = random.next(), b = random.next();
  // UUID version 4, variant 1.
  a = (a & ~0xF000ull) | 0x4000ull;
  b = (b & ~(3ull << 62)) | (2ull << 62);
  char buf[36];
  int pos = 0;
  for (int i = 0; i < 16; ++i) {
    uint64_t byte = i < 8 ? (a >> (56 - 8 * i)) & 0xFF : (b >> (56 - 8 * (i - 8))) & 0xFF;
    if (i == 4 || i == 6 || i == 8 || i == 10) buf[pos++] = '-';
    buf[pos++] = kHex[byte >> 4];
    buf[pos++] = kHex[byte & 15];
  }
  out.assign(buf, sizeof(buf));
}

bool has_request_id(const http1::RequestHead& req) {
  for (const auto& h : req.headers)
    if (http::iequals(h.name, "x-request-id") && !h.value.empty()) return true;
  return false;
}

std::string_view request_id_of(const http1::RequestHead& req) {
  for (const auto& h : req.headers)
    if (http::iequals(h.name, "x-request-id")) return h.value;
  return {};
}

}  // namespace

HttpSession::HttpSession(Worker& worker, int fd, const sockaddr_storage& peer, size_t listener_index)
    : WorkerConnection(worker),
      snapshot_(worker.snapshot()),
      listener_(&snapshot_->listeners[listener_index]),
      listener_name_(listener_->config->name),
      stats_(listener_->stats[worker.index()]),
      client_(worker.loop(), fd, this),
      peer_(peer),
      client_ip_(format_address(peer, /*ip_only=*/true)),
      idle_timer_(worker.loop(), [this] { close(); }),
      request_timer_(worker.loop(), [this] {
        if (cluster_) cluster_->stats().timeouts.inc();
        upstream_failed(504, "upstream request timeout\n");
      }) {
  stats_->connections_active.add();
  idle_timer_.arm(listener_->config->idle_timeout);
  // The client may have sent its request with the handshake; read it now.
  read_client();
}

HttpSession::~HttpSession() { close(); }

void HttpSession::start_drain() {
  keep_alive_ = false;
  if (state_ == State::kIdle && in_.empty()) close();
}

// ---- client side --------------------------------------------------------

void HttpSession::on_readable() { read_client(); }

void HttpSession::read_client() {
  for (;;) {
    if (state_ == State::kClosed) return;
    if (state_ == State::kTunnel) {
      pump_tunnel();
      return;
    }
    // Backpressure: while the upstream has a full buffer, leave the client's
    // bytes in its socket; on_upstream_writable() resumes.
    if (state_ == State::kRequest && !request_complete_ && upstream_write_blocked()) return;
    // While a response is pending, hold at most one block of pipelined input.
    if (state_ == State::kRequest && request_complete_ && in_.size() >= Buffer::kBlockSize) return;
    size_t n = 0;
    ReadResult r = client_.read(in_, Buffer::kBlockSize, &n);
    if (r == ReadResult::kAgain) return;
    if (r == ReadResult::kError) {
      close();
      return;
    }
    if (r == ReadResult::kEof) {
      client_eof_ = true;
      if (state_ == State::kClosing || (state_ == State::kIdle && in_.empty())) {
        close();
      } else if (state_ == State::kIdle || (state_ == State::kRequest && !request_complete_)) {
        // The client gave up mid-request: nothing can be answered usefully.
        close();
      }
      // A client that half-closes after a complete request still gets its response.
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

void HttpSession::process_input() {
  if (in_process_) return;
  in_process_ = true;
  while (state_ != State::kClosed) {
    if (state_ == State::kIdle) {
      if (in_.empty()) break;
      http1::ParseResult pr = http1::parse_request(in_.view(), req_);
      if (pr.status == ParseStatus::kNeedMore) break;
      if (pr.status == ParseStatus::kError) {
        stats_->malformed_requests.inc();
        request_start_ = worker_.loop().now();
        head_request_ = false;
        client_minor_ = 1;
        request_complete_ = false;
        local_reply(pr.error_status, fmt::format("bad request: {}\n", pr.error), true);
        break;
      }
      if (!start_request(pr.consumed)) break;
      if (request_complete_) flush_upstream();
      continue;
    }
    if (state_ == State::kRequest && !request_complete_) {
      if (!forward_request_body()) break;
      if (!request_complete_) break;
      continue;
    }
    break;
  }
  in_process_ = false;
}

bool HttpSession::refresh_snapshot() {
  const auto& current = worker_.snapshot();
  if (current == snapshot_) return true;
  for (const ListenerRuntime& l : current->listeners) {
    if (l.config->name == listener_name_) {
      snapshot_ = current;
      listener_ = &l;
      stats_ = l.stats[worker_.index()];
      return true;
    }
  }
  return false;  // the listener is gone: finish on the old config, then close
}

bool HttpSession::start_request(size_t head_size) {
  request_start_ = worker_.loop().now();
  idle_timer_.cancel();
  state_ = State::kRequest;
  head_request_ = req_.method == "HEAD";
  client_minor_ = req_.version_minor;
  keep_alive_ = keep_alive_ && req_.info.keep_alive && !worker_.draining();
  request_has_body_ = req_.info.body != BodyKind::kNone;
  request_complete_ = false;
  response_started_ = response_complete_ = response_bytes_seen_ = false;
  retried_ = false;
  status_ = 0;
  request_bytes_in_ = head_size;
  response_bytes_out_ = 0;
  req_remaining_ = req_.info.content_length;
  req_chunked_.reset();
  resp_chunked_.reset();
  cluster_ = nullptr;
  cluster_name_.clear();
  upstream_address_.clear();
  expect_continue_ = req_.info.expect_continue && request_has_body_;
  upgrade_requested_ = req_.info.connection_upgrade && !req_.info.upgrade.empty();
  bool logging = snapshot_->access_log != nullptr;
  if (logging) {
    method_.assign(req_.method);
    path_.assign(req_.target);
    host_.assign(req_.host);
  }

  bool listener_current = refresh_snapshot();
  if (!listener_current) keep_alive_ = false;

  // Requests the proxy answers itself consume their head; a body that follows
  // cannot be skipped safely, so such answers close the connection.
  auto reply_early = [&](int status, std::string_view body) {
    in_.consume(head_size);
    local_reply(status, body, request_has_body_);
    return false;
  };
  if (req_.method == "CONNECT") return reply_early(405, "CONNECT is not supported\n");
  if (!listener_current) return reply_early(503, "listener removed\n");

  policy::RouteRef ref;
  if (!listener_->routes.match(req_.host, req_.path, ref)) return reply_early(404, "no route\n");
  const RouteConfig& route = listener_->config->virtual_hosts[ref.virtual_host].routes[ref.route];
  cluster_ = &worker_.cluster(route.cluster_index);
  cluster_name_ = cluster_->name();
  EndpointPool* pool = cluster_->pick();
  if (pool == nullptr) return reply_early(503, "no healthy upstream\n");
  upstream_address_ = pool->address().text;

  std::string_view request_id = request_id_of(req_);
  if (!has_request_id(req_)) {
    format_request_id(worker_.random(), request_id_);
    request_id = request_id_;
  } else if (logging) {
    request_id_.assign(request_id);
  }
  head_out_.clear();
  http1::serialize_request(
      req_, {client_ip_, has_request_id(req_) ? std::string_view() : std::string_view(request_id_)},
      head_out_);
  in_.consume(head_size);

  int error = 0;
  upstream_ = pool->acquire(this, error);
  if (upstream_ == nullptr) {
    upstream_failed(503, fmt::format("upstream connect error: {}\n", std::strerror(error)));
    return false;
  }
  upstream_connected_ = upstream_->socket().open() && !upstream_->socket().connecting();
  upstream_->count_request();
  cluster_->stats().requests.inc();
  if (route.timeout.count() > 0) request_timer_.arm(route.timeout);

  // Staged: a body that arrived with the head goes out in the same send.
  up_out_.clear();
  up_out_.append(head_out_.view());
  if (expect_continue_) {
    // The proxy will take the body: tell the client now rather than make it
    // wait for its own timeout (the upstream never saw the Expect).
    out_.append("HTTP/1.1 100 Continue\r\n\r\n");
    flush_client();
  }
  if (!request_has_body_) request_complete_ = true;
  return state_ == State::kRequest;
}

bool HttpSession::forward_request_body() {
  bool more = forward_request_body_staged();
  flush_upstream();
  return more && state_ == State::kRequest;
}

bool HttpSession::forward_request_body_staged() {
  if (upstream_ == nullptr) return false;
  Socket& up = upstream_->socket();
  while (!request_complete_ && !in_.empty()) {
    if (upstream_write_blocked()) return false;
    if (req_.info.body == BodyKind::kContentLength) {
      size_t n = in_.size() < req_remaining_ ? in_.size() : static_cast<size_t>(req_remaining_);
      if (!up_out_.empty()) {
        up_out_.append(std::string_view(in_.data(), n));
      } else {
        if (!up.write(std::string_view(in_.data(), n))) {
          upstream_failed(502, "upstream connection reset\n");
          return false;
        }
        cluster_->stats().bytes_sent.inc(n);
      }
      request_bytes_in_ += n;
      in_.consume(n);
      req_remaining_ -= n;
      if (req_remaining_ == 0) request_complete_ = true;
      continue;
    }
    // Chunked: decode, then re-frame canonically.
    ChunkedDecoder::Step step = req_chunked_.next(in_.view());
    switch (step.kind) {
      case ChunkedDecoder::Kind::kData:
        up_out_.append_hex(step.data.size());
        up_out_.append("\r\n");
        up_out_.append(step.data);
        up_out_.append("\r\n");
        break;
      case ChunkedDecoder::Kind::kDone:
        http1::serialize_last_chunk(req_chunked_.trailers(), up_out_);
        request_complete_ = true;
        break;
      case ChunkedDecoder::Kind::kNeedMore:
        request_bytes_in_ += step.consumed;
        in_.consume(step.consumed);
        if (in_.size() > http1::kMaxHeadBytes + 64) {
          stats_->malformed_requests.inc();
          upstream_failed(400, "bad request: chunked framing too large\n");
        }
        return false;
      case ChunkedDecoder::Kind::kError:
        stats_->malformed_requests.inc();
        keep_alive_ = false;
        request_has_body_ = true;  // the rest cannot be framed: close after the answer
        upstream_failed(400, fmt::format("bad request: {}\n", step.error));
        return false;
    }
    request_bytes_in_ += step.consumed;
    in_.consume(step.consumed);
    if (up_out_.size() >= Buffer::kBlockSize) {
      flush_upstream();
      if (state_ != State::kRequest) return false;
    }
  }
  return true;
}

void HttpSession::on_writable() {
  if (state_ == State::kClosed) return;
  if (state_ == State::kClosing) {
    if (client_eof_) close();
    return;
  }
  if (state_ == State::kTunnel) {
    pump_tunnel();
    return;
  }
  // The client caught up: read the upstream again.
  if (upstream_ != nullptr && response_started_ && !response_complete_) read_upstream();
}

void HttpSession::on_socket_error(int) { close(); }

// ---- upstream side ------------------------------------------------------

void HttpSession::on_upstream_connected() {
  upstream_connected_ = true;
  if (state_ == State::kRequest && !request_complete_) {
    forward_request_body();
    if (state_ == State::kRequest && !request_complete_ && !upstream_write_blocked()) read_client();
  }
}

void HttpSession::on_upstream_writable() {
  if (state_ == State::kTunnel) {
    pump_tunnel();
    return;
  }
  if (state_ == State::kRequest && !request_complete_) {
    process_input();
    if (state_ == State::kRequest && !request_complete_) read_client();
  }
}

void HttpSession::on_upstream_readable() {
  if (state_ == State::kTunnel) {
    pump_tunnel();
    return;
  }
  read_upstream();
}

void HttpSession::read_upstream() {
  while (upstream_ != nullptr && state_ == State::kRequest) {
    if (response_started_ && client_write_blocked()) return;  // on_writable() resumes
    Buffer& in = upstream_->input();
    size_t n = 0;
    ReadResult r = upstream_->socket().read(in, Buffer::kBlockSize, &n);
    if (r == ReadResult::kAgain) return;
    if (r == ReadResult::kError) {
      on_upstream_error(upstream_->socket().error() ? upstream_->socket().error() : ECONNRESET, false);
      return;
    }
    if (r == ReadResult::kEof) {
      if (response_started_ && resp_body_ == BodyKind::kUntilClose) {
        // The body ends with the connection.
        if (framing_ == http1::ResponseFraming::kChunked) out_.append("0\r\n\r\n");
        flush_client();
        response_complete_ = true;
        finish_request();
        return;
      }
      on_upstream_error(ECONNRESET, false);
      return;
    }
    response_bytes_seen_ = true;
    cluster_->stats().bytes_received.inc(n);
    if (!process_response()) return;
  }
}

// Parses and forwards what is in the upstream input. False when the request
// ended (finished or failed) or forwarding must wait. Everything produced for
// the client in one pass goes out in one send (a small response's head and
// body together).
bool HttpSession::process_response() {
  bool more = parse_and_forward_response();
  flush_client();
  if (response_complete_ && state_ == State::kRequest) {
    finish_request();
    return false;
  }
  return more;
}

bool HttpSession::parse_and_forward_response() {
  Buffer& in = upstream_->input();
  while (!response_started_) {
    http1::ParseResult pr = http1::parse_response(in.view(), head_request_, resp_);
    if (pr.status == ParseStatus::kNeedMore) return true;
    if (pr.status == ParseStatus::kError) {
      cluster_->stats().protocol_errors.inc();
      upstream_failed(502, fmt::format("upstream protocol error: {}\n", pr.error));
      return false;
    }
    if (resp_.status < 200 && resp_.status != 101) {
      in.consume(pr.consumed);  // interim responses: the proxy sent its own 100
      continue;
    }
    if (resp_.status == 101 && !upgrade_requested_) {
      cluster_->stats().protocol_errors.inc();
      upstream_failed(502, "upstream protocol error: unexpected 101\n");
      return false;
    }
    status_ = resp_.status;
    response_started_ = true;
    if (!request_complete_) {
      // An early answer (e.g. 413): the rest of the request body will not be
      // read, so neither connection can be reused.
      keep_alive_ = false;
    }
    if (status_ == 101) {
      http1::serialize_response(resp_, http1::ResponseFraming::kNone, false, client_minor_, out_);
      in.consume(pr.consumed);
      // Bytes that followed the 101 belong to the new protocol.
      out_.append(in.view());
      in.clear();
      flush_client();
      request_timer_.cancel();
      state_ = State::kTunnel;
      if (!in_.empty()) {
        upstream_->socket().write(in_.view());
        in_.clear();
      }
      log_request();
      pump_tunnel();
      return false;
    }
    framing_ = http1::response_framing(resp_, head_request_, client_minor_);
    if (framing_ == http1::ResponseFraming::kClose) keep_alive_ = false;
    resp_body_ = framing_ == http1::ResponseFraming::kNone ? BodyKind::kNone : resp_.info.body;
    resp_remaining_ = resp_.info.content_length;
    http1::serialize_response(resp_, framing_, !keep_alive_, client_minor_, out_);
    in.consume(pr.consumed);
    if (resp_body_ == BodyKind::kNone || (resp_body_ == BodyKind::kContentLength && resp_remaining_ == 0)) {
      response_complete_ = true;
      return false;
    }
  }
  return forward_response_body(in);
}

bool HttpSession::forward_response_body(Buffer& in) {
  bool rechunk = framing_ == http1::ResponseFraming::kChunked;
  while (!in.empty() && !response_complete_) {
    if (resp_body_ == BodyKind::kContentLength || resp_body_ == BodyKind::kUntilClose) {
      size_t n = in.size();
      if (resp_body_ == BodyKind::kContentLength && n > resp_remaining_) n = static_cast<size_t>(resp_remaining_);
      std::string_view data(in.data(), n);
      if (rechunk) {
        out_.append_hex(n);
        out_.append("\r\n");
        out_.append(data);
        out_.append("\r\n");
      } else if (!out_.empty()) {
        out_.append(data);
      } else {
        // Nothing staged: send straight from the upstream's input, no copy.
        response_bytes_out_ += n;
        stats_->bytes_sent.inc(n);
        if (!client_.write(data)) {
          close();
          return false;
        }
      }
      in.consume(n);
      if (resp_body_ == BodyKind::kContentLength) {
        resp_remaining_ -= n;
        if (resp_remaining_ == 0) response_complete_ = true;
      }
      continue;
    }
    ChunkedDecoder::Step step = resp_chunked_.next(in.view());
    switch (step.kind) {
      case ChunkedDecoder::Kind::kData:
        if (rechunk) {
          out_.append_hex(step.data.size());
          out_.append("\r\n");
          out_.append(step.data);
          out_.append("\r\n");
        } else {
          out_.append(step.data);
        }
        in.consume(step.consumed);
        break;
      case ChunkedDecoder::Kind::kDone:
        if (rechunk) http1::serialize_last_chunk(resp_chunked_.trailers(), out_);
        in.consume(step.consumed);
        response_complete_ = true;
        break;
      case ChunkedDecoder::Kind::kNeedMore:
        in.consume(step.consumed);
        if (in.size() > http1::kMaxHeadBytes + 64) {
          cluster_->stats().protocol_errors.inc();
          upstream_failed(502, "upstream protocol error: chunk framing too large\n");
          return false;
        }
        return true;
      case ChunkedDecoder::Kind::kError:
        cluster_->stats().protocol_errors.inc();
        upstream_failed(502, fmt::format("upstream protocol error: {}\n", step.error));
        return false;
    }
  }
  return true;
}

void HttpSession::flush_client() {
  if (!out_.empty() && state_ != State::kClosed) write_client(out_);
}

void HttpSession::flush_upstream() {
  if (up_out_.empty() || upstream_ == nullptr) return;
  cluster_->stats().bytes_sent.inc(up_out_.size());
  if (!upstream_->socket().write(up_out_)) upstream_failed(502, "upstream connection reset\n");
}

void HttpSession::on_upstream_error(int error, bool during_connect) {
  if (state_ == State::kTunnel) {
    close();
    return;
  }
  if (upstream_ == nullptr) return;
  if (during_connect) {
    if (error == ETIMEDOUT) {
      upstream_failed(504, "upstream connect timeout\n");
    } else {
      upstream_failed(503, fmt::format("upstream connect error: {}\n", std::strerror(error)));
    }
    return;
  }
  if (!response_bytes_seen_ && retry_on_fresh_connection()) return;
  cluster_->stats().protocol_errors.inc();
  upstream_failed(502, response_started_ ? "upstream connection reset\n"
                                         : "upstream connection reset before response\n");
}

// A pooled keep-alive connection can be closed by the upstream just as we
// reuse it. When nothing of the response arrived and the request can be sent
// again whole (no body), try once more on a new connection.
bool HttpSession::retry_on_fresh_connection() {
  if (retried_ || upstream_ == nullptr || !upstream_->reused() || request_has_body_ ||
      response_started_)
    return false;
  retried_ = true;
  EndpointPool& pool = upstream_->pool();
  release_upstream(false);
  int error = 0;
  // Any idle connection may be just as stale: open a new one.
  upstream_ = pool.acquire(this, error, /*fresh=*/true);
  if (upstream_ == nullptr) return false;
  upstream_->count_request();
  upstream_connected_ = false;
  return upstream_->socket().write(head_out_.view());
}

void HttpSession::upstream_failed(int status, std::string_view body) {
  release_upstream(false);
  request_timer_.cancel();
  if (state_ != State::kRequest) return;
  if (response_started_) {
    // Part of the response is out: the client can only learn by the close.
    close();
    return;
  }
  local_reply(status, body, !request_complete_ || !keep_alive_);
}

void HttpSession::release_upstream(bool reusable) {
  if (upstream_ == nullptr) return;
  UpstreamConnection* c = upstream_;
  upstream_ = nullptr;
  c->pool().release(c, reusable);
}

// ---- completion ------------------------------------------------------

void HttpSession::finish_request() {
  request_timer_.cancel();
  bool reusable = resp_.info.keep_alive && request_complete_ && response_complete_ &&
                  resp_body_ != BodyKind::kUntilClose;
  release_upstream(reusable);
  log_request();
  if (!keep_alive_ || !request_complete_ || client_eof_) {
    close_gracefully();
    return;
  }
  state_ = State::kIdle;
  idle_timer_.arm(listener_->config->idle_timeout);
  if (in_.empty()) {
    in_.release();  // idle keep-alive connections hold no buffer
  } else if (!in_process_) {
    process_input();
  }
  // Bytes may have been left in the socket while the response was pending.
  if (state_ == State::kIdle && client_.read_ready()) read_client();
}

void HttpSession::local_reply(int status, std::string_view body, bool close_after) {
  release_upstream(false);
  request_timer_.cancel();
  status_ = status;
  if (close_after) keep_alive_ = false;
  out_.clear();
  http1::serialize_local_reply(status, head_request_ ? std::string_view() : body, !keep_alive_, out_);
  if (head_request_) {
    // Same head as a GET would get, without the body.
  }
  response_started_ = true;
  response_complete_ = true;
  write_client(out_);
  if (state_ == State::kClosed) return;
  if (state_ == State::kIdle) state_ = State::kRequest;
  request_complete_ = request_complete_ || !request_has_body_;
  finish_request();
}

void HttpSession::log_request() {
  Duration elapsed = worker_.loop().now() - request_start_;
  stats_->count_status(status_);
  stats_->request_duration.record(elapsed);
  if (!snapshot_->access_log) return;
  std::string& line = worker_.scratch();
  line.clear();
  char now[48];
  format_wall_time_now(now);
  line += "{\"time\":\"";
  line += now;
  line += "\",\"listener\":";
  append_json_string(line, listener_name_);
  line += ",\"client\":";
  append_json_string(line, format_address(peer_));
  line += ",\"method\":";
  append_json_string(line, method_);
  line += ",\"path\":";
  append_json_string(line, path_);
  line += ",\"host\":";
  append_json_string(line, host_);
  line += client_minor_ == 0 ? ",\"protocol\":\"HTTP/1.0\"" : ",\"protocol\":\"HTTP/1.1\"";
  fmt::format_to(std::back_inserter(line),
                 ",\"status\":{},\"bytes_received\":{},\"bytes_sent\":{},\"duration_ms\":{:.3f}",
                 status_, request_bytes_in_, response_bytes_out_,
                 std::chrono::duration<double, std::milli>(elapsed).count());
  line += ",\"upstream\":";
  append_json_string(line, upstream_address_);
  line += ",\"cluster\":";
  append_json_string(line, cluster_name_);
  line += ",\"request_id\":";
  append_json_string(line, request_id_);
  line += "}";
  worker_.log_access(line);
}

// ---- plumbing -------------------------------------------------------------

void HttpSession::write_client(Buffer& data) {
  response_bytes_out_ += data.size();
  stats_->bytes_sent.inc(data.size());
  if (!client_.write(data)) close();
}

bool HttpSession::client_write_blocked() const { return client_.pending_output() >= kHighWatermark; }

bool HttpSession::upstream_write_blocked() const {
  return upstream_ != nullptr && upstream_->socket().pending_output() >= kHighWatermark;
}

void HttpSession::pump_tunnel() {
  if (upstream_ == nullptr) {
    close();
    return;
  }
  Socket& up = upstream_->socket();
  bool progress = true;
  while (progress && state_ == State::kTunnel) {
    progress = false;
    if (up.pending_output() < kHighWatermark && !client_eof_) {
      size_t n = 0;
      ReadResult r = client_.read(out_, Buffer::kBlockSize, &n);
      if (r == ReadResult::kData) {
        stats_->bytes_received.inc(n);
        if (!up.write(out_)) return close();
        progress = true;
      } else if (r == ReadResult::kEof) {
        client_eof_ = true;
        up.shutdown_write();
      } else if (r == ReadResult::kError) {
        return close();
      }
    }
    if (client_.pending_output() < kHighWatermark && !response_complete_) {
      size_t n = 0;
      ReadResult r = up.read(out_, Buffer::kBlockSize, &n);
      if (r == ReadResult::kData) {
        stats_->bytes_sent.inc(n);
        if (!client_.write(out_)) return close();
        progress = true;
      } else if (r == ReadResult::kEof) {
        response_complete_ = true;  // upstream finished sending
        client_.shutdown_write();
      } else if (r == ReadResult::kError) {
        return close();
      }
    }
  }
  if (client_eof_ && response_complete_ && client_.pending_output() == 0 && up.pending_output() == 0)
    close();
}

void HttpSession::close_gracefully() {
  if (state_ == State::kClosed) return;
  release_upstream(false);
  state_ = State::kClosing;
  in_.clear();
  // Send what is pending, then FIN; keep reading (and dropping) for a moment
  // so unread request bytes do not turn our close into a reset that could
  // destroy the response before the client reads it.
  client_.shutdown_write();
  idle_timer_.arm(kLingerTime);
  if (client_eof_ && client_.pending_output() == 0) close();
}

void HttpSession::close() {
  if (state_ == State::kClosed) return;
  State previous = state_;
  state_ = State::kClosed;
  idle_timer_.cancel();
  request_timer_.cancel();
  release_upstream(false);
  stats_->connections_active.sub();
  (void)previous;
  client_.close();
  in_.release();
  out_.release();
  head_out_.release();
  worker_.loop().defer_delete(std::unique_ptr<Deferred>(this));
}

}  // namespace trellis::proxy
