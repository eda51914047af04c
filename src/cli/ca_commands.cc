// `trellis ca status` and `trellis ca rotate`: the mesh CA's roots and a root
// rotation in steps (new root trusted everywhere, certificates re-issued
// from it, old root dropped), each step waiting until every connected proxy
// has caught up, so that no connection ever meets a certificate its peer
// cannot verify.
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/table.h"
#include "common/duration.h"

namespace trellis::cli {
namespace {

struct StatusFlags {
  std::string output = "text";
  ConnectionFlags connection;
};

struct RotateFlags {
  std::string step;  // empty: all three
  std::string timeout = "10m";
  ConnectionFlags connection;
};

std::string proxies_line(const Json& ca) {
  const Json& p = ca.contains("proxies") ? ca["proxies"] : Json::object();
  auto n = [&](const char* key) { return p.contains(key) && p[key].is_number() ? p[key].get<int64_t>() : 0; };
  return fmt::format("{} connected, {} trusting the current bundle, {} with a certificate from the issuer",
                     n("connected"), n("trustBundle"), n("issuer"));
}

void print_status(const Json& ca) {
  std::string out = fmt::format("trust domain {}; {} CA; rotation: {}\n", json_string(ca, "trustDomain"),
                                json_string(ca, "mode"), json_string(ca, "phase"));
  std::vector<TableRow> rows;
  const Json& issuer = ca.contains("issuer") ? ca["issuer"] : Json::object();
  if (ca.contains("roots") && ca["roots"].is_array()) {
    for (const Json& r : ca["roots"]) {
      bool issuing = json_string(r, "sha256") == json_string(issuer, "sha256");
      rows.push_back({"root", json_string(r, "subject"), json_string(r, "sha256").substr(0, 16),
                      json_string(r, "notAfter"), issuing ? "yes" : ""});
    }
  }
  if (json_string(ca, "mode") == "operator-intermediate") {
    rows.push_back({"intermediate", json_string(issuer, "subject"),
                    json_string(issuer, "sha256").substr(0, 16), json_string(issuer, "notAfter"), "yes"});
  }
  out += format_table({"", "SUBJECT", "SHA-256", "NOT AFTER", "ISSUING"}, rows);
  out += "proxies: " + proxies_line(ca) + "\n";
  print_out(out);
}

int run_status(const StatusFlags& flags) {
  std::optional<ApiClient> client = make_client("ca status", flags.connection);
  if (!client) return kExitUsage;
  std::optional<ApiReply> reply = call("ca status", *client, "GET", "/v1/ca");
  if (!reply) return kExitFailure;
  if (flags.output == "json") {
    print_out(reply->body.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
  } else {
    print_status(reply->body);
  }
  return kExitOk;
}

// Runs `step` until the control plane takes it (it answers 409 while proxies
// catch up with the step before) or the deadline passes.
bool run_step(ApiClient& client, const std::string& step, std::chrono::steady_clock::time_point deadline) {
  std::string last;
  for (;;) {
    Result<ApiReply> reply = client.call("POST", "/v1/ca/rotation", Json{{"step", step}});
    if (!reply.ok()) {
      print_error("ca rotate", reply.error().message);
      return false;
    }
    if (reply->ok()) {
      print_out(fmt::format("{}: done; proxies: {}\n", step, proxies_line(reply->body)));
      // The API's own certificate follows the roots: trust what the
      // control plane now trusts (it came over the connection verified so far).
      std::string bundle = json_string(reply->body, "trustBundle");
      if (!bundle.empty()) (void)client.set_trust_bundle(bundle);
      return true;
    }
    if (reply->status != 409 || reply->error().rfind("not yet", 0) != 0) {
      print_error("ca rotate", step + ": " + error_text(*reply));
      return false;
    }
    if (reply->error() != last) {
      print_out(fmt::format("{}: waiting: {}\n", step, reply->error()));
      last = reply->error();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      print_error("ca rotate", step + ": gave up waiting: " + reply->error());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

int run_rotate(const RotateFlags& flags) {
  std::optional<ApiClient> client = make_client("ca rotate", flags.connection);
  if (!client) return kExitUsage;
  auto timeout = parse_duration(flags.timeout);
  if (!timeout) {
    print_error("ca rotate", "--timeout: " + timeout.error().message);
    return kExitUsage;
  }
  auto deadline = std::chrono::steady_clock::now() + *timeout;
  std::vector<std::string> steps =
      flags.step.empty() ? std::vector<std::string>{"begin", "switch", "finish"} : std::vector{flags.step};
  for (const std::string& step : steps)
    if (!run_step(*client, step, deadline)) return kExitFailure;
  print_out(
      "The trust bundle changed: replace copies of trellis-control's trust-bundle.pem (the CLI's --ca-file, "
      "~/.config/trellis/ca.pem, the proxies' control_plane.trust_bundle) with the new one "
      "(trellis ca status -o json shows it as trustBundle); a proxy that joins with its token needs it.\n");
  return kExitOk;
}

}  // namespace

std::function<int()> add_ca_command(CLI::App& app) {
  CLI::App* ca =
      app.add_subcommand("ca", "The mesh CA: its roots, and rotating them (admin token to rotate)");
  ca->require_subcommand(1);

  auto status_flags = std::make_shared<StatusFlags>();
  CLI::App* status = ca->add_subcommand("status", "The roots, the issuer, and how far the proxies are");
  status->add_option("-o,--output", status_flags->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  add_connection_options(*status, status_flags->connection);

  auto rotate_flags = std::make_shared<RotateFlags>();
  CLI::App* rotate = ca->add_subcommand("rotate",
                                        "Rotate the root: add a new one to the trust bundle, re-issue every "
                                        "certificate from it, drop the old one");
  rotate
      ->add_option("--step", rotate_flags->step, "Run one step only: begin, switch or finish (default: all)")
      ->check(CLI::IsMember({"begin", "switch", "finish"}));
  rotate->add_option("--timeout", rotate_flags->timeout, "How long to wait for the proxies in all (e.g. 10m)")
      ->capture_default_str();
  add_connection_options(*rotate, rotate_flags->connection);

  return [=] {
    if (status->parsed()) return run_status(*status_flags);
    if (rotate->parsed()) return run_rotate(*rotate_flags);
    return kExitUsage;
  };
}

}  // namespace trellis::cli
