#include "policy/authorization.h"

#include <gtest/gtest.h>

namespace trellis::policy {
namespace {

constexpr std::string_view kProduct = "spiffe://cluster.local/ns/bookinfo/sa/productpage";
constexpr std::string_view kOps = "spiffe://cluster.local/ns/ops/sa/runner";

AuthzRequest http(std::string_view identity, std::string_view ip, std::string_view method,
                  std::string_view path, uint32_t port = 9080) {
  AuthzRequest r;
  r.identity = identity;
  r.address = *IpAddress::parse(ip);
  r.port = port;
  r.http = true;
  r.method = method;
  r.path = path;
  return r;
}

AuthzRequest tcp(std::string_view identity, std::string_view ip, uint32_t port = 9080) {
  AuthzRequest r = http(identity, ip, "", "", port);
  r.http = false;
  return r;
}

Authorizer compile(const AuthorizationConfig& config) {
  auto a = Authorizer::compile(config);
  EXPECT_TRUE(a.ok()) << (a.ok() ? "" : a.error().message);
  return *a;
}

// The documented example: the product page may read reviews; ops, from the
// operations network, may use /admin on 9080.
AuthzPolicyConfig readers() {
  AuthzPolicyConfig p;
  p.name = "bookinfo/reviews-readers";
  AuthzRule read;
  read.from.push_back({{std::string(kProduct)}, {}, {}});
  read.to.push_back({{"GET", "HEAD"}, {"/reviews/*"}, {}});
  AuthzRule admin;
  admin.from.push_back({{}, {"ops"}, {"10.20.0.0/16", "fd00:20::/64"}});
  admin.to.push_back({{}, {"/admin/*"}, {9080}});
  p.rules = {read, admin};
  return p;
}

TEST(AuthorizationTest, TheDocumentedExampleDecidesAsDocumented) {
  AuthorizationConfig config;
  config.policies = {readers()};
  Authorizer a = compile(config);
  struct Case {
    AuthzRequest request;
    bool allowed;
    const char* why;
  } cases[] = {
      {http(kProduct, "10.0.0.1", "GET", "/reviews/1"), true, "productpage reads a review"},
      {http(kProduct, "10.0.0.1", "HEAD", "/reviews/"), true, "HEAD is a read too"},
      {http(kProduct, "10.0.0.1", "POST", "/reviews/1"), false, "productpage may not write"},
      {http(kProduct, "10.0.0.1", "GET", "/reviews"), false, "\"/reviews/*\" needs the slash"},
      {http(kProduct, "10.0.0.1", "GET", "/admin/x"), false, "productpage is not ops"},
      {http("", "10.0.0.1", "GET", "/reviews/1"), false, "no identity: plain text"},
      {http("spiffe://cluster.local/ns/bookinfo/sa/other", "10.0.0.1", "GET", "/reviews/1"), false,
       "another account"},
      {http(kOps, "10.20.3.4", "DELETE", "/admin/cache"), true, "ops from the operations network"},
      {http(kOps, "fd00:20::9", "GET", "/admin/"), true, "ops over IPv6"},
      {http(kOps, "10.21.0.1", "GET", "/admin/cache"), false, "ops from elsewhere"},
      {http(kOps, "10.20.3.4", "GET", "/admin/cache", 9081), false, "another port"},
      {http("", "10.20.3.4", "GET", "/admin/cache"), false, "the namespace needs an identity"},
      {http(kOps, "10.20.3.4", "GET", "/reviews/1"), false, "ops may only use /admin"},
  };
  for (const Case& c : cases) {
    AuthzDecision d = a.decide(c.request);
    EXPECT_EQ(d.allowed, c.allowed) << c.why;
    EXPECT_EQ(d.policy, 0) << c.why << ": the one ALLOW policy decides, either way";
  }
}

TEST(AuthorizationTest, DenyFirstThenAllowThenTheDefault) {
  AuthzPolicyConfig deny;
  deny.name = "ns/no-delete";
  deny.action = AuthzAction::kDeny;
  AuthzRule no_delete;
  no_delete.to.push_back({{"DELETE"}, {}, {}});
  deny.rules = {no_delete};
  AuthzPolicyConfig allow_all;
  allow_all.name = "ns/everyone";
  allow_all.rules = {AuthzRule{}};  // {} matches every request

  AuthorizationConfig only_deny;
  only_deny.policies = {deny};
  Authorizer a = compile(only_deny);
  EXPECT_EQ(a.decide(http("", "1.2.3.4", "GET", "/")).allowed, true) << "no ALLOW policy: accepted";
  EXPECT_EQ(a.decide(http("", "1.2.3.4", "GET", "/")).policy, AuthzDecision::kDefault);
  AuthzDecision d = a.decide(http("", "1.2.3.4", "DELETE", "/"));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(a.name(static_cast<size_t>(d.policy)), "ns/no-delete");

  AuthorizationConfig both;
  both.policies = {allow_all, deny};
  Authorizer b = compile(both);
  EXPECT_FALSE(b.decide(http("", "1.2.3.4", "DELETE", "/")).allowed) << "DENY wins over a matching ALLOW";
  EXPECT_EQ(b.decide(http("", "1.2.3.4", "DELETE", "/")).policy, 1);
  EXPECT_TRUE(b.decide(http("", "1.2.3.4", "GET", "/")).allowed);

  AuthzPolicyConfig closed;
  closed.name = "ns/closed";  // ALLOW without rules: matches nothing
  AuthorizationConfig close_all;
  close_all.policies = {closed};
  EXPECT_FALSE(compile(close_all).decide(http(kProduct, "1.2.3.4", "GET", "/")).allowed);

  AuthzPolicyConfig empty_deny;
  empty_deny.name = "ns/nothing";
  empty_deny.action = AuthzAction::kDeny;
  AuthorizationConfig no_effect;
  no_effect.policies = {empty_deny};
  EXPECT_TRUE(compile(no_effect).decide(http("", "1.2.3.4", "GET", "/")).allowed)
      << "a DENY without rules has no effect";

  AuthorizationConfig default_deny;
  default_deny.default_action = AuthzAction::kDeny;
  Authorizer c = compile(default_deny);
  EXPECT_FALSE(c.decide(http(kProduct, "1.2.3.4", "GET", "/")).allowed);
  EXPECT_EQ(c.decide(http(kProduct, "1.2.3.4", "GET", "/")).policy, AuthzDecision::kDefault);
  default_deny.policies = {allow_all};
  EXPECT_TRUE(compile(default_deny).decide(http("", "1.2.3.4", "GET", "/")).allowed)
      << "an ALLOW policy overrides the default";
}

TEST(AuthorizationTest, IdentityPatterns) {
  AuthzPolicyConfig p;
  p.name = "ns/ids";
  AuthzRule any;
  any.from.push_back({{"*"}, {}, {}});
  any.to.push_back({{}, {"/any/*"}, {}});
  AuthzRule prefix;
  prefix.from.push_back({{"spiffe://cluster.local/ns/bookinfo/*"}, {}, {}});
  prefix.to.push_back({{}, {"/bookinfo/*"}, {}});
  p.rules = {any, prefix};
  AuthorizationConfig config;
  config.policies = {p};
  Authorizer a = compile(config);
  EXPECT_TRUE(a.decide(http(kOps, "1.1.1.1", "GET", "/any/x")).allowed);
  EXPECT_FALSE(a.decide(http("", "1.1.1.1", "GET", "/any/x")).allowed) << "\"*\" needs a certificate";
  EXPECT_TRUE(a.decide(http(kProduct, "1.1.1.1", "GET", "/bookinfo/x")).allowed);
  EXPECT_FALSE(a.decide(http(kOps, "1.1.1.1", "GET", "/bookinfo/x")).allowed);
  EXPECT_FALSE(
      a.decide(http("spiffe://cluster.local/ns/bookinfo-evil/sa/x", "1.1.1.1", "GET", "/bookinfo/x")).allowed)
      << "the prefix ends at the slash the author wrote";
}

TEST(AuthorizationTest, TcpFailsClosedOnHttpOnlyFields) {
  AuthzPolicyConfig allow;
  allow.name = "ns/allow-get";
  AuthzRule get;
  get.to.push_back({{"GET"}, {}, {}});
  allow.rules = {get};
  AuthorizationConfig a_config;
  a_config.policies = {allow};
  EXPECT_FALSE(compile(a_config).decide(tcp(kProduct, "1.1.1.1")).allowed) << "ALLOW by method: no TCP";

  AuthzPolicyConfig deny;
  deny.name = "ns/deny-admin";
  deny.action = AuthzAction::kDeny;
  AuthzRule admin;
  admin.from.push_back({{}, {}, {"10.0.0.0/8"}});
  admin.to.push_back({{}, {"/admin/*"}, {}});
  deny.rules = {admin};
  AuthorizationConfig d_config;
  d_config.policies = {deny};
  Authorizer d = compile(d_config);
  EXPECT_FALSE(d.decide(tcp("", "10.1.1.1")).allowed) << "DENY by path: all TCP from the block";
  EXPECT_TRUE(d.decide(tcp("", "11.1.1.1")).allowed) << "the source still has to match";

  AuthzPolicyConfig ports;
  ports.name = "ns/port";
  AuthzRule port;
  port.to.push_back({{}, {}, {5432}});
  ports.rules = {port};
  AuthorizationConfig p_config;
  p_config.policies = {ports};
  EXPECT_TRUE(compile(p_config).decide(tcp("", "1.1.1.1", 5432)).allowed) << "ports work on TCP";
  EXPECT_FALSE(compile(p_config).decide(tcp("", "1.1.1.1", 5433)).allowed);
}

TEST(AuthorizationTest, BadBlocksAreRefusedWithTheirPath) {
  AuthzPolicyConfig p;
  p.name = "ns/p";
  AuthzRule r;
  r.from.push_back({{}, {}, {"10.0.0.0/8", "10.0.0.1/8"}});
  p.rules = {r};
  AuthorizationConfig config;
  config.policies = {p};
  auto a = Authorizer::compile(config);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().message,
            "policies[0].rules[0].from[0].ipBlocks[1]: \"10.0.0.1/8\" has bits set after its prefix");
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "::1/129", "1.2.3.4/", "x", "10.0.0.0/-1"})
    EXPECT_FALSE(IpBlock::parse(bad).ok()) << bad;
}

TEST(AuthorizationTest, IpBlocks) {
  auto block = [](const char* text) { return *IpBlock::parse(text); };
  auto ip = [](const char* text) { return *IpAddress::parse(text); };
  EXPECT_TRUE(block("10.0.0.0/8").contains(ip("10.255.1.2")));
  EXPECT_FALSE(block("10.0.0.0/8").contains(ip("11.0.0.0")));
  EXPECT_TRUE(block("192.168.1.7").contains(ip("192.168.1.7")));
  EXPECT_FALSE(block("192.168.1.7").contains(ip("192.168.1.8")));
  EXPECT_TRUE(block("10.20.0.0/14").contains(ip("10.23.255.255")));
  EXPECT_FALSE(block("10.20.0.0/14").contains(ip("10.24.0.0")));
  EXPECT_TRUE(block("0.0.0.0/0").contains(ip("8.8.8.8")));
  EXPECT_FALSE(block("0.0.0.0/0").contains(ip("::1"))) << "families never mix";
  EXPECT_TRUE(block("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
  EXPECT_TRUE(block("10.0.0.0/8").contains(ip("::ffff:10.1.2.3"))) << "an IPv4-mapped client is IPv4";
}

TEST(AuthorizationTest, IdentityNamespace) {
  EXPECT_EQ(identity_namespace(kProduct), "bookinfo");
  EXPECT_EQ(identity_namespace("spiffe://td/ns//sa/x"), "");
  EXPECT_EQ(identity_namespace("spiffe://td/ns/a"), "");
  EXPECT_EQ(identity_namespace("spiffe://td/x/a/sa/b"), "");
  EXPECT_EQ(identity_namespace("https://td/ns/a/sa/b"), "");
  EXPECT_EQ(identity_namespace(""), "");
}

TEST(AuthorizationTest, PathsAreNormalizedBeforeTheyAreMatched) {
  struct Case {
    const char* in;
    const char* out;  // nullptr: refused
  } cases[] = {
      {"/admin/x", "/admin/x"},
      {"/a/../admin/x", "/admin/x"},
      {"//admin//x", "/admin/x"},
      {"/./admin/./x", "/admin/x"},
      {"/%61dmin/x", "/admin/x"},
      {"/%2e%2e/admin", "/admin"},
      {"/a/%2E%2E/admin/", "/admin/"},
      {"/../../x", "/x"},
      {"/a/b/..", "/a/"},
      {"/a/.", "/a/"},
      {"/..", "/"},
      {"/a%20b", "/a%20b"},
      {"/a%7eb", "/a~b"},
      {"/a%c3%a9", "/a%C3%A9"},
      {"/admin%2Fx", nullptr},
      {"/admin%2fx", nullptr},
      {"/admin%5Cx", nullptr},
      {"/admin\\x", nullptr},
      {"/a%", nullptr},
      {"/a%4", nullptr},
      {"/a%zz", nullptr},
  };
  for (const Case& c : cases) {
    std::string out;
    bool changed = false;
    bool ok = normalize_path(c.in, out, changed);
    if (c.out == nullptr) {
      EXPECT_FALSE(ok) << c.in;
      continue;
    }
    ASSERT_TRUE(ok) << c.in;
    EXPECT_EQ(changed ? out : std::string(c.in), c.out) << c.in;
    EXPECT_EQ(changed, std::string(c.in) != c.out) << c.in;
  }
}

}  // namespace
}  // namespace trellis::policy
