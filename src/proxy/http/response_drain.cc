#include "proxy/http/response_drain.h"

namespace trellis::proxy {

ResponseDrain::ResponseDrain(Worker& worker, std::unique_ptr<UpstreamCodec> codec)
    : WorkerConnection(worker),
      codec_(std::move(codec)),
      deadline_(worker.loop(), [this] { finish(false); }) {
  codec_->set_decoder(*this);
  deadline_.arm(kMaxTime);
}

void ResponseDrain::start(Worker& worker, std::unique_ptr<UpstreamCodec> codec) {
  // Owned by the worker's connection list from here; freed through defer_delete.
  new ResponseDrain(worker, std::move(codec));
}

void ResponseDrain::decode_response_headers(const http::ResponseHeaders&, bool end_stream) {
  if (end_stream) finish(true);
}

void ResponseDrain::decode_response_data(std::string_view data, bool end_stream) {
  bytes_ += data.size();
  if (end_stream) {
    finish(true);
  } else if (bytes_ > kMaxBytes) {
    finish(false);
  }
}

void ResponseDrain::finish(bool keep) {
  if (finished_) return;
  finished_ = true;
  deadline_.cancel();
  codec_->finish(keep);
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

}  // namespace trellis::proxy
