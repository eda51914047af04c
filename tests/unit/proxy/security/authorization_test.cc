// AuthorizationPolicy enforced by an inbound listener, on simulated time:
// HTTP requests answered 403 (or 400 for an ambiguous path) and never
// forwarded, TCP connections closed at accept, every decision counted, and a
// bad policy refused whole.
#include <gtest/gtest.h>

#include <string>

#include "proxy/config/config_test_helpers.h"
#include "proxy/harness.h"

namespace trellis::proxy {
namespace {

using testing::FakePeer;
using testing::ok_response;
using testing::ProxyHarness;
using testing::status_of;

constexpr const char* kApp = "10.1.0.1:80";

std::string http_config(const std::string& authorization) {
  return "listeners:\n"
         "  - name: inbound\n"
         "    address: 127.0.0.1:9080\n"
         "    authorization:\n" +
         authorization +
         "    virtual_hosts:\n"
         "      - name: all\n"
         "        domains: [\"*\"]\n"
         "        routes:\n"
         "          - match: { prefix: / }\n"
         "            cluster: app\n"
         "clusters:\n"
         "  - name: app\n"
         "    endpoints: [{address: 10.1.0.1:80}]\n";
}

// Readers from 10.0.0.0/24 may GET /reviews; nobody may touch /admin.
const std::string kPolicies =
    "      policies:\n"
    "        - name: bookinfo/no-admin\n"
    "          action: DENY\n"
    "          rules: [{to: [{paths: [\"/admin/*\"]}]}]\n"
    "        - name: bookinfo/readers\n"
    "          action: ALLOW\n"
    "          rules:\n"
    "            - from: [{ip_blocks: [10.0.0.0/24]}]\n"
    "              to: [{methods: [GET, HEAD], paths: [\"/reviews/*\"], ports: [9080]}]\n";

std::string metric(ProxyHarness& h, const std::string& policy, const std::string& decision) {
  std::string text = h.stats().render_prometheus();
  std::string key = "trellis_authz_decisions_total{listener=\"inbound\",policy=\"" + policy +
                    "\",decision=\"" + decision + "\"} ";
  size_t at = text.find(key);
  if (at == std::string::npos) return "(none)";
  return text.substr(at + key.size(), text.find('\n', at) - at - key.size());
}

std::string request(ProxyHarness& h, const std::string& line, const std::string& ip = "10.0.0.9") {
  FakePeer client = h.connect(0, ip);
  client.send(line + " HTTP/1.1\r\nHost: reviews\r\n\r\n");
  h.run();
  return client.take();
}

TEST(AuthorizationEnforcementTest, AllowedRequestsPassAndTheRestAre403NamingThePolicy) {
  ProxyHarness h(http_config(kPolicies));
  FakePeer client = h.connect();
  client.send("GET /reviews/1 HTTP/1.1\r\nHost: reviews\r\n\r\n");
  FakePeer up = h.upstream(kApp);
  EXPECT_EQ(up.take().substr(0, 25), "GET /reviews/1 HTTP/1.1\r\n");
  up.send(ok_response("review"));
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);

  std::string answer = request(h, "POST /reviews/1");
  EXPECT_EQ(status_of(answer), 403);
  EXPECT_NE(answer.find("access denied by AuthorizationPolicy bookinfo/readers"), std::string::npos)
      << answer;
  answer = request(h, "GET /reviews/1", "10.0.1.9");
  EXPECT_EQ(status_of(answer), 403) << "from outside the block";
  answer = request(h, "GET /admin/x", "10.0.0.9");
  EXPECT_EQ(status_of(answer), 403);
  EXPECT_NE(answer.find("AuthorizationPolicy bookinfo/no-admin"), std::string::npos) << answer;
  EXPECT_EQ(h.network().connects(kApp), 1) << "a refused request never reaches the application";

  EXPECT_EQ(metric(h, "bookinfo/readers", "allow"), "1");
  EXPECT_EQ(metric(h, "bookinfo/readers", "deny"), "2");
  EXPECT_EQ(metric(h, "bookinfo/no-admin", "deny"), "1");
}

TEST(AuthorizationEnforcementTest, PathsAreJudgedAndForwardedNormalized) {
  ProxyHarness h(http_config(kPolicies));
  EXPECT_EQ(status_of(request(h, "GET /reviews/../admin/x")), 403);
  EXPECT_EQ(status_of(request(h, "GET //admin/x")), 403);
  EXPECT_EQ(status_of(request(h, "GET /%61dmin/x")), 403);
  EXPECT_EQ(status_of(request(h, "GET /admin%2Fx")), 400) << "an encoded slash is ambiguous";
  EXPECT_EQ(status_of(request(h, "GET /reviews%5C..%5Cadmin")), 400);
  EXPECT_EQ(h.network().connects(kApp), 0);

  FakePeer client = h.connect();
  client.send("GET /x/../reviews/./1?a=/../b HTTP/1.1\r\nHost: reviews\r\n\r\n");
  FakePeer up = h.upstream(kApp);
  EXPECT_EQ(up.take().substr(0, 32), "GET /reviews/1?a=/../b HTTP/1.1\r") << "the query is left alone";
}

TEST(AuthorizationEnforcementTest, DefaultDenyRefusesAServiceWithoutAllowPolicies) {
  ProxyHarness h(http_config("      default_action: DENY\n"));
  std::string answer = request(h, "GET /reviews/1");
  EXPECT_EQ(status_of(answer), 403);
  EXPECT_NE(answer.find("the default action"), std::string::npos) << answer;
  EXPECT_EQ(metric(h, "default", "deny"), "1");
}

TEST(AuthorizationEnforcementTest, IdentityRulesNeverMatchPlainText) {
  ProxyHarness h(
      http_config("      policies:\n"
                  "        - name: ns/mesh-only\n"
                  "          rules: [{from: [{identities: [\"*\"]}]}]\n"));
  EXPECT_EQ(status_of(request(h, "GET /reviews/1")), 403);
}

TEST(AuthorizationEnforcementTest, TcpConnectionsAreClosedAtAccept) {
  ProxyHarness h(
      "listeners:\n"
      "  - name: inbound\n"
      "    address: 127.0.0.1:5432\n"
      "    protocol: tcp\n"
      "    cluster: db\n"
      "    authorization:\n"
      "      policies:\n"
      "        - name: data/db-clients\n"
      "          rules: [{from: [{ip_blocks: [10.0.0.0/24]}], to: [{ports: [5432]}]}]\n"
      "clusters:\n"
      "  - name: db\n"
      "    endpoints: [{address: 10.1.0.1:80}]\n");
  FakePeer refused = h.connect(0, "10.0.9.9");
  h.run();
  EXPECT_TRUE(refused.closed_by_proxy());
  EXPECT_EQ(h.network().connects(kApp), 0);
  FakePeer allowed = h.connect(0, "10.0.0.5");
  h.run();
  EXPECT_FALSE(allowed.closed_by_proxy());
  EXPECT_EQ(h.network().connects(kApp), 1);
  EXPECT_EQ(metric(h, "data/db-clients", "deny"), "1");
  EXPECT_EQ(metric(h, "data/db-clients", "allow"), "1");
}

TEST(AuthorizationEnforcementTest, ABadPolicyIsRefusedWithItsPath) {
  using config_test::load;
  using config_test::only_error;
  ConfigLoad bad =
      load(http_config("      policies:\n"
                       "        - name: ns/p\n"
                       "          rules: [{from: [{ip_blocks: [10.0.0.1/8]}]}]\n"));
  EXPECT_EQ(
      only_error(bad),
      "listeners[0].authorization.policies[0].rules[0].from[0].ip_blocks[0]: \"10.0.0.1/8\" has bits set "
      "after its prefix");
  ConfigLoad empty_entry =
      load(http_config("      policies:\n"
                       "        - name: ns/p\n"
                       "          rules: [{to: [{}]}]\n"));
  EXPECT_NE(only_error(empty_entry).find("set at least one of"), std::string::npos)
      << only_error(empty_entry);
  ConfigLoad bad_path =
      load(http_config("      policies:\n"
                       "        - name: ns/p\n"
                       "          rules: [{to: [{paths: [\"/a*b\"]}]}]\n"));
  EXPECT_NE(only_error(bad_path).find("only allowed at the end"), std::string::npos) << only_error(bad_path);
}

}  // namespace
}  // namespace trellis::proxy
