// The proxy process: loads the config, owns the listening sockets, the stats
// registry and the workers, serves the admin endpoint on the main thread, and
// handles SIGHUP (reload) and SIGTERM/SIGINT (drain, then exit).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/random.h"
#include "http/api_server.h"
#include "net/event_loop.h"
#include "net/signals.h"
#include "proxy/config/config.h"
#include "proxy/discovery/discovery_client.h"
#include "proxy/observe/stats.h"
#include "proxy/runtime/snapshot.h"
#include "proxy/runtime/snapshot_builder.h"
#include "proxy/runtime/worker.h"
#include "proxy/security/certificate_manager.h"
#include "proxy/security/file_credentials.h"
#include "proxy/upstream/endpoint_state.h"
#include "proxy/upstream/health_checker.h"

namespace trellis::proxy {

struct ServerOptions {
  std::string config_path;
  size_t workers = 0;  // 0: one per core
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // Loads the config and starts serving; false (with errors logged) when the
  // config is invalid or a socket cannot be bound: nothing is left running.
  bool start();
  // Runs the main loop until drained; returns the process exit code.
  int run();

 private:
  // Puts a validated config in force on every worker; false when it cannot be
  // (a socket cannot be bound): the config in force stays.
  bool apply_config(std::shared_ptr<const ProxyConfig> config, std::string& error);
  // Loads the files `mtls` names (none: no file credentials); false with
  // `error` when they are refused.
  bool load_file_credentials(const MtlsFilesConfig& mtls, std::string& error);
  void check_credential_files();
  std::string render_endpoint_health() const;
  void reload();
  // SIGUSR1: the access log's file is opened again (after a rotation).
  void reopen_access_log();
  // Creates it on first use; (re)connects with bootstrap_. False with
  // `error` when no key can be made for the proxy's identity.
  bool start_control_client(std::string& error);
  // New credentials (from files or the control plane) for new handshakes:
  // the snapshot is rebuilt with them. False when it could not be.
  bool use_credentials(const TlsCredentials& credentials);
  void begin_drain();
  void check_drained();
  http::ApiResponse admin(std::string_view method, std::string_view path);
  // GET /tap: the tap's events for trellis-control (tap_key_ as its bearer
  // token), which turns it on for Tap::kIdle.
  http::ApiResponse tap_page(const http::ApiRequest& request);
  std::string tap_key_;                    // random, made at start, told only to the control plane
  std::unique_ptr<net::Timer> tap_timer_;  // while the tap is on: turns it off once nobody asks
  // On the main loop: a worker took `snapshot`.
  void worker_applied(const std::shared_ptr<const Snapshot>& snapshot);

  ServerOptions options_;
  net::EventLoop loop_;
  std::unique_ptr<HealthChecker> health_checker_;
  std::unique_ptr<net::Timer> evict_timer_;  // every 10 s: idle rate-limit keys, free memory
  void return_free_memory();
  // The overload manager: once a second, the heap against max_heap_bytes.
  std::unique_ptr<net::Timer> overload_timer_;
  void set_heap_limit(const ProxyConfig& config);
  void check_overload();
  FastRandom random_{FastRandom::os_seed()};
  std::unique_ptr<SnapshotBuilder> builder_;
  std::unique_ptr<http::ApiServer> admin_;
  std::unique_ptr<net::SignalWatcher> signals_;
  std::shared_ptr<const Snapshot> snapshot_;  // the newest built
  // What every worker serves: /config_dump and trellis_config_version show
  // it, so once they show a config, every new request is served by it.
  std::shared_ptr<const Snapshot> in_force_;
  size_t applied_ = 0;                            // workers that took snapshot_ so far
  std::shared_ptr<const ProxyConfig> bootstrap_;  // the file's content
  std::unique_ptr<DiscoveryClient> control_;
  // With a control plane: the proxy's own key and the certificates it issues.
  std::unique_ptr<CertificateManager> certificates_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool draining_ = false;
  MonoTime drain_deadline_{};
  std::unique_ptr<net::Timer> drain_timer_;
  // The proxy's certificate from the files of `mtls` (null without them),
  // checked for changes on a timer.
  std::unique_ptr<FileCredentials> file_credentials_;
  std::unique_ptr<net::Timer> credentials_timer_;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
};

}  // namespace trellis::proxy
