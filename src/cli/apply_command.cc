// `trellis apply -f PATH` and `trellis delete`: resources from files (or by
// kind and name) sent to the control plane one by one. A refused resource
// does not stop the others; it makes the exit code 1.
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/resource_files.h"

namespace trellis::cli {
namespace {

struct ApplyFlags {
  std::string file;
  bool recursive = false;
  ConnectionFlags connection;
};

struct DeleteFlags {
  std::vector<std::string> args;  // KIND NAME...
  std::string namespace_ = "default";
  std::string file;
  bool recursive = false;
  bool ignore_not_found = false;
  ConnectionFlags connection;
};

std::string string_at(const Json& doc, std::initializer_list<const char*> path) {
  const Json* at = &doc;
  for (const char* key : path) {
    if (!at->is_object() || !at->contains(key)) return "";
    at = &(*at)[key];
  }
  return at->is_string() ? at->get<std::string>() : "";
}

std::string label_of(const Json& doc) {
  return resource_label(string_at(doc, {"kind"}), string_at(doc, {"metadata", "name"}));
}

std::string unknown_kind_hint(const std::string& error) {
  return error.rfind("unknown kind", 0) == 0 ? "; the kinds are " + kind_list() : "";
}

// Reads -f PATH; on any local error prints them all and returns false.
bool read_files(std::string_view command, const std::string& path, bool recursive, ResourceFiles& files) {
  files = read_resource_files(path, recursive);
  if (!files.errors.empty()) {
    for (const std::string& e : files.errors) print_error(command, e);
    print_error(command, "nothing was sent: fix the files first");
    return false;
  }
  if (files.documents.empty()) {
    print_error(command, path == "-" ? "no resources on stdin" : path + ": no resources in it");
    return false;
  }
  return true;
}

// The 400/409/... answer for one document, with the field errors pointing into its file.
void report_refusal(const SourceDocument& source, const std::string& label, const ApiReply& reply) {
  std::string out = fmt::format("{} refused ({}): {}\n", label, source.where(), reply.error());
  if (reply.body.contains("details") && reply.body["details"].is_array()) {
    for (const Json& d : reply.body["details"]) {
      std::string path = json_string(d, "path");
      std::string message = json_string(d, "message");
      std::string field = path.empty() ? message : path + ": " + message;
      // Compiler style, so that editors and terminals can jump to the line.
      if (source.doc.lines.empty()) {
        out += fmt::format("  {}\n", field);
      } else {
        out += fmt::format("  {}: {}\n", source.where(path), field);
      }
    }
  }
  if (reply.status == 409) {
    out +=
        "  it changed since that metadata.resourceVersion was read: get it again and reapply the change,\n"
        "  or remove metadata.resourceVersion to overwrite it\n";
  }
  std::fflush(stdout);
  std::fwrite(out.data(), 1, out.size(), stderr);
}

int run_apply(const ApplyFlags& flags) {
  std::optional<ApiClient> client = make_client("apply", flags.connection);
  if (!client) return kExitUsage;
  ResourceFiles files;
  if (!read_files("apply", flags.file, flags.recursive, files)) return kExitFailure;

  size_t refused = 0;
  for (size_t i = 0; i < files.documents.size(); ++i) {
    const SourceDocument& source = files.documents[i];
    std::string label = label_of(source.doc.json);
    Result<ApiReply> reply = client->call("PUT", "/v1/resources", source.doc.json);
    if (!reply.ok()) {
      // The server is gone: the rest would fail the same way.
      print_error("apply", reply.error().message);
      if (i > 0)
        print_error("apply",
                    fmt::format("{} of {} resources were sent before that", i, files.documents.size()));
      return kExitFailure;
    }
    if (!reply->ok()) {
      ++refused;
      report_refusal(source, label, *reply);
      continue;
    }
    const Json& stored = reply->body.contains("resource") ? reply->body["resource"] : source.doc.json;
    std::string result = string_at(reply->body, {"result"});
    print_out(fmt::format("{} {}\n", label_of(stored), result.empty() ? "applied" : result));
  }
  if (refused > 0) {
    print_error("apply", fmt::format("{} of {} resources refused", refused, files.documents.size()));
    return kExitFailure;
  }
  return kExitOk;
}

// DELETE one resource; false when it failed (not found counts unless ignored).
bool delete_one(const ApiClient& client, const std::string& kind, const std::string& namespace_,
                const std::string& name, bool ignore_not_found, const std::string& where) {
  const KindName* known = find_kind_name(kind);
  std::string target = "/v1/resources/" + url_encode(known != nullptr ? known->plural : kind) + "/";
  if (known == nullptr || known->namespaced) target += url_encode(namespace_) + "/";
  target += url_encode(name);
  std::string label = resource_label(kind, name);
  std::string context = where.empty() ? label : fmt::format("{} ({})", label, where);

  Result<ApiReply> reply = client.call("DELETE", target);
  if (!reply.ok()) {
    print_error("delete", reply.error().message);
    return false;
  }
  if (reply->ok()) {
    print_out(label + " deleted\n");
    return true;
  }
  std::string error = reply->error();
  bool unknown_kind = error.rfind("unknown kind", 0) == 0;
  if (reply->status == 404 && !unknown_kind) {
    if (ignore_not_found) return true;
    std::string in = known != nullptr && !known->namespaced ? "" : " in namespace " + namespace_;
    print_error("delete", fmt::format("{}: not found{}", context, in));
    return false;
  }
  print_error("delete", fmt::format("{}: {}{}", context, error, unknown_kind_hint(error)));
  return false;
}

int run_delete(const DeleteFlags& flags) {
  std::optional<ApiClient> client = make_client("delete", flags.connection);
  if (!client) return kExitUsage;
  bool failed = false;

  if (!flags.file.empty()) {
    if (!flags.args.empty()) {
      print_error("delete", "give either -f PATH or KIND NAME..., not both");
      return kExitUsage;
    }
    ResourceFiles files;
    if (!read_files("delete", flags.file, flags.recursive, files)) return kExitFailure;
    for (const SourceDocument& source : files.documents) {
      std::string kind = string_at(source.doc.json, {"kind"});
      std::string name = string_at(source.doc.json, {"metadata", "name"});
      if (kind.empty() || name.empty()) {
        print_error("delete", source.where() + ": no kind or metadata.name: cannot tell what to delete");
        failed = true;
        continue;
      }
      std::string ns = string_at(source.doc.json, {"metadata", "namespace"});
      if (ns.empty()) ns = flags.namespace_;
      // The file's resourceVersion is not sent: deleting what a file
      // describes should not depend on when the file was written.
      if (!delete_one(*client, kind, ns, name, flags.ignore_not_found, source.where())) failed = true;
    }
    return failed ? kExitFailure : kExitOk;
  }

  if (flags.args.size() < 2) {
    print_error("delete", "name a KIND and at least one NAME, or give -f PATH (see trellis delete --help)");
    return kExitUsage;
  }
  const std::string& kind = flags.args[0];
  for (size_t i = 1; i < flags.args.size(); ++i) {
    if (!delete_one(*client, kind, flags.namespace_, flags.args[i], flags.ignore_not_found, ""))
      failed = true;
  }
  return failed ? kExitFailure : kExitOk;
}

}  // namespace

std::function<int()> add_apply_command(CLI::App& app) {
  auto flags = std::make_shared<ApplyFlags>();
  CLI::App* cmd = app.add_subcommand("apply", "Create or update mesh resources from YAML or JSON files");
  cmd->add_option("-f,--filename", flags->file,
                  "A file, a folder of *.yaml/*.yml/*.json files, or - for stdin")
      ->required();
  cmd->add_flag("-R,--recursive", flags->recursive, "With a folder, also read its sub-folders");
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_apply(*flags); };
}

std::function<int()> add_delete_command(CLI::App& app) {
  auto flags = std::make_shared<DeleteFlags>();
  CLI::App* cmd =
      app.add_subcommand("delete", "Delete mesh resources by kind and name, or those a file describes");
  cmd->add_option("kind_and_names", flags->args, "KIND NAME... (kind, e.g. httproute, or its plural)");
  cmd->add_option("-n,--namespace", flags->namespace_,
                  "Namespace of the resources (files: when they name none)")
      ->capture_default_str();
  cmd->add_option("-f,--filename", flags->file, "Delete what this file, folder or stdin (-) describes");
  cmd->add_flag("-R,--recursive", flags->recursive, "With a folder, also read its sub-folders");
  cmd->add_flag("--ignore-not-found", flags->ignore_not_found,
                "A resource that does not exist is not an error");
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_delete(*flags); };
}

}  // namespace trellis::cli
