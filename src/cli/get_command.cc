// `trellis get`: resources as a table, YAML or JSON; and two registry views
// under the same verb: `get endpoints SERVICE` (live instances) and
// `get services` (instance counts).
#include <cctype>
#include <memory>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/mesh_commands.h"
#include "cli/table.h"

namespace trellis::cli {
namespace {

struct GetFlags {
  std::string kind;
  std::string name;
  std::string namespace_;  // empty: not given
  bool all_namespaces = false;
  std::string output = "table";
  ConnectionFlags connection;
};

const Json kNull = nullptr;

// doc[a][b]... or null.
const Json& at(const Json& doc, std::initializer_list<const char*> path) {
  const Json* node = &doc;
  for (const char* key : path) {
    if (!node->is_object()) return kNull;
    auto it = node->find(key);
    if (it == node->end()) return kNull;
    node = &*it;
  }
  return *node;
}

std::string text(const Json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += separator;
    out += p;
  }
  return out;
}

// Each item's `key`, joined by commas.
std::string names_of(const Json& list, const char* key = "name") {
  std::vector<std::string> names;
  if (list.is_array()) {
    for (const Json& item : list) names.push_back(text(at(item, {key})));
  }
  return join(names, ",");
}

// "reviews", or "Kind/name" when the target is not a Service.
std::string target_of(const Json& spec) {
  const Json& ref = at(spec, {"targetRef"});
  std::string kind = text(at(ref, {"kind"}));
  std::string name = text(at(ref, {"name"}));
  return kind.empty() || kind == "Service" ? name : kind + "/" + name;
}

std::string parents_of(const Json& spec) {
  std::vector<std::string> parents;
  const Json& refs = at(spec, {"parentRefs"});
  if (refs.is_array()) {
    for (const Json& ref : refs) {
      std::string port = text(at(ref, {"port"}));
      parents.push_back(text(at(ref, {"name"})) + (port.empty() ? "" : ":" + port));
    }
  }
  return join(parents, ",");
}

// Per rule, its backends ("=weight" where a rule splits), rules apart by " | ":
// "reviews-v2 | reviews-v1=90,reviews-v2=10".
std::string backends_of(const Json& spec) {
  std::vector<std::string> rules;
  const Json& list = at(spec, {"rules"});
  if (!list.is_array()) return "";
  for (const Json& rule : list) {
    const Json& refs = at(rule, {"backendRefs"});
    std::vector<std::string> backends;
    if (refs.is_array()) {
      for (const Json& ref : refs) {
        std::string weight = text(at(ref, {"weight"}));
        bool split = refs.size() > 1 && !weight.empty();
        backends.push_back(text(at(ref, {"name"})) + (split ? "=" + weight : ""));
      }
    }
    rules.push_back(backends.empty() ? "(none)" : join(backends, ","));
  }
  return join(rules, " | ");
}

// "503 at 10%" from a FaultInjection's abort (`what` = httpStatus) or delay
// (fixedDelay); the percentage defaults to 100.
std::string fault_of(const Json& fault, const char* what) {
  if (!fault.is_object()) return "";
  std::string percent = text(at(fault, {"percent"}));
  return text(at(fault, {what})) + " at " + (percent.empty() ? "100" : percent) + "%";
}

// The ResolvedRefs condition of a route's status: "ok", or its reason.
std::string refs_of(const Json& status) {
  const Json& parents = at(status, {"parents"});
  if (!parents.is_array() || parents.empty()) return "";
  const Json& conditions = at(parents[0], {"conditions"});
  if (!conditions.is_array()) return "";
  for (const Json& c : conditions) {
    if (text(at(c, {"type"})) == "ResolvedRefs")
      return text(at(c, {"status"})) == "True" ? "ok" : text(at(c, {"reason"}));
  }
  return "";
}

// "HTTPRoute/shop,GRPCRoute/shop": who a ReferenceGrant lets refer.
std::string grant_from(const Json& spec) {
  std::vector<std::string> out;
  const Json& list = at(spec, {"from"});
  if (list.is_array())
    for (const Json& f : list) out.push_back(text(at(f, {"kind"})) + "/" + text(at(f, {"namespace"})));
  return join(out, ",");
}

// "Service/reviews,Service/*": what a ReferenceGrant lets them refer to.
std::string grant_to(const Json& spec) {
  std::vector<std::string> out;
  const Json& list = at(spec, {"to"});
  if (list.is_array()) {
    for (const Json& t : list) {
      std::string name = text(at(t, {"name"}));
      out.push_back(text(at(t, {"kind"})) + "/" + (name.empty() ? "*" : name));
    }
  }
  return join(out, ",");
}

// The kind-specific columns of the resource table.
struct Summary {
  std::vector<std::string> headers;
  std::vector<std::string> (*cells)(const Json& spec, const Json& status);
};

Summary summary_for(std::string_view kind) {
  if (kind == "HTTPRoute" || kind == "GRPCRoute") {
    return {{"PARENTS", "BACKENDS", "REFS"}, [](const Json& s, const Json& status) {
              return std::vector{parents_of(s), backends_of(s), refs_of(status)};
            }};
  }
  if (kind == "DestinationPolicy") {
    return {{"TARGET", "SUBSETS", "LOAD BALANCER"}, [](const Json& s, const Json&) {
              return std::vector{target_of(s), names_of(at(s, {"subsets"})),
                                 text(at(s, {"loadBalancer", "algorithm"}))};
            }};
  }
  if (kind == "RateLimitPolicy") {
    return {{"TARGET", "LIMITS"}, [](const Json& s, const Json&) {
              return std::vector{target_of(s), names_of(at(s, {"limits"}))};
            }};
  }
  if (kind == "AuthorizationPolicy") {
    return {{"TARGET", "ACTION", "RULES"}, [](const Json& s, const Json&) {
              const Json& rules = at(s, {"rules"});
              return std::vector{target_of(s), text(at(s, {"action"})),
                                 std::to_string(rules.is_array() ? rules.size() : 0)};
            }};
  }
  if (kind == "MeshConfig") {
    return {{"MTLS", "TRUST DOMAIN"}, [](const Json& s, const Json&) {
              return std::vector{text(at(s, {"mtls", "mode"})), text(at(s, {"trustDomain"}))};
            }};
  }
  if (kind == "ReferenceGrant") {
    return {{"FROM", "TO"}, [](const Json& s, const Json&) {
              return std::vector{grant_from(s), grant_to(s)};
            }};
  }
  if (kind == "FaultInjection") {
    return {{"ABORT", "DELAY"}, [](const Json& s, const Json&) {
              return std::vector{fault_of(at(s, {"abort"}), "httpStatus"),
                                 fault_of(at(s, {"delay"}), "fixedDelay")};
            }};
  }
  return {{}, [](const Json&, const Json&) { return std::vector<std::string>{}; }};
}

std::string resource_table(const std::vector<Json>& items, std::string_view kind, bool with_namespace) {
  Summary summary = summary_for(kind);
  TableRow headers;
  if (with_namespace) headers.push_back("NAMESPACE");
  headers.push_back("NAME");
  headers.insert(headers.end(), summary.headers.begin(), summary.headers.end());
  headers.push_back("VERSION");
  std::vector<TableRow> rows;
  for (const Json& item : items) {
    TableRow row;
    if (with_namespace) row.push_back(text(at(item, {"metadata", "namespace"})));
    row.push_back(text(at(item, {"metadata", "name"})));
    std::vector<std::string> cells = summary.cells(at(item, {"spec"}), at(item, {"status"}));
    row.insert(row.end(), cells.begin(), cells.end());
    row.push_back(text(at(item, {"metadata", "resourceVersion"})));
    rows.push_back(std::move(row));
  }
  return format_table(headers, rows);
}

std::string yaml_documents(const std::vector<Json>& docs) {
  std::string out;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (i > 0) out += "---\n";
    out += to_yaml(docs[i]);
  }
  return out;
}

std::string pretty(const Json& value) {
  return value.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

// Reports a failed call (unreachable, or an API error) and returns 1.
int failed(const Result<ApiReply>& reply, std::string_view context = {}) {
  if (!reply.ok()) {
    print_error("get", reply.error().message);
  } else {
    std::string error = reply->error();
    std::string hint = error.rfind("unknown kind", 0) == 0
                           ? "; the kinds are " + kind_list() + ", plus endpoints and services"
                           : "";
    print_error("get", context.empty() ? error + hint : fmt::format("{}: {}{}", context, error, hint));
  }
  return kExitFailure;
}

int get_resources(const ApiClient& client, const GetFlags& flags) {
  const KindName* known = find_kind_name(flags.kind);
  std::string segment = url_encode(known != nullptr ? known->plural : flags.kind);
  bool namespaced = known == nullptr || known->namespaced;
  std::string ns = flags.namespace_.empty() ? "default" : flags.namespace_;

  if (!flags.name.empty()) {
    std::string target = "/v1/resources/" + segment + "/";
    if (namespaced) target += url_encode(ns) + "/";
    target += url_encode(flags.name);
    Result<ApiReply> reply = client.call("GET", target);
    if (!reply.ok() || !reply->ok()) {
      if (reply.ok() && reply->status == 404 && reply->error().rfind("unknown kind", 0) != 0) {
        std::string where = namespaced ? " in namespace " + ns : "";
        print_error("get", fmt::format("{} not found{}", resource_label(flags.kind, flags.name), where));
        return kExitFailure;
      }
      return failed(reply);
    }
    const Json& doc = reply->body;
    if (flags.output == "json") {
      print_out(pretty(doc));
    } else if (flags.output == "yaml") {
      print_out(to_yaml(doc));
    } else {
      print_out(resource_table({doc}, text(at(doc, {"kind"})), false));
    }
    return kExitOk;
  }

  std::string target = "/v1/resources/" + segment;
  if (namespaced && !flags.all_namespaces) target += "?namespace=" + url_encode(ns);
  Result<ApiReply> reply = client.call("GET", target);
  if (!reply.ok() || !reply->ok()) return failed(reply);
  const Json& list = reply->body;
  std::vector<Json> items;
  if (list.contains("items") && list["items"].is_array())
    items.assign(list["items"].begin(), list["items"].end());
  std::string list_kind = text(at(list, {"kind"}));
  std::string kind = list_kind.size() > 4 ? list_kind.substr(0, list_kind.size() - 4) : flags.kind;

  if (flags.output == "json") {
    print_out(pretty(list));
    return kExitOk;
  }
  if (items.empty()) {
    std::string plural = known != nullptr ? known->plural : flags.kind;
    std::string where =
        !namespaced || flags.all_namespaces ? "" : " in namespace " + ns + " (-A for all namespaces)";
    std::fflush(stdout);
    std::fprintf(stderr, "No %s found%s.\n", plural.c_str(), where.c_str());
    return kExitOk;
  }
  // A cluster-scoped kind has no namespace to show, -A or not.
  bool with_namespace = flags.all_namespaces && namespaced;
  print_out(flags.output == "yaml" ? yaml_documents(items) : resource_table(items, kind, with_namespace));
  return kExitOk;
}

std::string labels_text(const Json& labels) {
  std::vector<std::string> parts;
  if (labels.is_object()) {
    for (auto it = labels.begin(); it != labels.end(); ++it)
      parts.push_back(it.key() + "=" + text(it.value()));
  }
  return join(parts, ",");
}

int get_endpoints(const ApiClient& client, const GetFlags& flags) {
  std::string ns = flags.namespace_.empty() ? "default" : flags.namespace_;
  std::string target =
      "/v1/registry/services/" + url_encode(ns) + "/" + url_encode(flags.name) + "/instances";
  Result<ApiReply> reply = client.call("GET", target);
  if (!reply.ok() || !reply->ok()) return failed(reply, "endpoints of " + flags.name);
  const Json& body = reply->body;
  if (flags.output == "json") {
    print_out(pretty(body));
    return kExitOk;
  }
  if (flags.output == "yaml") {
    print_out(to_yaml(body));
    return kExitOk;
  }
  const Json& instances = at(body, {"instances"});
  if (!instances.is_array() || instances.empty()) {
    std::fflush(stdout);
    std::fprintf(stderr, "No live instances of %s in namespace %s.\n", flags.name.c_str(), ns.c_str());
    return kExitOk;
  }
  std::vector<TableRow> rows;
  for (const Json& i : instances) {
    std::string ttl = text(at(i, {"ttl_seconds"}));
    rows.push_back({text(at(i, {"id"})), text(at(i, {"address"})), text(at(i, {"zone"})),
                    text(at(i, {"weight"})), labels_text(at(i, {"labels"})), ttl.empty() ? "" : ttl + "s"});
  }
  print_out(format_table({"ID", "ADDRESS", "ZONE", "WEIGHT", "LABELS", "TTL"}, rows));
  return kExitOk;
}

int get_services(const ApiClient& client, const GetFlags& flags) {
  Result<ApiReply> reply = client.call("GET", "/v1/registry/services");
  if (!reply.ok() || !reply->ok()) return failed(reply);
  Json services = Json::array();
  const Json& all = at(reply->body, {"services"});
  if (all.is_array()) {
    for (const Json& s : all) {
      // Without -n every namespace shows: the registry is one list, and a
      // service nobody can find is the usual question.
      if (flags.namespace_.empty() || text(at(s, {"namespace"})) == flags.namespace_) services.push_back(s);
    }
  }
  if (flags.output == "json" || flags.output == "yaml") {
    Json body{{"services", services}};
    print_out(flags.output == "json" ? pretty(body) : to_yaml(body));
    return kExitOk;
  }
  if (services.empty()) {
    std::fflush(stdout);
    std::fprintf(stderr, "No services registered%s.\n",
                 flags.namespace_.empty() ? "" : (" in namespace " + flags.namespace_).c_str());
    return kExitOk;
  }
  std::vector<TableRow> rows;
  for (const Json& s : services) {
    rows.push_back({text(at(s, {"namespace"})), text(at(s, {"service"})), text(at(s, {"instances"}))});
  }
  print_out(format_table({"NAMESPACE", "SERVICE", "INSTANCES"}, rows));
  return kExitOk;
}

int run_get(const GetFlags& flags) {
  std::optional<ApiClient> client = make_client("get", flags.connection);
  if (!client) return kExitUsage;
  static const std::set<std::string> kEndpoints = {"endpoints", "endpoint", "ep", "instances", "instance"};
  static const std::set<std::string> kServices = {"services", "service", "svc"};

  if (flags.all_namespaces && !flags.namespace_.empty()) {
    print_error("get", "give -n NAMESPACE or -A, not both");
    return kExitUsage;
  }
  std::string word = flags.kind;
  for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (kEndpoints.count(word)) {
    if (flags.name.empty() || flags.all_namespaces) {
      print_error("get", "endpoints are listed per service: trellis get endpoints SERVICE [-n NAMESPACE]");
      return kExitUsage;
    }
    return get_endpoints(*client, flags);
  }
  if (kServices.count(word)) {
    if (!flags.name.empty()) {
      print_error("get", "for one service's instances use: trellis get endpoints " + flags.name);
      return kExitUsage;
    }
    return get_services(*client, flags);
  }
  if (!flags.name.empty() && flags.all_namespaces) {
    print_error("get", "a resource cannot be fetched by name across all namespaces: give -n NAMESPACE");
    return kExitUsage;
  }
  return get_resources(*client, flags);
}

}  // namespace

std::function<int()> add_get_command(CLI::App& app) {
  auto flags = std::make_shared<GetFlags>();
  CLI::App* cmd = app.add_subcommand(
      "get", "Show mesh resources, a service's live endpoints, or the registered services");
  cmd->add_option("kind", flags->kind,
                  "httproutes, grpcroutes, destinationpolicies, ratelimitpolicies, authorizationpolicies, "
                  "meshconfigs, faultinjections (or the singular), endpoints or services")
      ->required();
  cmd->add_option("name", flags->name, "One resource by name; for endpoints, the service");
  cmd->add_option("-n,--namespace", flags->namespace_, "Namespace (default: default; services: all)");
  cmd->add_flag("-A,--all-namespaces", flags->all_namespaces, "List the resources of every namespace");
  cmd->add_option("-o,--output", flags->output, "table, yaml or json")
      ->check(CLI::IsMember({"table", "yaml", "json"}))
      ->capture_default_str();
  add_connection_options(*cmd, flags->connection);
  return [flags] { return run_get(*flags); };
}

}  // namespace trellis::cli
