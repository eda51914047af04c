// `trellis register`, `heartbeat` and `deregister`: service instances in the
// control plane's registry, for services that run without a sidecar that
// would register them (or for trying the mesh out by hand).
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/load_command.h"
#include "cli/mesh_commands.h"

#include "common/duration.h"
#include "common/service_port.h"

namespace trellis::cli {
namespace {

struct RegisterFlags {
  std::string service;
  std::string address;
  std::string id;
  std::string namespace_;
  std::string zone;
  std::optional<uint32_t> weight;
  std::vector<std::string> labels;
  std::vector<std::string> ports;
  std::string ttl;
  ConnectionFlags connection;
};

struct InstanceFlags {
  std::string id;
  ConnectionFlags connection;
};

// The API's message, with its field list when it has one.
std::string api_error_text(const ApiReply& reply) {
  std::string out = reply.error();
  if (reply.body.contains("details") && reply.body["details"].is_array()) {
    for (const Json& d : reply.body["details"]) {
      std::string path = json_string(d, "path");
      std::string message = json_string(d, "message");
      out += "\n  " + (path.empty() ? message : path + ": " + message);
    }
  }
  return out;
}

int run_register(const RegisterFlags& flags) {
  std::optional<ApiClient> client = make_client("register", flags.connection);
  if (!client) return kExitUsage;

  Json body{{"service", flags.service}, {"address", flags.address}};
  if (!flags.id.empty()) body["id"] = flags.id;
  if (!flags.namespace_.empty()) body["namespace"] = flags.namespace_;
  if (!flags.zone.empty()) body["zone"] = flags.zone;
  if (flags.weight) body["weight"] = *flags.weight;
  if (!flags.labels.empty()) {
    Json labels = Json::object();
    for (const std::string& label : flags.labels) {
      size_t eq = label.find('=');
      if (eq == std::string::npos || eq == 0) {
        print_error("register", fmt::format("--label \"{}\" must look like key=value", label));
        return kExitUsage;
      }
      labels[label.substr(0, eq)] = label.substr(eq + 1);
    }
    body["labels"] = std::move(labels);
  }
  for (const std::string& text : flags.ports) {
    std::string error;
    ServicePort port = parse_service_port(text, error);
    if (!error.empty()) {
      print_error("register", "--port " + error);
      return kExitUsage;
    }
    Json p{{"name", port.name}, {"port", port.port}, {"target_port", port.target_port}};
    if (!port.protocol.empty()) p["protocol"] = port.protocol;
    body["ports"].push_back(std::move(p));
  }
  if (!flags.ttl.empty()) {
    // The registry keeps whole seconds; rounding silently would shorten or
    // stretch a lease the user chose.
    auto ttl = parse_duration(flags.ttl, {std::chrono::hours(24), "24h", std::chrono::seconds(1)});
    if (!ttl || *ttl < std::chrono::seconds(1)) {
      print_error("register", fmt::format("--ttl \"{}\": {}", flags.ttl,
                                          ttl ? std::string("must be at least 1s") : ttl.error().message));
      return kExitUsage;
    }
    body["ttl_seconds"] =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(*ttl).count());
  }

  Result<ApiReply> reply = client->call("POST", "/v1/registry/instances", body);
  if (!reply.ok()) {
    print_error("register", reply.error().message);
    return kExitFailure;
  }
  if (!reply->ok()) {
    print_error("register", api_error_text(*reply));
    return kExitFailure;
  }
  // Only the id on stdout, so that scripts can keep it: id=$(trellis register ...).
  print_out(json_string(reply->body, "id") + "\n");
  return kExitOk;
}

int instance_call(std::string_view command, const InstanceFlags& flags, std::string_view method,
                  const std::string& target) {
  std::optional<ApiClient> client = make_client(command, flags.connection);
  if (!client) return kExitUsage;
  Result<ApiReply> reply = client->call(method, target);
  if (!reply.ok()) {
    print_error(command, reply.error().message);
    return kExitFailure;
  }
  if (reply->status == 404 && command == "deregister") {
    print_error(command, fmt::format("instance \"{}\" is not registered (or its TTL ran out)", flags.id));
    return kExitFailure;
  }
  if (!reply->ok()) {
    print_error(command, api_error_text(*reply));
    return kExitFailure;
  }
  if (command == "heartbeat") {
    const Json& ttl = reply->body.is_object() && reply->body.contains("ttl_seconds")
                          ? reply->body["ttl_seconds"]
                          : Json(nullptr);
    print_out(ttl.is_number_unsigned()
                  ? fmt::format("instance {} renewed for {}s\n", flags.id, ttl.get<uint64_t>())
                  : fmt::format("instance {} renewed\n", flags.id));
  } else {
    print_out(fmt::format("instance {} deregistered\n", flags.id));
  }
  return kExitOk;
}

}  // namespace

std::function<int()> add_register_command(CLI::App& app) {
  auto flags = std::make_shared<RegisterFlags>();
  CLI::App* cmd = app.add_subcommand("register", "Register an instance of a service; prints its id");
  cmd->add_option("service", flags->service, "The service the instance belongs to")->required();
  cmd->add_option("--address", flags->address, "Where the instance is reached, IP:PORT")->required();
  cmd->add_option("--id", flags->id,
                  "The instance's id (default: SERVICE-<8 hex digits>); registering an id again "
                  "replaces that instance");
  cmd->add_option("-n,--namespace", flags->namespace_, "The service's namespace (default: default)");
  cmd->add_option("--zone", flags->zone, "Locality zone, for zone-aware load balancing");
  cmd->add_option("--weight", flags->weight, "Load-balancing weight, 1 to 1000000 (default 1)");
  cmd->add_option("--label", flags->labels, "key=value, e.g. version=v2 (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--port", flags->ports,
                  "A Service port it serves, name=port:target/protocol: e.g. http=9080:8080, grpc=9090/grpc "
                  "(target: the instance's port, default the Service's; protocol: http, h2c or grpc); "
                  "repeatable")
      ->allow_extra_args(false);
  cmd->add_option("--ttl", flags->ttl, "Dropped this long after the last heartbeat: 30s, 5m (default 30s)");
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_register(*flags); };
}

std::function<int()> add_heartbeat_command(CLI::App& app) {
  auto flags = std::make_shared<InstanceFlags>();
  CLI::App* cmd = app.add_subcommand("heartbeat", "Keep a registered instance alive for another TTL");
  cmd->add_option("id", flags->id, "The instance's id, as register printed it")->required();
  add_connection_options(*cmd, flags->connection);
  return [flags] {
    return instance_call("heartbeat", *flags, "PUT",
                         "/v1/registry/instances/" + url_encode(flags->id) + "/heartbeat");
  };
}

std::function<int()> add_deregister_command(CLI::App& app) {
  auto flags = std::make_shared<InstanceFlags>();
  CLI::App* cmd = app.add_subcommand("deregister", "Remove a registered instance now");
  cmd->add_option("id", flags->id, "The instance's id")->required();
  add_connection_options(*cmd, flags->connection);
  return [flags] {
    return instance_call("deregister", *flags, "DELETE", "/v1/registry/instances/" + url_encode(flags->id));
  };
}

}  // namespace trellis::cli
