#include "proxy/http/router.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "policy/cors.h"
#include "proxy/http/mirror.h"
#include "proxy/http/route_actions.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/golden.h"
#include "proxy/observe/tap.h"
#include "proxy/observe/tracer.h"
#include "proxy/runtime/worker.h"

namespace trellis::proxy {
namespace {

// Stream idle timeout: no bytes either way for this long. Not armed when the
// request timeout would fire first anyway.
bool idle_timer_needed(Millis idle, Millis request) {
  return idle.count() > 0 && (request.count() == 0 || idle < request);
}

}  // namespace

std::unique_ptr<ServerStream> make_server_stream(Worker& worker, http::ResponseEncoder& downstream) {
  return std::make_unique<Router>(worker, downstream);
}

Router::Router(Worker& worker, http::ResponseEncoder& downstream)
    : worker_(worker),
      downstream_(downstream),
      attempt_(worker, *this, [this] { on_try_timeout(); }),
      timeout_(worker.loop(), [this] { on_timeout(); }),
      idle_timeout_(worker.loop(), [this] { on_idle_timeout(); }),
      wait_(worker.loop(),
            [this] {
              if (phase_ == Phase::kHeld) {
                proceed(/*from_decoder=*/false);
              } else if (phase_ == Phase::kBackoff) {
                // The body may have ended during the backoff: mirrors waited for it.
                if (body_.ended() && mirror_mask_ != 0) start_mirrors();
                start_try(/*fresh=*/false, /*from_decoder=*/false);
              }
              // The client may have been held at the body limit while we waited.
              if (attempt_.active()) {
                downstream_.resume_reading();
                if (body_clock_.armed()) start_body_clock();
              }
            }),
      body_clock_(worker.loop(), [this] { on_body_clock(); }) {}

Router::~Router() {
  attempt_.end(false, false);
  release_admission(false);
}

void Router::begin(const DownstreamContext& context) {
  attempt_.reset();
  release_admission(false);
  end_exchange_timers();
  context_ = &context;
  phase_ = Phase::kIdle;
  start_ = worker_.loop().now();
  trace_.active = false;
  flags_ = 0;
  route_ = nullptr;
  backend_ = nullptr;
  cluster_ = nullptr;
  cluster_name_ = {};
  request_id_.clear();
  body_.begin(true);
  continue_sent_ = false;
  fault_ = {};
  hold_ = {};
  mirror_mask_ = 0;
  cookie_value_.clear();
  cors_origin_.clear();
  denied_by_.clear();
  retries_ = 0;
  stale_retries_ = 0;
  status_ = 0;
  grpc_ = false;
  grpc_status_ = -1;
  deadline_exceeded_ = false;
  request_.get().headers.clear();
  request_.get().method = request_.get().path = request_.get().authority = {};
}

void Router::end_exchange_timers() {
  timeout_.cancel();
  idle_timeout_.cancel();
  wait_.cancel();
  body_clock_.cancel();
  attempt_.cancel_timeout();
}

// ---- request path: the stages of stages.h, in order --------------------------

void Router::decode_headers(const http::RequestHeaders& headers, bool end_stream) {
  request_.assign(headers);
  grpc_ = http::is_grpc(headers.headers);
  body_.begin(end_stream);
  // A gRPC call streams at its own pace within its deadline; an upgrade's
  // bytes are a tunnel's. A client waiting for 100 Continue is not late.
  if (!end_stream && !grpc_ && headers.upgrade.empty() && !headers.expect_continue) start_body_clock();
  const ListenerRuntime& listener = *context_->listener;
  if (context_->snapshot->overload->refusing()) {  // at the heap limit: nothing new
    context_->snapshot->overload->requests_refused.fetch_add(1, std::memory_order_relaxed);
    flags_ |= kFlagOverloaded;
    reply_local(503, "overloaded: memory full\n");
    return;
  }
  if (context_->snapshot->tracer != nullptr) begin_trace(context_->snapshot->trace_sampling_per_million);
  if (listener.authorizer && !authorize(listener)) return;                                         // 0
  add_forwarding_headers(request_, context_->client_ip, worker_.random(), request_id_, scratch_);  // 1
  add_client_cert_header(request_, listener.client_identity_header, listener.identity,
                         context_->authz_client.identity, scratch_);
  const http::RequestHeaders& req = request_.get();

  policy::RouteRef ref;  // 2
  if (!listener.routes.match({req.authority, req.method, req.path, &req.headers}, ref)) {
    flags_ |= kFlagNoRoute;
    reply_local(404, "no route\n");
    return;
  }

  const auto& limits = listener.rate_limits[ref.virtual_host][ref.route];  // 3
  if (!limits.empty()) {
    // The buckets are shared by every worker: a cached loop time can lag one
    // another worker has already used, and makes a bucket look fuller.
    const MonoTime now = worker_.loop().read_clock();
    RateLimitDecision d = check_rate_limits(limits, req, context_->client_ip, now);
    if (d.refused_by != nullptr) {
      context_->stats->rate_limited.inc();
      flags_ |= kFlagRateLimited;
      auto seconds = std::chrono::ceil<std::chrono::seconds>(d.retry_after).count();
      scratch_ = std::to_string(std::max<int64_t>(seconds, 1));
      const std::string& name = d.refused_by->config().name;
      reply_local(429, name.empty() ? std::string("rate limited\n") : "rate limited: " + name + "\n",
                  {"retry-after", scratch_});
      return;
    }
    if (d.hold.count() > 0) {
      hold_ = d.hold + (now - worker_.loop().now());  // the hold's timer counts from the cached time
      context_->stats->rate_limit_delayed.inc();
    }
  }
  route_request(listener.config->virtual_hosts[ref.virtual_host].routes[ref.route]);
}

bool Router::authorize(const ListenerRuntime& listener) {
  AuthzVerdict v = authorize_request(*listener.authorizer, context_->authz_client, request_, scratch_);
  if (v.kind == AuthzVerdict::Kind::kBadPath) {
    reply_local(400, "bad request: ambiguous path (an encoded '/' or '\\', a '\\', or a broken %-escape)\n");
    return false;
  }
  const bool allowed = v.kind == AuthzVerdict::Kind::kAllowed;
  count_authz(listener, worker_.index(), {allowed, v.policy});
  if (allowed) return true;
  denied_by_ = authz_decider(listener, v.policy);
  flags_ |= kFlagDenied;
  reply_local(403, "access denied by " + denied_by_ + "\n");
  return false;
}

void Router::route_request(const RouteConfig& route) {
  route_ = &route;
  if (route.cors.enabled && answer_cors(route.cors)) return;
  // Nothing to send to: 500, and for a gRPC call UNAVAILABLE (503), as the
  // Gateway API's HTTPRoute and GRPCRoute say.
  const int no_backend = grpc_ ? 503 : 500;
  if (!route.direct_error.empty()) {  // 4
    reply_local(no_backend, route.direct_error + "\n");
    return;
  }
  if (route.redirect.enabled) {
    reply_redirect(route.redirect);
    return;
  }

  Random& random = worker_.random();
  backend_ = choose_backend(route, random);  // 5
  if (backend_ == nullptr) {
    flags_ |= kFlagNoBackend;
    reply_local(no_backend, "no backend to send to: every backend has weight 0\n");
    return;
  }
  if (backend_->cluster.empty()) {
    flags_ |= kFlagNoBackend;
    reply_local(no_backend, "backend not found\n");
    return;
  }
  if (backend_->redirect.enabled) {
    reply_redirect(backend_->redirect);
    return;
  }
  cluster_ = &worker_.cluster(backend_->cluster_index);
  cluster_name_ = cluster_->name();
  const ClusterConfig& cluster = cluster_->config();

  fault_ = decide_fault(route, *backend_, random);  // 6
  // A leaky bucket's hold and a fault's delay overlap: the longer one counts.
  hold_ = std::max(hold_, fault_.delay);
  if (fault_.abort_status != 0 && fault_.delay.count() == 0) {
    fault_abort();
    return;
  }

  rewrite_request(route, *backend_, request_, scratch_);    // 7
  mirror_mask_ = sample_mirrors(route, *backend_, random);  // 8
  mirror_snapshot_ = worker_.snapshot().get();

  const http::RequestHeaders& req = request_.get();
  // The body is kept while it may be needed again: for a retry, a mirror or
  // until a hold ends. An upgrade is a tunnel: never replayed.
  if (req.upgrade.empty() && req.has_body &&
      (cluster.retry.attempts > 0 || mirror_mask_ != 0 || hold_.count() > 0))
    body_.keep_all();

  // A gRPC call's own deadline counts too, capped by the route's timeout.
  Duration deadline = route.timeout;
  Duration grpc_deadline{};
  bool has_grpc_deadline =
      grpc_ && http::parse_grpc_timeout(http::find_header(req.headers, "grpc-timeout"), grpc_deadline);
  if (has_grpc_deadline)
    deadline = route.timeout.count() > 0 ? std::min<Duration>(route.timeout, grpc_deadline) : grpc_deadline;
  if (deadline.count() > 0 || has_grpc_deadline) timeout_.arm(deadline);
  idle_after_ = idle_timer_needed(cluster.request_idle_timeout, route.timeout)
                    ? Duration(cluster.request_idle_timeout)
                    : Duration::zero();
  touch();
  cluster_->retry_budget().record_request(worker_.loop().now());
  if (hold_.count() > 0) {
    if (fault_.delay.count() > 0) cluster_->stats().fault_delays.inc();
    phase_ = Phase::kHeld;
    wait_.arm(hold_);
    // The client may wait for 100 Continue before sending the body we hold.
    if (req.expect_continue) send_continue();
    return;
  }
  proceed(/*from_decoder=*/true);
}

void Router::proceed(bool from_decoder) {
  if (fault_.abort_status != 0) {
    fault_abort();
    return;
  }
  if (!admit()) return;
  if (body_.ended() && mirror_mask_ != 0) start_mirrors();
  start_try(/*fresh=*/false, from_decoder);
}

bool Router::admit() {
  if (!request_slot_.acquire(cluster_->breaker(), policy::Resource::kRequests)) {
    reply_overflow(policy::Resource::kRequests);
    return false;
  }
  if (const auto& limiter = cluster_->concurrency()) {
    if (!limiter->try_acquire()) {
      cluster_->stats().concurrency_shed.inc();
      flags_ |= kFlagOverflow;
      reply_local(503, "upstream overflow: adaptive_concurrency\n",
                  {"x-trellis-overflow", "adaptive_concurrency"});
      return false;
    }
    concurrency_ = limiter;
    concurrency_start_ = worker_.loop().now();
  }
  return true;
}

// `completed`: the response ended normally, and the adaptive limit gets its
// latency as a sample. Otherwise (a failure, a local answer, a reset) it
// only gets its slot back.
void Router::release_admission(bool completed) {
  request_slot_.release();
  if (!concurrency_) return;
  if (completed) {
    MonoTime now = worker_.loop().now();
    concurrency_->release(now - concurrency_start_, now);
  } else {
    concurrency_->release_ignored();
  }
  concurrency_.reset();
}

void Router::fault_abort() {
  cluster_->stats().fault_aborts.inc();
  flags_ |= kFlagFaultAbort;
  reply_local(fault_.abort_status, "fault filter abort\n");
}

void Router::reply_overflow(policy::Resource limit) {
  cluster_->stats().overflow[static_cast<size_t>(limit)].inc();
  std::string_view name = policy::name_of(limit);
  flags_ |= kFlagOverflow;
  reply_local(503, fmt::format("upstream overflow: {}\n", name), {"x-trellis-overflow", name});
}

void Router::start_mirrors() {
  uint32_t mask = mirror_mask_;
  mirror_mask_ = 0;
  // Cluster indices are the routing snapshot's: after a swap (during a hold
  // or a slow body) they may name other clusters. Copies are best effort.
  if (worker_.snapshot().get() != mirror_snapshot_) return;
  const http::RequestHeaders& req = request_.get();
  if (!body_.whole(req.has_body) || !req.upgrade.empty()) return;  // not whole: mirror nothing
  for (size_t i = 0; mask != 0; ++i, mask >>= 1) {
    if ((mask & 1u) == 0) continue;
    const MirrorConfig& mirror = mirror_at(*route_, *backend_, i);
    UpstreamCluster& shadow = worker_.cluster(mirror.cluster_index);
    if (mirror.request_headers.empty()) {
      MirrorStream::start(worker_, shadow, req, body_.data(), route_->timeout);
      continue;
    }
    http::RequestHeadersCopy copy;  // the copy's own headers; sent before this returns
    copy.assign(req);
    apply_request_modifier(mirror.request_headers, copy);
    MirrorStream::start(worker_, shadow, copy.get(), body_.data(), route_->timeout);
  }
}

void Router::decode_data(std::string_view data, bool end_stream) {
  body_bytes_ += data.size();
  if (end_stream) {
    body_.end(/*with_trailers=*/false);
    body_clock_.cancel();
  }
  touch();
  if (body_.keeping() || waiting())
    body_.append(data, waiting(), cluster_ ? cluster_->config().retry.buffer_limit : 0);
  if (attempt_.active()) attempt_.encoder().encode_data(data, end_stream);
  if (end_stream && mirror_mask_ != 0 && !waiting()) start_mirrors();
}

void Router::decode_trailers(const http::HeaderList& trailers) {
  // Trailers are forwarded once, never replayed.
  body_.end(/*with_trailers=*/true);
  body_clock_.cancel();
  if (attempt_.active()) attempt_.encoder().encode_trailers(trailers);
}

void Router::flush() {
  if (attempt_.active()) attempt_.encoder().flush();
}

bool Router::blocked() const {
  if (attempt_.active()) return attempt_.write_blocked();
  return waiting() && cluster_ != nullptr && body_.size() >= cluster_->config().retry.buffer_limit;
}

void Router::on_downstream_drained() {
  if (attempt_.active()) attempt_.encoder().resume_reading();
}

void Router::on_downstream_reset() {
  if (phase_ != Phase::kDone) flags_ |= kFlagClientLeft;
  end_exchange_timers();
  phase_ = Phase::kDone;
  attempt_.end(false, false);
  release_admission(false);
}

// ---- tries --------------------------------------------------------------------

void Router::start_try(bool fresh, bool from_decoder) {
  const http::RequestHeaders& req = request_.get();
  policy::PickContext pick;
  pick.now = worker_.loop().now();
  const HashPolicy& hash = cluster_->config().lb.hash;
  if (hash.kind != HashPolicy::Kind::kNone)
    pick.hash = request_hash(hash, req, context_->client_ip, worker_.random(), cookie_value_);
  switch (attempt_.start(*cluster_, pick, fresh, req)) {
    case UpstreamAttempt::Start::kStarted:
      break;
    case UpstreamAttempt::Start::kNoEndpoint:
      flags_ |= kFlagNoHealthyUpstream;
      reply_local(503, "no healthy upstream\n");
      return;
    case UpstreamAttempt::Start::kOverflowConnections:
      reply_overflow(policy::Resource::kConnections);
      return;
    case UpstreamAttempt::Start::kOverflowPending:
      reply_overflow(policy::Resource::kPendingRequests);
      return;
    case UpstreamAttempt::Start::kConnectFailed:
      if (retry(policy::AttemptFailure::kConnectFailure, 0)) return;
      attempt_.end(false, true);
      flags_ |= kFlagConnectFailure;
      reply_local(503, fmt::format("upstream connect error: {}\n", std::strerror(attempt_.error())));
      return;
  }
  phase_ = Phase::kUpstream;
  cluster_->stats().requests.inc();
  http::RequestEncoder& upstream = attempt_.encoder();
  const std::string& body = body_.data();
  bool ended_here = body_.ended() && body.empty() && !body_.trailers();
  upstream.encode_headers(req, ended_here);
  if (!body.empty() || (body_.ended() && !ended_here && !body_.trailers()))
    upstream.encode_data(body, body_.ended());
  Millis per_try = route_->per_try_timeout.count() > 0 ? route_->per_try_timeout
                                                       : cluster_->config().retry.per_try_timeout;
  if (per_try.count() > 0) attempt_.arm_timeout(per_try);
  // The proxy takes the body from here on: tell a waiting client now rather
  // than make it wait for its own timeout (the upstream never saw the Expect).
  if (req.expect_continue && !continue_sent_) send_continue();
  // From the decoder, its flush() follows and sends head and body together.
  if (!from_decoder) upstream.flush();
}

bool Router::retry(policy::AttemptFailure failure, int status, EndTry end) {
  const policy::RetryPolicy& policy = cluster_->config().retry;
  const http::RequestHeaders& req = request_.get();
  if (response_started() || retries_ >= policy.attempts ||
      !policy::is_retriable(policy, failure, status, grpc_) ||
      !policy::method_allows_retry(policy, req.method, failure, grpc_) || !req.upgrade.empty() ||
      !body_.whole(req.has_body))
    return false;
  // A retry in flight holds a max_retries slot; one that fails and is
  // retried again keeps its slot.
  policy::BreakerSlot slot = std::move(attempt_.retry_slot());
  if (!slot.held() && !slot.acquire(cluster_->breaker(), policy::Resource::kRetries)) {
    cluster_->stats().overflow[static_cast<size_t>(policy::Resource::kRetries)].inc();
    return false;
  }
  if (!cluster_->retry_budget().try_withdraw(worker_.loop().now())) {
    cluster_->stats().retry_budget_exhausted.inc();
    return false;
  }
  if (end == EndTry::kDrain) {
    attempt_.end_draining();
  } else {
    attempt_.end(false, true);
  }
  attempt_.retry_slot() = std::move(slot);
  ++retries_;
  cluster_->stats().retries.inc();
  phase_ = Phase::kBackoff;
  wait_.arm(policy::backoff_delay(policy, retries_ - 1, worker_.random()));
  return true;
}

// A pooled keep-alive connection can be closed by the upstream just as it is
// reused. When nothing of the response arrived and the request can be sent
// again whole, try once more on a new connection, outside the retry policy.
bool Router::retry_on_stale_connection() {
  const http::RequestHeaders& req = request_.get();
  if (stale_retries_ > 0 || !attempt_.active() || !attempt_.codec().reused_connection() ||
      attempt_.codec().response_bytes_seen() || response_started() || !req.upgrade.empty() ||
      !body_.whole(req.has_body))
    return false;
  ++stale_retries_;
  attempt_.end(false, false);
  start_try(/*fresh=*/true, /*from_decoder=*/false);
  return true;
}

// ---- response path ----------------------------------------------------------

void Router::decode_response_headers(const http::ResponseHeaders& headers, bool end_stream) {
  using Outcome = policy::OutlierDetector::Outcome;
  int s = headers.status;
  if (s >= 200 || s == 101)
    attempt_.report(s < 500                              ? Outcome::kSuccess
                    : (s == 502 || s == 503 || s == 504) ? Outcome::kGatewayError
                                                         : Outcome::k5xx);
  // A retry on the status lets the rest of this response drain, so its
  // connection serves again instead of being closed.
  if (s >= 200 && (s >= 500 || !cluster_->config().retry.status_codes.empty()) &&
      retry(policy::AttemptFailure::kStatus, s, EndTry::kDrain))
    return;
  // A gRPC error can be retried only when it is all of the answer.
  int grpc_code = grpc_ && end_stream ? http::grpc_status(headers.headers) : -1;
  if (grpc_code > 0 && retry(policy::AttemptFailure::kGrpcStatus, grpc_code, EndTry::kDrain)) return;
  attempt_.cancel_timeout();
  attempt_.first_byte();
  touch();
  status_ = s;
  if (grpc_ && end_stream) grpc_status_ = grpc_code;  // trailers-only
  phase_ = Phase::kResponding;
  body_clock_.cancel();  // both ways at once now: only silence ends it
  if (s == 101) {        // a tunnel lives as long as its peers
    timeout_.cancel();
    idle_after_ = Duration::zero();
    idle_timeout_.cancel();
  }
  if (end_stream) response_ending();
  encode_response_headers(headers, end_stream);
  if (end_stream) response_complete();
}

void Router::encode_response_headers(const http::ResponseHeaders& headers, bool end_stream) {
  bool modify = !route_->response_headers.empty() || !backend_->response_headers.empty() ||
                !cookie_value_.empty() || !cors_origin_.empty();
  if (!modify) {
    downstream_.encode_headers(headers, end_stream);
    return;
  }
  // A copy whose list can change; its views point into the upstream's buffer
  // and the config, both alive for this call.
  response_copy_ = headers;
  if (!route_->response_headers.empty()) apply_response_modifier(route_->response_headers, response_copy_);
  if (!backend_->response_headers.empty())
    apply_response_modifier(backend_->response_headers, response_copy_);
  if (!cookie_value_.empty()) {
    const HashPolicy& hash = cluster_->config().lb.hash;
    format_set_cookie(hash.name, cookie_value_, hash.cookie_ttl, set_cookie_);
    response_copy_.headers.push_back({"set-cookie", set_cookie_});
  }
  if (!cors_origin_.empty()) add_cors_headers(response_copy_);
  downstream_.encode_headers(response_copy_, end_stream);
}

// The Gateway API's CORS filter. A preflight (OPTIONS with an Origin and an
// Access-Control-Request-Method) is answered here and never forwarded: 200,
// with the CORS headers when the origin is allowed and without them when
// not (the browser then makes no request). Other requests go on; an allowed
// origin's response gets Access-Control-Allow-Origin and the rest.
bool Router::answer_cors(const CorsConfig& cors) {
  const http::RequestHeaders& req = request_.get();
  std::string_view origin = http::find_header(req.headers, "origin");
  if (origin.empty()) return false;
  const bool allowed = policy::origin_allowed(cors.allow_origins, origin);
  std::string_view wanted_method = http::find_header(req.headers, "access-control-request-method");
  if (req.method != "OPTIONS" || wanted_method.empty()) {
    if (allowed) cors_origin_ = origin;
    return false;
  }
  attempt_.end(false, false);
  release_admission(false);
  end_exchange_timers();
  status_ = 200;
  phase_ = Phase::kDone;
  http::ResponseHeaders r;
  r.status = 200;
  r.content_length = 0;
  r.has_body = false;
  std::string methods;
  std::string headers;
  const std::string max_age = std::to_string(cors.max_age_seconds);
  if (allowed) {
    const bool credentials = cors.allow_credentials;
    auto star = [](const std::vector<std::string>& list) { return list.size() == 1 && list[0] == "*"; };
    const bool any_origin = star(cors.allow_origins) && !credentials;
    r.headers.push_back({"access-control-allow-origin", any_origin ? std::string_view("*") : origin});
    if (credentials) r.headers.push_back({"access-control-allow-credentials", "true"});
    // With credentials a "*" would be taken literally: echo what was asked.
    if (star(cors.allow_methods)) {
      methods = credentials ? std::string(wanted_method) : "*";
    } else {
      for (const std::string& m : cors.allow_methods) methods += (methods.empty() ? "" : ",") + m;
    }
    if (star(cors.allow_headers)) {
      headers =
          credentials ? std::string(http::find_header(req.headers, "access-control-request-headers")) : "*";
    } else {
      for (const std::string& h : cors.allow_headers) headers += (headers.empty() ? "" : ",") + h;
    }
    if (!methods.empty()) r.headers.push_back({"access-control-allow-methods", methods});
    if (!headers.empty()) r.headers.push_back({"access-control-allow-headers", headers});
    if (!cors.expose_value.empty()) r.headers.push_back({"access-control-expose-headers", cors.expose_value});
    r.headers.push_back({"access-control-max-age", max_age});
    if (!any_origin) r.headers.push_back({"vary", "Origin"});
  }
  downstream_.encode_headers(r, true);
  downstream_.flush();
  return true;
}

void Router::add_cors_headers(http::ResponseHeaders& response) {
  const CorsConfig& cors = route_->cors;
  const bool any_origin =
      cors.allow_origins.size() == 1 && cors.allow_origins[0] == "*" && !cors.allow_credentials;
  auto set = [&](std::string_view name, std::string_view value) {
    std::erase_if(response.headers, [&](const http::Header& h) { return http::iequals(h.name, name); });
    response.headers.push_back({name, value});
  };
  set("access-control-allow-origin", any_origin ? std::string_view("*") : std::string_view(cors_origin_));
  if (cors.allow_credentials) set("access-control-allow-credentials", "true");
  if (!cors.expose_value.empty()) set("access-control-expose-headers", cors.expose_value);
  if (!any_origin) response.headers.push_back({"vary", "Origin"});
}

void Router::decode_response_data(std::string_view data, bool end_stream) {
  touch();
  if (end_stream) response_ending();
  downstream_.encode_data(data, end_stream);
  if (end_stream) response_complete();
}

void Router::decode_response_trailers(const http::HeaderList& trailers) {
  if (grpc_) grpc_status_ = http::grpc_status(trailers);
  response_ending();
  downstream_.encode_trailers(trailers);
  response_complete();
}

// Before the response's last bytes go to the codec, which may end the
// exchange (and call end()) from within that call: the adaptive limit gets
// this response's latency as a sample, not an ignored release.
void Router::response_ending() { release_admission(/*completed=*/true); }

void Router::flush_response() { downstream_.flush(); }

bool Router::response_blocked() const { return downstream_.write_blocked(); }

void Router::on_upstream_drained() {
  downstream_.resume_reading();
  if (body_clock_.armed()) start_body_clock();  // the wait was the upstream's
}

void Router::response_complete() {
  phase_ = Phase::kDone;
  timeout_.cancel();
  idle_timeout_.cancel();
  attempt_.end(/*keep=*/true, /*failed=*/false);
}

void Router::on_upstream_failure(http::UpstreamFailure failure, std::string_view detail) {
  using http::UpstreamFailure;
  if (failure == UpstreamFailure::kReset && retry_on_stale_connection()) return;
  if (!response_started()) {
    attempt_.report(policy::OutlierDetector::Outcome::kGatewayError);
    bool connect = failure == UpstreamFailure::kConnectFailed || failure == UpstreamFailure::kConnectTimeout;
    if (connect && retry(policy::AttemptFailure::kConnectFailure, 0)) return;
    if (failure == UpstreamFailure::kReset && !attempt_.codec().response_bytes_seen() &&
        retry(policy::AttemptFailure::kReset, 0))
      return;
  }
  attempt_.end(false, true);
  switch (failure) {
    case UpstreamFailure::kConnectFailed:
      flags_ |= kFlagConnectFailure;
      give_up(503, fmt::format("upstream connect error: {}\n", detail));
      break;
    case UpstreamFailure::kConnectTimeout:
      flags_ |= kFlagConnectFailure;
      give_up(504, "upstream connect timeout\n");
      break;
    case UpstreamFailure::kReset:
      if (!response_started()) cluster_->stats().protocol_errors.inc();
      flags_ |= kFlagUpstreamReset;
      give_up(502, fmt::format("{}\n", detail));
      break;
    case UpstreamFailure::kProtocolError:
      flags_ |= kFlagUpstreamProtocol;
      give_up(502, fmt::format("upstream protocol error: {}\n", detail));
      break;
  }
}

// ---- timeouts -----------------------------------------------------------------

void Router::touch() {
  if (idle_after_.count() > 0) idle_timeout_.arm(idle_after_);
}

void Router::give_up(int status, std::string_view body) {
  attempt_.end(false, true);
  if (response_started()) {
    // Part of the response is out: the client can only learn by the reset.
    end_exchange_timers();
    phase_ = Phase::kDone;
    release_admission(false);
    downstream_.reset_stream();
    return;
  }
  reply_local(status, body);
}

void Router::on_timeout() {
  if (cluster_) cluster_->stats().timeouts.inc();
  deadline_exceeded_ = true;
  flags_ |= kFlagTimeout;
  give_up(504, "upstream request timeout\n");
}

void Router::on_try_timeout() {
  if (response_started()) return;
  attempt_.report(policy::OutlierDetector::Outcome::kGatewayError);
  cluster_->stats().timeouts.inc();
  if (retry(policy::AttemptFailure::kPerTryTimeout, 0)) return;
  flags_ |= kFlagTimeout;
  give_up(504, "upstream per-try timeout\n");
}

void Router::on_idle_timeout() {
  if (cluster_) cluster_->stats().timeouts.inc();
  flags_ |= kFlagIdleTimeout;
  give_up(504, "upstream idle timeout\n");
}

void Router::send_continue() {
  continue_sent_ = true;
  downstream_.encode_continue();
  if (!body_.ended()) start_body_clock();
}

void Router::start_body_clock() {
  const ListenerConfig& listener = *context_->listener->config;
  if (listener.request_body_timeout.count() == 0) return;
  body_since_ = worker_.loop().now();
  body_bytes_ = 0;
  body_clock_.arm(listener.request_body_timeout);
}

void Router::on_body_clock() {
  if (blocked()) {  // the upstream holds the body back, not the client
    start_body_clock();
    return;
  }
  const ListenerConfig& listener = *context_->listener->config;
  Duration due = listener.request_body_timeout;
  if (listener.request_body_min_rate > 0)
    due += std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(static_cast<double>(body_bytes_) / listener.request_body_min_rate));
  const Duration elapsed = worker_.loop().now() - body_since_;
  if (elapsed < due) {
    body_clock_.arm(due - elapsed);
    return;
  }
  context_->stats->request_body_timeouts.inc();
  flags_ |= kFlagBodyTimeout;
  reply_local(408, "request body timeout\n");
}

// ---- local answers -------------------------------------------------------------

void Router::reply_redirect(const RedirectConfig& redirect) {
  redirect_location(redirect, route_->match.path, request_.get(), scratch_);
  attempt_.end(false, false);
  end_exchange_timers();
  status_ = redirect.status;
  phase_ = Phase::kDone;
  http::ResponseHeaders r;
  r.status = redirect.status;
  r.headers.push_back({"location", scratch_});
  r.content_length = 0;
  r.has_body = false;
  downstream_.encode_headers(r, true);
  downstream_.flush();
}

void Router::reply_local(int status, std::string_view body, http::Header extra) {
  attempt_.end(false, false);
  release_admission(false);
  end_exchange_timers();
  status_ = status;
  phase_ = Phase::kDone;
  if (grpc_) {
    reply_grpc(status, body);
    return;
  }
  bool head = request_.get().method == "HEAD";
  http::ResponseHeaders r;
  r.status = status;
  r.headers.push_back({"content-type", "text/plain"});
  if (!extra.name.empty()) r.headers.push_back(extra);
  r.content_length = static_cast<int64_t>(body.size());
  r.has_body = !head;
  if (head) {
    downstream_.encode_headers(r, true);
  } else {
    downstream_.encode_headers(r, false);
    downstream_.encode_data(body, true);
  }
  downstream_.flush();
}

// A gRPC client reads the outcome from grpc-status, not from the HTTP
// status: the proxy's own answer to one is a trailers-only gRPC response
// (HTTP 200) with the gRPC code for the HTTP status, as gRPC maps them
// (doc/http-grpc-status-mapping.md), and the reason in grpc-message.
void Router::reply_grpc(int status, std::string_view reason) {
  int code = 2;  // UNKNOWN
  switch (status) {
    case 400:
      code = 13;  // INTERNAL
      break;
    case 401:
      code = 16;  // UNAUTHENTICATED
      break;
    case 403:
      code = 7;  // PERMISSION_DENIED
      break;
    case 404:
      code = 12;  // UNIMPLEMENTED
      break;
    case 429:
    case 502:
    case 503:
    case 504:
      code = 14;  // UNAVAILABLE
      break;
    default:
      break;
  }
  // The call's deadline (the route's timeout, or its grpc-timeout) passed.
  if (deadline_exceeded_) code = 4;  // DEADLINE_EXCEEDED
  grpc_status_ = code;
  while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.remove_suffix(1);
  // grpc-message is percent-encoded: bytes outside printable ASCII, and '%'.
  grpc_message_.clear();
  for (char c : reason) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b > 0x7e || b == '%') {
      static constexpr char kHex[] = "0123456789ABCDEF";
      grpc_message_ += '%';
      grpc_message_ += kHex[b >> 4];
      grpc_message_ += kHex[b & 15];
    } else {
      grpc_message_ += c;
    }
  }
  char code_text[2];
  auto [code_end, ec] = std::to_chars(code_text, code_text + sizeof code_text, code);
  http::ResponseHeaders r;
  r.status = 200;
  r.headers.push_back({"content-type", "application/grpc"});
  r.headers.push_back(
      {"grpc-status", std::string_view(code_text, static_cast<size_t>(code_end - code_text))});
  r.headers.push_back({"grpc-message", grpc_message_});
  r.content_length = 0;
  r.has_body = true;
  downstream_.encode_headers(r, true);
  downstream_.flush();
}

// ---- accounting -------------------------------------------------------------

void Router::end(uint64_t bytes_received, uint64_t bytes_sent) {
  release_admission(false);
  Duration elapsed = worker_.loop().now() - start_;
  ListenerStats& stats = *context_->stats;
  stats.count_status(status_);
  if (grpc_ && grpc_status_ >= 0) stats.grpc_status[grpc_status_].inc();
  stats.request_duration.record(elapsed);
  GoldenLabels labels = record_golden(bytes_received, bytes_sent, elapsed);
  if (context_->snapshot->access_log) log_access(labels, bytes_received, bytes_sent, elapsed);
  if (const Tap* t = context_->snapshot->tap; t != nullptr && t->on()) tap(labels, elapsed);
}

void Router::tap(const GoldenLabels& labels, Duration elapsed) {
  const http::RequestHeaders& req = request_.get();
  TapEvent e;
  e.start_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        (std::chrono::system_clock::now() - elapsed).time_since_epoch())
                        .count();
  e.duration_us = static_cast<uint32_t>(
      std::min<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count(), UINT32_MAX));
  e.status = status_;
  e.grpc_status = grpc_ ? grpc_status_ : -1;
  e.inbound = labels.direction == Direction::kInbound;
  e.tls = labels.tls;
  e.method = req.method;
  e.authority = req.authority;
  // Without its query, which can carry what is not for a tap to show.
  std::string_view path = req.path.substr(0, req.path.find('?'));
  e.path = path.substr(0, Tap::kMaxPath);
  e.source_service = labels.source_service;
  e.source_namespace = labels.source_namespace;
  e.destination_service = labels.destination_service;
  e.destination_namespace = labels.destination_namespace;
  e.route = labels.route;
  e.upstream = attempt_.endpoint();
  context_->snapshot->tap->record(worker_.index(), std::move(e));
}

GoldenLabels Router::record_golden(uint64_t bytes_received, uint64_t bytes_sent, Duration elapsed) {
  const Snapshot& snap = *context_->snapshot;
  GoldenLabels labels = golden_labels(context_->listener->config->direction, snap.self_service,
                                      snap.self_namespace, context_->authz_client.identity,
                                      cluster_ != nullptr ? &cluster_->config() : nullptr, attempt_.tls());
  if (route_ != nullptr) labels.route = route_->name;
  snap.golden[worker_.index()]->entry(labels).record_request(status_, grpc_ ? grpc_status_ : -1, elapsed,
                                                             bytes_received, bytes_sent);
  if (trace_.active && trace_.sampled) end_trace(labels);
  return labels;
}

namespace {

template <size_t N>
void random_id(Random& random, std::array<uint8_t, N>& id) {
  do {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t v = random.next();
      std::memcpy(id.data() + i, &v, std::min<size_t>(8, N - i));
    }
  } while (std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; }));
}

}  // namespace

void Router::begin_trace(uint32_t sampling_per_million) {
  bool decided = false;
  TraceContext parent = extract_trace_context(request_.get().headers, decided);
  Random& random = worker_.random();
  trace_.active = true;
  trace_.has_parent = parent.valid;
  if (parent.valid) {
    trace_.trace_id = parent.trace_id;
    trace_.parent_id = parent.span_id;
  } else {
    random_id(random, trace_.trace_id);
  }
  random_id(random, trace_.span_id);
  // Parent-based: a parent's decision stands; a new trace is sampled by ratio.
  trace_.sampled = parent.valid && decided ? parent.sampled : random.uniform(1000000) < sampling_per_million;
  std::array<char, 55> traceparent;
  request_.set("traceparent",
               format_traceparent(trace_.trace_id, trace_.span_id, trace_.sampled, traceparent));
  if (parent.formats & kTraceB3Single) {
    std::array<char, 68> b3;
    request_.set("b3", format_b3(trace_.trace_id, trace_.span_id, trace_.sampled,
                                 trace_.has_parent ? &trace_.parent_id : nullptr, b3));
  }
  if (parent.formats & kTraceB3Multi) {
    std::array<char, 32> hex;
    hex_into(trace_.trace_id.data(), 16, hex.data());
    request_.set("x-b3-traceid", std::string_view(hex.data(), 32));
    hex_into(trace_.span_id.data(), 8, hex.data());
    request_.set("x-b3-spanid", std::string_view(hex.data(), 16));
    if (trace_.has_parent) {
      hex_into(trace_.parent_id.data(), 8, hex.data());
      request_.set("x-b3-parentspanid", std::string_view(hex.data(), 16));
    } else {
      request_.remove("x-b3-parentspanid");
    }
    request_.set("x-b3-sampled", trace_.sampled ? "1" : "0");
  }
  if (trace_.sampled) {
    trace_.start_wall = std::chrono::system_clock::now();
    trace_.start_steady = std::chrono::steady_clock::now();
  }
}

void Router::end_trace(const GoldenLabels& labels) {
  const http::RequestHeaders& req = request_.get();
  SpanRecord span;
  span.trace_id = trace_.trace_id;
  span.span_id = trace_.span_id;
  span.parent_id = trace_.parent_id;
  span.has_parent = trace_.has_parent;
  span.server = labels.direction == Direction::kInbound;
  span.error = golden_failure(status_, grpc_ ? grpc_status_ : -1);
  span.start_unix_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(trace_.start_wall.time_since_epoch()).count();
  span.end_unix_ns = span.start_unix_ns + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::steady_clock::now() - trace_.start_steady)
                                              .count();
  span.name = std::string(req.method);
  if (!labels.route.empty()) span.name += " " + std::string(labels.route);
  std::string_view path = req.path.substr(0, req.path.find('?'));
  std::string_view version = req.protocol.starts_with("HTTP/") ? req.protocol.substr(5) : req.protocol;
  span.strings = {{"http.request.method", std::string(req.method)},
                  {"url.path", std::string(path)},
                  {"server.address", std::string(req.authority)},
                  {"network.protocol.version", std::string(version)},
                  {"trellis.direction", span.server ? "inbound" : "outbound"},
                  {"trellis.source.service", std::string(labels.source_service)},
                  {"trellis.source.namespace", std::string(labels.source_namespace)},
                  {"trellis.destination.service", std::string(labels.destination_service)},
                  {"trellis.destination.namespace", std::string(labels.destination_namespace)},
                  {"trellis.request_id", request_id_}};
  if (!labels.route.empty()) span.strings.emplace_back("trellis.route", std::string(labels.route));
  if (!attempt_.endpoint().empty())
    span.strings.emplace_back("trellis.upstream.endpoint", attempt_.endpoint());
  span.integers = {{"http.response.status_code", status_}, {"trellis.retries", retries_}};
  if (grpc_ && grpc_status_ >= 0) span.integers.emplace_back("rpc.grpc.status_code", grpc_status_);
  context_->snapshot->tracer->submit(worker_.index(), std::move(span));
}

void Router::log_access(const GoldenLabels& labels, uint64_t bytes_received, uint64_t bytes_sent,
                        Duration elapsed) {
  const http::RequestHeaders& req = request_.get();
  AccessEntry entry;
  entry.listener = context_->listener->config->name;
  entry.client = context_->client_address;
  entry.method = req.method;
  entry.path = req.path;
  entry.host = req.authority;
  entry.protocol = req.protocol;
  entry.status = status_;
  entry.grpc_status = grpc_ ? grpc_status_ : -1;
  entry.bytes_received = bytes_received;
  entry.bytes_sent = bytes_sent;
  entry.duration = elapsed;
  entry.upstream = attempt_.endpoint();
  entry.cluster = cluster_name_;
  entry.request_id = request_id_;
  entry.retries = retries_;
  entry.identity = context_->authz_client.identity;
  entry.denied_by = denied_by_;
  entry.route = labels.route;
  entry.source_service = labels.source_service;
  entry.destination_service = labels.destination_service;
  entry.response_flags = flags_;
  char trace_id[32];
  if (trace_.active) {
    hex_into(trace_.trace_id.data(), trace_.trace_id.size(), trace_id);
    entry.trace_id = std::string_view(trace_id, sizeof trace_id);
  }
  std::string& line = worker_.scratch();
  format_access_line(context_->snapshot->access_log->format(), entry, line);
  worker_.log_access(line);
}

}  // namespace trellis::proxy
