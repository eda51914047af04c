// The protocol-neutral HTTP stream. For each request it runs the stages of
// stages.h (route, rate limits, direct answers, split, fault, rewrite,
// mirrors), admits it past the cluster's breaker and adaptive limit, then
// sends it through UpstreamAttempts, one try at a time, retrying within the
// cluster's policy and budget, and sends the response back through the
// downstream codec. It sees codecs only through the interfaces of
// http/codec.h and upstream_codec.h.
//
// An exchange moves through these phases:
//
//   kIdle --decode_headers--> [stages] --+--> kHeld ---(hold ends)--+
//                                        |                          v
//                                        +---------------------> kUpstream <---+
//                                                                   |   |      |
//                                       (try failed, retry allowed) |   +--> kBackoff
//                                                                   v
//                                          (response head sent) kResponding --> kDone
//
// and to kDone from anywhere the proxy answers itself or gives up.
#pragma once

#include <memory>
#include <string>

#include "http/codec.h"
#include "http/message.h"
#include "policy/circuit_breaker.h"
#include "policy/retry.h"
#include "proxy/http/request_body.h"
#include "proxy/http/server_stream.h"
#include "proxy/http/stages.h"
#include "proxy/http/upstream_attempt.h"
#include "proxy/observe/trace_context.h"
#include "proxy/runtime/snapshot.h"

namespace trellis::proxy {

struct GoldenLabels;

class Worker;

class Router final : public ServerStream, public http::ResponseDecoder {
 public:
  Router(Worker& worker, http::ResponseEncoder& downstream);
  ~Router() override;
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // ServerStream
  void begin(const DownstreamContext& context) override;
  void reply_local(int status, std::string_view body, http::Header extra = {}) override;
  void end(uint64_t bytes_received, uint64_t bytes_sent) override;

  // http::RequestDecoder (from the downstream codec)
  void decode_headers(const http::RequestHeaders& headers, bool end_stream) override;
  void decode_data(std::string_view data, bool end_stream) override;
  void decode_trailers(const http::HeaderList& trailers) override;
  void flush() override;
  bool blocked() const override;
  void on_downstream_drained() override;
  void on_downstream_reset() override;

  // http::ResponseDecoder (from the upstream codec)
  void decode_response_headers(const http::ResponseHeaders& headers, bool end_stream) override;
  void decode_response_data(std::string_view data, bool end_stream) override;
  void decode_response_trailers(const http::HeaderList& trailers) override;
  void flush_response() override;
  bool response_blocked() const override;
  void on_upstream_drained() override;
  void on_upstream_failure(http::UpstreamFailure failure, std::string_view detail) override;

 private:
  enum class Phase : uint8_t {
    kIdle,        // no request yet
    kHeld,        // a fault delay or a leaky bucket holds it: no upstream yet
    kUpstream,    // a try is in flight; nothing of the response sent
    kBackoff,     // a try failed and a retry waits out its backoff
    kResponding,  // the response is going to the client
    kDone,        // answered whole, answered locally, or abandoned
  };
  bool waiting() const { return phase_ == Phase::kHeld || phase_ == Phase::kBackoff; }
  bool response_started() const { return phase_ >= Phase::kResponding; }

  // The stages after the route is found (stages.h, 4 to 8).
  // Stage 0: false when the request was answered (403, or 400 for a path
  // that cannot be normalized).
  bool authorize(const ListenerRuntime& listener);
  void route_request(const RouteConfig& route);
  // After any hold: the abort a fault drew, admission, mirrors, the first try.
  // `from_decoder`: within a codec's decode call, whose flush() follows.
  void proceed(bool from_decoder);
  // The cluster's max_requests and adaptive limit; answers 503 when refused.
  bool admit();
  void release_admission(bool completed);
  void fault_abort();
  void reply_overflow(policy::Resource limit);
  void reply_redirect(const RedirectConfig& redirect);
  // A route's CORS: answers a preflight request (true), or notes an allowed
  // origin for the response's headers.
  bool answer_cors(const CorsConfig& cors);
  void add_cors_headers(http::ResponseHeaders& response);
  void start_mirrors();

  // Tries.
  void start_try(bool fresh, bool from_decoder);
  // How the try that failed ends when a retry follows it.
  enum class EndTry : uint8_t { kClose, kDrain };
  // Retries after `failure` when the policy, the method, the body and the
  // budget allow; false when the failure stands.
  bool retry(policy::AttemptFailure failure, int status, EndTry end = EndTry::kClose);
  bool retry_on_stale_connection();
  void end_exchange_timers();

  // Response.
  void encode_response_headers(const http::ResponseHeaders& headers, bool end_stream);
  void response_ending();
  void response_complete();

  // Timeouts.
  void touch();
  void on_timeout();
  void on_try_timeout();
  void on_idle_timeout();
  // The request body's clock (the listener's request_body_timeout and
  // request_body_min_rate): it runs while the proxy waits on the client for
  // body bytes, and starts again after the upstream held the body back.
  void start_body_clock();
  void on_body_clock();
  // "100 Continue": the client may send the body now.
  void send_continue();
  // reply_local() to a gRPC client: a trailers-only gRPC response.
  void reply_grpc(int status, std::string_view reason);
  // A limit ran out: the client gets `status` and `body`, or, once the
  // response started, a reset.
  void give_up(int status, std::string_view body);

  void log_access(const GoldenLabels& labels, uint64_t bytes_received, uint64_t bytes_sent, Duration elapsed);
  // Golden metrics and, when sampled, this hop's span.
  GoldenLabels record_golden(uint64_t bytes_received, uint64_t bytes_sent, Duration elapsed);
  // The tap is on: this request's event.
  void tap(const GoldenLabels& labels, Duration elapsed);
  // Tracing: the request's parent context, this hop's span, and the context
  // the next hop gets (its parent is this span).
  void begin_trace(uint32_t sampling_per_million);
  void end_trace(const GoldenLabels& labels);

  Worker& worker_;
  http::ResponseEncoder& downstream_;
  const DownstreamContext* context_ = nullptr;
  Phase phase_ = Phase::kIdle;
  MonoTime start_{};
  struct Trace {
    bool active = false;
    bool sampled = false;
    bool has_parent = false;
    TraceId trace_id{};
    SpanId span_id{};
    SpanId parent_id{};
    std::chrono::system_clock::time_point start_wall{};    // the span's start, as spans say it
    std::chrono::steady_clock::time_point start_steady{};  // and its length, measured
  } trace_;

  // The request, as the upstream will see it.
  http::RequestHeadersCopy request_;
  RequestBody body_;
  std::string request_id_;
  std::string scratch_;         // x-forwarded-for being built, rewritten paths, Retry-After
  bool continue_sent_ = false;  // "100 Continue" went to the client

  // What the stages decided.
  const RouteConfig* route_ = nullptr;
  const BackendConfig* backend_ = nullptr;
  UpstreamCluster* cluster_ = nullptr;
  std::string_view cluster_name_;
  FaultDecision fault_;
  Duration hold_{};  // fault delay or leaky-bucket hold, the longer
  uint32_t mirror_mask_ = 0;
  // The snapshot whose cluster indices the mirrors name: copies started
  // after the worker moved to another one are dropped.
  const Snapshot* mirror_snapshot_ = nullptr;
  std::string cookie_value_;  // a new hash cookie to set on the response
  std::string cors_origin_;   // an allowed Origin of a CORS route's request: its response says so
  std::string denied_by_;     // what refused the request, for the access log
  uint16_t flags_ = 0;        // ResponseFlag: why the proxy answered itself or the exchange broke

  // Admission: a max_requests slot and, when on, an adaptive-limit slot.
  policy::BreakerSlot request_slot_;
  std::shared_ptr<policy::ConcurrencyLimiter> concurrency_;
  MonoTime concurrency_start_{};

  // Tries.
  UpstreamAttempt attempt_;
  uint32_t retries_ = 0;
  uint32_t stale_retries_ = 0;  // free retries after a stale pooled connection (at most one)

  // Response.
  int status_ = 0;
  bool grpc_ = false;     // the request is a gRPC call
  int grpc_status_ = -1;  // the grpc-status it ended with; -1: none yet
  std::string grpc_message_;
  bool deadline_exceeded_ = false;       // the request's timeout fired
  http::ResponseHeaders response_copy_;  // the response as the route changed it
  std::string set_cookie_;

  net::Timer timeout_;       // the whole exchange
  net::Timer idle_timeout_;  // no bytes either way
  net::Timer wait_;          // a hold, or a retry's backoff
  net::Timer body_clock_;    // the request body's arrival
  MonoTime body_since_{};    // when the body clock last started
  uint64_t body_bytes_ = 0;  // body bytes received since then
  Duration idle_after_{};
};

}  // namespace trellis::proxy
