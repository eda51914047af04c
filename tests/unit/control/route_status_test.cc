#include "control/route_status.h"

#include <gtest/gtest.h>

#include "mesh_test_helpers.h"

namespace trellis::control {
namespace {

using namespace ::trellis::control::testing;  // NOLINT: test helpers

// "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted" for one parent.
std::string conditions(const Json& status, size_t parent = 0) {
  std::string out;
  for (const Json& c : status["parents"][parent]["conditions"]) {
    out += (out.empty() ? "" : " ") + c["type"].get<std::string>() + "=" + c["status"].get<std::string>() +
           "/" + c["reason"].get<std::string>();
  }
  return out;
}

std::string resolved_message(const Json& status) {
  return status["parents"][0]["conditions"][1]["message"].get<std::string>();
}

TEST(RouteStatus, EachParentIsAcceptedWithItsScope) {
  MeshView mesh;
  Resource route = http_route("reviews", R"({"parentRefs": [
      {"group": "", "kind": "Service", "name": "reviews"},
      {"group": "", "kind": "Service", "name": "ratings", "namespace": "ops"}],
    "rules": [{"backendRefs": [{"name": "reviews-v1", "port": 80}]}]})");
  mesh.instances = {instance("reviews-v1", "10.0.0.1:80")};
  Json status = route_status(mesh, route);
  ASSERT_EQ(status["parents"].size(), 2u);
  EXPECT_EQ(status["parents"][1]["parentRef"]["name"], "ratings");
  EXPECT_EQ(status["parents"][0]["controllerName"], "trellis.dev/mesh");
  EXPECT_EQ(conditions(status, 0), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  EXPECT_EQ(conditions(status, 1), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
  EXPECT_NE(status["parents"][0]["conditions"][0]["message"].get<std::string>().find("producer route"),
            std::string::npos);
  EXPECT_NE(status["parents"][1]["conditions"][0]["message"].get<std::string>().find(
                "from clients in namespace default (a consumer route)"),
            std::string::npos);
}

TEST(RouteStatus, UnresolvedReferencesAreNamedWithTheFirstReason) {
  MeshView mesh;
  mesh.destination_policies = {resource("DestinationPolicy", "reviews", R"({
    "targetRef": {"kind": "Service", "name": "reviews"}, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]})")};
  Resource route =
      http_route("reviews", R"({"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
    "rules": [{"backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "reviews/v1", "port": 80},
                               {"name": "ratings", "namespace": "ops", "port": 80}]},
              {"backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "reviews/v9", "port": 80}],
               "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"kind": "Bucket", "name": "x"}}}]}]})");
  mesh.instances = {instance("reviews", "10.0.0.1:80"), instance("ratings", "10.0.0.2:80", {}, "ops"),
                    instance("x", "10.0.0.3:80")};
  Json status = route_status(mesh, route);
  EXPECT_EQ(conditions(status), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted");
  EXPECT_EQ(
      resolved_message(status),
      "spec.rules[0].backendRefs[1]: Service ratings is in namespace ops, and no ReferenceGrant there lets "
      "HTTPRoutes in namespace default refer to it; spec.rules[1].backendRefs[0]: subset v9 of Service "
      "reviews.default is defined by no DestinationPolicy; "
      "spec.rules[1].filters[0].requestMirror.backendRef: "
      "kind Bucket is not a backend Trellis knows (Service, or Subset in group trellis.dev) (requests for "
      "these backends are answered 500)");

  // Granted, and the rest put right: resolved.
  mesh.reference_grants = {reference_grant("ops", "default", "ratings")};
  route.spec["rules"][1]["backendRefs"][0]["name"] = "reviews/v1";
  route.spec["rules"][1]["filters"][0]["requestMirror"]["backendRef"]["kind"] = "Service";
  EXPECT_EQ(conditions(route_status(mesh, route)), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
}

TEST(RouteStatus, ABackendsOwnMirrorIsAReferenceToo) {
  MeshView mesh;
  Resource route =
      http_route("reviews", R"({"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
    "rules": [{"backendRefs": [{"name": "reviews", "port": 80, "filters": [
      {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow", "namespace": "ops", "port": 80}}}]}]}]})");
  mesh.instances = {instance("reviews", "10.0.0.1:80"), instance("shadow", "10.0.0.2:80", {}, "ops")};
  Json status = route_status(mesh, route);
  EXPECT_EQ(conditions(status), "Accepted=True/Accepted ResolvedRefs=False/RefNotPermitted");
  EXPECT_EQ(
      resolved_message(status),
      "spec.rules[0].backendRefs[0].filters[0].requestMirror.backendRef: Service shadow is in namespace "
      "ops, and no ReferenceGrant there lets HTTPRoutes in namespace default refer to it (requests for "
      "these backends are answered 500)");
  mesh.reference_grants = {reference_grant("ops", "default", "shadow")};
  EXPECT_EQ(conditions(route_status(mesh, route)), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
}

// A Service exists while one of its instances is registered.
TEST(RouteStatus, ABackendServiceWithoutInstancesIsNotFound) {
  MeshView mesh;
  Resource route =
      http_route("reviews", R"({"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
    "rules": [{"backendRefs": [{"name": "nonexistent", "port": 80}]}]})");
  Json status = route_status(mesh, route);
  EXPECT_EQ(conditions(status), "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound");
  EXPECT_EQ(
      resolved_message(status),
      "spec.rules[0].backendRefs[0]: Service nonexistent.default has no registered instance (requests for "
      "these backends are answered 500)");
  mesh.instances = {instance("nonexistent", "10.0.0.1:80")};
  EXPECT_EQ(conditions(route_status(mesh, route)), "Accepted=True/Accepted ResolvedRefs=True/ResolvedRefs");
}

TEST(RouteStatus, APortTheServiceDoesNotDeclareMatchesNoParent) {
  MeshView mesh;
  Instance i = instance("reviews", "127.0.0.1:7001");
  i.ports = {{"http", 9080, 8080, ""}, {"admin", 9443, 9443, ""}};
  mesh.instances = {i};
  Resource route = http_route("reviews", R"({"parentRefs": [
      {"group": "", "kind": "Service", "name": "reviews", "port": 9080},
      {"group": "", "kind": "Service", "name": "reviews", "port": 8080},
      {"group": "", "kind": "Service", "name": "reviews", "sectionName": "admin", "port": 9080},
      {"group": "", "kind": "Service", "name": "ratings", "port": 8080}],
    "rules": [{"backendRefs": [{"name": "reviews", "port": 9444}]}]})");
  Json status = route_status(mesh, route);
  EXPECT_EQ(conditions(status, 0), "Accepted=True/Accepted ResolvedRefs=False/BackendNotFound");
  EXPECT_EQ(conditions(status, 1), "Accepted=False/NoMatchingParent ResolvedRefs=False/BackendNotFound");
  EXPECT_EQ(
      status["parents"][1]["conditions"][0]["message"],
      "Service reviews.default has no port 8080 (its ports: 9080 (http), 9443 (admin)): the route takes "
      "no requests");
  EXPECT_EQ(
      status["parents"][2]["conditions"][0]["message"],
      "Service reviews.default has no port 9080 named admin (its ports: 9080 (http), 9443 (admin)): the "
      "route takes no requests");
  EXPECT_NE(status["parents"][3]["conditions"][0]["message"].get<std::string>().find(
                "the Service declares no ports (yet), so it takes all of its traffic"),
            std::string::npos)
      << "ratings has no instances to declare ports";
  EXPECT_EQ(
      resolved_message(status),
      "spec.rules[0].backendRefs[0]: Service reviews.default has no port 9444 (requests for these backends "
      "are answered 500)");
}

}  // namespace
}  // namespace trellis::control
