// ReferenceGrant: the Gateway API's consent, given in the namespace of a
// Service, for routes in another namespace to send requests to it. Without
// one, a backendRef across namespaces is not resolved (RefNotPermitted) and
// its share of requests is answered 500.
//
// Only what Trellis acts on is accepted: grants from HTTPRoutes and
// GRPCRoutes (group gateway.networking.k8s.io) to Services (the core
// group). A grant to a Service covers its subsets too (a Subset backend
// names instances of that Service). Grants for Gateways, Secrets and the
// like would allow nothing here, so they are refused.
#include "control/resources/formats.h"
#include "control/resources/kinds.h"

namespace trellis::control {
namespace {

constexpr size_t kMaxEntries = 16;
constexpr std::string_view kGatewayGroup = "gateway.networking.k8s.io";

void check_from(Checker& checker, const Item& item) {
  MapReader from = checker.map(*item.json, item.path, {"group", "kind", "namespace"});
  if (!from.ok()) return;
  std::optional<std::string> group = from.string("group", Need::kRequired);
  std::optional<std::string> kind = from.string("kind", Need::kRequired);
  if (std::optional<std::string> ns = from.string("namespace", Need::kRequired)) {
    if (auto problem = check_dns_label(*ns)) from.error("namespace", *problem);
  }
  if (kind && *kind != "HTTPRoute" && *kind != "GRPCRoute") {
    from.error("kind", quote(*kind) +
                           " is not supported: in the mesh only routes refer to Services, so a grant is "
                           "from HTTPRoute or GRPCRoute" +
                           did_you_mean(*kind, {"HTTPRoute", "GRPCRoute"}));
  } else if (group && *group != kGatewayGroup) {
    from.error("group", "must be \"gateway.networking.k8s.io\", the group of " + kind.value_or("routes"));
  }
}

void check_to(Checker& checker, const Item& item) {
  MapReader to = checker.map(*item.json, item.path, {"group", "kind", "name"});
  if (!to.ok()) return;
  std::optional<std::string> group = to.string("group", Need::kRequired);
  std::optional<std::string> kind = to.string("kind", Need::kRequired);
  if (std::optional<std::string> name = to.string("name")) {
    if (auto problem = check_dns_label(*name)) to.error("name", *problem);
  }
  if (kind && *kind != "Service") {
    to.error("kind", quote(*kind) +
                         " is not supported: routes in the mesh send to Services, so a grant is to "
                         "kind Service (with group \"\")" +
                         did_you_mean(*kind, {"Service"}));
  } else if (group && !group->empty()) {
    to.error("group", "must be \"\" (the core group, where Services are)");
  }
}

}  // namespace

void validate_reference_grant(Checker& checker, const Json& spec_json) {
  MapReader spec = checker.map(spec_json, "spec", {"from", "to"});
  if (!spec.ok()) return;
  for (const Item& item : spec.list("from", 1, kMaxEntries, Need::kRequired)) check_from(checker, item);
  for (const Item& item : spec.list("to", 1, kMaxEntries, Need::kRequired)) check_to(checker, item);
}

}  // namespace trellis::control
