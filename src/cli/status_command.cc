// `trellis status`: the proxies connected to the control plane, whether each
// runs the configuration it was last sent, and the versions any refused.
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/table.h"

namespace trellis::cli {
namespace {

struct StatusFlags {
  std::string output = "table";
  ConnectionFlags connection;
};

std::string field(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || object[key].is_null()) return "";
  const Json& v = object[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string status_text(const Json& status) {
  const Json& proxies =
      status.contains("proxies") && status["proxies"].is_array() ? status["proxies"] : Json::array();
  std::string revision = field(status, "revision");
  std::string out;
  if (proxies.empty()) {
    return fmt::format("No proxies connected (mesh revision {}).\n", revision);
  }
  out += fmt::format("{} {} connected, mesh revision {}\n\n", proxies.size(),
                     proxies.size() == 1 ? "proxy" : "proxies", revision);
  std::vector<TableRow> rows;
  std::string nacks;
  for (const Json& p : proxies) {
    bool in_sync =
        p.is_object() && p.contains("in_sync") && p["in_sync"].is_boolean() && p["in_sync"].get<bool>();
    rows.push_back({field(p, "node_id"), field(p, "service"), field(p, "namespace"),
                    field(p, "acked_version") + "/" + field(p, "sent_version"), in_sync ? "yes" : "no",
                    field(p, "listeners"), field(p, "clusters")});
    if (p.is_object() && p.contains("nack") && p["nack"].is_object()) {
      nacks += fmt::format("  {} refused version {}: {}\n", field(p, "node_id"), field(p["nack"], "version"),
                           field(p["nack"], "error"));
    }
  }
  out += format_table({"NODE", "SERVICE", "NAMESPACE", "VERSION", "SYNCED", "LISTENERS", "CLUSTERS"}, rows);
  if (!nacks.empty()) {
    // A NACK means the proxy kept its last good configuration: the mesh runs
    // something other than what was applied until the cause is fixed.
    out += "\nRefused configuration (the proxy kept its last good version):\n" + nacks;
  }
  return out;
}

int run_status(const StatusFlags& flags) {
  std::optional<ApiClient> client = make_client("status", flags.connection);
  if (!client) return kExitUsage;
  Result<ApiReply> reply = client->call("GET", "/v1/status");
  if (!reply.ok()) {
    print_error("status", reply.error().message);
    return kExitFailure;
  }
  if (!reply->ok()) {
    print_error("status", reply->error());
    return kExitFailure;
  }
  if (flags.output == "json") {
    print_out(reply->body.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
  } else if (flags.output == "yaml") {
    print_out(to_yaml(reply->body));
  } else {
    print_out(status_text(reply->body));
  }
  return kExitOk;
}

}  // namespace

std::function<int()> add_status_command(CLI::App& app) {
  auto flags = std::make_shared<StatusFlags>();
  CLI::App* cmd = app.add_subcommand(
      "status", "Show the proxies connected to the control plane and their config versions");
  cmd->add_option("-o,--output", flags->output, "table, yaml or json")
      ->check(CLI::IsMember({"table", "yaml", "json"}))
      ->capture_default_str();
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_status(*flags); };
}

}  // namespace trellis::cli
