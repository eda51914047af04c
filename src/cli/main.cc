// trellis: the Trellis command line. Each subcommand lives in its own file and
// registers itself through one add_*_command(app) function; this file only
// dispatches.
#include <cstdio>
#include <exception>
#include <functional>

#include <CLI/CLI.hpp>

#include "cli/load_command.h"
#include "cli/mesh_commands.h"

namespace {

struct Command {
  const char* name;
  std::function<int()> run;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trellis: the command line of the Trellis service mesh", "trellis"};
  app.require_subcommand(1);
  const Command commands[] = {
      {"apply", trellis::cli::add_apply_command(app)},
      {"delete", trellis::cli::add_delete_command(app)},
      {"get", trellis::cli::add_get_command(app)},
      {"register", trellis::cli::add_register_command(app)},
      {"heartbeat", trellis::cli::add_heartbeat_command(app)},
      {"deregister", trellis::cli::add_deregister_command(app)},
      {"status", trellis::cli::add_status_command(app)},
      {"stat", trellis::cli::add_stat_command(app)},
      {"check", trellis::cli::add_check_command(app)},
      {"tap", trellis::cli::add_tap_command(app)},
      {"top", trellis::cli::add_top_command(app)},
      {"token", trellis::cli::add_token_command(app)},
      {"ca", trellis::cli::add_ca_command(app)},
      {"load", trellis::cli::add_load_command(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Help is a success; any other parse error is a usage error (exit 2).
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (const Command& c : commands) {
      if (app.got_subcommand(c.name)) return c.run();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trellis: %s\n", e.what());
    return 1;
  }
  return 2;
}
