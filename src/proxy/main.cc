// trellis-proxy: the sidecar / gateway proxy.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "proxy/config/config.h"
#include "proxy/runtime/server.h"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: trellis-proxy --config FILE [--workers N] [--log-level LEVEL] [--validate]\n"
      "\n"
      "  --config FILE     bootstrap YAML (see docs/proxy-config.md)\n"
      "  --workers N       worker threads (default: one per core)\n"
      "  --log-level L     trace, debug, info, warn or error (default info)\n"
      "  --validate        check the config, print each error as file:line:col: path: message, exit\n"
      "\n"
      "Signals: SIGHUP reloads the config file; SIGTERM/SIGINT drain and exit.\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  trellis::proxy::ServerOptions options;
  bool validate = false;
  std::string level = "info";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "trellis-proxy: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--config" || arg == "-c") {
      options.config_path = value("--config");
    } else if (arg == "--workers") {
      std::string v = value("--workers");
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || n < 1 || n > 256) {
        std::fprintf(stderr, "trellis-proxy: --workers must be a number from 1 to 256\n");
        return 2;
      }
      options.workers = static_cast<size_t>(n);
    } else if (arg == "--log-level") {
      level = value("--log-level");
    } else if (arg == "--validate") {
      validate = true;
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "trellis-proxy: unknown argument %s\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (options.config_path.empty()) {
    usage(stderr);
    return 2;
  }
  if (validate) {
    auto load = trellis::proxy::load_config_file(options.config_path);
    for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return load.ok() ? 0 : 1;
  }
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    std::fprintf(stderr, "trellis-proxy: unknown log level %s\n", level.c_str());
    return 2;
  }
  // Logs go to stderr; stdout is left to whatever the user points the access log at.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("trellis"));
  spdlog::set_level(lvl);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);

  trellis::proxy::Server server(std::move(options));
  if (!server.start()) return 1;
  return server.run();
}
