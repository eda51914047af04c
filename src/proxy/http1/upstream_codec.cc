#include "proxy/http1/upstream_codec.h"

#include <cerrno>
#include <cstring>

#include "http/http1/wire.h"

namespace trellis::proxy {
namespace {
constexpr size_t kHighWatermark = 256 * 1024;
}  // namespace

Http1UpstreamCodec::Http1UpstreamCodec(net::EventLoop& loop, http::ResponseDecoder& decoder)
    : decoder_(&decoder), fail_later_(loop, [this] {
        if (conn_ != nullptr) fail(http::UpstreamFailure::kReset, "upstream connection reset");
      }) {}

Http1UpstreamCodec::~Http1UpstreamCodec() { finish(false); }

bool Http1UpstreamCodec::start(EndpointPool& pool, bool fresh, bool head_request, int& error) {
  finish(false);
  UpstreamConnection* connection = pool.acquire(this, error, fresh);
  if (connection == nullptr) return false;
  conn_ = connection;
  reused_ = conn_->reused();
  conn_->count_request();
  head_request_ = head_request;
  out_.clear();
  request_chunked_ = request_complete_ = upgrade_requested_ = false;
  request_remaining_ = 0;
  bytes_seen_ = response_started_ = response_complete_ = tunnel_ = write_failed_ = false;
  body_ = http::http1::BodyKind::kNone;
  remaining_ = 0;
  chunked_.reset();
  fail_later_.cancel();
  return true;
}

void Http1UpstreamCodec::finish(bool keep) {
  UpstreamConnection* c = conn_;
  if (c == nullptr) return;
  bool reuse = keep && reusable();
  c->set_user(nullptr);
  conn_ = nullptr;
  out_.release();  // to the thread's pool: a router kept for a keep-alive client holds no block
  fail_later_.cancel();
  c->pool().release(c, reuse);
}

bool Http1UpstreamCodec::reusable() const {
  return conn_ != nullptr && request_complete_ && response_complete_ && !tunnel_ && !write_failed_ &&
         head_.info.keep_alive && body_ != http::http1::BodyKind::kUntilClose && out_.empty();
}

// ---- request --------------------------------------------------------------

void Http1UpstreamCodec::encode_headers(const http::RequestHeaders& headers, bool end_stream) {
  // An HTTP/1.0 client may send no Host; HTTP/1.1 requires one, so the
  // endpoint's address stands in.
  http::http1::serialize_request(
      headers, conn_ != nullptr ? std::string_view(conn_->pool().address().text) : "", out_);
  upgrade_requested_ = !headers.upgrade.empty();
  request_chunked_ = headers.has_body && headers.content_length < 0;
  request_remaining_ =
      headers.has_body && headers.content_length > 0 ? static_cast<uint64_t>(headers.content_length) : 0;
  request_complete_ = !headers.has_body || (!request_chunked_ && request_remaining_ == 0);
  (void)end_stream;  // the framing above says when the request ends on this wire
}

void Http1UpstreamCodec::encode_data(std::string_view data, bool end_stream) {
  if (conn_ == nullptr) return;
  if (tunnel_) {
    if (!data.empty()) {
      if (out_.empty()) {
        conn_->pool().cluster().stats().bytes_sent.inc(data.size());
        if (!conn_->transport().write(data)) write_failed_ = true;
      } else {
        out_.append(data);
      }
    }
    if (end_stream) {
      flush();
      if (conn_ != nullptr) conn_->transport().shutdown_write();
    }
    return;
  }
  if (request_complete_) return;  // nothing more belongs to this request on the wire
  if (request_chunked_) {
    http::http1::serialize_chunk(data, out_);
    if (end_stream) {
      out_.append("0\r\n\r\n");
      request_complete_ = true;
    }
  } else {
    if (data.size() > request_remaining_) data = data.substr(0, static_cast<size_t>(request_remaining_));
    if (out_.empty() && !data.empty()) {
      // Nothing staged before it: send from the caller's buffer, no copy.
      conn_->pool().cluster().stats().bytes_sent.inc(data.size());
      if (!conn_->transport().write(data)) write_failed_ = true;
    } else {
      out_.append(data);
    }
    request_remaining_ -= data.size();
    if (request_remaining_ == 0) request_complete_ = true;
  }
  if (out_.size() >= net::Buffer::kBlockSize) flush();
}

void Http1UpstreamCodec::encode_trailers(const http::HeaderList& trailers) {
  if (conn_ == nullptr || request_complete_) return;
  if (request_chunked_) http::http1::serialize_last_chunk(trailers, out_);
  // A Content-Length body has no place for trailers: they are dropped.
  request_complete_ = true;
}

void Http1UpstreamCodec::flush() {
  if (conn_ == nullptr) return;
  if (!out_.empty()) {
    conn_->pool().cluster().stats().bytes_sent.inc(out_.size());
    if (!conn_->transport().write(out_)) write_failed_ = true;
  }
  // A write error is reported from the loop, not from inside the caller.
  if (write_failed_ && !fail_later_.armed()) fail_later_.arm(Duration::zero());
}

bool Http1UpstreamCodec::write_blocked() const {
  return conn_ != nullptr && conn_->transport().pending_output() >= kHighWatermark;
}

void Http1UpstreamCodec::resume_reading() {
  if (conn_ != nullptr && response_started_) read();
}

// ---- response -------------------------------------------------------------

void Http1UpstreamCodec::on_upstream_connected() {
  if (conn_ != nullptr && conn_->transport().pending_output() == 0) decoder_->on_upstream_drained();
}

void Http1UpstreamCodec::on_upstream_writable() { decoder_->on_upstream_drained(); }

void Http1UpstreamCodec::on_upstream_readable() { read(); }

void Http1UpstreamCodec::on_upstream_error(int error, bool during_connect) {
  if (conn_ == nullptr) return;
  if (during_connect) {
    if (error == ETIMEDOUT) {
      fail(http::UpstreamFailure::kConnectTimeout, "upstream connect timeout");
    } else {
      fail(http::UpstreamFailure::kConnectFailed, std::strerror(error));
    }
    return;
  }
  if (tunnel_) {
    decoder_->decode_response_data({}, true);
    return;
  }
  fail(http::UpstreamFailure::kReset, "upstream connection reset");
}

void Http1UpstreamCodec::fail(http::UpstreamFailure failure, std::string_view detail) {
  decoder_->on_upstream_failure(failure, detail);
}

void Http1UpstreamCodec::read() {
  while (conn_ != nullptr && !response_complete_) {
    if (response_started_ && decoder_->response_blocked()) return;  // resume_reading() continues
    net::Buffer& in = conn_->input();
    size_t n = 0;
    net::ReadResult r = conn_->transport().read(in, net::Buffer::kBlockSize, &n);
    if (r == net::ReadResult::kAgain) return;
    if (r == net::ReadResult::kError) {
      if (tunnel_) {
        decoder_->decode_response_data({}, true);
        return;
      }
      fail(http::UpstreamFailure::kReset, "upstream connection reset");
      return;
    }
    if (r == net::ReadResult::kEof) {
      if (response_started_ && (tunnel_ || body_ == http::http1::BodyKind::kUntilClose)) {
        // The body (or the tunnel) ends with the connection.
        response_complete_ = true;
        decoder_->decode_response_data({}, true);
        if (conn_ != nullptr) decoder_->flush_response();
        return;
      }
      if (!in.empty() && !response_started_) {
        fail(http::UpstreamFailure::kProtocolError, "upstream closed inside the response head");
        return;
      }
      fail(http::UpstreamFailure::kReset,
           response_started_ ? "upstream connection reset" : "upstream connection reset before response");
      return;
    }
    bytes_seen_ = true;
    conn_->pool().cluster().stats().bytes_received.inc(n);
    bool more = process();
    if (conn_ != nullptr) decoder_->flush_response();
    if (!more) return;
  }
}

bool Http1UpstreamCodec::process() {
  net::Buffer& in = conn_->input();
  while (!response_started_) {
    http::http1::ParseResult pr = http::http1::parse_response(in.view(), head_request_, head_);
    if (pr.status == http::http1::ParseStatus::kNeedMore) return true;
    if (pr.status == http::http1::ParseStatus::kError) {
      conn_->pool().cluster().stats().protocol_errors.inc();
      fail(http::UpstreamFailure::kProtocolError, pr.error);
      return false;
    }
    if (head_.status < 200 && head_.status != 101) {
      in.consume(pr.consumed);  // interim responses: the stream sent its own 100
      continue;
    }
    if (head_.status == 101 && (!upgrade_requested_ || head_.info.upgrade.empty())) {
      // A 101 must name the protocol it switches to (RFC 9110 15.2.2).
      conn_->pool().cluster().stats().protocol_errors.inc();
      fail(http::UpstreamFailure::kProtocolError,
           upgrade_requested_ ? "101 without Upgrade" : "unexpected 101 Switching Protocols");
      return false;
    }
    response_started_ = true;
    http::http1::to_neutral(head_, head_request_, response_);
    if (head_.status == 101) {
      tunnel_ = true;
      request_complete_ = true;
      in.consume(pr.consumed);
      decoder_->decode_response_headers(response_, false);
      if (conn_ == nullptr) return false;
      break;
    }
    body_ = response_.has_body ? head_.info.body : http::http1::BodyKind::kNone;
    remaining_ = head_.info.content_length;
    bool end = body_ == http::http1::BodyKind::kNone ||
               (body_ == http::http1::BodyKind::kContentLength && remaining_ == 0);
    if (end) response_complete_ = true;
    // Views of the head stay valid: consume() moves offsets, not bytes.
    in.consume(pr.consumed);
    decoder_->decode_response_headers(response_, end);
    if (conn_ == nullptr || end) return false;
  }
  return forward_body(in);
}

bool Http1UpstreamCodec::forward_body(net::Buffer& in) {
  while (conn_ != nullptr && !in.empty() && !response_complete_) {
    if (tunnel_ || body_ == http::http1::BodyKind::kContentLength ||
        body_ == http::http1::BodyKind::kUntilClose) {
      size_t n = in.size();
      if (body_ == http::http1::BodyKind::kContentLength && !tunnel_ && n > remaining_)
        n = static_cast<size_t>(remaining_);
      std::string_view data(in.data(), n);
      in.consume(n);
      bool end = false;
      if (body_ == http::http1::BodyKind::kContentLength && !tunnel_) {
        remaining_ -= n;
        end = remaining_ == 0;
        if (end) response_complete_ = true;
      }
      decoder_->decode_response_data(data, end);
      continue;
    }
    http::http1::ChunkedDecoder::Step step = chunked_.next(in.view());
    switch (step.kind) {
      case http::http1::ChunkedDecoder::Kind::kData: {
        std::string_view data = step.data;
        in.consume(step.consumed);
        decoder_->decode_response_data(data, false);
        break;
      }
      case http::http1::ChunkedDecoder::Kind::kDone:
        response_complete_ = true;
        in.consume(step.consumed);
        if (chunked_.trailers().empty()) {
          decoder_->decode_response_data({}, true);
        } else {
          decoder_->decode_response_trailers(chunked_.trailers());
        }
        return false;
      case http::http1::ChunkedDecoder::Kind::kNeedMore:
        in.consume(step.consumed);
        if (in.size() > http::http1::kMaxHeadBytes + 64) {
          conn_->pool().cluster().stats().protocol_errors.inc();
          fail(http::UpstreamFailure::kProtocolError, "chunk framing too large");
          return false;
        }
        return true;
      case http::http1::ChunkedDecoder::Kind::kError:
        conn_->pool().cluster().stats().protocol_errors.inc();
        fail(http::UpstreamFailure::kProtocolError, step.error);
        return false;
    }
  }
  return conn_ != nullptr && !response_complete_;
}

std::unique_ptr<UpstreamCodec> Http1UpstreamCodecFactory::make(net::EventLoop& loop,
                                                               http::ResponseDecoder& decoder) const {
  return std::make_unique<Http1UpstreamCodec>(loop, decoder);
}

const std::shared_ptr<const UpstreamCodecFactory>& Http1UpstreamCodecFactory::shared() {
  static const std::shared_ptr<const UpstreamCodecFactory> factory =
      std::make_shared<Http1UpstreamCodecFactory>();
  return factory;
}

}  // namespace trellis::proxy
