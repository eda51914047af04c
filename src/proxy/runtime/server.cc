#include "proxy/runtime/server.h"

#include <algorithm>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/text.h"
#include "proxy/observe/access_log.h"
#include "net/address.h"

namespace trellis::proxy {

Server::Server(ServerOptions options) : options_(std::move(options)) {
  if (options_.workers == 0) {
    unsigned n = std::thread::hardware_concurrency();
    options_.workers = n == 0 ? 1 : n;
  }
  stats_ = std::make_unique<StatsRegistry>(options_.workers);
  health_checker_ = std::make_unique<HealthChecker>(loop_);
}

Server::~Server() {
  for (auto& w : workers_) w->stop();
  workers_.clear();
}

// The limiters of a virtual host's routes: those in force where the same
// limit sits at the same place (so a reload keeps their buckets), else new.
// Identical limits on several routes of a listener share one limiter: the
// control plane copies an HTTPRoute's limits onto every route made from it,
// and the user's limit is one limit.
std::vector<std::vector<std::shared_ptr<RouteRateLimiter>>> Server::rate_limiters_for(
    const ListenerConfig& l, const VirtualHostConfig& vh, std::vector<std::shared_ptr<RouteRateLimiter>>& shared) {
  const ListenerRuntime* old_listener = nullptr;
  size_t old_vhost = SIZE_MAX;
  if (snapshot_) {
    for (const ListenerRuntime& old : snapshot_->listeners) {
      if (old.config->name != l.name) continue;
      for (size_t i = 0; i < old.config->virtual_hosts.size(); ++i)
        if (old.config->virtual_hosts[i].name == vh.name) old_vhost = i;
      if (old_vhost != SIZE_MAX) old_listener = &old;
    }
  }
  std::vector<std::vector<std::shared_ptr<RouteRateLimiter>>> out;
  for (size_t r = 0; r < vh.routes.size(); ++r) {
    std::vector<std::shared_ptr<RouteRateLimiter>> limits;
    for (size_t k = 0; k < vh.routes[r].rate_limits.size(); ++k) {
      const RateLimitConfig& config = vh.routes[r].rate_limits[k];
      std::shared_ptr<RouteRateLimiter> limiter;
      if (old_listener != nullptr && old_vhost < old_listener->rate_limits.size()) {
        const auto& old_routes = old_listener->rate_limits[old_vhost];
        if (r < old_routes.size() && k < old_routes[r].size() && same_rate_limit(old_routes[r][k]->config(), config))
          limiter = old_routes[r][k];
      }
      for (const auto& other : shared)
        if (!limiter && same_rate_limit(other->config(), config)) limiter = other;
      if (!limiter) {
        auto built = RouteRateLimiter::build(config);
        if (!built) {
          spdlog::error("rate limit {} of {}/{}: {}", config.name, l.name, vh.name, built.error().message);
          continue;
        }
        limiter = std::move(*built);
      }
      if (std::find(shared.begin(), shared.end(), limiter) == shared.end()) shared.push_back(limiter);
      limits.push_back(std::move(limiter));
    }
    out.push_back(std::move(limits));
  }
  return out;
}

// The cluster's adaptive limit: kept across reloads that leave its settings
// alone, so what it learned stays.
std::shared_ptr<policy::ConcurrencyLimiter> Server::concurrency_limiter_for(const ClusterConfig& c) {
  if (snapshot_) {
    for (const ClusterRuntime& old : snapshot_->clusters) {
      if (old.config->name != c.name || !old.concurrency) continue;
      const policy::ConcurrencyConfig& a = old.config->adaptive_concurrency;
      const policy::ConcurrencyConfig& b = c.adaptive_concurrency;
      if (a.initial_limit == b.initial_limit && a.min_limit == b.min_limit && a.max_limit == b.max_limit &&
          a.sample_window == b.sample_window && a.baseline_interval == b.baseline_interval)
        return old.concurrency;
    }
  }
  return std::make_shared<policy::ConcurrencyLimiter>(c.adaptive_concurrency, loop_.now(), random_);
}

// The cluster's detector: the one in force when nothing it depends on
// changed, else a new one that carries over the verdicts of the endpoints
// that stay.
std::shared_ptr<policy::OutlierDetector> Server::outlier_detector_for(const ClusterConfig& c) {
  std::vector<uint64_t> ids;
  for (const EndpointConfig& e : c.endpoints) ids.push_back(fnv1a64(e.address.text));
  std::shared_ptr<policy::OutlierDetector> previous;
  const ClusterConfig* previous_config = nullptr;
  if (snapshot_) {
    for (const ClusterRuntime& old : snapshot_->clusters) {
      if (old.config->name == c.name && old.outlier) {
        previous = old.outlier;
        previous_config = old.config;
      }
    }
  }
  if (previous) {
    bool same_hosts = previous->size() == ids.size();
    for (size_t i = 0; same_hosts && i < ids.size(); ++i) same_hosts = previous->host_id(i) == ids[i];
    const policy::OutlierConfig& a = previous_config->outlier;
    const policy::OutlierConfig& b = c.outlier;
    bool same_config = a.consecutive_5xx == b.consecutive_5xx &&
                       a.consecutive_gateway_errors == b.consecutive_gateway_errors &&
                       a.success_rate.enabled == b.success_rate.enabled &&
                       a.success_rate.minimum_hosts == b.success_rate.minimum_hosts &&
                       a.success_rate.request_volume == b.success_rate.request_volume &&
                       a.success_rate.stdev_factor == b.success_rate.stdev_factor && a.interval == b.interval &&
                       a.base_ejection_time == b.base_ejection_time && a.max_ejection_time == b.max_ejection_time &&
                       a.max_ejection_percent == b.max_ejection_percent &&
                       a.always_eject_one_host == b.always_eject_one_host &&
                       a.panic_threshold_percent == b.panic_threshold_percent;
    if (same_hosts && same_config) return previous;
  }
  auto detector = std::make_shared<policy::OutlierDetector>(c.outlier, std::move(ids));
  if (previous) detector->adopt_state(*previous);
  return detector;
}

bool Server::build_snapshot(std::shared_ptr<const ProxyConfig> config, std::shared_ptr<Snapshot>& out,
                            std::string& error) {
  auto snap = std::make_shared<Snapshot>();
  snap->version = ++version_;
  snap->workers = options_.workers;
  snap->config = config;
  for (const ClusterConfig& c : config->clusters) {
    ClusterRuntime rt;
    rt.config = &c;
    rt.stats = stats_->cluster(c.name);
    rt.state = cluster_states_.cluster(c.name);
    rt.transport = net::PlainTransportFactory::shared();
    rt.state->breaker.set_limits(c.circuit_breakers);
    if (c.outlier_enabled) rt.outlier = outlier_detector_for(c);
    if (c.adaptive_concurrency_enabled) rt.concurrency = concurrency_limiter_for(c);
    for (const EndpointConfig& e : c.endpoints) rt.endpoints.push_back(rt.state->endpoint(e.address.text));
    rt.state->retain([&](const std::string& address) {
      return std::any_of(c.endpoints.begin(), c.endpoints.end(),
                         [&](const EndpointConfig& e) { return e.address.text == address; });
    });
    snap->clusters.push_back(std::move(rt));
  }
  snap->listeners.reserve(config->listeners.size());
  for (const ListenerConfig& l : config->listeners) {
    ListenerRuntime rt;
    rt.config = &l;
    // Reuse the sockets of a listener on the same address: reloads must not
    // drop connections waiting in the accept queue.
    if (snapshot_) {
      for (const ListenerRuntime& old : snapshot_->listeners) {
        if (old.config->address == l.address) {
          rt.sockets = old.sockets;
          break;
        }
      }
    }
    if (rt.sockets.empty()) {
      for (size_t i = 0; i < options_.workers; ++i) {
        int fd = net::open_listen_socket(l.address, /*reuse_port=*/true, error);
        if (fd < 0) {
          error = "listener \"" + l.name + "\": " + error;
          return false;
        }
        rt.sockets.push_back(std::make_shared<ListenSocket>(fd));
      }
    }
    std::vector<std::shared_ptr<RouteRateLimiter>> listener_limiters;  // shared by identical limits
    for (const VirtualHostConfig& vh : l.virtual_hosts) {
      std::vector<policy::RouteMatch> routes;
      for (const RouteConfig& r : vh.routes) routes.push_back(r.match);
      rt.rate_limits.push_back(rate_limiters_for(l, vh, listener_limiters));
      auto added = rt.routes.add_virtual_host(vh.domains, routes);
      if (!added) {
        error = "listener \"" + l.name + "\": virtual host \"" + vh.name + "\": " + added.error().message;
        return false;
      }
    }
    rt.stats = stats_->listener(l.name);
    rt.transport = net::PlainTransportFactory::shared();
    snap->listeners.push_back(std::move(rt));
  }
  if (!config->access_log.path.empty()) {
    if (snapshot_ && snapshot_->access_log && snapshot_->access_log->path() == config->access_log.path) {
      snap->access_log = snapshot_->access_log;
    } else {
      auto log = std::make_shared<AccessLog>();
      if (!log->open(config->access_log.path, error)) return false;
      snap->access_log = std::move(log);
    }
  }
  out = std::move(snap);
  return true;
}

bool Server::start() {
  ConfigLoad load = load_config_file(options_.config_path);
  if (!load.ok()) {
    for (const ConfigError& e : load.errors) spdlog::error("{}", e.to_string());
    spdlog::error("config {} refused: {} error(s)", options_.config_path, load.errors.size());
    return false;
  }
  ControlPlaneConfig& cp = load.config.control_plane;
  if (cp.enabled() && cp.node_id.empty()) {
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    cp.node_id = cp.service + "-" + host + "-" + std::to_string(getpid());
  }
  auto config = std::make_shared<const ProxyConfig>(std::move(load.config));
  bootstrap_ = config;
  std::shared_ptr<Snapshot> snap;
  std::string error;
  if (!build_snapshot(config, snap, error)) {
    spdlog::error("cannot start: {}", error);
    return false;
  }
  admin_ = std::make_unique<http::ApiServer>(
      loop_, [this](const http::ApiRequest& r) { return admin(r.method, r.path); });
  if (!admin_->listen(config->admin.address, error)) {
    spdlog::error("admin: {}", error);
    return false;
  }
  // Before the workers start: they inherit the mask and never see these.
  signal(SIGPIPE, SIG_IGN);
  signals_ = std::make_unique<net::SignalWatcher>(loop_, std::initializer_list<int>{SIGHUP, SIGTERM, SIGINT},
                                                  [this](int signo) {
                                                    if (signo == SIGHUP) {
                                                      reload();
                                                    } else {
                                                      begin_drain();
                                                    }
                                                  });

  snapshot_ = snap;
  health_checker_->update(*snapshot_);
  // Per-key rate-limit buckets that are full again hold nothing: free them.
  evict_timer_ = std::make_unique<net::Timer>(loop_, [this] {
    for (const ListenerRuntime& l : snapshot_->listeners)
      for (const auto& vhost : l.rate_limits)
        for (const auto& route : vhost)
          for (const auto& limiter : route) limiter->evict_idle(loop_.now());
    evict_timer_->arm(std::chrono::seconds(10));
  });
  evict_timer_->arm(std::chrono::seconds(10));
  for (size_t i = 0; i < options_.workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, snapshot_));
  }
  for (auto& w : workers_) w->start();
  if (config->control_plane.enabled()) start_control_client();
  spdlog::info("trellis-proxy ready: {} listener(s), {} cluster(s), {} worker(s), admin on {}",
               config->listeners.size(), config->clusters.size(), workers_.size(),
               config->admin.address.text);
  return true;
}

int Server::run() {
  loop_.run();
  for (auto& w : workers_) w->stop();
  workers_.clear();
  spdlog::info("trellis-proxy stopped");
  return 0;
}

void Server::reload() {
  if (draining_) return;
  spdlog::info("reloading {}", options_.config_path);
  ConfigLoad load = load_config_file(options_.config_path);
  if (!load.ok()) {
    for (const ConfigError& e : load.errors) spdlog::error("{}", e.to_string());
    spdlog::error("reload refused: {} error(s); the previous config stays in force", load.errors.size());
    ++reloads_failed_;
    return;
  }
  if (!(load.config.admin.address == snapshot_->config->admin.address)) {
    spdlog::warn("admin address changes take effect on restart; keeping {}",
                 snapshot_->config->admin.address.text);
  }
  if (load.config.control_plane.enabled() && load.config.control_plane.node_id.empty())
    load.config.control_plane.node_id = bootstrap_->control_plane.node_id;
  auto bootstrap = std::make_shared<const ProxyConfig>(std::move(load.config));
  std::shared_ptr<const ProxyConfig> config = bootstrap;
  if (bootstrap->control_plane.enabled() && control_) {
    // The file's static part with what the control plane gave: checked together.
    ConfigLoad merged = control_->merged(*bootstrap);
    if (!merged.ok()) {
      for (const ConfigError& e : merged.errors) spdlog::error("{}", e.to_string());
      spdlog::error("reload refused: the file conflicts with the control plane's config; the previous config stays");
      ++reloads_failed_;
      return;
    }
    merged.config.source = bootstrap->source;
    config = std::make_shared<const ProxyConfig>(std::move(merged.config));
  }
  std::string error;
  if (!apply_config(config, error)) {
    spdlog::error("reload refused: {}; the previous config stays in force", error);
    ++reloads_failed_;
    return;
  }
  bootstrap_ = bootstrap;
  if (bootstrap_->control_plane.enabled()) {
    start_control_client();
  } else if (control_) {
    control_->stop();
  }
  ++reloads_ok_;
}

void Server::start_control_client() {
  if (!control_) {
    control_ = std::make_unique<ControlClient>(
        loop_, [this](std::shared_ptr<const ProxyConfig> c, std::string& e) { return apply_config(std::move(c), e); });
  }
  control_->start(bootstrap_);
}

bool Server::apply_config(std::shared_ptr<const ProxyConfig> config, std::string& error) {
  std::shared_ptr<Snapshot> snap;
  if (!build_snapshot(std::move(config), snap, error)) return false;
  snapshot_ = snap;
  health_checker_->update(*snapshot_);
  for (auto& w : workers_) w->update(snapshot_);
  spdlog::info("config version {} in force", snapshot_->version);
  return true;
}

void Server::begin_drain() {
  if (draining_) return;
  draining_ = true;
  drain_deadline_ = loop_.now() + snapshot_->config->drain_timeout;
  spdlog::info("draining (up to {} ms)", snapshot_->config->drain_timeout.count());
  if (control_) control_->stop();
  health_checker_->stop();
  for (auto& w : workers_) w->drain();
  drain_timer_ = std::make_unique<net::Timer>(loop_, [this] { check_drained(); });
  drain_timer_->arm(std::chrono::milliseconds(20));
}

void Server::check_drained() {
  int64_t open = 0;
  for (auto& w : workers_) open += w->connections();
  if (open == 0 || loop_.now() >= drain_deadline_) {
    if (open > 0) spdlog::warn("drain timeout: closing {} connection(s)", open);
    loop_.stop();
    return;
  }
  drain_timer_->arm(std::chrono::milliseconds(20));
}

// Endpoint verdicts and the shared resilience state of each cluster, read
// from the snapshot in force (the atomics are the workers' live view).
std::string Server::render_endpoint_health() const {
  std::string out;
  auto it = std::back_inserter(out);
  out += "# HELP trellis_upstream_endpoints Endpoints of a cluster, by state.\n"
         "# TYPE trellis_upstream_endpoints gauge\n";
  MonoTime now = loop_.now();
  for (const ClusterRuntime& c : snapshot_->clusters) {
    size_t failing = 0, ejected = 0, available = 0;
    for (size_t i = 0; i < c.endpoints.size(); ++i) {
      bool out_by_outlier = c.outlier && i < c.outlier->size() && c.outlier->is_ejected(i, now);
      bool failing_checks = c.endpoints[i]->failing_checks.load(std::memory_order_relaxed);
      failing += failing_checks;
      ejected += out_by_outlier;
      available += !failing_checks && !out_by_outlier;
    }
    for (auto [state, n] : {std::pair<const char*, size_t>{"available", available}, {"failing_checks", failing},
                            {"ejected", ejected}})
      fmt::format_to(it, "trellis_upstream_endpoints{{cluster=\"{}\",state=\"{}\"}} {}\n", c.config->name, state, n);
  }
  out += "# HELP trellis_upstream_ejections_total Endpoints ejected by outlier detection.\n"
         "# TYPE trellis_upstream_ejections_total counter\n";
  for (const ClusterRuntime& c : snapshot_->clusters) {
    if (!c.outlier) continue;
    policy::OutlierDetector::Stats s = c.outlier->stats();
    fmt::format_to(it, "trellis_upstream_ejections_total{{cluster=\"{}\"}} {}\n", c.config->name,
                   s.ejections_consecutive_5xx + s.ejections_gateway_errors + s.ejections_success_rate);
  }
  out += "# HELP trellis_upstream_concurrency_limit The adaptive concurrency limit in force.\n"
         "# TYPE trellis_upstream_concurrency_limit gauge\n";
  for (const ClusterRuntime& c : snapshot_->clusters)
    if (c.concurrency)
      fmt::format_to(it, "trellis_upstream_concurrency_limit{{cluster=\"{}\"}} {}\n", c.config->name,
                     c.concurrency->limit());
  return out;
}

http::ApiResponse Server::admin(std::string_view method, std::string_view path) {
  http::ApiResponse r;
  if (method != "GET" && method != "HEAD") {
    r.status = 405;
    r.body = "method not allowed\n";
    return r;
  }
  if (path == "/ready") {
    if (draining_) {
      r.status = 503;
      r.body = "draining\n";
    } else {
      r.body = "ready\n";
    }
  } else if (path == "/healthz") {
    r.body = "ok\n";
  } else if (path == "/stats") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = stats_->render_prometheus();
    r.body += render_endpoint_health();
    r.body += "# HELP trellis_config_reloads_total Config reloads, by result.\n"
              "# TYPE trellis_config_reloads_total counter\n";
    r.body += "trellis_config_reloads_total{result=\"ok\"} " + std::to_string(reloads_ok_) + "\n";
    r.body += "trellis_config_reloads_total{result=\"refused\"} " + std::to_string(reloads_failed_) + "\n";
    r.body += "# HELP trellis_config_version Version of the config in force.\n"
              "# TYPE trellis_config_version gauge\n";
    r.body += "trellis_config_version " + std::to_string(snapshot_->version) + "\n";
    if (control_) {
      const ControlStatus& cs = control_->status();
      r.body += "# HELP trellis_control_plane_connected Whether the control-plane stream is up.\n"
                "# TYPE trellis_control_plane_connected gauge\n";
      r.body += "trellis_control_plane_connected " + std::to_string(cs.connected ? 1 : 0) + "\n";
      r.body += "# HELP trellis_control_plane_version Control-plane config version in force.\n"
                "# TYPE trellis_control_plane_version gauge\n";
      r.body += "trellis_control_plane_version " + std::to_string(cs.applied_version) + "\n";
      r.body += "# HELP trellis_control_plane_updates_total Updates received, by result.\n"
                "# TYPE trellis_control_plane_updates_total counter\n";
      r.body += "trellis_control_plane_updates_total{result=\"applied\"} " + std::to_string(cs.updates - cs.refused) + "\n";
      r.body += "trellis_control_plane_updates_total{result=\"refused\"} " + std::to_string(cs.refused) + "\n";
    }
  } else if (path == "/config_dump") {
    r.content_type = "application/json";
    r.body = config_to_json(*snapshot_->config);
  } else {
    r.status = 404;
    r.body = "not found; try /ready, /healthz, /stats or /config_dump\n";
  }
  return r;
}

}  // namespace trellis::proxy
