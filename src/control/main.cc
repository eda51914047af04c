// trellis-control: the control plane (registry, mesh configuration API, push to proxies).
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/spiffe.h"
#include "control/control_plane.h"
#include "http/api_server.h"
#include "net/address.h"
#include "net/event_loop.h"
#include "net/signals.h"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: trellis-control [--data-dir DIR] [--grpc-address IP:PORT] [--http-address IP:PORT]\n"
      "                       [--api-host NAME[:PORT]]... [--trust-domain DOMAIN]\n"
      "                       [--ca-cert FILE --ca-key FILE]\n"
      "       trellis-control [--data-dir DIR] --new-admin-token\n"
      "\n"
      "  --data-dir DIR          where the state is kept (SQLite; default ./trellis-data); on the first\n"
      "                          start an admin token for the API is written to DIR/admin-token\n"
      "  --grpc-address IP:PORT  proxies connect here (default 127.0.0.1:15010)\n"
      "  --http-address IP:PORT  the JSON API for the trellis CLI (default 127.0.0.1:15011)\n"
      "  --api-host NAME[:PORT]  a DNS name clients use for the API, accepted in the Host header\n"
      "                          besides the API's own address (repeatable)\n"
      "  --trust-domain DOMAIN   the trust domain of the mesh's identities (default cluster.local)\n"
      "  --ca-cert FILE          issue from an operator's intermediate CA: FILE holds the intermediate,\n"
      "                          then its chain up to the organisation's root (default: a root of the\n"
      "                          control plane's own, made on the first start in DIR/ca)\n"
      "  --ca-key FILE           the intermediate's private key (mode 0600)\n"
      "  --new-admin-token       write a new admin token to DIR/admin-token, revoke the earlier ones\n"
      "                          written there, and exit (works while trellis-control runs)\n"
      "  --log-level L           trace, debug, info, warn or error (default info)\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  trellis::control::ControlPlaneOptions options;
  std::string level = "info";
  std::vector<std::string> api_hosts;
  bool new_admin_token = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "trellis-control: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--data-dir")
      options.data_dir = value();
    else if (arg == "--grpc-address")
      options.grpc_address = value();
    else if (arg == "--http-address")
      options.http_address = value();
    else if (arg == "--api-host")
      api_hosts.push_back(value());
    else if (arg == "--trust-domain")
      options.trust_domain = value();
    else if (arg == "--ca-cert")
      options.ca_certificate_file = value();
    else if (arg == "--ca-key")
      options.ca_key_file = value();
    else if (arg == "--new-admin-token")
      new_admin_token = true;
    else if (arg == "--log-level")
      level = value();
    else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "trellis-control: unknown argument %s\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  spdlog::set_default_logger(spdlog::stderr_logger_mt("trellis-control"));
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  if (new_admin_token) {
    auto path = trellis::control::ControlPlane::new_admin_token(options.data_dir);
    if (!path.ok()) {
      spdlog::error("cannot issue a new admin token: {}", path.error().message);
      return 1;
    }
    spdlog::info("new admin token written to {}; earlier tokens written there are revoked", *path);
    return 0;
  }
  if (options.ca_certificate_file.empty() != options.ca_key_file.empty()) {
    std::fprintf(stderr, "trellis-control: --ca-cert and --ca-key go together\n");
    return 2;
  }
  if (auto problem = trellis::SpiffeId::check_trust_domain(options.trust_domain)) {
    std::fprintf(stderr, "trellis-control: --trust-domain: %s\n", problem->c_str());
    return 2;
  }
  options.server_names = api_hosts;
  for (const std::string& host : api_hosts) {
    if (!trellis::http::RequestScreen::valid_host_name(host)) {
      std::fprintf(
          stderr, "trellis-control: --api-host %s: must be a DNS name or IP address, optionally with :PORT\n",
          host.c_str());
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  // Configs are built on the main loop and on gRPC threads; with a malloc
  // arena per thread, memory freed into the gRPC threads' arenas is never
  // reused by the main loop (measured: 67 MiB stranded at 1,000 proxies).
  mallopt(M_ARENA_MAX, 2);

  trellis::net::SocketAddress http;
  std::string error;
  if (!trellis::net::parse_socket_address(options.http_address, http, error)) {
    std::fprintf(stderr, "trellis-control: --http-address: %s\n", error.c_str());
    return 2;
  }
  trellis::net::EventLoop loop;
  trellis::net::SignalWatcher signals(loop, {SIGTERM, SIGINT}, [&](int) { loop.stop(); });
  auto cp = trellis::control::ControlPlane::create(loop, options);
  if (!cp.ok()) {
    spdlog::error("cannot start: {}", cp.error().message);
    return 1;
  }
  trellis::http::ApiServerOptions api_options;
  api_options.host_names = api_hosts;
  api_options.methods = trellis::control::ControlPlane::api_methods();
  api_options.transport = (*cp)->api_transport();
  trellis::http::ApiServer api(
      loop, [&](const trellis::http::ApiRequest& r) { return (*cp)->handle(r); }, api_options);
  if (!api.listen(http, error)) {
    spdlog::error("cannot start the API: {}", error);
    return 1;
  }
  (*cp)->on_api_transport(
      [&api](std::shared_ptr<trellis::net::TransportFactory> t) { api.set_transport(std::move(t)); });
  spdlog::info(
      "trellis-control ready: proxies on {} (TLS), API on https://{} (TLS; clients trust {}/{}), data in {}",
      options.grpc_address, options.http_address, options.data_dir, trellis::control::kTrustBundleFile,
      options.data_dir);
  loop.run();
  (*cp)->shutdown();
  spdlog::info("trellis-control stopped");
  return 0;
}
