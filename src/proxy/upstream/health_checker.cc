#include "proxy/upstream/health_checker.h"

#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "http/message.h"
#include "net/buffer.h"
#include "net/transport.h"
#include "proxy/http2/session_io.h"
#include "proxy/upstream/grpc_health.h"

namespace trellis::proxy {

namespace {

constexpr size_t kMaxAnswerBytes = 64 * 1024;  // of an HTTP/2 answer's head or body

bool expected(const HealthCheckConfig& config, int status) {
  if (config.expected_statuses.empty()) return status >= 200 && status <= 299;
  for (const auto& [lo, hi] : config.expected_statuses)
    if (status >= lo && status <= hi) return true;
  return false;
}

// One check's exchange over HTTP/2 (prior knowledge, or h2 by ALPN): the
// preface, one request on stream 1, its answer. An HTTP check sends a GET; a
// gRPC check calls grpc.health.v1.Health/Check.
class Http2Probe {
 public:
  ~Http2Probe() {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  // Queues the preface and the request; false when nghttp2 refused.
  bool start(const HealthCheckConfig& config, std::string_view authority) {
    nghttp2_session_callbacks* callbacks = nullptr;
    if (nghttp2_session_callbacks_new(&callbacks) != 0) return false;
    nghttp2_session_callbacks_set_on_header_callback(callbacks, &on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &on_close);
    int rv = nghttp2_session_client_new(&session_, callbacks, this);
    nghttp2_session_callbacks_del(callbacks);
    if (rv != 0) {
      session_ = nullptr;
      return false;
    }
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                               {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxAnswerBytes}};
    if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2) != 0) return false;
    grpc_ = config.kind == HealthCheckConfig::Kind::kGrpc;
    http2::FieldBlock& block = fields_;
    block.clear();
    block.add(":method", grpc_ ? "POST" : "GET", false);
    block.add(":scheme", "http", false);
    block.add(":authority", authority, false);
    block.add(":path",
              grpc_ ? std::string_view("/grpc.health.v1.Health/Check") : std::string_view(config.path),
              false);
    block.add("user-agent", "trellis-health-check", false);
    if (grpc_) {
      block.add("content-type", "application/grpc", false);
      block.add("te", "trailers", false);
      request_body_ = grpc_health_request(config.grpc_service);
    }
    nghttp2_data_provider body{};
    body.read_callback = &read_body;
    const std::vector<nghttp2_nv>& nv = block.nv();
    return nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), grpc_ ? &body : nullptr, this) ==
           1;
  }

  // Sends what nghttp2 has queued; false when the connection failed.
  bool send(net::Transport& transport) {
    return http2::send_frames(session_, transport, out_, kMaxAnswerBytes) >= 0;
  }

  // Takes bytes from the endpoint; false, and `why`, when they broke HTTP/2.
  bool receive(std::string_view data, std::string& why) {
    ssize_t rv =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
    if (rv < 0) {
      why = std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(rv));
      return false;
    }
    if (too_large_) {
      why = "answer larger than 64 KiB";
      return false;
    }
    return true;
  }

  bool done() const { return closed_; }

  // The verdict on a finished exchange.
  bool judge(const HealthCheckConfig& config, std::string& why) const {
    if (reset_code_ != NGHTTP2_NO_ERROR) {
      why = std::string("stream reset: ") + nghttp2_http2_strerror(reset_code_);
      return false;
    }
    if (!grpc_) {
      why = "status " + std::to_string(status_);
      return expected(config, status_);
    }
    if (status_ != 200) {
      why = "HTTP status " + std::to_string(status_);
      return false;
    }
    if (grpc_status_ != 0) {
      why = grpc_status_ < 0 ? std::string("no grpc-status") : "grpc-status " + std::to_string(grpc_status_);
      return false;
    }
    std::optional<int> serving = parse_grpc_health_response(body_, why);
    if (!serving) return false;
    why = serving_status_name(*serving);
    return *serving == static_cast<int>(ServingStatus::kServing);
  }

 private:
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* self = static_cast<Http2Probe*>(user);
    if (frame->hd.stream_id != 1) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int status = 0;
      if (std::from_chars(v.data(), v.data() + v.size(), status).ec == std::errc() && status >= 200)
        self->status_ = status;
    } else if (n == "grpc-status") {
      http::HeaderList fields;
      fields.push_back({n, v});
      self->grpc_status_ = http::grpc_status(fields);
    }
    return 0;
  }

  static int on_data(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                     void* user) {
    auto* self = static_cast<Http2Probe*>(user);
    if (stream_id != 1) return 0;
    if (self->body_.size() + len > kMaxAnswerBytes) {
      self->too_large_ = true;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    self->body_.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    auto* self = static_cast<Http2Probe*>(user);
    if (stream_id != 1) return 0;
    self->closed_ = true;
    self->reset_code_ = error_code;
    return 0;
  }

  static ssize_t read_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source*, void* user) {
    auto* self = static_cast<Http2Probe*>(user);
    size_t n = std::min(length, self->request_body_.size() - self->sent_);
    std::memcpy(buf, self->request_body_.data() + self->sent_, n);
    self->sent_ += n;
    if (self->sent_ == self->request_body_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  nghttp2_session* session_ = nullptr;
  http2::FieldBlock fields_;
  net::Buffer out_;
  std::string request_body_;
  size_t sent_ = 0;
  bool grpc_ = false;
  bool closed_ = false;
  bool too_large_ = false;
  uint32_t reset_code_ = NGHTTP2_NO_ERROR;
  int status_ = 0;
  int grpc_status_ = -1;
  std::string body_;
};

}  // namespace

// One endpoint's checks: connect, (HTTP) send a GET and read the status, or
// (gRPC) call Health/Check, close; then wait the interval (with jitter) and
// start again. HTTP checks of an http2 cluster and gRPC checks speak HTTP/2.
class HealthChecker::Check final : public net::TransportCallbacks {
 public:
  Check(net::EventLoop& loop, Random& random, std::string cluster, const EndpointConfig& endpoint,
        std::shared_ptr<ClusterState> state, std::shared_ptr<EndpointState> endpoint_state)
      : loop_(loop),
        random_(random),
        cluster_(std::move(cluster)),
        address_(endpoint.address),
        state_(std::move(state)),
        endpoint_(std::move(endpoint_state)),
        next_(loop, [this] { start(); }),
        timeout_(loop, [this] { finish(false, "timed out"); }) {}

  ~Check() { close(); }

  // (Re)configures; the first check of a new endpoint comes at a random point
  // of the first interval, so many checks do not start in step.
  void configure(const HealthCheckConfig& config, UpstreamProtocol protocol,
                 std::shared_ptr<net::TransportFactory> transport, bool first) {
    config_ = config;
    http2_ = config.kind == HealthCheckConfig::Kind::kGrpc ||
             (config.kind == HealthCheckConfig::Kind::kHttp && protocol == UpstreamProtocol::kHttp2);
    transport_ = std::move(transport);
    if (first) next_.arm(Millis(random_.uniform(static_cast<uint64_t>(config_.interval.count()) + 1)));
  }

  void on_readable() override {
    for (;;) {
      net::ReadResult r = connection_->read(in_);
      if (r == net::ReadResult::kAgain) break;
      if (r == net::ReadResult::kError) return finish(false, "read error");
      if (r == net::ReadResult::kEof) return http2_ ? judge_http2(true) : judge_response(true);
    }
    http2_ ? judge_http2(false) : judge_response(false);
  }

  void on_writable() override {
    if (connected_) {
      if (probe_ && !probe_->send(*connection_)) finish(false, "write error");
      return;
    }
    connected_ = true;
    if (config_.kind == HealthCheckConfig::Kind::kTcp) return finish(true, "");
    std::string_view authority = config_.host.empty() ? std::string_view(address_.text) : config_.host;
    if (http2_) {
      probe_ = std::make_unique<Http2Probe>();
      if (!probe_->start(config_, authority)) return finish(false, "HTTP/2 session not started");
      if (!probe_->send(*connection_)) finish(false, "write error");
      return;
    }
    std::string request = "GET " + config_.path + " HTTP/1.1\r\nHost: " + std::string(authority) +
                          "\r\nUser-Agent: trellis-health-check\r\nConnection: close\r\n\r\n";
    if (!connection_->write(request)) finish(false, "write error");
  }

  void on_transport_error(int error) override {
    finish(false, connected_ ? std::strerror(error) : std::string("connect: ") + std::strerror(error));
  }

 private:
  void start() {
    int error = 0;
    connected_ = false;
    in_.clear();
    probe_.reset();
    connection_ = transport_->connect(loop_, address_, this, error);
    if (!connection_) return finish(false, std::string("connect: ") + std::strerror(error));
    timeout_.arm(config_.timeout);
  }

  // The status line decides; the rest of the response is not needed.
  void judge_response(bool eof) {
    std::string_view text = in_.view();
    size_t eol = text.find("\r\n");
    if (eol == std::string_view::npos) {
      if (eof || text.size() > 4096) finish(false, "no HTTP status line");
      return;
    }
    std::string_view line = text.substr(0, eol);
    int status = 0;
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
        std::from_chars(line.data() + 9, line.data() + 12, status).ec != std::errc())
      return finish(false, "malformed status line");
    finish(expected(config_, status), "status " + std::to_string(status));
  }

  // The stream's end decides; frames are answered (SETTINGS, PING) meanwhile.
  void judge_http2(bool eof) {
    if (!probe_) return finish(false, "answered before the request");
    std::string why;
    std::string_view data = in_.view();
    bool ok = probe_->receive(data, why);
    in_.clear();
    if (!ok) return finish(false, why);
    if (probe_->done()) {
      bool pass = probe_->judge(config_, why);
      return finish(pass, why);
    }
    if (eof) return finish(false, "connection closed before the answer");
    if (!probe_->send(*connection_)) finish(false, "write error");
  }

  void finish(bool pass, const std::string& why) {
    close();
    record(pass, why);
    Duration wait = config_.interval;
    if (config_.jitter_percent > 0) {
      auto extra = static_cast<uint64_t>(config_.interval.count()) * config_.jitter_percent / 100;
      wait += Millis(random_.uniform(extra + 1));
    }
    next_.arm(wait);
  }

  void record(bool pass, const std::string& why) {
    if (pass) {
      failures_ = 0;
      ++successes_;
      if (endpoint_->failing_checks.load(std::memory_order_relaxed) &&
          successes_ >= config_.healthy_threshold) {
        endpoint_->failing_checks.store(false, std::memory_order_relaxed);
        state_->changed();
        spdlog::info("health check: {} endpoint {} is healthy again", cluster_, address_.text);
      }
    } else {
      successes_ = 0;
      ++failures_;
      if (!endpoint_->failing_checks.load(std::memory_order_relaxed) &&
          failures_ >= config_.unhealthy_threshold) {
        endpoint_->failing_checks.store(true, std::memory_order_relaxed);
        state_->changed();
        spdlog::warn("health check: {} endpoint {} is unhealthy ({})", cluster_, address_.text, why);
      }
    }
  }

  void close() {
    timeout_.cancel();
    probe_.reset();
    if (connection_) {
      connection_->close();
      // The loop may still hold this event's pointer: free it later.
      loop_.defer_delete(std::move(connection_));
    }
  }

  net::EventLoop& loop_;
  Random& random_;
  std::string cluster_;
  net::SocketAddress address_;
  std::shared_ptr<ClusterState> state_;
  std::shared_ptr<EndpointState> endpoint_;
  HealthCheckConfig config_;
  std::shared_ptr<net::TransportFactory> transport_;
  std::unique_ptr<net::Transport> connection_;
  std::unique_ptr<Http2Probe> probe_;
  net::Buffer in_;
  bool connected_ = false;
  bool http2_ = false;
  uint32_t successes_ = 0;
  uint32_t failures_ = 0;
  net::Timer next_;
  net::Timer timeout_;
};

struct HealthChecker::OutlierTicker {
  OutlierTicker(net::EventLoop& loop, std::string cluster, std::shared_ptr<policy::OutlierDetector> d)
      : name(std::move(cluster)), detector(std::move(d)), timer(loop, [this, &loop] {
          policy::OutlierDetector::TickResult r = detector->tick(loop.now());
          if (r.ejected > 0)
            spdlog::warn("outlier detection: {}: {} endpoint(s) ejected by success rate", name, r.ejected);
          if (r.unejected > 0)
            spdlog::info("outlier detection: {}: {} endpoint(s) back in rotation", name, r.unejected);
          timer.arm(detector->config().interval);
        }) {
    timer.arm(detector->config().interval);
  }
  std::string name;
  std::shared_ptr<policy::OutlierDetector> detector;
  net::Timer timer;
};

HealthChecker::HealthChecker(net::EventLoop& loop, uint64_t seed) : loop_(loop), random_(seed) {}

HealthChecker::~HealthChecker() = default;

void HealthChecker::update(const Snapshot& snapshot) {
  std::map<std::string, std::unique_ptr<Check>> next;
  for (const ClusterRuntime& c : snapshot.clusters) {
    const ClusterConfig& config = *c.config;
    for (size_t i = 0; i < config.endpoints.size(); ++i) {
      const EndpointConfig& e = config.endpoints[i];
      const std::shared_ptr<EndpointState>& endpoint = c.endpoints[i];
      if (!config.health_check.enabled()) {
        // Checks turned off: nothing may keep the endpoint out any more.
        if (endpoint->failing_checks.exchange(false)) c.state->changed();
        continue;
      }
      std::string key = config.name + "\n" + e.address.text;
      auto it = checks_.find(key);
      bool first = it == checks_.end();
      std::unique_ptr<Check> check;
      if (first) {
        check = std::make_unique<Check>(loop_, random_, config.name, e, c.state, endpoint);
      } else {
        check = std::move(it->second);
        checks_.erase(it);
      }
      check->configure(config.health_check, config.protocol, c.transport_for(i), first);
      next.emplace(std::move(key), std::move(check));
    }
  }
  checks_ = std::move(next);  // checks of endpoints that left are stopped here

  std::map<std::string, std::unique_ptr<OutlierTicker>> tickers;
  for (const ClusterRuntime& c : snapshot.clusters) {
    if (!c.outlier) continue;
    auto it = tickers_.find(c.config->name);
    if (it != tickers_.end() && it->second->detector == c.outlier) {
      tickers.emplace(c.config->name, std::move(it->second));
    } else {
      tickers.emplace(c.config->name, std::make_unique<OutlierTicker>(loop_, c.config->name, c.outlier));
    }
  }
  tickers_ = std::move(tickers);
}

void HealthChecker::stop() {
  checks_.clear();
  tickers_.clear();
}

}  // namespace trellis::proxy
