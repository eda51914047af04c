#include "control/authorization_translation.h"

#include <gtest/gtest.h>

#include "control/snapshot_builder.h"
#include "mesh_test_helpers.h"

namespace trellis::control {
namespace {

using namespace ::trellis::control::testing;  // NOLINT: test helpers

Resource authz(std::string name, const char* spec, std::string ns = "default") {
  return resource("AuthorizationPolicy", std::move(name), spec, 1, std::move(ns));
}

TEST(AuthorizationTranslationTest, ThePoliciesOfTheServiceReachItsInboundListenerInFull) {
  MeshView mesh;
  mesh.authorization_policies = {
      authz("readers", R"({"targetRef": {"kind": "Service", "name": "productpage"}, "rules": [
          {"from": [{"identities": ["spiffe://cluster.local/ns/default/sa/gateway"], "ipBlocks": ["10.0.0.0/8"]}],
           "to": [{"methods": ["GET"], "paths": ["/api/*"], "ports": [16000]}]}]})"),
      authz("no-admin", R"({"targetRef": {"kind": "Service", "name": "productpage"}, "action": "DENY",
          "rules": [{"to": [{"paths": ["/admin/*"]}]}]})"),
      authz("other-service", R"({"targetRef": {"kind": "Service", "name": "reviews"}, "rules": []})"),
      authz("other-namespace", R"({"targetRef": {"kind": "Service", "name": "productpage"}, "rules": []})",
            "ops"),
  };
  v1::ConfigUpdate update = build_proxy_config(mesh, hello({}));
  ASSERT_GE(update.listeners_size(), 1);
  const v1::Listener& inbound = update.listeners(0);
  ASSERT_EQ(inbound.name(), "inbound");
  ASSERT_TRUE(inbound.has_authorization());
  const v1::Authorization& a = inbound.authorization();
  EXPECT_EQ(a.default_action(), v1::Authorization::ALLOW);
  ASSERT_EQ(a.policies_size(), 2) << "only the policies of this Service, in this namespace";
  EXPECT_EQ(a.policies(0).name(), "default/readers");
  EXPECT_EQ(a.policies(0).action(), v1::Authorization::ALLOW);
  const v1::AuthorizationRule& rule = a.policies(0).rules(0);
  EXPECT_EQ(rule.from(0).identities(0), "spiffe://cluster.local/ns/default/sa/gateway");
  EXPECT_EQ(rule.from(0).ip_blocks(0), "10.0.0.0/8");
  EXPECT_EQ(rule.to(0).methods(0), "GET");
  EXPECT_EQ(rule.to(0).paths(0), "/api/*");
  EXPECT_EQ(rule.to(0).ports(0), 16000u);
  EXPECT_EQ(a.policies(1).name(), "default/no-admin");
  EXPECT_EQ(a.policies(1).action(), v1::Authorization::DENY);
}

TEST(AuthorizationTranslationTest, NothingToCheckLeavesTheListenerOpenUnlessTheMeshDeniesByDefault) {
  MeshView mesh;
  v1::ConfigUpdate open = build_proxy_config(mesh, hello({}));
  EXPECT_FALSE(open.listeners(0).has_authorization());

  mesh.mesh_configs = {resource("MeshConfig", "default", R"({"authorization": {"defaultAction": "DENY"}})")};
  v1::ConfigUpdate closed = build_proxy_config(mesh, hello({}));
  ASSERT_TRUE(closed.listeners(0).has_authorization());
  EXPECT_EQ(closed.listeners(0).authorization().default_action(), v1::Authorization::DENY);
  EXPECT_EQ(closed.listeners(0).authorization().policies_size(), 0);
}

}  // namespace
}  // namespace trellis::control
