// The protocol-neutral HTTP stream: matches a request to a route, applies the
// route's actions (fault injection, redirect, header and URL changes, traffic
// split, mirroring), picks an endpoint by the cluster's balancer, forwards the
// request through an upstream codec and the response back through the
// downstream codec, retrying within the cluster's policy and budget. It sees
// codecs only through the interfaces in codec.h, so HTTP/1.1 and HTTP/2 share it.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "http/codec.h"
#include "http/message.h"
#include "proxy/http1/upstream_codec.h"
#include "policy/circuit_breaker.h"
#include "policy/retry.h"
#include "proxy/runtime/snapshot.h"
#include "proxy/upstream/cluster.h"

namespace trellis::proxy {
class Worker;
}  // namespace trellis::proxy

namespace trellis::proxy {

// What the stream needs to know about the client connection it serves.
struct DownstreamContext {
  std::shared_ptr<const Snapshot> snapshot;
  const ListenerRuntime* listener = nullptr;
  ListenerStats* stats = nullptr;
  std::string_view client_ip;       // for x-forwarded-for
  std::string_view client_address;  // ip:port, for the access log
};

class Router final : public http::RequestDecoder, public http::ResponseDecoder {
 public:
  Router(Worker& worker, http::ResponseEncoder& downstream);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Starts a new exchange. The context must outlive it.
  void begin(const DownstreamContext& context);
  // Answers the current request from the proxy itself (codec-level errors
  // too), with one extra header field when `extra` has a name.
  void reply_local(int status, std::string_view body, http::Header extra = {});
  // Ends the exchange: status and latency metrics, access log. Bytes are as
  // counted on the client's wire by the codec.
  void end(uint64_t bytes_received, uint64_t bytes_sent);
  bool response_started() const { return response_started_; }

  // RequestDecoder (from the downstream codec)
  void decode_headers(const http::RequestHeaders& headers, bool end_stream) override;
  void decode_data(std::string_view data, bool end_stream) override;
  void decode_trailers(const http::HeaderList& trailers) override;
  void flush() override;
  bool blocked() const override;
  void on_downstream_drained() override;
  void on_downstream_reset() override;

  // ResponseDecoder (from the upstream codec)
  void decode_response_headers(const http::ResponseHeaders& headers, bool end_stream) override;
  void decode_response_data(std::string_view data, bool end_stream) override;
  void decode_response_trailers(const http::HeaderList& trailers) override;
  void flush_response() override;
  bool response_blocked() const override;
  void on_upstream_drained() override;
  void on_upstream_failure(http::UpstreamFailure failure, std::string_view detail) override;

 private:
  void add_forwarding_headers();
  // After the route is chosen: the route's actions, then the first try.
  void route_request(const RouteConfig& route);
  // `from_decoder`: called within a codec's decode call, whose flush()
  // follows; otherwise what was staged is sent at once.
  void proceed(bool from_decoder);
  void fault_abort();
  bool check_rate_limits(const std::vector<std::shared_ptr<RouteRateLimiter>>& limits);
  // 503 naming the circuit-breaker limit that refused the request.
  void reply_overflow(policy::Resource limit);
  void release_request_slot();
  // Sends the request (and any buffered body) to an endpoint picked anew.
  void start_try(bool fresh, bool from_decoder);
  // Ends the current try: connection back to its pool (or closed), the
  // balancer told. `failed` reports a failure latency to the balancer.
  void end_try(bool reusable, bool failed);
  // Retries after `failure` when the policy, the method, the body and the
  // budget all allow; false when the failure stands.
  bool retry(policy::AttemptFailure failure, int status);
  bool replayable() const;
  bool free_retry_on_stale_connection();
  void buffer_body(std::string_view data);
  void start_mirrors();
  std::optional<uint64_t> request_hash();
  void encode_response_headers(const http::ResponseHeaders& headers, bool end_stream);
  void response_complete();
  void on_timeout();
  void on_try_timeout();
  void on_idle_timeout();
  void touch();
  void reply_redirect(const RedirectConfig& redirect);
  void log_access(uint64_t bytes_received, uint64_t bytes_sent, Duration elapsed);

  Worker& worker_;
  http::ResponseEncoder& downstream_;
  Http1UpstreamCodec upstream_;
  const DownstreamContext* context_ = nullptr;

  http::RequestHeadersCopy request_;
  std::string scratch_;     // x-forwarded-for value being built, rewritten paths
  std::string request_id_;  // generated x-request-id
  MonoTime start_{};
  const RouteConfig* route_ = nullptr;
  const BackendConfig* backend_ = nullptr;
  UpstreamCluster* cluster_ = nullptr;
  std::string_view cluster_name_;
  std::string upstream_address_;
  UpstreamPick pick_;
  MonoTime try_start_{};
  Duration first_byte_{};
  std::string body_;  // request body kept for replay, mirroring or a fault delay
  bool buffering_ = false;
  bool body_overflow_ = false;  // more body than the replay limit arrived
  bool has_trailers_ = false;
  bool waiting_ = false;  // fault delay or retry backoff: no upstream attached
  uint32_t retries_ = 0;
  uint32_t mirror_mask_ = 0;  // mirrors of the route sampled for this request
  std::string cookie_value_;  // a new hash cookie to set on the response
  http::ResponseHeaders response_copy_;  // the response as modified by the route
  std::string set_cookie_;
  int status_ = 0;
  bool head_request_ = false;
  bool request_ended_ = false;
  bool response_started_ = false;
  bool response_ended_ = false;
  bool stale_retried_ = false;
  bool continue_sent_ = false;
  bool abort_after_delay_ = false;
  Duration rate_delay_{};  // a leaky-bucket rate limit holds the request this long
  bool holds_request_ = false;  // a max_requests slot of the cluster's breaker
  std::shared_ptr<policy::ConcurrencyLimiter> concurrency_;  // holds a slot of it
  MonoTime concurrency_start_{};
  bool holds_retry_ = false;    // a max_retries slot, for the try in flight
  net::Timer timeout_;      // the whole exchange
  net::Timer try_timeout_;  // the current try
  net::Timer idle_timeout_;
  net::Timer wait_;  // fault delay, retry backoff
  Duration idle_after_{};
};

}  // namespace trellis::proxy
