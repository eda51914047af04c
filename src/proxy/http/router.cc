#include "proxy/http/router.h"

#include <fmt/format.h>

#include "proxy/access_log.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace trellis::proxy::http {
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

}  // namespace

Router::Router(Worker& worker, ResponseEncoder& downstream)
    : worker_(worker),
      downstream_(downstream),
      upstream_(worker.loop(), *this),
      timeout_(worker.loop(), [this] { on_timeout(); }) {}

Router::~Router() { release_upstream(false); }

void Router::begin(const DownstreamContext& context) {
  release_upstream(false);
  timeout_.cancel();
  context_ = &context;
  start_ = worker_.loop().now();
  cluster_ = nullptr;
  cluster_name_ = {};
  upstream_address_.clear();
  request_id_.clear();
  status_ = 0;
  head_request_ = false;
  request_ended_ = response_started_ = response_ended_ = retried_ = false;
  request_.get().headers.clear();
  request_.get().method = request_.get().path = request_.get().authority = {};
}

// ---- request path -----------------------------------------------------------

void Router::decode_headers(const RequestHeaders& headers, bool end_stream) {
  request_.assign(headers);
  request_ended_ = end_stream;
  head_request_ = headers.method == "HEAD";
  add_forwarding_headers();
  RequestHeaders& req = request_.get();

  const ListenerRuntime& listener = *context_->listener;
  policy::RouteRef ref;
  if (!listener.routes.match({req.authority, req.method, req.path, &req.headers}, ref)) {
    reply_local(404, "no route\n");
    return;
  }
  const RouteConfig& route = listener.config->virtual_hosts[ref.virtual_host].routes[ref.route];
  cluster_ = &worker_.cluster(route.backends[0].cluster_index);
  cluster_name_ = cluster_->name();
  if (!connect_upstream(false)) return;
  cluster_->stats().requests.inc();
  if (route.timeout.count() > 0) timeout_.arm(route.timeout);
  upstream_.encode_headers(req, end_stream);
  // The proxy takes the body from here on: tell a waiting client now rather
  // than make it wait for its own timeout (the upstream never saw the Expect).
  if (req.expect_continue) downstream_.encode_continue();
}

void Router::add_forwarding_headers() {
  RequestHeaders& req = request_.get();
  // x-forwarded-for: every earlier value, in order, then this client.
  scratch_.clear();
  for (const Header& h : req.headers) {
    if (!iequals(h.name, "x-forwarded-for") || h.value.empty()) continue;
    if (!scratch_.empty()) scratch_ += ", ";
    scratch_ += h.value;
  }
  if (!scratch_.empty()) {
    std::erase_if(req.headers, [](const Header& h) { return iequals(h.name, "x-forwarded-for"); });
    scratch_ += ", ";
  }
  scratch_ += context_->client_ip;
  request_.add("x-forwarded-for", scratch_);

  std::string_view id = find_header(req.headers, "x-request-id");
  if (id.empty()) {
    format_request_id(worker_.random(), request_id_);
    request_.add("x-request-id", request_id_);
  } else {
    request_id_.assign(id);
  }
}

bool Router::connect_upstream(bool fresh) {
  EndpointPool* pool = cluster_->pick();
  if (pool == nullptr) {
    reply_local(503, "no healthy upstream\n");
    return false;
  }
  upstream_address_ = pool->address().text;
  int error = 0;
  UpstreamConnection* c = pool->acquire(&upstream_, error, fresh);
  if (c == nullptr) {
    reply_local(503, fmt::format("upstream connect error: {}\n", std::strerror(error)));
    return false;
  }
  upstream_.attach(c, head_request_);
  return true;
}

void Router::decode_data(std::string_view data, bool end_stream) {
  request_ended_ = request_ended_ || end_stream;
  if (upstream_.attached()) upstream_.encode_data(data, end_stream);
}

void Router::decode_trailers(const HeaderList& trailers) {
  request_ended_ = true;
  if (upstream_.attached()) upstream_.encode_trailers(trailers);
}

void Router::flush() {
  if (upstream_.attached()) upstream_.flush();
}

bool Router::blocked() const { return upstream_.attached() && upstream_.write_blocked(); }

void Router::on_downstream_drained() {
  if (upstream_.attached()) upstream_.resume_reading();
}

void Router::on_downstream_reset() {
  timeout_.cancel();
  release_upstream(false);
}

// ---- response path ----------------------------------------------------------

void Router::decode_response_headers(const ResponseHeaders& headers, bool end_stream) {
  status_ = headers.status;
  response_started_ = true;
  if (headers.status == 101) timeout_.cancel();  // a tunnel lives as long as its peers
  downstream_.encode_headers(headers, end_stream);
  if (end_stream) response_complete();
}

void Router::decode_response_data(std::string_view data, bool end_stream) {
  downstream_.encode_data(data, end_stream);
  if (end_stream) response_complete();
}

void Router::decode_response_trailers(const HeaderList& trailers) {
  downstream_.encode_trailers(trailers);
  response_complete();
}

void Router::flush_response() { downstream_.flush(); }

bool Router::response_blocked() const { return downstream_.write_blocked(); }

void Router::on_upstream_drained() { downstream_.resume_reading(); }

void Router::response_complete() {
  response_ended_ = true;
  timeout_.cancel();
  release_upstream(upstream_.reusable());
}

void Router::on_upstream_failure(UpstreamFailure failure, std::string_view detail) {
  if (failure == UpstreamFailure::kReset && retry_on_fresh_connection()) return;
  release_upstream(false);
  timeout_.cancel();
  if (response_started_) {
    // Part of the response is out: the client can only learn by the reset.
    downstream_.reset_stream();
    return;
  }
  switch (failure) {
    case UpstreamFailure::kConnectFailed:
      reply_local(503, fmt::format("upstream connect error: {}\n", detail));
      break;
    case UpstreamFailure::kConnectTimeout:
      reply_local(504, "upstream connect timeout\n");
      break;
    case UpstreamFailure::kReset:
      if (cluster_) cluster_->stats().protocol_errors.inc();
      reply_local(502, fmt::format("{}\n", detail));
      break;
    case UpstreamFailure::kProtocolError:
      reply_local(502, fmt::format("upstream protocol error: {}\n", detail));
      break;
  }
}

// A pooled keep-alive connection can be closed by the upstream just as it is
// reused. When nothing of the response arrived and the request can be sent
// again whole (no body), try once more on a new connection.
bool Router::retry_on_fresh_connection() {
  if (retried_ || !upstream_.attached() || !upstream_.reused_connection() ||
      upstream_.response_bytes_seen() || response_started_ || request_.get().has_body ||
      !request_.get().upgrade.empty())
    return false;
  retried_ = true;
  release_upstream(false);
  if (!connect_upstream(true)) return true;  // answered locally
  upstream_.encode_headers(request_.get(), true);
  upstream_.flush();
  return true;
}

void Router::on_timeout() {
  if (cluster_) cluster_->stats().timeouts.inc();
  release_upstream(false);
  if (response_started_) {
    downstream_.reset_stream();
    return;
  }
  reply_local(504, "upstream request timeout\n");
}

void Router::release_upstream(bool reusable) {
  UpstreamConnection* c = upstream_.detach();
  if (c != nullptr) c->pool().release(c, reusable);
}

void Router::reply_local(int status, std::string_view body) {
  release_upstream(false);
  timeout_.cancel();
  status_ = status;
  response_started_ = true;
  ResponseHeaders r;
  r.status = status;
  r.headers.push_back({"content-type", "text/plain"});
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
  Duration elapsed = worker_.loop().now() - start_;
  ListenerStats& stats = *context_->stats;
  stats.count_status(status_);
  stats.request_duration.record(elapsed);
  if (context_->snapshot->access_log) log_access(bytes_received, bytes_sent, elapsed);
}

void Router::log_access(uint64_t bytes_received, uint64_t bytes_sent, Duration elapsed) {
  const RequestHeaders& req = request_.get();
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
  line += "}";
  worker_.log_access(line);
}

}  // namespace trellis::proxy::http
