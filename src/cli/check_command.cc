// `trellis check`: what is wrong with the mesh, as trellis-control sees it
// (GET /v1/check): each problem with its resource and field. Exits 1 when
// any is an error, so scripts and CI can gate on it.
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/table.h"

namespace trellis::cli {
namespace {

struct CheckFlags {
  std::string output = "table";
  ConnectionFlags connection;
};

int run_check(const CheckFlags& flags) {
  std::optional<ApiClient> client = make_client("check", flags.connection);
  if (!client) return kExitUsage;
  Result<ApiReply> reply = client->call("GET", "/v1/check");
  if (!reply.ok()) {
    print_error("check", reply.error().message);
    return kExitFailure;
  }
  if (!reply->ok()) {
    print_error("check", reply->error());
    return kExitFailure;
  }
  const Json& findings = reply->body.contains("findings") ? reply->body["findings"] : Json::array();
  bool errors = false;
  std::vector<TableRow> rows;
  for (const Json& f : findings) {
    errors |= json_string(f, "severity") == "error";
    rows.push_back({json_string(f, "severity"), json_string(f, "resource"), json_string(f, "field"),
                    json_string(f, "message")});
  }
  if (flags.output == "json") {
    print_out(findings.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
  } else if (rows.empty()) {
    print_out("No problems found.\n");
  } else {
    print_out(format_table({"SEVERITY", "RESOURCE", "FIELD", "PROBLEM"}, rows, 200));
  }
  return errors ? kExitFailure : kExitOk;
}

}  // namespace

std::function<int()> add_check_command(CLI::App& app) {
  auto flags = std::make_shared<CheckFlags>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "What is wrong with the mesh: resources, routes, policies, proxies, certificates (exit 1 on errors)");
  cmd->add_option("-o,--output", flags->output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_check(*flags); };
}

}  // namespace trellis::cli
