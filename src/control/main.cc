// trellis-control: the control plane (registry, mesh configuration API, push to proxies).
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "control/control_plane.h"
#include "http/api_server.h"
#include "net/address.h"
#include "net/event_loop.h"
#include "net/signals.h"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: trellis-control [--data-dir DIR] [--grpc-address IP:PORT] [--http-address IP:PORT]\n"
      "\n"
      "  --data-dir DIR          where the state is kept (SQLite; default ./trellis-data)\n"
      "  --grpc-address IP:PORT  proxies connect here (default 127.0.0.1:15010)\n"
      "  --http-address IP:PORT  the JSON API for the trellis CLI (default 127.0.0.1:15011)\n"
      "  --log-level L           trace, debug, info, warn or error (default info)\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  trellis::control::ControlPlaneOptions options;
  std::string level = "info";
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
  trellis::http::ApiServer api(loop, [&](const trellis::http::ApiRequest& r) { return (*cp)->handle(r); });
  if (!api.listen(http, error)) {
    spdlog::error("cannot start the API: {}", error);
    return 1;
  }
  spdlog::info("trellis-control ready: proxies on {}, API on {}, data in {}", options.grpc_address,
               options.http_address, options.data_dir);
  loop.run();
  (*cp)->shutdown();
  spdlog::info("trellis-control stopped");
  return 0;
}
