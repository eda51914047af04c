// One try of a request against one endpoint (Envoy's UpstreamRequest): the
// balancer's pick, the cluster's codec on a connection from that endpoint's
// pool, the per-try timeout, the max_retries slot a retry holds, and what the
// balancer and outlier detection hear of how the try went. The router makes
// one per client connection and reuses it, try after try.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "http/codec.h"
#include "net/event_loop.h"
#include "policy/circuit_breaker.h"
#include "policy/load_balancer.h"
#include "policy/outlier_detector.h"
#include "proxy/upstream/cluster.h"
#include "proxy/upstream/upstream_codec.h"

namespace trellis::proxy {

class Worker;

class UpstreamAttempt {
 public:
  // `decoder` hears the responses; `on_timeout` runs when a per-try timeout
  // fires.
  UpstreamAttempt(Worker& worker, http::ResponseDecoder& decoder, std::function<void()> on_timeout);
  ~UpstreamAttempt();
  UpstreamAttempt(const UpstreamAttempt&) = delete;
  UpstreamAttempt& operator=(const UpstreamAttempt&) = delete;

  enum class Start : uint8_t {
    kStarted,              // the request may be encoded
    kNoEndpoint,           // the balancer has nothing to offer
    kOverflowConnections,  // the cluster's max_connections
    kOverflowPending,      // its max_pending_requests
    kConnectFailed,        // not even a connect could start; error() says why
  };
  // Picks an endpoint of `cluster` and starts the exchange there; on a new
  // connection unless an idle one may be used (`fresh`: never reuse).
  // The codec follows `request` (its method, upgrade and protocol).
  Start start(UpstreamCluster& cluster, const policy::PickContext& pick, bool fresh,
              const http::RequestHeaders& request);
  bool active() const { return codec_ != nullptr && codec_->active(); }
  http::RequestEncoder& encoder() { return *codec_; }
  bool write_blocked() const { return codec_->write_blocked(); }
  UpstreamCodec& codec() { return *codec_; }
  int error() const { return error_; }
  // The endpoint of the current (or last) try, for the access log.
  const std::string& endpoint() const { return endpoint_; }
  // Whether that try went over TLS (a sidecar's mTLS, or the cluster's).
  bool tls() const { return tls_; }

  void arm_timeout(Duration per_try) { timeout_.arm(per_try); }
  void cancel_timeout() { timeout_.cancel(); }
  // The first byte of the response: the balancer's latency sample ends here.
  void first_byte();
  // How the try went, for outlier detection.
  void report(policy::OutlierDetector::Outcome outcome);
  // A retry holds a max_retries slot for as long as it is in flight.
  policy::BreakerSlot& retry_slot() { return retry_slot_; }

  // Ends the try: the connection back to its pool (when `keep` and the
  // exchange allows) or closed; the balancer hears the latency, at least a
  // failure's penalty when `failed`. The retry slot is given back.
  void end(bool keep, bool failed);
  // Before a new request: ends any try and forgets its endpoint.
  void reset() {
    end(false, false);
    endpoint_.clear();
    tls_ = false;
  }
  // Ends the try without waiting for the rest of its response: a drain reads
  // and drops it (up to a limit) so the connection is kept. The next start()
  // makes a new codec.
  void end_draining();

 private:
  void report_latency(bool failed);

  Worker& worker_;
  http::ResponseDecoder& decoder_;
  std::unique_ptr<UpstreamCodec> codec_;
  const UpstreamCodecFactory* codec_factory_ = nullptr;  // what made codec_
  UpstreamCluster* cluster_ = nullptr;
  UpstreamPick pick_;
  std::string endpoint_;
  bool tls_ = false;
  MonoTime started_{};
  Duration first_byte_{};
  int error_ = 0;
  policy::BreakerSlot retry_slot_;
  net::Timer timeout_;
};

}  // namespace trellis::proxy
