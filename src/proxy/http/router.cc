#include "proxy/http/router.h"

#include <fmt/format.h>

#include "common/text.h"
#include "policy/sampling.h"
#include "proxy/observe/access_log.h"
#include "proxy/http/mirror.h"
#include "proxy/http/route_actions.h"
#include "proxy/upstream/cluster.h"
#include "proxy/runtime/worker.h"

namespace trellis::proxy {
namespace {

void format_request_id(Random& random, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = random.next(), b = random.next();
  // UUID version 4, variant 1.
  a = (a & ~0xF000ull) | 0x4000ull;
  b = (b & ~(3ull << 62)) | (2ull << 62);
  char buf[36];
  int pos = 0;
  for (int i = 0; i < 16; ++i) {
    uint64_t byte = i < 8 ? (a >> (56 - 8 * i)) & 0xFF : (b >> (56 - 8 * (i - 8))) & 0xFF;
    if (i == 4 || i == 6 || i == 8 || i == 10) buf[pos++] = '-';
    buf[pos++] = kHex[byte >> 4];
    buf[pos++] = kHex[byte & 15];
  }
  out.assign(buf, sizeof(buf));
}

// What the balancer hears about a failed try: as slow as this, so a host
// that fails fast does not look fast to the latency-aware balancer.
constexpr Duration kFailurePenalty = std::chrono::seconds(1);

// Stream idle timeout: no bytes either way for this long. Not armed when the
// request timeout would fire first anyway.
bool idle_timer_needed(Millis idle, Millis request) {
  return idle.count() > 0 && (request.count() == 0 || idle < request);
}

}  // namespace

Router::Router(Worker& worker, http::ResponseEncoder& downstream)
    : worker_(worker),
      downstream_(downstream),
      upstream_(worker.loop(), *this),
      timeout_(worker.loop(), [this] { on_timeout(); }),
      try_timeout_(worker.loop(), [this] { on_try_timeout(); }),
      idle_timeout_(worker.loop(), [this] { on_idle_timeout(); }),
      wait_(worker.loop(), [this] {
        waiting_ = false;
        proceed(/*from_decoder=*/false);
        // The client may have been held at the body limit while we waited.
        if (upstream_.attached()) downstream_.resume_reading();
      }) {}

Router::~Router() {
  end_try(false, false);
  release_request_slot();
}

void Router::begin(const DownstreamContext& context) {
  end_try(false, false);
  release_request_slot();
  timeout_.cancel();
  try_timeout_.cancel();
  idle_timeout_.cancel();
  wait_.cancel();
  context_ = &context;
  start_ = worker_.loop().now();
  route_ = nullptr;
  backend_ = nullptr;
  cluster_ = nullptr;
  cluster_name_ = {};
  upstream_address_.clear();
  request_id_.clear();
  pick_ = {};
  body_.clear();
  buffering_ = body_overflow_ = has_trailers_ = waiting_ = false;
  retries_ = 0;
  mirror_mask_ = 0;
  abort_after_delay_ = false;
  cookie_value_.clear();
  status_ = 0;
  head_request_ = false;
  request_ended_ = response_started_ = response_ended_ = stale_retried_ = continue_sent_ = false;
  request_.get().headers.clear();
  request_.get().method = request_.get().path = request_.get().authority = {};
}

// ---- request path -----------------------------------------------------------

void Router::decode_headers(const http::RequestHeaders& headers, bool end_stream) {
  request_.assign(headers);
  request_ended_ = end_stream;
  head_request_ = headers.method == "HEAD";
  add_forwarding_headers();
  http::RequestHeaders& req = request_.get();

  const ListenerRuntime& listener = *context_->listener;
  policy::RouteRef ref;
  if (!listener.routes.match({req.authority, req.method, req.path, &req.headers}, ref)) {
    reply_local(404, "no route\n");
    return;
  }
  rate_delay_ = Duration::zero();
  const auto& limits = listener.rate_limits[ref.virtual_host][ref.route];
  if (!limits.empty() && !check_rate_limits(limits)) return;
  route_request(listener.config->virtual_hosts[ref.virtual_host].routes[ref.route]);
}

// Every limit whose match the request satisfies must admit it; a leaky bucket
// may ask for it to be held first (the longest hold wins).
bool Router::check_rate_limits(const std::vector<std::shared_ptr<RouteRateLimiter>>& limits) {
  const http::RequestHeaders& req = request_.get();
  policy::RequestView view{req.authority, req.method, req.path, &req.headers};
  MonoTime now = worker_.loop().now();
  for (const auto& limiter : limits) {
    if (!limiter->counts(view)) continue;
    const RateLimitConfig& config = limiter->config();
    std::string_view key;
    switch (config.key) {
      case RateLimitConfig::Key::kAll:
      case RateLimitConfig::Key::kIdentity:  // no workload identities before mTLS: one shared bucket
        break;
      case RateLimitConfig::Key::kAddress:
        key = context_->client_ip;
        break;
      case RateLimitConfig::Key::kHeader:
        key = http::find_header(req.headers, config.key_header);
        break;
    }
    RouteRateLimiter::Decision d = limiter->admit(key, now);
    if (!d.allowed) {
      context_->stats->rate_limited.inc();
      auto seconds = std::chrono::ceil<std::chrono::seconds>(d.retry_after).count();
      scratch_ = std::to_string(std::max<int64_t>(seconds, 1));
      reply_local(429, config.name.empty() ? std::string("rate limited\n") : "rate limited: " + config.name + "\n",
                  {"retry-after", scratch_});
      return false;
    }
    rate_delay_ = std::max(rate_delay_, d.delay);
  }
  if (rate_delay_.count() > 0) context_->stats->rate_limit_delayed.inc();
  return true;
}

void Router::route_request(const RouteConfig& route) {
  route_ = &route;
  if (!route.direct_error.empty()) {
    reply_local(500, route.direct_error + "\n");
    return;
  }
  if (route.redirect.enabled) {
    reply_redirect(route.redirect);
    return;
  }
  Random& random = worker_.random();
  size_t chosen = route.backends.size() == 1
                      ? (route.backends[0].weight > 0 ? 0 : SIZE_MAX)
                      : policy::pick_by_weight(route.backends, [](const BackendConfig& b) { return b.weight; }, random);
  if (chosen == SIZE_MAX) {
    reply_local(500, "no backend to send to: every backend has weight 0\n");
    return;
  }
  backend_ = &route.backends[chosen];
  if (backend_->cluster.empty()) {
    reply_local(500, "backend not found\n");
    return;
  }
  cluster_ = &worker_.cluster(backend_->cluster_index);
  cluster_name_ = cluster_->name();
  const ClusterConfig& cluster = cluster_->config();

  // A request drawn for both a delay and an abort is delayed, then aborted.
  const FaultConfig& fault = route.fault;
  bool delayed = fault.delay.count() > 0 && policy::sampled(fault.delay_per_million, 1'000'000, random);
  // A leaky bucket's hold and a fault's delay overlap: the longer one counts.
  Duration hold = std::max<Duration>(delayed ? Duration(fault.delay) : Duration::zero(), rate_delay_);
  abort_after_delay_ = fault.abort_status != 0 && policy::sampled(fault.abort_per_million, 1'000'000, random);
  if (abort_after_delay_ && !delayed) {
    fault_abort();
    return;
  }

  // The request as the upstream will see it.
  if (!route.request_headers.empty()) apply_request_modifier(route.request_headers, request_);
  if (!backend_->request_headers.empty()) apply_request_modifier(backend_->request_headers, request_);
  if (!route.rewrite.hostname.empty()) request_.set_authority(route.rewrite.hostname);
  if (route.rewrite.path.kind != PathModifier::Kind::kNone) {
    rewrite_path(route.rewrite.path, route.match.path, request_.get().path, scratch_);
    request_.set_path(scratch_);
  }

  const http::RequestHeaders& req = request_.get();
  for (size_t i = 0; i < route.mirrors.size() && i < 32; ++i)
    if (policy::sampled(route.mirrors[i].numerator, route.mirrors[i].denominator, random)) mirror_mask_ |= 1u << i;
  // The body is kept while it may be needed again: for a retry, a mirror or
  // until a fault delay ends. An upgrade is a tunnel: never replayed.
  buffering_ =
      req.upgrade.empty() && req.has_body && (cluster.retry.attempts > 0 || mirror_mask_ != 0 || hold.count() > 0);

  if (route.timeout.count() > 0) timeout_.arm(route.timeout);
  idle_after_ = idle_timer_needed(cluster.request_idle_timeout, route.timeout) ? Duration(cluster.request_idle_timeout)
                                                                               : Duration::zero();
  touch();
  cluster_->retry_budget().record_request(worker_.loop().now());
  if (hold.count() > 0) {
    if (delayed) cluster_->stats().fault_delays.inc();
    waiting_ = true;
    wait_.arm(hold);
    // The client may wait for 100 Continue before sending the body we hold.
    if (req.expect_continue) {
      continue_sent_ = true;
      downstream_.encode_continue();
    }
    return;
  }
  proceed(/*from_decoder=*/true);
}

void Router::reply_overflow(policy::Resource limit) {
  cluster_->stats().overflow[static_cast<size_t>(limit)].inc();
  std::string_view name = policy::name_of(limit);
  reply_local(503, fmt::format("upstream overflow: {}\n", name), {"x-trellis-overflow", name});
}

void Router::release_request_slot() {
  if (holds_request_ && cluster_ != nullptr) cluster_->breaker().release(policy::Resource::kRequests);
  holds_request_ = false;
  // Not a measured completion (a failure, a local answer, a reset): the
  // adaptive limit gets its slot back without a latency sample.
  if (concurrency_) concurrency_->release_ignored();
  concurrency_.reset();
}

void Router::fault_abort() {
  cluster_->stats().fault_aborts.inc();
  reply_local(route_->fault.abort_status, "fault filter abort\n");
}

void Router::proceed(bool from_decoder) {
  if (abort_after_delay_) {
    fault_abort();
    return;
  }
  if (!holds_request_) {
    if (!cluster_->breaker().try_acquire(policy::Resource::kRequests)) {
      reply_overflow(policy::Resource::kRequests);
      return;
    }
    holds_request_ = true;
    if (const auto& limiter = cluster_->concurrency()) {
      if (!limiter->try_acquire()) {
        cluster_->stats().concurrency_shed.inc();
        reply_local(503, "upstream overflow: adaptive_concurrency\n", {"x-trellis-overflow", "adaptive_concurrency"});
        return;
      }
      concurrency_ = limiter;
      concurrency_start_ = worker_.loop().now();
    }
  }
  if (request_ended_ && mirror_mask_ != 0) start_mirrors();
  start_try(/*fresh=*/false, from_decoder);
}

void Router::add_forwarding_headers() {
  http::RequestHeaders& req = request_.get();
  // x-forwarded-for: every earlier value, in order, then this client.
  scratch_.clear();
  for (const http::Header& h : req.headers) {
    if (!http::iequals(h.name, "x-forwarded-for") || h.value.empty()) continue;
    if (!scratch_.empty()) scratch_ += ", ";
    scratch_ += h.value;
  }
  if (!scratch_.empty()) {
    std::erase_if(req.headers, [](const http::Header& h) { return http::iequals(h.name, "x-forwarded-for"); });
    scratch_ += ", ";
  }
  scratch_ += context_->client_ip;
  request_.add("x-forwarded-for", scratch_);

  std::string_view id = http::find_header(req.headers, "x-request-id");
  if (id.empty()) {
    format_request_id(worker_.random(), request_id_);
    request_.add("x-request-id", request_id_);
  } else {
    request_id_.assign(id);
  }
}

std::optional<uint64_t> Router::request_hash() {
  const HashPolicy& hash = cluster_->config().lb.hash;
  const http::RequestHeaders& req = request_.get();
  switch (hash.kind) {
    case HashPolicy::Kind::kNone:
      return std::nullopt;
    case HashPolicy::Kind::kHeader: {
      std::string_view value = http::find_header(req.headers, hash.name);
      if (value.empty()) return std::nullopt;
      return fnv1a64(value);
    }
    case HashPolicy::Kind::kCookie: {
      std::string_view value = find_cookie(req.headers, hash.name);
      if (!value.empty()) return fnv1a64(value);
      if (!hash.cookie_ttl_set) return std::nullopt;
      // No cookie yet: pick one, and tell the client to send it from now on.
      if (cookie_value_.empty()) {
        static constexpr char kHex[] = "0123456789abcdef";
        uint64_t r = worker_.random().next();
        cookie_value_.resize(16);
        for (int i = 0; i < 16; ++i) cookie_value_[i] = kHex[(r >> (4 * i)) & 15];
      }
      return fnv1a64(cookie_value_);
    }
    case HashPolicy::Kind::kSourceIp:
      return fnv1a64(context_->client_ip);
  }
  return std::nullopt;
}

void Router::start_try(bool fresh, bool from_decoder) {
  policy::PickContext ctx;
  ctx.now = worker_.loop().now();
  if (cluster_->config().lb.hash.kind != HashPolicy::Kind::kNone) ctx.hash = request_hash();
  pick_ = cluster_->pick(ctx);
  if (pick_.pool == nullptr) {
    reply_local(503, "no healthy upstream\n");
    return;
  }
  upstream_address_ = pick_.pool->address().text;
  int error = 0;
  UpstreamConnection* c = pick_.pool->acquire(&upstream_, error, fresh);
  try_start_ = ctx.now;
  first_byte_ = {};
  cluster_->on_start(pick_);
  if (c == nullptr) {
    if (error != kOverflowConnections && error != kOverflowPending)
      cluster_->report(pick_, policy::OutlierDetector::Outcome::kGatewayError);
    if (error == kOverflowConnections || error == kOverflowPending) {
      end_try(false, false);
      reply_overflow(error == kOverflowConnections ? policy::Resource::kConnections
                                                   : policy::Resource::kPendingRequests);
      return;
    }
    if (retry(policy::AttemptFailure::kConnectFailure, 0)) return;
    end_try(false, true);
    reply_local(503, fmt::format("upstream connect error: {}\n", std::strerror(error)));
    return;
  }
  cluster_->stats().requests.inc();
  upstream_.attach(c, head_request_);
  const http::RequestHeaders& req = request_.get();
  bool ended_here = request_ended_ && body_.empty() && !has_trailers_;
  upstream_.encode_headers(req, ended_here);
  if (!body_.empty() || (request_ended_ && !ended_here && !has_trailers_)) upstream_.encode_data(body_, request_ended_);
  Millis per_try = route_->per_try_timeout.count() > 0 ? route_->per_try_timeout : cluster_->config().retry.per_try_timeout;
  if (per_try.count() > 0) try_timeout_.arm(per_try);
  // The proxy takes the body from here on: tell a waiting client now rather
  // than make it wait for its own timeout (the upstream never saw the Expect).
  if (req.expect_continue && !continue_sent_) {
    continue_sent_ = true;
    downstream_.encode_continue();
  }
  // From the decoder, its flush() follows and sends head and body together.
  if (!from_decoder) upstream_.flush();
}

void Router::decode_data(std::string_view data, bool end_stream) {
  request_ended_ = request_ended_ || end_stream;
  touch();
  if (buffering_ || waiting_) buffer_body(data);
  if (upstream_.attached()) upstream_.encode_data(data, end_stream);
  if (end_stream && mirror_mask_ != 0 && !waiting_) start_mirrors();
}

void Router::buffer_body(std::string_view data) {
  if (body_overflow_) return;
  uint32_t limit = cluster_ ? cluster_->config().retry.buffer_limit : 0;
  // While no upstream is attached the body has nowhere else to go: keep it
  // (blocked() stops the client at the limit). Otherwise past the limit the
  // request can no longer be replayed or mirrored.
  if (!waiting_ && body_.size() + data.size() > limit) {
    body_overflow_ = true;
    body_.clear();
    body_.shrink_to_fit();
    return;
  }
  body_.append(data);
}

void Router::decode_trailers(const http::HeaderList& trailers) {
  request_ended_ = true;
  // Trailers are forwarded once, never replayed.
  has_trailers_ = true;
  if (upstream_.attached()) upstream_.encode_trailers(trailers);
}

void Router::flush() {
  if (upstream_.attached()) upstream_.flush();
}

bool Router::blocked() const {
  if (upstream_.attached()) return upstream_.write_blocked();
  return waiting_ && cluster_ != nullptr && body_.size() >= cluster_->config().retry.buffer_limit;
}

void Router::on_downstream_drained() {
  if (upstream_.attached()) upstream_.resume_reading();
}

void Router::on_downstream_reset() {
  timeout_.cancel();
  try_timeout_.cancel();
  idle_timeout_.cancel();
  wait_.cancel();
  waiting_ = false;
  end_try(false, false);
  release_request_slot();
}

void Router::start_mirrors() {
  uint32_t mask = mirror_mask_;
  mirror_mask_ = 0;
  const http::RequestHeaders& req = request_.get();
  if (body_overflow_ || has_trailers_ || !req.upgrade.empty()) return;  // not whole: mirror nothing
  for (size_t i = 0; i < route_->mirrors.size() && i < 32; ++i) {
    if ((mask & (1u << i)) == 0) continue;
    UpstreamCluster& shadow = worker_.cluster(route_->mirrors[i].cluster_index);
    MirrorStream::start(worker_, shadow, req, body_, route_->timeout);
  }
}

// ---- retries ----------------------------------------------------------------

bool Router::replayable() const {
  const http::RequestHeaders& req = request_.get();
  if (!req.upgrade.empty() || has_trailers_) return false;
  return !req.has_body || (buffering_ && !body_overflow_);
}

bool Router::retry(policy::AttemptFailure failure, int status) {
  const policy::RetryPolicy& policy = cluster_->config().retry;
  if (response_started_ || retries_ >= policy.attempts || !policy::is_retriable(policy, failure, status) ||
      !policy::method_allows_retry(policy, request_.get().method, failure) || !replayable())
    return false;
  // A retry in flight holds a max_retries slot; one that fails and is
  // retried again keeps its slot.
  policy::CircuitBreaker& breaker = cluster_->breaker();
  bool carried = holds_retry_;
  if (!carried && !breaker.try_acquire(policy::Resource::kRetries)) {
    cluster_->stats().overflow[static_cast<size_t>(policy::Resource::kRetries)].inc();
    return false;
  }
  if (!cluster_->retry_budget().try_withdraw(worker_.loop().now())) {
    cluster_->stats().retry_budget_exhausted.inc();
    if (!carried) breaker.release(policy::Resource::kRetries);
    return false;
  }
  holds_retry_ = false;  // moves to the next try, not given back by end_try
  end_try(false, true);
  holds_retry_ = true;
  ++retries_;
  cluster_->stats().retries.inc();
  waiting_ = true;
  wait_.arm(policy::backoff_delay(policy, retries_ - 1, worker_.random()));
  return true;
}

// A pooled keep-alive connection can be closed by the upstream just as it is
// reused. When nothing of the response arrived and the request can be sent
// again whole, try once more on a new connection, outside the retry policy.
bool Router::free_retry_on_stale_connection() {
  if (stale_retried_ || !upstream_.attached() || !upstream_.reused_connection() || upstream_.response_bytes_seen() ||
      response_started_ || !replayable())
    return false;
  stale_retried_ = true;
  end_try(false, false);
  start_try(/*fresh=*/true, /*from_decoder=*/false);
  return true;
}

void Router::end_try(bool reusable, bool failed) {
  try_timeout_.cancel();
  if (holds_retry_ && cluster_ != nullptr) cluster_->breaker().release(policy::Resource::kRetries);
  holds_retry_ = false;
  if (pick_.pool != nullptr && cluster_ != nullptr) {
    Duration latency = first_byte_.count() > 0 ? first_byte_ : worker_.loop().now() - try_start_;
    if (failed) latency = std::max(latency, kFailurePenalty);
    cluster_->on_complete(pick_, latency);
    pick_ = {};
  }
  UpstreamConnection* c = upstream_.detach();
  if (c != nullptr) c->pool().release(c, reusable);
}

// ---- response path ----------------------------------------------------------

void Router::decode_response_headers(const http::ResponseHeaders& headers, bool end_stream) {
  using Outcome = policy::OutlierDetector::Outcome;
  int s = headers.status;
  if (s >= 200 || s == 101)
    cluster_->report(pick_, s < 500 ? Outcome::kSuccess
                                    : (s == 502 || s == 503 || s == 504) ? Outcome::kGatewayError : Outcome::k5xx);
  if (headers.status >= 200 && (headers.status >= 500 || !cluster_->config().retry.status_codes.empty()) &&
      retry(policy::AttemptFailure::kStatus, headers.status))
    return;
  try_timeout_.cancel();
  if (first_byte_.count() == 0) first_byte_ = std::max<Duration>(worker_.loop().now() - try_start_, Duration(1));
  touch();
  status_ = headers.status;
  response_started_ = true;
  if (headers.status == 101) {  // a tunnel lives as long as its peers
    timeout_.cancel();
    idle_after_ = Duration::zero();
    idle_timeout_.cancel();
  }
  encode_response_headers(headers, end_stream);
  if (end_stream) response_complete();
}

void Router::encode_response_headers(const http::ResponseHeaders& headers, bool end_stream) {
  bool modify = !route_->response_headers.empty() || !backend_->response_headers.empty() || !cookie_value_.empty();
  if (!modify) {
    downstream_.encode_headers(headers, end_stream);
    return;
  }
  // A copy whose list can change; its views point into the upstream's buffer
  // and the config, both alive for this call.
  response_copy_ = headers;
  if (!route_->response_headers.empty()) apply_response_modifier(route_->response_headers, response_copy_);
  if (!backend_->response_headers.empty()) apply_response_modifier(backend_->response_headers, response_copy_);
  if (!cookie_value_.empty()) {
    const HashPolicy& hash = cluster_->config().lb.hash;
    format_set_cookie(hash.name, cookie_value_, hash.cookie_ttl, set_cookie_);
    response_copy_.headers.push_back({"set-cookie", set_cookie_});
  }
  downstream_.encode_headers(response_copy_, end_stream);
}

void Router::decode_response_data(std::string_view data, bool end_stream) {
  touch();
  downstream_.encode_data(data, end_stream);
  if (end_stream) response_complete();
}

void Router::decode_response_trailers(const http::HeaderList& trailers) {
  downstream_.encode_trailers(trailers);
  response_complete();
}

void Router::flush_response() { downstream_.flush(); }

bool Router::response_blocked() const { return downstream_.write_blocked(); }

void Router::on_upstream_drained() { downstream_.resume_reading(); }

void Router::response_complete() {
  response_ended_ = true;
  timeout_.cancel();
  idle_timeout_.cancel();
  end_try(upstream_.reusable(), false);
  if (concurrency_) {
    MonoTime now = worker_.loop().now();
    concurrency_->release(now - concurrency_start_, now);
    concurrency_.reset();
  }
  release_request_slot();
}

void Router::on_upstream_failure(http::UpstreamFailure failure, std::string_view detail) {
  if (failure == http::UpstreamFailure::kReset && free_retry_on_stale_connection()) return;
  if (!response_started_ && cluster_ != nullptr)
    cluster_->report(pick_, policy::OutlierDetector::Outcome::kGatewayError);
  if (!response_started_) {
    if ((failure == http::UpstreamFailure::kConnectFailed || failure == http::UpstreamFailure::kConnectTimeout) &&
        retry(policy::AttemptFailure::kConnectFailure, 0))
      return;
    if (failure == http::UpstreamFailure::kReset && !upstream_.response_bytes_seen() &&
        retry(policy::AttemptFailure::kReset, 0))
      return;
  }
  end_try(false, true);
  timeout_.cancel();
  idle_timeout_.cancel();
  if (response_started_) {
    // Part of the response is out: the client can only learn by the reset.
    release_request_slot();
    downstream_.reset_stream();
    return;
  }
  switch (failure) {
    case http::UpstreamFailure::kConnectFailed:
      reply_local(503, fmt::format("upstream connect error: {}\n", detail));
      break;
    case http::UpstreamFailure::kConnectTimeout:
      reply_local(504, "upstream connect timeout\n");
      break;
    case http::UpstreamFailure::kReset:
      if (cluster_) cluster_->stats().protocol_errors.inc();
      reply_local(502, fmt::format("{}\n", detail));
      break;
    case http::UpstreamFailure::kProtocolError:
      reply_local(502, fmt::format("upstream protocol error: {}\n", detail));
      break;
  }
}

// ---- timeouts -----------------------------------------------------------------

void Router::touch() {
  if (idle_after_.count() > 0) idle_timeout_.arm(idle_after_);
}

void Router::on_timeout() {
  if (cluster_) cluster_->stats().timeouts.inc();
  wait_.cancel();
  waiting_ = false;
  end_try(false, true);
  if (response_started_) {
    release_request_slot();
    downstream_.reset_stream();
    return;
  }
  reply_local(504, "upstream request timeout\n");
}

void Router::on_try_timeout() {
  if (response_started_) return;
  cluster_->report(pick_, policy::OutlierDetector::Outcome::kGatewayError);
  cluster_->stats().timeouts.inc();
  if (retry(policy::AttemptFailure::kPerTryTimeout, 0)) return;
  end_try(false, true);
  reply_local(504, "upstream per-try timeout\n");
}

void Router::on_idle_timeout() {
  if (cluster_) cluster_->stats().timeouts.inc();
  wait_.cancel();
  waiting_ = false;
  end_try(false, true);
  if (response_started_) {
    release_request_slot();
    downstream_.reset_stream();
    return;
  }
  reply_local(504, "upstream idle timeout\n");
}

// ---- local answers -------------------------------------------------------------

void Router::reply_redirect(const RedirectConfig& redirect) {
  redirect_location(redirect, route_->match.path, request_.get(), scratch_);
  end_try(false, false);
  timeout_.cancel();
  idle_timeout_.cancel();
  status_ = redirect.status;
  response_started_ = response_ended_ = true;
  http::ResponseHeaders r;
  r.status = redirect.status;
  r.headers.push_back({"location", scratch_});
  r.content_length = 0;
  r.has_body = false;
  downstream_.encode_headers(r, true);
  downstream_.flush();
}

void Router::reply_local(int status, std::string_view body, http::Header extra) {
  end_try(false, false);
  release_request_slot();
  timeout_.cancel();
  try_timeout_.cancel();
  idle_timeout_.cancel();
  wait_.cancel();
  waiting_ = false;
  status_ = status;
  response_started_ = true;
  http::ResponseHeaders r;
  r.status = status;
  r.headers.push_back({"content-type", "text/plain"});
  if (!extra.name.empty()) r.headers.push_back(extra);
  r.content_length = static_cast<int64_t>(body.size());
  r.has_body = !head_request_;
  response_ended_ = true;
  if (head_request_) {
    downstream_.encode_headers(r, true);
  } else {
    downstream_.encode_headers(r, false);
    downstream_.encode_data(body, true);
  }
  downstream_.flush();
}

// ---- accounting -------------------------------------------------------------

void Router::end(uint64_t bytes_received, uint64_t bytes_sent) {
  release_request_slot();
  Duration elapsed = worker_.loop().now() - start_;
  ListenerStats& stats = *context_->stats;
  stats.count_status(status_);
  stats.request_duration.record(elapsed);
  if (context_->snapshot->access_log) log_access(bytes_received, bytes_sent, elapsed);
}

void Router::log_access(uint64_t bytes_received, uint64_t bytes_sent, Duration elapsed) {
  const http::RequestHeaders& req = request_.get();
  std::string& line = worker_.scratch();
  line.clear();
  char now[48];
  format_wall_time_now(now);
  line += "{\"time\":\"";
  line += now;
  line += "\",\"listener\":";
  append_json_string(line, context_->listener->config->name);
  line += ",\"client\":";
  append_json_string(line, context_->client_address);
  line += ",\"method\":";
  append_json_string(line, req.method);
  line += ",\"path\":";
  append_json_string(line, req.path);
  line += ",\"host\":";
  append_json_string(line, req.authority);
  line += ",\"protocol\":";
  append_json_string(line, req.protocol);
  fmt::format_to(std::back_inserter(line),
                 ",\"status\":{},\"bytes_received\":{},\"bytes_sent\":{},\"duration_ms\":{:.3f}",
                 status_, bytes_received, bytes_sent,
                 std::chrono::duration<double, std::milli>(elapsed).count());
  line += ",\"upstream\":";
  append_json_string(line, upstream_address_);
  line += ",\"cluster\":";
  append_json_string(line, cluster_name_);
  line += ",\"request_id\":";
  append_json_string(line, request_id_);
  if (retries_ > 0) fmt::format_to(std::back_inserter(line), ",\"retries\":{}", retries_);
  line += "}";
  worker_.log_access(line);
}

}  // namespace trellis::proxy
