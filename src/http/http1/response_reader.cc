#include "http/http1/response_reader.h"

#include <algorithm>

namespace trellis::http::http1 {

void ResponseReader::start(bool head_request, size_t keep_body_up_to) {
  phase_ = Phase::kHead;
  keep_limit_ = keep_body_up_to;
  body_.clear();
  head_request_ = head_request;
  remaining_ = 0;
  keep_alive_ = true;
  status_ = 0;
  error_ = "";
  chunked_.reset();
}

ResponseReader::Status ResponseReader::on_data(net::Buffer& in) {
  for (;;) {
    switch (phase_) {
      case Phase::kHead: {
        if (in.empty()) return Status::kNeedMore;
        auto pr = parse_response(in.view(), head_request_, head_);
        if (pr.status == ParseStatus::kNeedMore) return Status::kNeedMore;
        if (pr.status == ParseStatus::kError) return fail(pr.error);
        if (head_.status == 101) return fail("unexpected 101 Switching Protocols");
        in.consume(pr.consumed);
        if (head_.status < 200) continue;  // interim (100 Continue, 103 Early Hints)
        status_ = head_.status;
        keep_alive_ = head_.info.keep_alive;
        switch (head_.info.body) {
          case BodyKind::kNone:
            phase_ = Phase::kDone;
            break;
          case BodyKind::kContentLength:
            remaining_ = head_.info.content_length;
            phase_ = remaining_ == 0 ? Phase::kDone : Phase::kLength;
            break;
          case BodyKind::kChunked:
            phase_ = Phase::kChunked;
            break;
          case BodyKind::kUntilClose:
            keep_alive_ = false;
            phase_ = Phase::kUntilClose;
            break;
        }
        break;
      }
      case Phase::kLength: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(in.size(), remaining_));
        if (!keep(in.view().substr(0, n))) return Status::kError;
        in.consume(n);
        remaining_ -= n;
        if (remaining_ > 0) return Status::kNeedMore;
        phase_ = Phase::kDone;
        break;
      }
      case Phase::kChunked: {
        ChunkedDecoder::Step step = chunked_.next(in.view());
        switch (step.kind) {
          case ChunkedDecoder::Kind::kData:
            if (!keep(step.data)) return Status::kError;
            in.consume(step.consumed);
            break;
          case ChunkedDecoder::Kind::kNeedMore:
            in.consume(step.consumed);
            if (in.size() > kMaxHeadBytes + 64) return fail("chunk framing too large");
            return Status::kNeedMore;
          case ChunkedDecoder::Kind::kDone:
            in.consume(step.consumed);
            phase_ = Phase::kDone;
            break;
          case ChunkedDecoder::Kind::kError:
            return fail(step.error);
        }
        break;
      }
      case Phase::kUntilClose:
        if (!keep(in.view())) return Status::kError;
        in.clear();
        return Status::kNeedMore;
      case Phase::kDone:
        if (!in.empty()) return fail("bytes after the end of the response");
        return Status::kComplete;
    }
  }
}

ResponseReader::Status ResponseReader::on_eof() {
  if (phase_ == Phase::kUntilClose) {
    phase_ = Phase::kDone;
    return Status::kComplete;
  }
  return fail("connection closed before the response ended");
}

bool ResponseReader::keep(std::string_view data) {
  if (keep_limit_ == 0) return true;
  if (body_.size() + data.size() > keep_limit_) {
    fail("the body is larger than the client takes");
    return false;
  }
  body_.append(data);
  return true;
}

}  // namespace trellis::http::http1
