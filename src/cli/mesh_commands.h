// The mesh-management subcommands of `trellis`, which talk to trellis-control's
// JSON API (docs/cli.md): apply, delete, get, register, heartbeat, deregister,
// status and token; and what they share: the --server and --token-file
// flags, the kinds' names, and how API errors are told.
//
// Each add_*_command(app) adds its subcommand; after `app` parsed the command
// line, the returned function runs it and returns the exit code: 0 done, 1 the
// work failed (the server unreachable, any resource refused), 2 usage error.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cli/api_client.h"

namespace CLI {
class App;
}

namespace trellis::cli {

std::function<int()> add_apply_command(CLI::App& app);
std::function<int()> add_delete_command(CLI::App& app);
std::function<int()> add_get_command(CLI::App& app);
std::function<int()> add_register_command(CLI::App& app);
std::function<int()> add_heartbeat_command(CLI::App& app);
std::function<int()> add_deregister_command(CLI::App& app);
std::function<int()> add_status_command(CLI::App& app);
std::function<int()> add_stat_command(CLI::App& app);
std::function<int()> add_check_command(CLI::App& app);
std::function<int()> add_tap_command(CLI::App& app);
std::function<int()> add_top_command(CLI::App& app);
std::function<int()> add_token_command(CLI::App& app);
std::function<int()> add_ca_command(CLI::App& app);

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// The resource kinds, as the CLI names them. The control plane is the
// authority (a kind it knows and this table does not still passes through);
// the table gives the canonical spelling for messages, the plural for paths
// and whether a kind lives in a namespace.
struct KindName {
  const char* kind;    // "HTTPRoute"
  const char* plural;  // "httproutes"
  bool namespaced;
};
// By kind in any case ("HTTPRoute", "httproute") or plural; null when unknown.
const KindName* find_kind_name(std::string_view name);
// "HTTPRoute, DestinationPolicy, ..." for messages.
std::string kind_list();
// kubectl's "kind/name" with the kind in lower case: "httproute/reviews-canary".
std::string resource_label(std::string_view kind, std::string_view name);

// object[key] when it is a string, else "".
std::string json_string(const Json& object, const char* key);

// How a subcommand reaches trellis-control.
struct ConnectionFlags {
  std::string server;      // starts at default_server()
  std::string token_file;  // --token-file; empty: see find_credential()
  std::string ca_file;     // --ca-file; empty: see find_trust_bundle()
};

// Adds --server, --token-file and --ca-file to a subcommand.
void add_connection_options(CLI::App& command, ConnectionFlags& flags);

// The client for --server with the token (find_credential), or nullopt
// after telling the user why the address or the token is not usable.
std::optional<ApiClient> make_client(std::string_view command, const ConnectionFlags& flags);

// Prints "trellis COMMAND: message" to stderr, and for an unreachable server a
// hint on where the address comes from.
void print_error(std::string_view command, std::string_view message);

// Writes `text` to stdout as is.
void print_out(std::string_view text);

// The reply's error with each field error of its "details" on a line of its own.
std::string error_text(const ApiReply& reply);
// One API call whose answer must be a success: the reply, or nullopt after
// printing why there is none (the caller exits 1).
std::optional<ApiReply> call(std::string_view command, const ApiClient& client, std::string_view method,
                             const std::string& target, const Json& body = nullptr);

}  // namespace trellis::cli
