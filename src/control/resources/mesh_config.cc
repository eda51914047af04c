// MeshConfig: the settings of the whole mesh, in one cluster-scoped resource
// named "default" (the name is checked with the rest of the envelope).
#include "control/resources/formats.h"
#include "control/resources/kinds.h"

namespace trellis::control {

void validate_mesh_config(Checker& checker, const Json& spec_json) {
  MapReader spec = checker.map(spec_json, "spec",
                               {"mtls", "trustDomain", "authorization", "defaults", "accessLog", "tracing"});
  if (!spec.ok()) return;
  if (std::optional<MapReader> mtls = spec.map("mtls", {"mode"})) {
    // Sidecars configured by trellis-control get no certificate yet, so they
    // cannot refuse plain text: taking STRICT would promise what is not done.
    if (mtls->enumeration("mode", {"STRICT", "PERMISSIVE", "DISABLE"}) == "STRICT") {
      mtls->error("mode",
                  "STRICT is not available yet: sidecars configured by trellis-control do not get "
                  "certificates yet, so they cannot refuse plain text; leave PERMISSIVE (the default) until "
                  "they do (mTLS between sidecars configured from files: see the proxy's mtls section)");
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
  if (std::optional<MapReader> access_log = spec.map("accessLog", {"enabled"})) {
    access_log->boolean("enabled");
  }
  if (std::optional<MapReader> tracing = spec.map("tracing", {"samplingPercent"})) {
    tracing->number("samplingPercent", 0, 100);
  }
}

}  // namespace trellis::control
