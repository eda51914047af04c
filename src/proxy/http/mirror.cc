#include "proxy/http/mirror.h"

namespace trellis::proxy {

MirrorStream::MirrorStream(Worker& worker, UpstreamCluster& cluster)
    : WorkerConnection(worker), cluster_(cluster), timeout_(worker.loop(), [this] { finish(false); }) {}

void MirrorStream::start(Worker& worker, UpstreamCluster& cluster, const http::RequestHeaders& request,
                         std::string_view body, Duration timeout) {
  // Owned by the worker's connection list from here; freed through defer_delete.
  auto* stream = new MirrorStream(worker, cluster);
  stream->send(request, body, timeout);
}

void MirrorStream::send(const http::RequestHeaders& request, std::string_view body, Duration timeout) {
  started_ = worker_.loop().now();
  timeout_.arm(timeout.count() > 0 ? timeout : std::chrono::seconds(15));
  policy::PickContext ctx;
  ctx.now = started_;
  pick_ = cluster_.pick(ctx);
  int error = 0;
  if (pick_.pool != nullptr)
    upstream_ =
        cluster_.codec_factory(pick_, false, request.protocol == "HTTP/2").make(worker_.loop(), *this);
  if (pick_.pool == nullptr ||
      !upstream_->start(*pick_.pool, /*fresh=*/false, request.method == "HEAD", error)) {
    pick_ = {};
    finish(false);
    return;
  }
  cluster_.stats().mirrored.inc();
  cluster_.on_start(pick_);
  upstream_->encode_headers(request, body.empty());
  if (!body.empty()) upstream_->encode_data(body, true);
  upstream_->flush();
}

void MirrorStream::decode_response_headers(const http::ResponseHeaders&, bool end_stream) {
  if (end_stream) finish(true);
}

void MirrorStream::decode_response_data(std::string_view, bool end_stream) {
  if (end_stream) finish(true);
}

void MirrorStream::decode_response_trailers(const http::HeaderList&) { finish(true); }

void MirrorStream::on_upstream_failure(http::UpstreamFailure, std::string_view) { finish(false); }

void MirrorStream::finish(bool keep) {
  if (finished_) return;
  finished_ = true;
  timeout_.cancel();
  if (pick_.pool != nullptr) cluster_.on_complete(pick_, worker_.loop().now() - started_);
  if (upstream_) upstream_->finish(keep);
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

}  // namespace trellis::proxy
