#include "control/mesh_check.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "mesh_test_helpers.h"

namespace trellis::control {
namespace {

using namespace ::trellis::control::testing;  // NOLINT: test helpers

using Row = std::tuple<std::string, std::string, std::string>;  // severity, resource, field

std::vector<Row> rows(const std::vector<Finding>& findings) {
  std::vector<Row> out;
  for (const Finding& f : findings)
    out.emplace_back(f.severity == Finding::Severity::kError ? "error" : "warning", f.resource, f.field);
  return out;
}

const SystemTime kNow = std::chrono::system_clock::time_point(std::chrono::hours(24 * 365 * 50));

CaStatus healthy_ca() {
  CaStatus ca;
  CertificateSummary root{"CN=root", "aa", "01", kNow - std::chrono::hours(1),
                          kNow + std::chrono::hours(24 * 3650)};
  ca.roots = {root};
  ca.issuer = root;
  return ca;
}

std::vector<Finding> check(const MeshView& mesh, const std::vector<ProxyStatus>& proxies = {},
                           const CaStatus& ca = healthy_ca()) {
  return check_mesh(mesh, proxies, ca, kNow, std::chrono::hours(24 * 30));
}

MeshView mesh_with_details() {
  MeshView mesh;
  mesh.instances = {instance("details", "10.0.0.1:80")};
  return mesh;
}

TEST(MeshCheck, AHealthyMeshHasNothingToSay) {
  MeshView mesh = mesh_with_details();
  mesh.http_routes = {http_route("details", R"({"parentRefs": [{"name": "details"}],
    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
               "backendRefs": [{"name": "details", "port": 80}]}]})")};
  EXPECT_EQ(rows(check(mesh)), std::vector<Row>{});
}

TEST(MeshCheck, RoutesThatLeadNowhereOrShadowEachOther) {
  MeshView mesh = mesh_with_details();
  mesh.http_routes = {http_route("orphan", R"({"parentRefs": [{"name": "ghost"}], "rules": [{}]})", 1),
                      http_route("first", R"({"parentRefs": [{"name": "details"}],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}],
                   "backendRefs": [{"name": "missing", "port": 80}]}]})",
                                 2),
                      http_route("second", R"({"parentRefs": [{"name": "details"}],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}],
                   "backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "details/v9", "port": 80}]}]})",
                                 3)};
  EXPECT_EQ(rows(check(mesh)),
            (std::vector<Row>{{"warning", "HTTPRoute default/orphan", "spec.parentRefs[0]"},
                              {"error", "HTTPRoute default/first", "spec.rules[0].backendRefs[0]"},
                              {"error", "HTTPRoute default/second", "spec.rules[0].backendRefs[0]"},
                              {"warning", "HTTPRoute default/second", "spec.rules[0].matches[0]"}}));
}

// Mirrors' references are checked too, as warnings: the copies are lost,
// not the requests. A FaultInjection named on one backend is in use.
TEST(MeshCheck, MirrorsThatLeadNowhereAndFaultsOnABackend) {
  MeshView mesh = mesh_with_details();
  mesh.fault_injections = {resource("FaultInjection", "slow", R"({"delay": {"fixedDelay": "1s"}})")};
  mesh.http_routes = {http_route("details", R"({"parentRefs": [{"name": "details"}],
    "rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "ghost", "port": 80}}}],
               "backendRefs": [{"name": "details", "port": 80, "filters": [
                 {"type": "RequestMirror", "requestMirror": {"backendRef": {"kind": "Bucket", "name": "x", "port": 80}}},
                 {"type": "ExtensionRef",
                  "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection", "name": "slow"}}]}]}]})")};
  EXPECT_EQ(rows(check(mesh)),
            (std::vector<Row>{
                {"warning", "HTTPRoute default/details", "spec.rules[0].filters[0].requestMirror.backendRef"},
                {"warning", "HTTPRoute default/details",
                 "spec.rules[0].backendRefs[0].filters[0].requestMirror.backendRef"}}));
}

TEST(MeshCheck, ARouteOnANameCallersUseIsInUseWithoutInstances) {
  // reviews has no instance of its own: its route splits it between two
  // services that do, and productpage's proxy calls it by that name.
  MeshView mesh;
  mesh.instances = {instance("reviews-v1", "10.0.0.1:80"), instance("reviews-v2", "10.0.0.2:80")};
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"backendRefs": [{"name": "reviews-v1", "port": 80, "weight": 90},
                               {"name": "reviews-v2", "port": 80, "weight": 10}]}]})")};
  EXPECT_EQ(rows(check(mesh)),
            (std::vector<Row>{{"warning", "HTTPRoute default/reviews", "spec.parentRefs[0]"}}));
  ProxyStatus caller;
  caller.node_id = "productpage-1";
  caller.upstreams = {{"reviews", "default"}};
  EXPECT_EQ(rows(check(mesh, {caller})), std::vector<Row>{});
}

TEST(MeshCheck, PoliciesThatTargetNothingOrDenyEverything) {
  MeshView mesh = mesh_with_details();
  mesh.destination_policies = {
      resource("DestinationPolicy", "ghost", R"({"targetRef": {"kind": "Service", "name": "ghost"}})")};
  mesh.fault_injections = {
      resource("FaultInjection", "unused", R"({"abort": {"httpStatus": 503, "percentage": 10}})")};
  mesh.authorization_policies = {
      resource("AuthorizationPolicy", "closed", R"({"targetRef": {"kind": "Service", "name": "details"}})"),
      resource("AuthorizationPolicy", "wall",
               R"({"targetRef": {"kind": "Service", "name": "details"}, "action": "DENY", "rules": [{}]})")};
  EXPECT_EQ(rows(check(mesh)),
            (std::vector<Row>{{"warning", "DestinationPolicy default/ghost", "spec.targetRef"},
                              {"warning", "FaultInjection default/unused", ""},
                              {"error", "AuthorizationPolicy default/wall", "spec.rules"},
                              {"error", "Service details.default", ""}}));
  // A mesh closed by default, with no ALLOW policy for the service.
  MeshView closed = mesh_with_details();
  closed.mesh_configs = {
      resource("MeshConfig", "default", R"({"authorization": {"defaultAction": "DENY"}})")};
  EXPECT_EQ(rows(check(closed)), (std::vector<Row>{{"error", "Service details.default", ""}}));
}

TEST(MeshCheck, ProxiesOutOfSyncAndCertificatesNearTheirEnd) {
  ProxyStatus refusing;
  refusing.node_id = "a";
  refusing.sent_version = 5;
  refusing.acked_version = 4;
  refusing.nacked_version = 5;
  refusing.nack_error = "bad";
  ProxyStatus behind = refusing;
  behind.node_id = "b";
  behind.nacked_version = 0;
  ProxyStatus fine = behind;
  fine.node_id = "c";
  fine.acked_version = 5;
  CaStatus ca = healthy_ca();
  ca.issuer.not_after = kNow + std::chrono::hours(24 * 10);
  ca.roots[0].not_after = kNow - std::chrono::hours(1);
  std::vector<Finding> findings = check(mesh_with_details(), {refusing, behind, fine}, ca);
  EXPECT_EQ(rows(findings), (std::vector<Row>{{"error", "proxy a", ""},
                                              {"warning", "proxy b", ""},
                                              {"error", "CA root", ""},
                                              {"warning", "CA issuer", ""}}));
  EXPECT_EQ(findings[0].message, "refused config version 5 (it runs its last good one): bad");
}

}  // namespace
}  // namespace trellis::control
