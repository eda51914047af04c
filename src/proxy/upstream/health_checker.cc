#include "proxy/upstream/health_checker.h"

#include <spdlog/spdlog.h>

#include <charconv>

#include "net/buffer.h"
#include "net/transport.h"

namespace trellis::proxy {

// One endpoint's checks: connect, (HTTP) send a GET and read the status line,
// close; then wait the interval (with jitter) and start again.
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
  void configure(const HealthCheckConfig& config, std::shared_ptr<net::TransportFactory> transport,
                 bool first) {
    config_ = config;
    transport_ = std::move(transport);
    if (first) next_.arm(Millis(random_.uniform(static_cast<uint64_t>(config_.interval.count()) + 1)));
  }

  void on_readable() override {
    for (;;) {
      net::ReadResult r = connection_->read(in_);
      if (r == net::ReadResult::kAgain) break;
      if (r == net::ReadResult::kError) return finish(false, "read error");
      if (r == net::ReadResult::kEof) return judge_response(true);
    }
    judge_response(false);
  }

  void on_writable() override {
    if (connected_) return;
    connected_ = true;
    if (config_.kind == HealthCheckConfig::Kind::kTcp) return finish(true, "");
    std::string request = "GET " + config_.path +
                          " HTTP/1.1\r\nHost: " + (config_.host.empty() ? address_.text : config_.host) +
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
    bool pass = false;
    if (config_.expected_statuses.empty()) {
      pass = status >= 200 && status <= 299;
    } else {
      for (const auto& [lo, hi] : config_.expected_statuses) pass = pass || (status >= lo && status <= hi);
    }
    finish(pass, "status " + std::to_string(status));
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
  net::Buffer in_;
  bool connected_ = false;
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
      check->configure(config.health_check, c.transport_for(i), first);
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
