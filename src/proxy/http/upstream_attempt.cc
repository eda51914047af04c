#include "proxy/http/upstream_attempt.h"

#include "proxy/http/response_drain.h"
#include "proxy/runtime/worker.h"

namespace trellis::proxy {
namespace {

// What the balancer hears about a failed try: as slow as this, so a host
// that fails fast does not look fast to the latency-aware balancer.
constexpr Duration kFailurePenalty = std::chrono::seconds(1);

}  // namespace

UpstreamAttempt::UpstreamAttempt(Worker& worker, http::ResponseDecoder& decoder,
                                 std::function<void()> on_timeout)
    : worker_(worker), decoder_(decoder), timeout_(worker.loop(), std::move(on_timeout)) {}

UpstreamAttempt::~UpstreamAttempt() { end(false, false); }

UpstreamAttempt::Start UpstreamAttempt::start(UpstreamCluster& cluster, const policy::PickContext& pick,
                                              bool fresh, const http::RequestHeaders& request) {
  bool head_request = request.method == "HEAD";
  end(false, false);
  cluster_ = &cluster;
  pick_ = cluster.pick(pick);
  if (pick_.pool == nullptr) return Start::kNoEndpoint;
  endpoint_ = pick_.pool->address().text;
  tls_ = pick_.pool->tls();
  // One codec per router while its endpoints speak the same protocol: no
  // allocation per request.
  const UpstreamCodecFactory& factory =
      cluster.codec_factory(pick_, !request.upgrade.empty(), request.protocol == "HTTP/2");
  if (!codec_ || codec_factory_ != &factory) {
    codec_ = factory.make(worker_.loop(), decoder_);
    codec_factory_ = &factory;
  }
  started_ = pick.now;
  first_byte_ = {};
  error_ = 0;
  cluster.on_start(pick_);
  if (codec_->start(*pick_.pool, fresh, head_request, error_)) return Start::kStarted;
  if (error_ == kOverflowConnections || error_ == kOverflowPending) {
    end(false, false);
    return error_ == kOverflowConnections ? Start::kOverflowConnections : Start::kOverflowPending;
  }
  report(policy::OutlierDetector::Outcome::kGatewayError);
  return Start::kConnectFailed;
}

void UpstreamAttempt::first_byte() {
  if (first_byte_.count() == 0)
    first_byte_ = std::max<Duration>(worker_.loop().now() - started_, Duration(1));
}

void UpstreamAttempt::report(policy::OutlierDetector::Outcome outcome) {
  if (cluster_ != nullptr) cluster_->report(pick_, outcome);
}

void UpstreamAttempt::report_latency(bool failed) {
  if (pick_.pool == nullptr || cluster_ == nullptr) return;
  Duration latency = first_byte_.count() > 0 ? first_byte_ : worker_.loop().now() - started_;
  if (failed) latency = std::max(latency, kFailurePenalty);
  cluster_->on_complete(pick_, latency);
  pick_ = {};
}

void UpstreamAttempt::end(bool keep, bool failed) {
  timeout_.cancel();
  retry_slot_.release();
  report_latency(failed);
  if (codec_) codec_->finish(keep);
}

void UpstreamAttempt::end_draining() {
  timeout_.cancel();
  retry_slot_.release();
  report_latency(/*failed=*/true);
  if (!codec_ || !codec_->active()) return;
  if (codec_->response_complete() || codec_->multiplexed()) {
    codec_->finish(/*keep=*/true);
    return;
  }
  ResponseDrain::start(worker_, std::move(codec_));
  codec_factory_ = nullptr;
}

}  // namespace trellis::proxy
