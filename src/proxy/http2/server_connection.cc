#include "proxy/http2/server_connection.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/text.h"
#include "http/http1/parser.h"
#include "proxy/http2/session_io.h"

namespace trellis::proxy {
namespace {

using http2::connection_specific;
using http2::field;
using http2::FieldBlock;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// Stop producing output while the client has this much unsent.
constexpr size_t kHighWatermark = 256 * 1024;
// A stream's response data staged beyond this blocks its producer.
constexpr size_t kStreamBufferLimit = 64 * 1024;
// The same bounds on a header section as HTTP/1.1's head.
constexpr size_t kMaxHeaderBytes = http::http1::kMaxHeadBytes;
constexpr size_t kMaxHeaderFields = http::http1::kMaxHeaderFields;
// nghttp2's RST_STREAM allowance before its rate of 33/s applies.
constexpr uint64_t kResetBurst = 1000;
// Streams kept for reuse once their exchange ended: as many as a client
// may have open (each new stream then costs no allocation: with 100 streams
// in flight and 8 kept, making and freeing streams was a tenth of the
// proxy's CPU time under h2load -c 4 -m 100), and a few once the
// connection has been idle for a second.
constexpr size_t kSpareStreams = Http2ServerConnection::kMaxConcurrentStreams;
constexpr size_t kIdleSpareStreams = 8;
constexpr auto kSpareTrimDelay = std::chrono::seconds(1);
// Empty DATA frames in a row (no payload, no END_STREAM) a client may send.
constexpr uint32_t kMaxEmptyFrames = 100;

}  // namespace

Http2Preface http2_preface(std::string_view input) {
  size_t n = std::min(input.size(), kPreface.size());
  if (input.substr(0, n) != kPreface.substr(0, n)) return Http2Preface::kNo;
  return n == kPreface.size() ? Http2Preface::kYes : Http2Preface::kMaybe;
}

// ---- one stream: one exchange -------------------------------------------------

class Http2ServerConnection::Stream final : public http::ResponseEncoder {
 public:
  Stream(Http2ServerConnection& conn, int32_t id)
      : conn_(conn), id_(id), router_(make_server_stream(conn.worker_, *this)) {}

  int32_t id() const { return id_; }

  // The exchange ended whole (no reset, nothing malformed): the stream, its
  // router and their buffers may serve another, saving their allocation.
  bool reusable() const { return router_done_ && response_complete_ && request_complete_ && !malformed_; }
  // Ready for the exchange of stream `id`.
  void reuse(int32_t id) {
    id_ = id;
    context_ = {};
    request_.reset();
    reset_fields();
    cookie_.clear();
    trailers_in_.clear();
    trailers_out_.clear();
    body_.release();
    unconsumed_ = 0;
    bytes_in_ = bytes_out_ = 0;
    too_large_ = malformed_ = answered_locally_ = started_ = router_done_ = false;
    request_complete_ = response_started_ = response_complete_ = body_end_ = closed_ = false;
    waiting_for_room_ = request_unflushed_ = false;
  }

  // A request or trailer field (names arrive in lower case, checked by nghttp2).
  void add_field(std::string_view name, std::string_view value) {
    header_bytes_ += name.size() + value.size() + 32;  // RFC 9113 §6.5.2's accounting
    if (++header_fields_ > kMaxHeaderFields || header_bytes_ > kMaxHeaderBytes) {
      too_large_ = true;  // both only grow: every later field is over too
      return;
    }
    Field f{storage_.size(), name.size(), value.size()};
    storage_.append(name);
    storage_.append(value);
    fields_.push_back(f);
  }

  // The request's header section is complete.
  void begin_request(bool end_stream) {
    bytes_in_ += header_bytes_;
    request_complete_ = end_stream;
    // A connection lives on across config changes (between sidecars, for
    // good): each stream takes the config in force when it begins.
    bool listener_current = conn_.follow_snapshot(conn_.snapshot_, conn_.listener_, conn_.stats_);
    context_ = {conn_.snapshot_,  conn_.listener_,       conn_.stats_,
                conn_.client_ip_, conn_.client_address_, conn_.authz_client_};
    context_.authz_client.identity = conn_.client_->peer_identity();
    router_->begin(context_);
    started_ = true;
    if (!listener_current) {
      answered_locally_ = true;
      router_->reply_local(503, "listener removed\n");
      conn_.start_drain();
      return;
    }
    if (too_large_) {
      mark_malformed();
      conn_.stats_->malformed_requests.inc();
      answered_locally_ = true;
      router_->reply_local(431, "bad request: header section too large\n");
      return;
    }
    const char* problem = to_request(end_stream);
    if (problem != nullptr) {
      mark_malformed();
      conn_.stats_->malformed_requests.inc();
      answered_locally_ = true;
      router_->reply_local(400, std::string("bad request: ") + problem + "\n");
      return;
    }
    if (request_.method == "CONNECT") {
      answered_locally_ = true;
      router_->reply_local(405, "CONNECT is not supported\n");
      return;
    }
    router_->decode_headers(request_, end_stream);
    router_->flush();
  }

  void request_data(std::string_view data) {
    bytes_in_ += data.size();
    if (!forwarding()) {
      consume(data.size());
      return;
    }
    router_->decode_data(data, false);
    // Sent on once this read's frames are all taken (flush_request), as
    // HTTP/1.1 sends a read's worth: a streaming call's small messages must
    // not wait for a block to fill.
    if (!request_unflushed_) {
      request_unflushed_ = true;
      conn_.unflushed_.push_back(this);
    }
    if (router_->blocked()) {
      unconsumed_ += data.size();  // the window stays shut until the upstream takes it
    } else {
      consume(data.size());
    }
  }

  void flush_request() {
    if (std::exchange(request_unflushed_, false) && forwarding()) router_->flush();
  }

  void request_end() {
    bool forward = forwarding();
    request_complete_ = true;
    if (!forward) return;
    router_->decode_data({}, true);
    router_->flush();
  }

  void request_trailers() {
    bool forward = forwarding();
    request_complete_ = true;
    if (!forward) return;
    trailers_in_.clear();
    for (const Field& f : fields_)
      trailers_in_.push_back({std::string_view(storage_).substr(f.at, f.name),
                              std::string_view(storage_).substr(f.at + f.name, f.value)});
    router_->decode_trailers(trailers_in_);
    router_->flush();
  }

  // Starts collecting a new field section (trailers after the head).
  void reset_fields() {
    storage_.clear();
    fields_.clear();
    header_bytes_ = 0;
    header_fields_ = 0;
  }

  // nghttp2 closed the stream: the exchange is over, one way or another.
  void on_close(uint32_t error_code) {
    closed_ = true;
    stop_waiting();
    if (!started_ || router_done_) return;
    router_done_ = true;
    // Reset before the answer was whole (by the client, or by us on a
    // malformed request or a failure): the exchange was abandoned.
    if (!response_complete_) router_->on_downstream_reset();
    if (response_started_) router_->end(bytes_in_, bytes_out_);
  }

  // The data provider: what nghttp2 may send of the response body now.
  ssize_t read_body(uint8_t* buf, size_t length, uint32_t* flags) {
    size_t n = std::min(length, body_.size());
    if (n > 0) {
      std::memcpy(buf, body_.data(), n);
      body_.consume(n);
      bytes_out_ += n;
    }
    if (body_.empty() && body_end_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!trailers_out_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        const auto& nv = trailers_out_.nv();
        nghttp2_submit_trailer(conn_.session_, id_, nv.data(), nv.size());
      }
      response_complete_ = true;
      body_.release();
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }

  // After a send: the producer may go on.
  void notify_drained() {
    if (!closed_ && !router_done_ && response_started_ && !response_complete_)
      router_->on_downstream_drained();
  }

  // http::ResponseEncoder
  void encode_headers(const http::ResponseHeaders& headers, bool end_stream) override {
    if (closed_ || response_started_) return;
    response_started_ = true;
    FieldBlock& block = *conn_.response_head_;
    block.clear();
    char status[4];
    int status_code = headers.status >= 200 && headers.status <= 999 ? headers.status : 502;
    status[0] = static_cast<char>('0' + status_code / 100);
    status[1] = static_cast<char>('0' + status_code / 10 % 10);
    status[2] = static_cast<char>('0' + status_code % 10);
    block.add(":status", std::string_view(status, 3), false);
    block.add_fields(headers.headers);
    std::string length;
    if (headers.content_length >= 0 && status_code != 204) {
      length = std::to_string(headers.content_length);
      block.add("content-length", length, false);
    }
    const auto& nv = block.nv();
    for (const nghttp2_nv& f : nv) bytes_out_ += f.namelen + f.valuelen;
    bool no_body = end_stream || !headers.has_body;
    if (no_body) {
      response_complete_ = end_stream;
      body_end_ = true;
    }
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = &Http2ServerConnection::Stream::read_callback;
    int rv =
        nghttp2_submit_response(conn_.session_, id_, nv.data(), nv.size(), end_stream ? nullptr : &provider);
    if (rv != 0) {
      reset_stream();
      return;
    }
    if (end_stream) {
      response_complete_ = true;
      conn_.flush();
    }
  }

  void encode_data(std::string_view data, bool end_stream) override {
    if (closed_ || !response_started_ || body_end_) {
      if (end_stream && !closed_ && response_started_) resume();
      return;
    }
    body_.append(data);
    if (end_stream) body_end_ = true;
    resume();
    // As HTTP/1.1 does: out at the end, or once a block is staged.
    if (end_stream || body_.size() >= net::Buffer::kBlockSize) conn_.flush();
  }

  void encode_trailers(const http::HeaderList& trailers) override {
    if (closed_ || !response_started_ || body_end_) return;
    trailers_out_.add_fields(trailers, /*trailers=*/true);
    body_end_ = true;
    resume();
    conn_.flush();
  }

  void encode_continue() override {
    if (closed_ || response_started_) return;
    const nghttp2_nv continue_status[] = {field(":status", "100")};
    nghttp2_submit_headers(conn_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, continue_status, 1, nullptr);
    conn_.flush();
  }

  void flush() override { conn_.flush(); }

  bool write_blocked() const override {
    bool blocked = body_.size() >= kStreamBufferLimit || conn_.client_->pending_output() >= kHighWatermark;
    // The producer stops until told: by after_io() once there is room, on
    // this stream and on the connection.
    if (blocked && !waiting_for_room_) {
      waiting_for_room_ = true;
      ++conn_.waiting_;
    }
    return blocked;
  }

  // It waited for room and has some now (the connection has too): the wait
  // is over.
  bool room_again() {
    if (!waiting_for_room_ || body_.size() >= kStreamBufferLimit / 2) return false;
    stop_waiting();
    return true;
  }

  void resume_reading() override {
    if (unconsumed_ == 0 || router_->blocked()) return;
    size_t n = unconsumed_;
    unconsumed_ = 0;
    consume(n);
    conn_.flush();
  }

  void reset_stream() override {
    if (closed_) return;
    nghttp2_submit_rst_stream(conn_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
    conn_.flush();
  }

  bool request_complete() const { return request_complete_; }
  // True the first time: a malformed request is counted once.
  bool mark_malformed() { return !std::exchange(malformed_, true); }

 private:
  struct Field {
    size_t at, name, value;
  };

  // Whether more of the request goes to the router: not once the exchange
  // was answered (an early answer drops the rest, as for HTTP/1.1) or ended.
  bool forwarding() const {
    return started_ && !router_done_ && !request_complete_ && !response_complete_ && !answered_locally_;
  }

  static ssize_t read_callback(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                               nghttp2_data_source* source, void*) {
    return static_cast<Stream*>(source->ptr)->read_body(buf, length, flags);
  }

  void resume() { nghttp2_session_resume_data(conn_.session_, id_); }

  void stop_waiting() {
    if (!waiting_for_room_) return;
    waiting_for_room_ = false;
    --conn_.waiting_;
  }

  void consume(size_t n) {
    if (n > 0) nghttp2_session_consume(conn_.session_, id_, n);
  }

  // Fills request_ from the fields; the reason when the request is malformed.
  const char* to_request(bool end_stream) {
    request_.reset();
    request_.protocol = "HTTP/2";
    std::string_view host;
    bool cookies = false;
    for (const Field& f : fields_) {
      std::string_view name = std::string_view(storage_).substr(f.at, f.name);
      std::string_view value = std::string_view(storage_).substr(f.at + f.name, f.value);
      if (name == ":method") {
        request_.method = value;
      } else if (name == ":scheme") {
        request_.scheme = value;
      } else if (name == ":authority") {
        request_.authority = value;
      } else if (name == ":path") {
        request_.path = value;
      } else if (name == "host") {
        host = value;
      } else if (name == "cookie") {
        cookies = true;
      } else if (name == "content-length") {
        // nghttp2 checked it is one number matching the DATA.
        int64_t length = 0;
        for (char c : value) length = length * 10 + (c - '0');
        request_.content_length = length;
      } else if (name == http2::kOriginalProtocol) {
        if (value == "HTTP/1.1" || value == "HTTP/1.0")
          request_.protocol = value == "HTTP/1.1" ? "HTTP/1.1" : "HTTP/1.0";
      } else if (name == "expect") {
        request_.expect_continue = http::iequals(value, "100-continue") && !end_stream;
      } else if (!connection_specific(name)) {
        request_.headers.push_back({name, value});
      }
    }
    if (request_.authority.empty()) {
      request_.authority = host;
    } else if (!host.empty() && host != request_.authority) {
      return "the host field differs from :authority";
    }
    if (request_.authority.empty() && request_.method != "CONNECT") return "no :authority";
    if (!request_.authority.empty() && !http::http1::valid_host(request_.authority))
      return "invalid :authority";
    if (!request_.path.empty() && !http::http1::valid_target_bytes(request_.path)) return "invalid :path";
    if (cookies) {
      // RFC 9113 §8.2.3: the crumbs become one field for HTTP/1.1.
      cookie_.clear();
      for (const Field& f : fields_) {
        if (std::string_view(storage_).substr(f.at, f.name) != "cookie") continue;
        if (!cookie_.empty()) cookie_.append("; ");
        cookie_.append(std::string_view(storage_).substr(f.at + f.name, f.value));
      }
      request_.headers.push_back({"cookie", cookie_});
    }
    request_.has_body = !end_stream;
    if (end_stream) request_.content_length = 0;
    if (!request_.has_body) request_.expect_continue = false;
    return nullptr;
  }

  Http2ServerConnection& conn_;
  int32_t id_;
  std::unique_ptr<ServerStream> router_;
  DownstreamContext context_;
  http::RequestHeaders request_;
  std::string storage_;  // field names and values, one after the other
  std::vector<Field> fields_;
  std::string cookie_;
  http::HeaderList trailers_in_;
  FieldBlock trailers_out_;  // the response's, until its data is sent
  net::Buffer body_;         // response data not yet taken by nghttp2
  size_t header_bytes_ = 0;
  size_t header_fields_ = 0;
  size_t unconsumed_ = 0;  // request data received and not yet let into the window
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  bool too_large_ = false;
  bool malformed_ = false;
  bool answered_locally_ = false;  // by the codec, before the router saw the request
  bool started_ = false;
  bool router_done_ = false;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool body_end_ = false;
  bool closed_ = false;
  mutable bool waiting_for_room_ = false;
  bool request_unflushed_ = false;  // in conn_.unflushed_  // write_blocked() said so to the producer
};

// ---- nghttp2's callbacks --------------------------------------------------------

struct Http2ServerConnection::Callbacks {
  static Http2ServerConnection& self(void* user) { return *static_cast<Http2ServerConnection*>(user); }
  static Stream* stream(nghttp2_session* session, int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  // A malformed request is counted once, however many faults it has.
  static void count_malformed(nghttp2_session* session, int32_t id, void* user) {
    Stream* s = stream(session, id);
    if (s == nullptr || s->mark_malformed()) self(user).stats_->malformed_requests.inc();
  }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Http2ServerConnection& conn = self(user);
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      if (conn.draining_) {
        // Opened after our GOAWAY left: the client may send it again elsewhere.
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
      }
      std::unique_ptr<Stream> s;
      if (!conn.spare_.empty()) {
        s = std::move(conn.spare_.back());
        conn.spare_.pop_back();
        s->reuse(frame->hd.stream_id);
      } else {
        s = std::make_unique<Stream>(conn, frame->hd.stream_id);
      }
      nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s.get());
      conn.open_.push_back(std::move(s));
      conn.idle_timer_.cancel();
    } else if (Stream* s = stream(session, frame->hd.stream_id)) {
      s->reset_fields();  // trailers
    }
    return 0;
  }

  // A header section starts with HEADERS and goes on in CONTINUATION frames
  // only: any other frame means the one before is over.
  static int on_begin_frame(nghttp2_session* session, const nghttp2_frame_hd* hd, void* user) {
    Http2ServerConnection& conn = self(user);
    // DATA frames that carry nothing and end nothing cost a callback each
    // and move nothing: a run of them is a flood (CVE-2019-9518).
    if (hd->type == NGHTTP2_DATA && hd->length == 0 && (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      if (++conn.empty_frames_ > kMaxEmptyFrames)
        nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
    } else if (hd->length > 0) {
      conn.empty_frames_ = 0;
    }
    // PRIORITY frames are skipped unread (no priority tree, see SETTINGS),
    // but one on stream 0 is still a connection error (RFC 9113 §6.3), and
    // one on a stream that depends on itself too (PriorityScan, in receive).
    if (hd->type == NGHTTP2_PRIORITY && hd->stream_id == 0)
      nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
    if (hd->type == NGHTTP2_HEADERS) {
      if (!conn.note_stream_id(hd->stream_id)) {
        nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
        return 0;
      }
      conn.head_timer_.arm(conn.listener_->config->request_head_timeout);
    } else if (hd->type != NGHTTP2_CONTINUATION) {
      conn.head_timer_.cancel();
    }
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (Stream* s = stream(session, frame->hd.stream_id)) {
      s->add_field(std::string_view(reinterpret_cast<const char*>(name), namelen),
                   std::string_view(reinterpret_cast<const char*>(value), valuelen));
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_RST_STREAM) ++self(user).resets_received_;
    if (frame->hd.type == NGHTTP2_HEADERS) self(user).head_timer_.cancel();  // the section is whole
    Stream* s = frame->hd.stream_id != 0 ? stream(session, frame->hd.stream_id) : nullptr;
    if (s == nullptr) return 0;
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->begin_request(end_stream);
      } else if (end_stream) {
        s->request_trailers();
      }
    } else if (frame->hd.type == NGHTTP2_DATA && end_stream) {
      s->request_end();
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void*) {
    if (Stream* s = stream(session, id)) {
      s->request_data(std::string_view(reinterpret_cast<const char*>(data), len));
    } else {
      nghttp2_session_consume_connection(session, len);
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    // nghttp2 ends a connection that breaks the rules with GOAWAY: a flood
    // (rapid reset, CONTINUATION runs: ENHANCE_YOUR_CALM) or another error.
    // (Its RST_STREAM rate limit says INTERNAL_ERROR.)
    Http2ServerConnection& conn = self(user);
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        !conn.head_timed_out_) {
      uint32_t code = frame->goaway.error_code;
      conn.count_misbehaving(code == NGHTTP2_ENHANCE_YOUR_CALM ||
                             (code == NGHTTP2_INTERNAL_ERROR && conn.resets_received_ >= kResetBurst));
    }
    // nghttp2 resets a stream whose request broke the rules (a content-length
    // the DATA does not match, among others).
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR)
      count_malformed(session, frame->hd.stream_id, user);
    // An answer that ended before its request did: the rest of the request
    // is not wanted (RFC 9113 §8.1).
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      Stream* s = stream(session, frame->hd.stream_id);
      if (s != nullptr && !s->request_complete())
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  static int on_invalid_frame(nghttp2_session* session, const nghttp2_frame* frame, int, void* user) {
    if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)
      count_malformed(session, frame->hd.stream_id, user);
    return 0;
  }

  // A field nghttp2 finds invalid (RFC 9113 §8.2.1): the stream is reset
  // with PROTOCOL_ERROR, as without this callback, and counted.
  static int on_invalid_header(nghttp2_session* session, const nghttp2_frame* frame, nghttp2_rcbuf*,
                               nghttp2_rcbuf*, uint8_t, void* user) {
    count_malformed(session, frame->hd.stream_id, user);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }

  static int on_stream_close(nghttp2_session* session, int32_t id, uint32_t error_code, void* user) {
    if (Stream* s = stream(session, id)) {
      nghttp2_session_set_stream_user_data(session, id, nullptr);
      self(user).stream_closed(s, error_code);
    }
    return 0;
  }
};

// ---- the connection -------------------------------------------------------------

Http2ServerConnection::Http2ServerConnection(Worker& worker, Http2Handover handover)
    : WorkerConnection(worker),
      snapshot_(std::move(handover.snapshot)),
      listener_(handover.listener),
      stats_(handover.stats),
      client_(std::move(handover.client)),
      input_(std::move(handover.input)),
      client_ip_(std::move(handover.client_ip)),
      client_address_(std::move(handover.client_address)),
      authz_client_(handover.authz_client),
      response_head_(std::make_unique<http2::FieldBlock>()),
      idle_timer_(worker.loop(), [this] { start_drain(); }),
      trim_timer_(worker.loop(),
                  [this] {
                    if (open_.empty() && spare_.size() > kIdleSpareStreams) spare_.resize(kIdleSpareStreams);
                  }),
      head_timer_(worker.loop(),
                  [this] {
                    // Trickled CONTINUATION frames hold the whole connection:
                    // it is ended.
                    stats_->request_head_timeouts.inc();
                    head_timed_out_ = true;
                    draining_ = true;
                    nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
                    flush();
                  }),
      deferred_(worker.loop(), [this] {
        reap();
        if (send_wanted_) send();
        after_io();
      }) {
  client_->set_callbacks(this);
  if (!start_session()) {
    close();
    return;
  }
  idle_timer_.arm(listener_->config->idle_timeout);
  receive();
}

Http2ServerConnection::~Http2ServerConnection() {
  close();
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool Http2ServerConnection::start_session() {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxHeaderBytes)},
      // No priority tree to keep: PRIORITY frames cost nothing (RFC 9218 §2.1).
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  // Windows open as the upstreams take the data (Stream::consume).
  session_ = http2::open_session(
      /*server=*/true, this, settings, kConnectionWindow,
      [](nghttp2_session_callbacks* cb, nghttp2_option* option) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &Callbacks::on_begin_headers);
        nghttp2_session_callbacks_set_on_begin_frame_callback(cb, &Callbacks::on_begin_frame);
        nghttp2_session_callbacks_set_on_header_callback(cb, &Callbacks::on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Callbacks::on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Callbacks::on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, &Callbacks::on_frame_send);
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, &Callbacks::on_invalid_frame);
        nghttp2_session_callbacks_set_on_invalid_header_callback2(cb, &Callbacks::on_invalid_header);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Callbacks::on_stream_close);
        // Floods nghttp2 ends the connection for, at its defaults: RST_STREAM
        // faster than 1,000 at once then 33/s (rapid reset, CVE-2023-44487),
        // more than 8 CONTINUATION frames to a header section
        // (CVE-2024-28182), more than 1,000 PING or SETTINGS acknowledgements
        // the client does not read, SETTINGS frames of over 32 entries.
        // Closed streams are not kept.
        nghttp2_option_set_no_closed_streams(option, 1);
      });
  return session_ != nullptr;
}

void Http2ServerConnection::count_misbehaving(bool flood) {
  if (std::exchange(misbehaved_, true)) return;  // once per connection
  (flood ? stats_->http2_flood_closes : stats_->http2_protocol_closes).inc();
}

void Http2ServerConnection::start_drain() {
  if (closed_ || draining_) return;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  flush();
}

bool Http2ServerConnection::note_stream_id(int32_t id) {
  if (id % 2 == 0) return true;  // nghttp2 refuses these itself
  if (id > highest_stream_id_) {
    int32_t next = highest_stream_id_ == 0 ? 1 : highest_stream_id_ + 2;
    if (id > next) {
      // Kept for the last 8 skips: a client that skips more often than
      // that sees the older ones ignored, as closed streams are.
      if (skipped_ids_.size() == 8) skipped_ids_.erase(skipped_ids_.begin());
      skipped_ids_.emplace_back(next, id - 2);
    }
    highest_stream_id_ = id;
    return true;
  }
  for (const auto& [first, last] : skipped_ids_)
    if (id >= first && id <= last) return false;
  return true;
}

void Http2ServerConnection::on_readable() {
  reap();
  receive();
}

void Http2ServerConnection::receive() {
  while (!closed_) {
    if (!input_.empty()) {
      std::string_view fresh(input_.data() + scanned_, input_.size() - scanned_);
      scanned_ = input_.size();
      if (priority_scan_.self_dependency(fresh)) {
        nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
        send();
        close();
        return;
      }
      in_recv_ = true;
      ssize_t rv =
          nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(input_.data()), input_.size());
      in_recv_ = false;
      if (rv < 0) {
        // Fatal: a flood, or no HTTP/2 after all (a broken preface).
        count_misbehaving(rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS);
        send();
        close();
        return;
      }
      input_.consume(static_cast<size_t>(rv));
      scanned_ -= static_cast<size_t>(rv);
      send();
      if (closed_) return;
    }
    // Frames are read on while the client does not read ours: what they
    // cost is bounded by HTTP/2 itself (100 streams, their windows), and
    // nghttp2 ends a connection whose unread PING or SETTINGS
    // acknowledgements pile up past 1,000 (a flood, not a slow reader).
    size_t n = 0;
    net::ReadResult r = client_->read(input_, net::Buffer::kBlockSize, &n);
    if (r == net::ReadResult::kAgain) break;
    if (r != net::ReadResult::kData) {
      close();
      return;
    }
    stats_->bytes_received.inc(n);
  }
  // Streams stay allocated until reap(): none of these is freed yet.
  for (size_t i = 0; i < unflushed_.size() && !closed_; ++i) unflushed_[i]->flush_request();
  unflushed_.clear();
  if (input_.empty()) input_.release();
  after_io();
}

void Http2ServerConnection::flush() {
  if (closed_) return;
  // Frames wait for the end of the loop's pass (deferred_): the responses
  // of every stream that became ready in one pass leave in one write. With
  // 100 streams per connection, one write per response was half of the
  // proxy's syscalls (bench/h2.py: 2.0 sendto per request, 1.1 after).
  send_wanted_ = true;
  if (!in_recv_) deferred_.arm(Duration::zero());
}

void Http2ServerConnection::send() {
  if (closed_ || in_send_) return;
  in_send_ = true;
  send_wanted_ = false;
  int64_t sent = http2::send_frames(session_, *client_, output_, kHighWatermark);
  in_send_ = false;
  if (sent < 0) {
    close();
    return;
  }
  stats_->bytes_sent.inc(static_cast<uint64_t>(sent));
  if (open_.empty()) output_.release();  // idle connections hold no buffer
  if (send_wanted_) deferred_.arm(Duration::zero());
}

void Http2ServerConnection::after_io() {
  if (closed_) return;
  // Producers that waited for room go on (outside nghttp2's callbacks):
  // room on their stream and on the connection, whichever they waited for.
  if (waiting_ > 0 && client_->pending_output() < kHighWatermark) {
    drained_.clear();
    for (const auto& s : open_)
      if (s->room_again()) drained_.push_back(s.get());
    // A notified producer may end other streams: they stay allocated (in
    // the graveyard) until reap(), and are told nothing once closed.
    for (Stream* s : drained_) {
      s->notify_drained();
      if (closed_) return;
    }
  }
  if (!graveyard_.empty()) deferred_.arm(Duration::zero());
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 &&
      client_->pending_output() == 0) {
    close();
    return;
  }
  if (open_.empty() && spare_.size() > kIdleSpareStreams && !trim_timer_.armed())
    trim_timer_.arm(kSpareTrimDelay);
  if (open_.empty() && !idle_timer_.armed() && !draining_) idle_timer_.arm(listener_->config->idle_timeout);
}

void Http2ServerConnection::on_writable() {
  if (closed_) return;
  reap();
  send();
  after_io();
  // Input left in the socket while the client was not reading.
  if (!closed_ && client_->read_ready()) receive();
}

void Http2ServerConnection::on_transport_error(int) { close(); }

void Http2ServerConnection::stream_closed(Stream* stream, uint32_t error_code) {
  auto it = std::find_if(open_.begin(), open_.end(), [stream](const auto& s) { return s.get() == stream; });
  if (it == open_.end()) return;
  std::unique_ptr<Stream> owned = std::move(*it);
  open_.erase(it);
  owned->on_close(error_code);
  // Freed later: its router may be on the call stack.
  graveyard_.push_back(std::move(owned));
  if (!closed_) deferred_.arm(Duration::zero());
}

void Http2ServerConnection::reap() {
  // Streams that ended whole wait for the next ones (a few: what a client
  // has in flight at once comes back as often).
  for (auto& s : graveyard_) {
    if (!closed_ && s->reusable() && spare_.size() < kSpareStreams) spare_.push_back(std::move(s));
  }
  graveyard_.clear();
}

void Http2ServerConnection::close() {
  if (closed_) return;
  closed_ = true;
  idle_timer_.cancel();
  trim_timer_.cancel();
  head_timer_.cancel();
  deferred_.cancel();
  // Every exchange still open ends as reset by the client.
  std::vector<std::unique_ptr<Stream>> open = std::move(open_);
  open_.clear();
  drained_.clear();
  unflushed_.clear();
  for (auto& s : open) {
    if (session_ != nullptr) nghttp2_session_set_stream_user_data(session_, s->id(), nullptr);
    s->on_close(NGHTTP2_CANCEL);
  }
  for (auto& s : open) graveyard_.push_back(std::move(s));
  spare_.clear();
  stats_->connections_active.sub();
  client_->close();
  input_.release();
  output_.release();
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

}  // namespace trellis::proxy
