#include "cli/mesh_commands.h"

#include <cstdio>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

namespace trellis::cli {
namespace {

// Mirrors control/resource.cc's known_kinds(); the CLI does not link the
// control plane. A kind missing here still works, with plainer messages.
constexpr KindName kKinds[] = {
    {"HTTPRoute", "httproutes", true},
    {"GRPCRoute", "grpcroutes", true},
    {"DestinationPolicy", "destinationpolicies", true},
    {"RateLimitPolicy", "ratelimitpolicies", true},
    {"AuthorizationPolicy", "authorizationpolicies", true},
    {"MeshConfig", "meshconfigs", false},
    {"FaultInjection", "faultinjections", true},
    {"ReferenceGrant", "referencegrants", true},
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

const KindName* find_kind_name(std::string_view name) {
  std::string l = lower(name);
  for (const KindName& k : kKinds) {
    if (l == lower(k.kind) || l == k.plural) return &k;
  }
  return nullptr;
}

std::string kind_list() {
  std::string out;
  for (const KindName& k : kKinds) {
    if (!out.empty()) out += ", ";
    out += k.kind;
  }
  return out;
}

std::string resource_label(std::string_view kind, std::string_view name) {
  const KindName* known = find_kind_name(kind);
  std::string k = lower(known != nullptr ? known->kind : (kind.empty() ? "resource" : kind));
  return k + "/" + std::string(name.empty() ? "?" : name);
}

std::string json_string(const Json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

void add_connection_options(CLI::App& command, ConnectionFlags& flags) {
  flags.server = default_server();
  command.add_option("--server", flags.server,
                     "trellis-control's API, IP:PORT (default: $TRELLIS_SERVER or 127.0.0.1:15011)");
  command.add_option(
      "--token-file", flags.token_file,
      "A file holding the API token (default: $TRELLIS_TOKEN, else the file $TRELLIS_TOKEN_FILE "
      "names, else ~/.config/trellis/token)");
  command.add_option("--ca-file", flags.ca_file,
                     "trellis-control's trust-bundle.pem, to check its certificate (default: the file "
                     "$TRELLIS_CA_FILE names, else ~/.config/trellis/ca.pem)");
}

std::optional<ApiClient> make_client(std::string_view command, const ConnectionFlags& flags) {
  Result<net::SocketAddress> address = parse_server_address(flags.server);
  if (!address.ok()) {
    print_error(command, fmt::format("--server \"{}\": {}", flags.server, address.error().message));
    return std::nullopt;
  }
  Result<Credential> credential = find_credential(flags.token_file);
  if (!credential.ok()) {
    print_error(command, credential.error().message);
    return std::nullopt;
  }
  Result<TrustBundle> bundle = find_trust_bundle(flags.ca_file);
  if (!bundle.ok()) {
    print_error(command, bundle.error().message);
    return std::nullopt;
  }
  ApiClient client(*address);
  client.set_credential(std::move(*credential));
  if (Result<bool> trusted = client.set_trust_bundle(bundle->pem); !trusted.ok()) {
    print_error(command, bundle->source + ": " + trusted.error().message);
    return std::nullopt;
  }
  return client;
}

void print_error(std::string_view command, std::string_view message) {
  std::string line = fmt::format("trellis {}: {}\n", command, message);
  if (message.rfind("cannot reach trellis-control", 0) == 0) {
    line += "  (is trellis-control running there? Point --server or TRELLIS_SERVER at its --http-address)\n";
  }
  std::fflush(stdout);  // keep the order of what was printed so far
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void print_out(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

std::string error_text(const ApiReply& reply) {
  std::string out = reply.error();
  if (reply.body.is_object() && reply.body.contains("details") && reply.body["details"].is_array()) {
    for (const Json& d : reply.body["details"]) {
      std::string path = json_string(d, "path");
      std::string message = json_string(d, "message");
      out += "\n  " + (path.empty() ? message : path + ": " + message);
    }
  }
  return out;
}

std::optional<ApiReply> call(std::string_view command, const ApiClient& client, std::string_view method,
                             const std::string& target, const Json& body) {
  Result<ApiReply> reply = client.call(method, target, body);
  if (!reply.ok()) {
    print_error(command, reply.error().message);
    return std::nullopt;
  }
  if (!reply->ok()) {
    print_error(command, error_text(*reply));
    return std::nullopt;
  }
  return std::move(*reply);
}

}  // namespace trellis::cli
