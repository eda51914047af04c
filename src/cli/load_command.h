// `trellis load`: its flags, their validation into LoadOptions, and the report
// (a human summary or JSON, see docs/load.md).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cli/load_generator.h"
#include "common/time.h"

namespace CLI {
class App;
}

namespace trellis::cli {

// Adds the `load` subcommand to `app`. After `app` parsed the command line,
// if `load` was given, the returned function runs it and returns the exit
// code: 0 when every request of the schedule was sent and completed with
// 2xx/3xx, 1 otherwise, 2 on a usage error.
std::function<int()> add_load_command(CLI::App& app);

nlohmann::ordered_json load_report_json(const LoadOptions& options, const LoadReport& report);
std::string load_report_text(const LoadOptions& options, const LoadReport& report);
// 0: every measured request was sent and completed with a 2xx or 3xx status; else 1.
int load_exit_code(const LoadReport& report);

}  // namespace trellis::cli
