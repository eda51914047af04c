#include "proxy/http2/upstream_codec.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "http/http1/parser.h"
#include "proxy/http2/session_io.h"
#include "proxy/upstream/cluster.h"

namespace trellis::proxy {
namespace {

// Stop producing frames while the connection has this much unsent.
constexpr size_t kHighWatermark = 256 * 1024;
// A stream's request data staged beyond this blocks its producer.
constexpr size_t kStreamBufferLimit = 64 * 1024;
// The same bounds on a response's header section as HTTP/1.1's head.
constexpr size_t kMaxHeaderBytes = http::http1::kMaxHeadBytes;
constexpr size_t kMaxHeaderFields = http::http1::kMaxHeaderFields;

}  // namespace

// ---- nghttp2's callbacks --------------------------------------------------------

struct Http2UpstreamSession::Callbacks {
  static Http2UpstreamSession& self(void* user) { return *static_cast<Http2UpstreamSession*>(user); }
  // The codec of a stream; none once the connection was closed from inside
  // this receive (its codecs may serve other exchanges by now).
  static Http2UpstreamCodec* codec(nghttp2_session* session, int32_t id, void* user) {
    if (self(user).closed_) return nullptr;
    return static_cast<Http2UpstreamCodec*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (Http2UpstreamCodec* c = codec(session, frame->hd.stream_id, user)) c->reset_fields();
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (Http2UpstreamCodec* c = codec(session, frame->hd.stream_id, user)) {
      c->add_field(std::string_view(reinterpret_cast<const char*>(name), namelen),
                   std::string_view(reinterpret_cast<const char*>(value), valuelen));
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      // No new streams here; nghttp2 closes those the endpoint will not
      // process with REFUSED_STREAM, and they are sent again elsewhere.
      self(user).going_away_ = true;
      return 0;
    }
    Http2UpstreamCodec* c = frame->hd.stream_id != 0 ? codec(session, frame->hd.stream_id, user) : nullptr;
    if (c == nullptr) return 0;
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      c->headers_received(end_stream);
    } else if (frame->hd.type == NGHTTP2_DATA && end_stream) {
      c->end_received();
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* user) {
    if (Http2UpstreamCodec* c = codec(session, id, user)) {
      c->data_received(std::string_view(reinterpret_cast<const char*>(data), len));
    } else {
      nghttp2_session_consume_connection(session, len);
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, int32_t id, uint32_t error_code, void* user) {
    if (Http2UpstreamCodec* c = codec(session, id, user)) {
      nghttp2_session_set_stream_user_data(session, id, nullptr);
      c->stream_closed(error_code);
    }
    return 0;
  }
};

// ---- the connection -------------------------------------------------------------

Http2UpstreamSession::Http2UpstreamSession(Http2Sessions& owner, EndpointPool& pool)
    : owner_(owner),
      pool_(pool),
      transport_(pool.transport_factory()),
      idle_timer_(pool.loop(), [this] { close(http::UpstreamFailure::kReset, "idle"); }),
      deferred_(pool.loop(), [this] {
        if (send_wanted_) send();
        after_io();
      }) {}

Http2UpstreamSession::~Http2UpstreamSession() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool Http2UpstreamSession::open(int& error) {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxHeaderBytes)},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  // Windows open as the clients take the responses (Http2UpstreamCodec).
  session_ = http2::open_session(
      /*server=*/false, this, settings, kConnectionWindow,
      [](nghttp2_session_callbacks* cb, nghttp2_option* option) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &Callbacks::on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, &Callbacks::on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Callbacks::on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Callbacks::on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Callbacks::on_stream_close);
        // Until the endpoint's SETTINGS arrive, as many streams as we allow.
        nghttp2_option_set_peer_max_concurrent_streams(option, kMaxStreams);
      });
  if (session_ == nullptr) {
    error = ENOMEM;
    return false;
  }
  conn_ = pool_.acquire(this, error, /*fresh=*/true);
  if (conn_ == nullptr) return false;
  conn_->count_request();  // a connection of ours is never idle in the pool
  return true;
}

bool Http2UpstreamSession::has_room() const {
  if (closed_ || going_away_ || transport_ != pool_.transport_factory() || pool_.retired()) return false;
  uint32_t limit = std::min(
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), kMaxStreams);
  // Stream ids run out after 2^30 requests: a new connection takes over.
  return attached_.size() < limit && nghttp2_session_get_next_stream_id(session_) < (1u << 31) - 1;
}

const std::string& Http2UpstreamSession::endpoint() const { return pool_.address().text; }

void Http2UpstreamSession::attach(Http2UpstreamCodec* codec) {
  attached_.push_back(codec);
  ++started_;
  idle_timer_.cancel();
}

void Http2UpstreamSession::detach(Http2UpstreamCodec* codec) {
  auto it = std::find(attached_.begin(), attached_.end(), codec);
  if (it == attached_.end()) return;
  attached_.erase(it);
  std::erase(drained_, codec);
  std::erase(to_flush_, codec);
  if (closed_) return;
  size_t owed = codec->take_unconsumed();
  if (owed > 0) nghttp2_session_consume_connection(session_, owed);
  if (codec->stream_open_) {
    nghttp2_session_set_stream_user_data(session_, codec->stream_id_, nullptr);
    codec->stream_open_ = false;
    // Both ends sent: nghttp2 closes the stream right after this callback.
    if (!codec->response_complete_ || !codec->request_ended_) {
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, codec->stream_id_, NGHTTP2_CANCEL);
      flush();
    }
  }
  idle_check();
}

int32_t Http2UpstreamSession::submit(Http2UpstreamCodec* codec, const std::vector<nghttp2_nv>& fields,
                                     bool end_stream) {
  if (closed_) return NGHTTP2_ERR_INVALID_STATE;
  nghttp2_data_provider provider{};
  provider.source.ptr = codec;
  provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                              nghttp2_data_source* source, void*) -> ssize_t {
    return static_cast<Http2UpstreamCodec*>(source->ptr)->read_body(buf, length, flags);
  };
  return nghttp2_submit_request(session_, nullptr, fields.data(), fields.size(),
                                end_stream ? nullptr : &provider, codec);
}

void Http2UpstreamSession::resume(int32_t stream_id) {
  if (!closed_) nghttp2_session_resume_data(session_, stream_id);
}

void Http2UpstreamSession::consume(int32_t stream_id, size_t n) {
  if (!closed_ && n > 0) nghttp2_session_consume(session_, stream_id, n);
}

void Http2UpstreamSession::submit_trailers(int32_t stream_id, const std::vector<nghttp2_nv>& fields) {
  if (!closed_) nghttp2_submit_trailer(session_, stream_id, fields.data(), fields.size());
}

bool Http2UpstreamSession::write_blocked() const {
  return !closed_ && conn_->transport().pending_output() + output_.size() >= kHighWatermark;
}

void Http2UpstreamSession::flush() {
  if (closed_) return;
  // As Http2ServerConnection::flush: the requests of every client served in
  // one pass of the loop leave in one write (one TLS record between
  // sidecars), not one each.
  send_wanted_ = true;
  if (!in_recv_ && connected_) deferred_.arm(Duration::zero());
}

void Http2UpstreamSession::send() {
  if (closed_ || in_send_ || !connected_) return;
  in_send_ = true;
  send_wanted_ = false;
  int64_t sent = http2::send_frames(session_, conn_->transport(), output_, kHighWatermark);
  in_send_ = false;
  if (sent < 0) {
    close(http::UpstreamFailure::kReset, "upstream connection reset");
    return;
  }
  pool_.cluster().stats().bytes_sent.inc(static_cast<uint64_t>(sent));
  if (attached_.empty()) output_.release();
}

void Http2UpstreamSession::flush_later(Http2UpstreamCodec* codec) {
  if (std::find(to_flush_.begin(), to_flush_.end(), codec) == to_flush_.end()) to_flush_.push_back(codec);
}

void Http2UpstreamSession::flush_responses() {
  // Once per read, not once per frame: a response's HEADERS and DATA go to
  // its client in one write. A flush may finish other exchanges: detach()
  // takes them off the list.
  while (!to_flush_.empty() && !closed_) {
    Http2UpstreamCodec* c = to_flush_.back();
    to_flush_.pop_back();
    c->decoder_->flush_response();
  }
}

void Http2UpstreamSession::after_io() {
  if (closed_) return;
  // Producers that waited for room go on, outside nghttp2's callbacks.
  if (conn_->transport().pending_output() < kHighWatermark) {
    drained_.clear();
    for (Http2UpstreamCodec* c : attached_)
      if (c->room_again()) drained_.push_back(c);
    // A notified producer may finish other exchanges: detach() takes them
    // off this list.
    while (!drained_.empty() && !closed_) {
      Http2UpstreamCodec* c = drained_.back();
      drained_.pop_back();
      c->notify_drained();
    }
  }
  if (closed_) return;
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 &&
      conn_->transport().pending_output() == 0) {
    close(http::UpstreamFailure::kReset, "upstream connection closed");
    return;
  }
  idle_check();
}

void Http2UpstreamSession::idle_check() {
  if (closed_ || !attached_.empty()) return;
  if (going_away_ || pool_.retired() || transport_ != pool_.transport_factory()) {
    close(http::UpstreamFailure::kReset, "closed");
    return;
  }
  if (!idle_timer_.armed()) idle_timer_.arm(pool_.cluster().config().idle_timeout);
}

void Http2UpstreamSession::close_if_idle() {
  if (attached_.empty()) close(http::UpstreamFailure::kReset, "closed");
}

void Http2UpstreamSession::on_upstream_connected() {
  if (closed_) return;
  // Over TLS, the handshake agreed to "h2" (the only protocol offered) or
  // to nothing, which leaves prior knowledge.
  connected_ = true;
  send();
  after_io();
}

void Http2UpstreamSession::on_upstream_readable() { receive(); }

void Http2UpstreamSession::on_upstream_writable() {
  if (closed_) return;
  send();
  after_io();
  if (!closed_ && conn_->transport().read_ready()) receive();
}

void Http2UpstreamSession::on_upstream_error(int error, bool during_connect) {
  if (!during_connect) {
    close(http::UpstreamFailure::kReset, "upstream connection reset");
  } else if (error == ETIMEDOUT) {
    close(http::UpstreamFailure::kConnectTimeout, "upstream connect timeout");
  } else {
    close(http::UpstreamFailure::kConnectFailed, std::strerror(error));
  }
}

void Http2UpstreamSession::receive() {
  net::Buffer& in = conn_->input();
  while (!closed_) {
    if (!in.empty()) {
      in_recv_ = true;
      ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
      in_recv_ = false;
      if (closed_) return;
      if (rv < 0) {
        pool_.cluster().stats().protocol_errors.inc();
        send();  // the GOAWAY that says why
        close(http::UpstreamFailure::kProtocolError, nghttp2_strerror(static_cast<int>(rv)));
        return;
      }
      in.consume(static_cast<size_t>(rv));
      flush_responses();
      if (closed_) return;
      send();
      if (closed_) return;
    }
    size_t n = 0;
    net::ReadResult r = conn_->transport().read(in, net::Buffer::kBlockSize, &n);
    if (r == net::ReadResult::kAgain) break;
    if (r != net::ReadResult::kData) {
      close(http::UpstreamFailure::kReset, "upstream connection reset");
      return;
    }
    pool_.cluster().stats().bytes_received.inc(n);
  }
  if (in.empty()) in.release();
  after_io();
}

void Http2UpstreamSession::close(http::UpstreamFailure failure, std::string_view detail) {
  if (closed_) return;
  closed_ = true;
  idle_timer_.cancel();
  deferred_.cancel();
  owner_.remove(this);
  std::vector<Http2UpstreamCodec*> attached = std::move(attached_);
  attached_.clear();
  drained_.clear();
  to_flush_.clear();
  std::string reason(detail);
  // Each exchange still here fails; the codec stays active until its router
  // finishes it, which it may do from inside this call.
  for (Http2UpstreamCodec* c : attached) c->stream_open_ = false;
  for (Http2UpstreamCodec* c : attached) {
    // Not one finished meanwhile and started again elsewhere.
    if (c->session_ == this) c->connection_failed(failure, reason);
  }
  if (conn_ != nullptr) {
    conn_->set_user(nullptr);
    pool_.release(conn_, false);
    conn_ = nullptr;
  }
  output_.release();
  pool_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

// ---- the connections to one endpoint --------------------------------------------

Http2Sessions::~Http2Sessions() {
  std::vector<Http2UpstreamSession*> open = sessions_;
  for (Http2UpstreamSession* s : open) s->close(http::UpstreamFailure::kReset, "upstream connection closed");
}

void Http2Sessions::close_idle() {
  std::vector<Http2UpstreamSession*> open = sessions_;
  for (Http2UpstreamSession* s : open) s->close_if_idle();
}

Http2UpstreamSession* Http2Sessions::session_for(EndpointPool& pool, int& error) {
  for (Http2UpstreamSession* s : sessions_)
    if (s->has_room()) return s;
  auto* s = new Http2UpstreamSession(*this, pool);
  if (!s->open(error)) {
    delete s;
    return nullptr;
  }
  sessions_.push_back(s);
  return s;
}

void Http2Sessions::remove(Http2UpstreamSession* session) { std::erase(sessions_, session); }

// ---- one exchange -----------------------------------------------------------------

Http2UpstreamCodec::Http2UpstreamCodec(net::EventLoop& loop, http::ResponseDecoder& decoder, bool mesh)
    : decoder_(&decoder), mesh_(mesh), fail_later_(loop, [this] {
        if (session_ != nullptr) fail(failure_, failure_detail_);
      }) {}

Http2UpstreamCodec::~Http2UpstreamCodec() { finish(false); }

bool Http2UpstreamCodec::start(EndpointPool& pool, bool fresh, bool head_request, int& error) {
  finish(false);
  auto* sessions = static_cast<Http2Sessions*>(pool.shared_connections());
  if (sessions == nullptr) {
    auto made = std::make_unique<Http2Sessions>();
    sessions = made.get();
    pool.set_shared_connections(std::move(made));
  }
  // `fresh` asks for a connection other than one that failed the last try:
  // a connection that failed (or refused streams on GOAWAY) takes no new
  // streams, so any with room will do.
  (void)fresh;
  Http2UpstreamSession* session = sessions->session_for(pool, error);
  if (session == nullptr) return false;
  session_ = session;
  session->attach(this);
  reused_ = session->reused();
  head_request_ = head_request;
  stream_id_ = 0;
  refused_ = bytes_seen_ = response_started_ = response_complete_ = stream_open_ = body_end_ = false;
  request_ended_ = false;
  waiting_for_room_ = too_large_ = false;
  body_.clear();
  trailers_out_.clear();
  unconsumed_ = 0;
  reset_fields();
  fail_later_.cancel();
  return true;
}

void Http2UpstreamCodec::finish(bool) {
  Http2UpstreamSession* session = std::exchange(session_, nullptr);
  fail_later_.cancel();
  if (session == nullptr) return;
  session->detach(this);
  stream_open_ = false;
  body_.release();
}

size_t Http2UpstreamCodec::take_unconsumed() { return std::exchange(unconsumed_, 0); }

// ---- request --------------------------------------------------------------

void Http2UpstreamCodec::encode_headers(const http::RequestHeaders& headers, bool end_stream) {
  if (session_ == nullptr || stream_id_ != 0) return;
  if (!headers.upgrade.empty()) {
    // HTTP/2 has no Upgrade (RFC 9113 §8.6).
    failure_ = http::UpstreamFailure::kProtocolError;
    failure_detail_ = "an upgrade to " + std::string(headers.upgrade) + " cannot be carried over HTTP/2";
    fail_later_.arm(Duration::zero());
    return;
  }
  http2::FieldBlock& block = fields_out_;
  block.clear();
  block.add(":method", headers.method, false);
  block.add(":scheme", headers.scheme.empty() ? std::string_view("http") : headers.scheme, false);
  block.add(":authority",
            headers.authority.empty() ? std::string_view(session_->endpoint()) : headers.authority, false);
  block.add(":path", headers.path.empty() ? std::string_view("/") : headers.path, false);
  block.add_fields(headers.headers);
  // gRPC servers want it, and HTTP/1.1 clients' TE is hop-by-hop.
  if (http::is_grpc(headers.headers)) block.add("te", "trailers", false);
  if (mesh_ && headers.protocol.starts_with("HTTP/1"))
    block.add(http2::kOriginalProtocol, headers.protocol, false);
  char length[24];
  if (headers.has_body && headers.content_length >= 0) {
    auto [end, ec] = std::to_chars(length, length + sizeof length, headers.content_length);
    block.add("content-length", std::string_view(length, static_cast<size_t>(end - length)), false);
  }
  bool no_body = end_stream || !headers.has_body;
  body_end_ = request_ended_ = no_body;
  int32_t id = session_->submit(this, block.nv(), no_body);
  if (id < 0) {
    refused_ = true;  // never sent: safe to send again elsewhere
    failure_ = http::UpstreamFailure::kReset;
    failure_detail_ = std::string("upstream stream not opened: ") + nghttp2_strerror(id);
    fail_later_.arm(Duration::zero());
    return;
  }
  stream_id_ = id;
  stream_open_ = true;
}

void Http2UpstreamCodec::encode_data(std::string_view data, bool end_stream) {
  if (!stream_open_ || body_end_) return;
  body_.append(data);
  if (end_stream) body_end_ = true;
  session_->resume(stream_id_);
  if (end_stream || body_.size() >= net::Buffer::kBlockSize) session_->flush();
}

void Http2UpstreamCodec::encode_trailers(const http::HeaderList& trailers) {
  if (!stream_open_ || body_end_) return;
  trailers_out_.add_fields(trailers, /*trailers=*/true);
  body_end_ = true;
  session_->resume(stream_id_);
  session_->flush();
}

void Http2UpstreamCodec::flush() {
  if (stream_open_) session_->flush();
}

bool Http2UpstreamCodec::write_blocked() const {
  if (!stream_open_) return false;
  bool blocked = body_.size() >= kStreamBufferLimit || session_->write_blocked();
  // The producer stops until the session tells it there is room again.
  if (blocked) const_cast<Http2UpstreamCodec*>(this)->waiting_for_room_ = true;
  return blocked;
}

bool Http2UpstreamCodec::room_again() {
  if (!waiting_for_room_ || body_.size() >= kStreamBufferLimit / 2) return false;
  waiting_for_room_ = false;
  return true;
}

void Http2UpstreamCodec::notify_drained() {
  if (stream_open_ && !response_complete_) decoder_->on_upstream_drained();
}

long Http2UpstreamCodec::read_body(uint8_t* buf, size_t length, uint32_t* flags) {
  size_t n = std::min(length, body_.size());
  if (n > 0) {
    std::memcpy(buf, body_.data(), n);
    body_.consume(n);
  }
  if (body_.empty() && body_end_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    request_ended_ = true;
    if (!trailers_out_.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      session_->submit_trailers(stream_id_, trailers_out_.nv());
    }
    body_.release();
  } else if (n == 0) {
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<long>(n);
}

void Http2UpstreamCodec::resume_reading() {
  if (!stream_open_ || unconsumed_ == 0 || decoder_->response_blocked()) return;
  session_->consume(stream_id_, std::exchange(unconsumed_, 0));
  session_->flush();
}

// ---- response -------------------------------------------------------------

void Http2UpstreamCodec::reset_fields() {
  storage_.clear();
  fields_.clear();
  header_bytes_ = 0;
  too_large_ = false;
}

void Http2UpstreamCodec::add_field(std::string_view name, std::string_view value) {
  header_bytes_ += name.size() + value.size() + 32;  // RFC 9113 §6.5.2's accounting
  if (fields_.size() >= kMaxHeaderFields || header_bytes_ > kMaxHeaderBytes) {
    too_large_ = true;
    return;
  }
  fields_.push_back({storage_.size(), name.size(), value.size()});
  storage_.append(name);
  storage_.append(value);
}

void Http2UpstreamCodec::headers_received(bool end_stream) {
  bytes_seen_ = true;
  if (too_large_) {
    session_->pool().cluster().stats().protocol_errors.inc();
    fail(http::UpstreamFailure::kProtocolError, "response header section too large");
    return;
  }
  if (!response_started_) {
    response_head(end_stream);
    return;
  }
  // Trailers: they end the stream (nghttp2 refuses any that do not).
  trailers_in_.clear();
  for (const Field& f : fields_)
    trailers_in_.push_back({std::string_view(storage_).substr(f.at, f.name),
                            std::string_view(storage_).substr(f.at + f.name, f.value)});
  response_complete_ = true;
  Http2UpstreamSession* session = session_;
  int32_t id = stream_id_;
  decoder_->decode_response_trailers(trailers_in_);
  flush_response(session, id);
}

void Http2UpstreamCodec::flush_response(Http2UpstreamSession* session, int32_t id) {
  // Not once the exchange was finished (and maybe another started) meanwhile.
  if (session_ == session && stream_id_ == id) session->flush_later(this);
}

void Http2UpstreamCodec::response_head(bool end_stream) {
  int status = 0;
  int64_t content_length = -1;
  response_ = {};
  for (const Field& f : fields_) {
    std::string_view name = std::string_view(storage_).substr(f.at, f.name);
    std::string_view value = std::string_view(storage_).substr(f.at + f.name, f.value);
    if (name == ":status") {
      // nghttp2 checked it is three digits.
      for (char c : value) status = status * 10 + (c - '0');
    } else if (name == "content-length") {
      // nghttp2 checked it is one number, and will hold the DATA to it.
      content_length = 0;
      for (char c : value) content_length = content_length * 10 + (c - '0');
    } else if (!name.empty() && name[0] != ':') {
      response_.headers.push_back({name, value});
    }
  }
  if (status < 200) {
    reset_fields();  // interim: the router answered Expect itself
    return;
  }
  response_.status = status;
  response_.has_body = !head_request_ && status != 204 && status != 304;
  if (end_stream && response_.has_body && content_length < 0) content_length = 0;
  response_.content_length = content_length;
  response_started_ = true;
  if (end_stream) response_complete_ = true;
  Http2UpstreamSession* session = session_;
  int32_t id = stream_id_;
  decoder_->decode_response_headers(response_, end_stream);
  flush_response(session, id);
}

void Http2UpstreamCodec::data_received(std::string_view data) {
  bytes_seen_ = true;
  // Owed to the windows until the client takes it; what is owed when the
  // exchange ends goes back to the connection's window then.
  unconsumed_ += data.size();
  Http2UpstreamSession* session = session_;
  int32_t id = stream_id_;
  if (!response_started_ || response_complete_) {
    resume_reading();
    return;
  }
  decoder_->decode_response_data(data, false);
  if (session_ != session || stream_id_ != id) return;  // finished meanwhile
  resume_reading();
  session->flush_later(this);
}

void Http2UpstreamCodec::end_received() {
  if (!response_started_ || response_complete_) return;
  response_complete_ = true;
  Http2UpstreamSession* session = session_;
  int32_t id = stream_id_;
  decoder_->decode_response_data({}, true);
  flush_response(session, id);
}

void Http2UpstreamCodec::stream_closed(uint32_t error_code) {
  stream_open_ = false;
  if (response_complete_) return;
  if (error_code == NGHTTP2_REFUSED_STREAM) {
    refused_ = true;
    fail(http::UpstreamFailure::kReset, "upstream refused the stream");
  } else if (error_code == NGHTTP2_PROTOCOL_ERROR) {
    fail(http::UpstreamFailure::kProtocolError, "upstream stream reset (PROTOCOL_ERROR)");
  } else {
    fail(http::UpstreamFailure::kReset,
         std::string("upstream reset the stream (") + nghttp2_http2_strerror(error_code) + ")");
  }
}

void Http2UpstreamCodec::connection_failed(http::UpstreamFailure failure, std::string_view detail) {
  if (response_complete_) return;
  fail(failure, detail);
}

void Http2UpstreamCodec::fail(http::UpstreamFailure failure, std::string_view detail) {
  fail_later_.cancel();
  decoder_->on_upstream_failure(failure, detail);
}

std::unique_ptr<UpstreamCodec> Http2UpstreamCodecFactory::make(net::EventLoop& loop,
                                                               http::ResponseDecoder& decoder) const {
  return std::make_unique<Http2UpstreamCodec>(loop, decoder, mesh_);
}

const std::shared_ptr<const UpstreamCodecFactory>& Http2UpstreamCodecFactory::shared() {
  static const std::shared_ptr<const UpstreamCodecFactory> factory =
      std::make_shared<Http2UpstreamCodecFactory>(false);
  return factory;
}

const std::shared_ptr<const UpstreamCodecFactory>& Http2UpstreamCodecFactory::mesh() {
  static const std::shared_ptr<const UpstreamCodecFactory> factory =
      std::make_shared<Http2UpstreamCodecFactory>(true);
  return factory;
}

}  // namespace trellis::proxy
