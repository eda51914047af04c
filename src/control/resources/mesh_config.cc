// MeshConfig: the settings of the whole mesh, in one cluster-scoped resource
// named "default" (the name is checked with the rest of the envelope).
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/log_format.h"
#include "control/resources/formats.h"
#include "control/resources/kinds.h"
#include "net/address.h"

namespace trellis::control {

namespace {

constexpr size_t kMaxLogServices = 1000;

// What an access-log block chose: its format and whether it has a template.
struct LogChoice {
  std::string format = "json";
  bool has_template = false;
};

// accessLog, or one of its `services` entries, which takes what it does not
// set from `mesh` (accessLog itself: from the defaults).
LogChoice check_log_settings(Checker& checker, const MapReader& log, const LogChoice& mesh) {
  log.boolean("enabled");
  LogChoice choice = mesh;
  if (std::optional<std::string> format = log.enumeration("format", {"json", "text"})) {
    if (*format != mesh.format) choice.has_template = false;
    choice.format = *format;
  }
  bool text = choice.format == "text";
  std::vector<Item> fields = log.list("fields", 1, kLogFields);
  if (text && log.has("fields"))
    log.error("fields", "is for format json (a text line says what its template says)");
  std::vector<LogField> seen;
  for (const Item& item : fields) {
    std::optional<std::string> name = checker.string(*item.json, item.path);
    if (!name) continue;
    Result<LogField> field = parse_listed_log_field(*name, seen);
    if (!field) {
      checker.error(item.path, field.error().message);
    } else {
      seen.push_back(*field);
    }
  }
  Need need = text && !choice.has_template ? Need::kRequired : Need::kOptional;
  if (std::optional<std::string> tmpl = log.string("template", need)) {
    choice.has_template = true;
    if (!text) {
      log.error("template", "is for format text");
    } else if (Result<LogFormat> parsed = parse_log_template(*tmpl); !parsed) {
      log.error("template", parsed.error().message);
    }
  }
  return choice;
}

}  // namespace

void validate_mesh_config(Checker& checker, const Json& spec_json) {
  MapReader spec = checker.map(spec_json, "spec",
                               {"mtls", "trustDomain", "authorization", "defaults", "accessLog", "tracing"});
  if (!spec.ok()) return;
  if (std::optional<MapReader> mtls =
          spec.map("mtls", {"mode", "certificateLifetime", "clientIdentityHeader"})) {
    mtls->enumeration("mode", {"STRICT", "PERMISSIVE", "DISABLE"});
    if (std::optional<std::string> header = mtls->string("clientIdentityHeader")) {
      if (!header->empty()) {
        if (auto problem = check_token(*header, "a header name"))
          mtls->error("clientIdentityHeader", *problem);
      }
    }
    // The CA signs for 1 minute to 7 days (control/ca/certificate_authority.h).
    if (std::optional<int64_t> lifetime_ms = mtls->duration("certificateLifetime")) {
      if (*lifetime_ms < 60 * 1000 || *lifetime_ms > int64_t{7} * 24 * 3600 * 1000)
        mtls->error("certificateLifetime", "must be from 1m to 168h");
    }
  }
  if (std::optional<MapReader> authz = spec.map("authorization", {"defaultAction"})) {
    authz->enumeration("defaultAction", {"ALLOW", "DENY"});
  }
  if (std::optional<std::string> domain = spec.string("trustDomain")) {
    if (auto problem = check_trust_domain(*domain)) spec.error("trustDomain", *problem);
  }
  if (std::optional<MapReader> defaults = spec.map("defaults", {"requestTimeout", "idleTimeout"})) {
    defaults->duration("requestTimeout");
    defaults->duration("idleTimeout", Need::kOptional, /*positive=*/true);
  }
  if (std::optional<MapReader> access_log =
          spec.map("accessLog", {"enabled", "format", "fields", "template", "services"})) {
    LogChoice mesh = check_log_settings(checker, *access_log, {});
    std::set<std::pair<std::string, std::string>> listed;
    for (const Item& item : access_log->list("services", 1, kMaxLogServices)) {
      MapReader entry = checker.map(*item.json, item.path,
                                    {"service", "namespace", "enabled", "format", "fields", "template"});
      if (!entry.ok()) continue;
      std::optional<std::string> service = entry.string("service", Need::kRequired);
      std::string ns = entry.string("namespace").value_or("default");
      if (service) {
        if (auto problem = check_dns_label(*service)) entry.error("service", *problem);
      }
      if (auto problem = check_dns_label(ns)) entry.error("namespace", *problem);
      if (service && !listed.emplace(*service, ns).second)
        entry.error("service", "service " + *service + " in namespace " + ns + " is listed twice");
      check_log_settings(checker, entry, mesh);
    }
  }
  if (std::optional<MapReader> tracing = spec.map("tracing", {"collector", "samplingPercent"})) {
    if (std::optional<std::string> collector = tracing->string("collector", Need::kRequired)) {
      net::SocketAddress address;
      std::string error;
      if (!net::parse_socket_address(*collector, address, error))
        tracing->error("collector", "an OTLP/HTTP receiver's \"ip:port\": " + error);
    }
    tracing->number("samplingPercent", 0, 100);
  }
}

}  // namespace trellis::control
