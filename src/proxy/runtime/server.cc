#include "proxy/runtime/server.h"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>
#include <algorithm>

#include <thread>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/spiffe.h"
#include "common/text.h"
#include "net/address.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/golden.h"
#include "proxy/observe/tap.h"
#include "proxy/observe/trace_context.h"
#include "proxy/runtime/overload.h"
#include "proxy/security/certificate_metrics.h"

namespace trellis::proxy {

Server::Server(ServerOptions options) : options_(std::move(options)) {
  if (options_.workers == 0) {
    unsigned n = std::thread::hardware_concurrency();
    options_.workers = n == 0 ? 1 : n;
  }
  builder_ = std::make_unique<SnapshotBuilder>(options_.workers, random_);
  health_checker_ = std::make_unique<HealthChecker>(loop_);
}

Server::~Server() {
  for (auto& w : workers_) w->stop();
  workers_.clear();
}

namespace {

// How often the files of `mtls` are checked for a new certificate.
constexpr auto kCredentialCheckInterval = std::chrono::seconds(5);

bool same_files(const MtlsFilesConfig& a, const MtlsFilesConfig& b) {
  return a.certificate_chain == b.certificate_chain && a.private_key == b.private_key &&
         a.trust_bundle == b.trust_bundle;
}

}  // namespace

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
  std::string credentials_error;
  if (!load_file_credentials(config->mtls, credentials_error)) {
    spdlog::error("cannot start: mtls: {}", credentials_error);
    return false;
  }
  auto built = builder_->build(config, nullptr, loop_.now());
  if (!built) {
    spdlog::error("cannot start: {}", built.error().message);
    return false;
  }
  std::shared_ptr<Snapshot> snap = std::move(*built);
  std::string error;
  admin_ = std::make_unique<http::ApiServer>(loop_, [this](const http::ApiRequest& r) {
    return r.path == "/tap" ? tap_page(r) : admin(r.method, r.path);
  });
  if (!admin_->listen(config->admin.address, error)) {
    spdlog::error("admin: {}", error);
    return false;
  }
  // Before the workers start: they inherit the mask and never see these.
  signal(SIGPIPE, SIG_IGN);
  signals_ = std::make_unique<net::SignalWatcher>(
      loop_, std::initializer_list<int>{SIGHUP, SIGUSR1, SIGTERM, SIGINT}, [this](int signo) {
        if (signo == SIGHUP) {
          reload();
        } else if (signo == SIGUSR1) {
          reopen_access_log();
        } else {
          begin_drain();
        }
      });

  snapshot_ = snap;
  in_force_ = snap;  // workers start with it
  health_checker_->update(*snapshot_);
  // Per-key rate-limit buckets that are full again hold nothing: free them.
  evict_timer_ = std::make_unique<net::Timer>(loop_, [this] {
    for (const ListenerRuntime& l : snapshot_->listeners)
      for (const auto& vhost : l.rate_limits)
        for (const auto& route : vhost)
          for (const auto& limiter : route) limiter->evict_idle(loop_.now());
    return_free_memory();
    evict_timer_->arm(std::chrono::seconds(10));
  });
  evict_timer_->arm(std::chrono::seconds(10));
  set_heap_limit(*config);
  for (size_t i = 0; i < options_.workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, snapshot_));
  }
  for (auto& w : workers_) w->start();
  if (config->control_plane.enabled() && !start_control_client(error)) {
    spdlog::error("cannot start: control_plane: {}", error);
    return false;
  }
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
  // Gateway certificates are read again, whether or not their names changed.
  builder_->reload_certificate_files();
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
  if (!same_files(bootstrap->mtls, bootstrap_->mtls)) {
    std::string error;
    if (!load_file_credentials(bootstrap->mtls, error)) {
      spdlog::error("reload refused: mtls: {}; the previous config stays in force", error);
      ++reloads_failed_;
      return;
    }
  }
  if (bootstrap->control_plane.enabled() && control_) {
    // The file's static part with what the control plane gave: checked together.
    ConfigLoad merged = control_->merged(*bootstrap);
    if (!merged.ok()) {
      for (const ConfigError& e : merged.errors) spdlog::error("{}", e.to_string());
      spdlog::error(
          "reload refused: the file conflicts with the control plane's config; the previous config stays");
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
  set_heap_limit(*bootstrap_);
  if (bootstrap_->control_plane.enabled()) {
    if (!start_control_client(error)) spdlog::error("control_plane: {}", error);
  } else if (control_) {
    control_->stop();
  }
  ++reloads_ok_;
}

bool Server::load_file_credentials(const MtlsFilesConfig& mtls, std::string& error) {
  if (!mtls.enabled()) {
    file_credentials_.reset();
    credentials_timer_.reset();
    builder_->set_mesh_tls({});
    return true;
  }
  auto loaded = FileCredentials::load({mtls.certificate_chain, mtls.private_key, mtls.trust_bundle},
                                      std::chrono::system_clock::now());
  if (!loaded) {
    error = loaded.error().message;
    return false;
  }
  file_credentials_ = std::make_unique<FileCredentials>(std::move(*loaded));
  const TlsCredentials& c = *file_credentials_->current();
  builder_->set_mesh_tls({c.server, c.client, c.identity});
  spdlog::info("mtls: certificate for {} from {}, valid until {}",
               c.identity.empty() ? "(no SPIFFE ID)" : c.identity, mtls.certificate_chain,
               format_utc(c.not_after));
  if (!credentials_timer_) {
    credentials_timer_ = std::make_unique<net::Timer>(loop_, [this] { check_credential_files(); });
  }
  credentials_timer_->arm(kCredentialCheckInterval);
  return true;
}

void Server::check_credential_files() {
  credentials_timer_->arm(kCredentialCheckInterval);
  if (!file_credentials_ || draining_) return;
  auto changed = file_credentials_->reload_if_changed(std::chrono::system_clock::now());
  if (!changed) {
    spdlog::error("mtls: new files refused, the previous certificate stays in force: {}",
                  changed.error().message);
    return;
  }
  if (!*changed) return;
  const TlsCredentials& c = *file_credentials_->current();
  if (use_credentials(c))
    spdlog::info("mtls: new certificate for {} in force, valid until {}", c.identity,
                 format_utc(c.not_after));
}

bool Server::use_credentials(const TlsCredentials& c) {
  builder_->set_mesh_tls({c.server, c.client, c.identity});
  if (draining_) return true;
  std::string error;
  // New handshakes use the new certificate; open connections keep theirs.
  if (!apply_config(snapshot_->config, error)) {
    spdlog::error("cannot put the new certificate in force: {}", error);
    return false;
  }
  return true;
}

bool Server::start_control_client(std::string& error) {
  const ControlPlaneConfig& cp = bootstrap_->control_plane;
  auto identity = SpiffeId::make(cp.trust_domain, cp.namespace_, cp.service);
  if (!identity) {
    error = identity.error().message;
    return false;
  }
  // A new identity (the file changed namespace or service) needs a new key:
  // the old certificate stays in force until the new one arrives.
  if (!certificates_ || certificates_->identity() != identity->to_string()) {
    TlsProfile profile;
    profile.control_alpn = {"h2"};
    auto made = CertificateManager::create(*identity, random_, profile);
    if (!made) {
      error = made.error().message;
      return false;
    }
    if (control_) control_->stop();
    control_.reset();
    certificates_ = std::make_unique<CertificateManager>(std::move(*made));
  }
  if (!control_) {
    control_ = std::make_unique<DiscoveryClient>(
        loop_,
        [this](std::shared_ptr<const ProxyConfig> c, std::string& e) {
          return apply_config(std::move(c), e);
        },
        *certificates_, [this] { use_credentials(*certificates_->current()); });
    if (tap_key_.empty()) {
      unsigned char key[32];
      if (RAND_bytes(key, sizeof key) != 1) {
        error = "cannot make the tap key: no randomness";
        return false;
      }
      tap_key_.resize(2 * sizeof key);
      hex_into(key, sizeof key, tap_key_.data());
      OPENSSL_cleanse(key, sizeof key);
    }
    control_->set_tap_key(tap_key_);
  }
  control_->start(bootstrap_);
  return true;
}

bool Server::apply_config(std::shared_ptr<const ProxyConfig> config, std::string& error) {
  auto built = builder_->build(std::move(config), snapshot_.get(), loop_.now());
  if (!built) {
    error = built.error().message;
    return false;
  }
  snapshot_ = std::move(*built);
  health_checker_->update(*snapshot_);
  applied_ = 0;
  for (auto& w : workers_) {
    w->update(snapshot_, [this, s = snapshot_] { loop_.post([this, s] { worker_applied(s); }); });
  }
  spdlog::info("config version {} in force", snapshot_->version);
  return true;
}

void Server::worker_applied(const std::shared_ptr<const Snapshot>& snapshot) {
  // An older snapshot's news: the newer one replaces it anyway.
  if (snapshot != snapshot_) return;
  if (++applied_ == workers_.size()) in_force_ = snapshot_;
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
  out +=
      "# HELP trellis_upstream_endpoints Endpoints of a cluster, by state.\n"
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
    for (auto [state, n] : {std::pair<const char*, size_t>{"available", available},
                            {"failing_checks", failing},
                            {"ejected", ejected}})
      fmt::format_to(it, "trellis_upstream_endpoints{{cluster=\"{}\",state=\"{}\"}} {}\n", c.config->name,
                     state, n);
  }
  out +=
      "# HELP trellis_upstream_ejections_total Endpoints ejected by outlier detection.\n"
      "# TYPE trellis_upstream_ejections_total counter\n";
  for (const ClusterRuntime& c : snapshot_->clusters) {
    if (!c.outlier) continue;
    policy::OutlierDetector::Stats s = c.outlier->stats();
    fmt::format_to(it, "trellis_upstream_ejections_total{{cluster=\"{}\"}} {}\n", c.config->name,
                   s.ejections_consecutive_5xx + s.ejections_gateway_errors + s.ejections_success_rate);
  }
  out +=
      "# HELP trellis_upstream_concurrency_limit The adaptive concurrency limit in force.\n"
      "# TYPE trellis_upstream_concurrency_limit gauge\n";
  for (const ClusterRuntime& c : snapshot_->clusters)
    if (c.concurrency)
      fmt::format_to(it, "trellis_upstream_concurrency_limit{{cluster=\"{}\"}} {}\n", c.config->name,
                     c.concurrency->limit());
  return out;
}

http::ApiResponse Server::tap_page(const http::ApiRequest& request) {
  http::ApiResponse r;
  r.content_type = "application/json";
  std::string_view authorization = request.header("authorization");
  std::string_view presented = authorization.starts_with("Bearer ") ? authorization.substr(7) : "";
  if (tap_key_.empty() || presented.size() != tap_key_.size() ||
      CRYPTO_memcmp(presented.data(), tap_key_.data(), tap_key_.size()) != 0) {
    r.status = 403;
    r.body = R"({"error": "the tap is served to this proxy's control plane only"})"
             "\n";
    return r;
  }
  if (request.method != "GET") {
    r.status = 405;
    r.body = R"({"error": "method not allowed"})"
             "\n";
    return r;
  }
  Tap& tap = builder_->stats().tap();
  tap.keep_on(std::chrono::steady_clock::now());
  if (!tap_timer_) {
    tap_timer_ = std::make_unique<net::Timer>(loop_, [this] {
      if (builder_->stats().tap().expire(std::chrono::steady_clock::now()))
        tap_timer_->arm(std::chrono::seconds(1));
    });
  }
  if (!tap_timer_->armed()) tap_timer_->arm(std::chrono::seconds(1));
  TapFilter filter;
  filter.method = query_parameter(request.query, "method").value_or("");
  filter.path_prefix = query_parameter(request.query, "path").value_or("");
  filter.direction = query_parameter(request.query, "direction").value_or("");
  // Without `after`: from now on. At most kTapPage events per answer.
  constexpr size_t kTapPage = 1000;
  std::optional<std::string> after_text = query_parameter(request.query, "after");
  uint64_t after = after_text ? std::strtoull(after_text->c_str(), nullptr, 10) : tap.newest();
  Tap::Page page = tap.read(after, filter, after_text ? kTapPage : 0);
  nlohmann::json events = nlohmann::json::array();
  for (const TapEvent* e : page.events) {
    nlohmann::json j{{"time_ms", e->start_unix_ms},
                     {"duration_us", e->duration_us},
                     {"direction", e->inbound ? "inbound" : "outbound"},
                     {"method", e->method},
                     {"authority", e->authority},
                     {"path", e->path},
                     {"status", e->status},
                     {"source_service", e->source_service},
                     {"source_namespace", e->source_namespace},
                     {"destination_service", e->destination_service},
                     {"destination_namespace", e->destination_namespace},
                     {"route", e->route},
                     {"upstream", e->upstream},
                     {"tls", e->tls}};
    if (e->grpc_status >= 0) j["grpc_status"] = e->grpc_status;
    events.push_back(std::move(j));
  }
  r.body = nlohmann::json{{"events", std::move(events)},
                          {"last", page.last},
                          {"missed", page.missed},
                          {"dropped", page.dropped}}
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  r.body += "\n";
  return r;
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
    } else if (control_ && !certificates_->current()) {
      // Without its certificate the sidecar can neither serve mTLS nor
      // reach other sidecars.
      r.status = 503;
      r.body = "waiting for a certificate from the control plane\n";
    } else {
      r.body = "ready\n";
    }
  } else if (path == "/healthz") {
    r.body = "ok\n";
  } else if (path == "/stats/golden") {
    r.content_type = "application/json";
    render_golden_json(builder_->stats().golden_tables(), r.body);
  } else if (path == "/stats") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = builder_->stats().render_prometheus();
    builder_->tracer().render(r.body);
    r.body += render_endpoint_health();
    r.body +=
        "# HELP trellis_config_reloads_total Config reloads, by result.\n"
        "# TYPE trellis_config_reloads_total counter\n";
    r.body += "trellis_config_reloads_total{result=\"ok\"} " + std::to_string(reloads_ok_) + "\n";
    r.body += "trellis_config_reloads_total{result=\"refused\"} " + std::to_string(reloads_failed_) + "\n";
    r.body +=
        "# HELP trellis_config_version Version of the config in force.\n"
        "# TYPE trellis_config_version gauge\n";
    r.body += "trellis_config_version " + std::to_string(in_force_->version) + "\n";
    const net::DetectionCounts& detected = builder_->detection_counts();
    r.body +=
        "# HELP trellis_tls_detection_total Connections to PERMISSIVE listeners, by how they were told "
        "apart.\n"
        "# TYPE trellis_tls_detection_total counter\n";
    for (auto [outcome, count] :
         {std::pair{"tls", &detected.tls}, std::pair{"plaintext", &detected.plaintext},
          std::pair{"timeout", &detected.timed_out}, std::pair{"no_data", &detected.no_data}})
      r.body += fmt::format("trellis_tls_detection_total{{outcome=\"{}\"}} {}\n", outcome,
                            count->load(std::memory_order_relaxed));
    if (file_credentials_)
      r.body += render_certificate_metrics(file_credentials_->stats(), std::chrono::system_clock::now());
    else if (certificates_)
      r.body += render_certificate_metrics(certificates_->stats(), std::chrono::system_clock::now());
    if (control_) {
      const DiscoveryStatus& cs = control_->status();
      r.body +=
          "# HELP trellis_control_plane_connected Whether the control-plane stream is up.\n"
          "# TYPE trellis_control_plane_connected gauge\n";
      r.body += "trellis_control_plane_connected " + std::to_string(cs.connected ? 1 : 0) + "\n";
      r.body +=
          "# HELP trellis_control_plane_version Control-plane config version in force.\n"
          "# TYPE trellis_control_plane_version gauge\n";
      r.body += "trellis_control_plane_version " + std::to_string(cs.applied_version) + "\n";
      r.body +=
          "# HELP trellis_control_plane_updates_total Updates received, by result.\n"
          "# TYPE trellis_control_plane_updates_total counter\n";
      r.body += "trellis_control_plane_updates_total{result=\"applied\"} " +
                std::to_string(cs.updates - cs.refused) + "\n";
      r.body +=
          "trellis_control_plane_updates_total{result=\"refused\"} " + std::to_string(cs.refused) + "\n";
    }
  } else if (path == "/config_dump") {
    r.content_type = "application/json";
    r.body = config_to_json(*in_force_->config);
  } else {
    r.status = 404;
    r.body = "not found; try /ready, /healthz, /stats or /config_dump\n";
  }
  return r;
}

// The heap limit of `config` (or 80% of the cgroup's), checked each second
// while there is one: a new one takes effect at once. Without a limit the
// heap is only reported, by the 10 s round of return_free_memory(): walking
// malloc's arenas takes each one's lock from the workers.
void Server::set_heap_limit(const ProxyConfig& config) {
  OverloadState& state = builder_->stats().overload();
  const uint64_t limit = effective_heap_limit(config.max_heap_bytes, cgroup_memory_limit());
  const uint64_t before = state.heap_limit.exchange(limit, std::memory_order_relaxed);
  if (limit == before) return;  // the timer runs exactly while there is a limit
  if (limit == 0) {
    spdlog::info("overload: no heap limit");
    overload_timer_.reset();
  } else {
    spdlog::info("overload: heap limit {} MiB{}", limit >> 20,
                 config.max_heap_bytes ? "" : " (80% of the cgroup's memory limit)");
    if (!overload_timer_) {
      overload_timer_ = std::make_unique<net::Timer>(loop_, [this] {
        check_overload();
        overload_timer_->arm(std::chrono::seconds(1));
      });
      overload_timer_->arm(std::chrono::seconds(1));
    }
  }
  check_overload();  // the level under the new limit, now
}

// Both the newest snapshot's log and the one in force (they differ while a
// reload reaches the workers), each once.
void Server::reopen_access_log() {
  const AccessLog* reopened = nullptr;
  for (const auto& snap : {snapshot_, in_force_}) {
    if (!snap || !snap->access_log || snap->access_log.get() == reopened) continue;
    reopened = snap->access_log.get();
    std::string error;
    if (snap->access_log->reopen(error)) {
      spdlog::info("access log {} opened again", snap->access_log->path());
    } else {
      spdlog::error("{}", error);
    }
  }
}

// Near the limit every idle connection goes, each second, and what they
// held goes back to the system; at it, workers also refuse what is new
// (Worker::admit, Router::decode_headers) until the heap is below it again.
void Server::check_overload() {
  OverloadState& state = builder_->stats().overload();
  const uint64_t heap = heap_use().allocated;
  state.heap_bytes.store(heap, std::memory_order_relaxed);
  const OverloadLevel level = overload_level(heap, state.heap_limit.load(std::memory_order_relaxed));
  const auto before = static_cast<OverloadLevel>(state.level.exchange(static_cast<int>(level)));
  if (level != before) {
    static constexpr const char* kNames[] = {
        "normal", "closing idle connections",
        "closing idle connections, refusing new connections and requests"};
    spdlog::log(level > before ? spdlog::level::warn : spdlog::level::info,
                "overload: heap {} MiB of {} MiB: {}", heap >> 20,
                state.heap_limit.load(std::memory_order_relaxed) >> 20, kNames[static_cast<int>(level)]);
  }
  if (level == OverloadLevel::kNone) return;
  for (auto& w : workers_) w->shed_idle_connections();
  malloc_trim(0);
}

// Memory freed by the workers (after a flood of connections, say) stays
// with malloc, which gives back only what lies at the top of its heaps. With
// more than 1 MiB of it held free, every free page goes back to the system.
// The same count reports the heap when no limit has it checked each second.
void Server::return_free_memory() {
  constexpr size_t kHeldFreeLimit = 1 << 20;
  const HeapUse use = heap_use();
  if (!overload_timer_)
    builder_->stats().overload().heap_bytes.store(use.allocated, std::memory_order_relaxed);
  if (use.held_free > kHeldFreeLimit) malloc_trim(0);
}

}  // namespace trellis::proxy
