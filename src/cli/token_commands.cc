// `trellis token create`, `list` and `revoke`: the control plane's API and
// join tokens. A new token's secret goes to stdout alone, once, so that a
// script can keep it; everything else about it goes to stderr.
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/table.h"

namespace trellis::cli {
namespace {

struct CreateFlags {
  std::string kind;
  std::string namespace_;
  std::string service_account;
  std::string ttl;
  std::string description;
  std::string output = "text";
  ConnectionFlags connection;
};

struct ListFlags {
  std::string output = "table";
  ConnectionFlags connection;
};

struct RevokeFlags {
  std::string id;
  ConnectionFlags connection;
};

// "join: namespace bookinfo, service account reviews; expires 2025-..." for the note after create.
std::string summary(const Json& token) {
  std::string out = json_string(token, "kind");
  if (!json_string(token, "namespace").empty()) {
    out += fmt::format(": namespace {}, service account {}", json_string(token, "namespace"),
                       json_string(token, "serviceAccount"));
  }
  std::string expires = json_string(token, "expiresAt");
  out += expires.empty() ? "; never expires" : "; expires " + expires;
  return out;
}

int run_create(const CreateFlags& flags) {
  std::optional<ApiClient> client = make_client("token create", flags.connection);
  if (!client) return kExitUsage;
  std::string kind = flags.kind;
  if (kind.empty()) {
    if (flags.service_account.empty()) {
      print_error("token create", "--kind is required (admin, read-only or join)");
      return kExitUsage;
    }
    kind = "join";
  }
  Json body{{"kind", kind}};
  if (!flags.namespace_.empty()) body["namespace"] = flags.namespace_;
  if (!flags.service_account.empty()) body["serviceAccount"] = flags.service_account;
  if (!flags.ttl.empty()) body["ttl"] = flags.ttl;
  if (!flags.description.empty()) body["description"] = flags.description;
  std::optional<ApiReply> reply = call("token create", *client, "POST", "/v1/tokens", body);
  if (!reply) return kExitFailure;
  if (flags.output == "json") {
    print_out(reply->body.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
    return kExitOk;
  }
  const Json& token = reply->body.contains("token") ? reply->body["token"] : Json::object();
  print_out(json_string(reply->body, "secret") + "\n");
  std::string note = fmt::format(
      "token {} created ({}).\nThe line above is its secret: keep it now, it is not shown again.\n",
      json_string(token, "id"), summary(token));
  std::fflush(stdout);
  std::fwrite(note.data(), 1, note.size(), stderr);
  return kExitOk;
}

int run_list(const ListFlags& flags) {
  std::optional<ApiClient> client = make_client("token list", flags.connection);
  if (!client) return kExitUsage;
  std::optional<ApiReply> reply = call("token list", *client, "GET", "/v1/tokens");
  if (!reply) return kExitFailure;
  if (flags.output == "json") {
    print_out(reply->body.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
    return kExitOk;
  }
  if (flags.output == "yaml") {
    print_out(to_yaml(reply->body));
    return kExitOk;
  }
  const Json& tokens = reply->body.contains("tokens") && reply->body["tokens"].is_array()
                           ? reply->body["tokens"]
                           : Json::array();
  std::vector<TableRow> rows;
  for (const Json& t : tokens) {
    rows.push_back({json_string(t, "id"), json_string(t, "kind"), json_string(t, "namespace"),
                    json_string(t, "serviceAccount"), json_string(t, "state"), json_string(t, "createdAt"),
                    json_string(t, "expiresAt"), json_string(t, "description")});
  }
  print_out(format_table(
      {"ID", "KIND", "NAMESPACE", "SERVICE ACCOUNT", "STATE", "CREATED", "EXPIRES", "DESCRIPTION"}, rows));
  return kExitOk;
}

int run_revoke(const RevokeFlags& flags) {
  std::optional<ApiClient> client = make_client("token revoke", flags.connection);
  if (!client) return kExitUsage;
  std::optional<ApiReply> reply =
      call("token revoke", *client, "DELETE", "/v1/tokens/" + url_encode(flags.id));
  if (!reply) return kExitFailure;
  print_out(fmt::format("token {} revoked\n", flags.id));
  return kExitOk;
}

}  // namespace

std::function<int()> add_token_command(CLI::App& app) {
  CLI::App* token =
      app.add_subcommand("token", "Create, list and revoke the control plane's tokens (admin token)");
  token->require_subcommand(1);

  auto create_flags = std::make_shared<CreateFlags>();
  CLI::App* create = token->add_subcommand("create", "Create a token; prints its secret, once");
  create
      ->add_option("--kind", create_flags->kind,
                   "admin, read-only or join (default: join with --service-account)")
      ->check(CLI::IsMember({"admin", "read-only", "join"}));
  create->add_option("-n,--namespace", create_flags->namespace_, "join: the namespace the sidecar joins");
  create->add_option("--service-account", create_flags->service_account,
                     "join: the service account (identity) the sidecar gets");
  create->add_option("--ttl", create_flags->ttl,
                     "How long it is valid: 30m, 24h (required for join; admin and read-only default to no "
                     "expiry)");
  create->add_option("--description", create_flags->description, "What or who the token is for");
  create->add_option("-o,--output", create_flags->output, "text (the secret alone on stdout) or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  add_connection_options(*create, create_flags->connection);

  auto list_flags = std::make_shared<ListFlags>();
  CLI::App* list = token->add_subcommand("list", "List the tokens (never their secrets)");
  list->add_option("-o,--output", list_flags->output, "table, yaml or json")
      ->check(CLI::IsMember({"table", "yaml", "json"}))
      ->capture_default_str();
  add_connection_options(*list, list_flags->connection);

  auto revoke_flags = std::make_shared<RevokeFlags>();
  CLI::App* revoke = token->add_subcommand("revoke", "Revoke a token: it is refused from now on");
  revoke->add_option("id", revoke_flags->id, "The token's id (tok-...), as list shows it")->required();
  add_connection_options(*revoke, revoke_flags->connection);

  return [=] {
    if (create->parsed()) return run_create(*create_flags);
    if (list->parsed()) return run_list(*list_flags);
    if (revoke->parsed()) return run_revoke(*revoke_flags);
    return kExitUsage;
  };
}

}  // namespace trellis::cli
