#include "proxy/config/config.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config_test_helpers.h"

namespace trellis::proxy {
namespace {

using namespace config_test;

std::string parse_error(std::string_view text) {
  net::SocketAddress address;
  std::string error;
  EXPECT_FALSE(net::parse_socket_address(text, address, error)) << text;
  return error;
}

std::string canonical(std::string_view text) {
  net::SocketAddress address;
  std::string error;
  EXPECT_TRUE(net::parse_socket_address(text, address, error)) << text << ": " << error;
  return address.text;
}

TEST(ConfigTest, FullConfigReadsEveryField) {
  ConfigLoad result = load(yaml(kFullConfig));
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const ProxyConfig& c = result.config;

  EXPECT_EQ(c.source, "test.yaml");
  EXPECT_EQ(c.admin.address.text, "127.0.0.1:9911");
  EXPECT_EQ(c.admin.address.family(), AF_INET);
  EXPECT_EQ(c.access_log.path, "/dev/stdout");
  EXPECT_EQ(c.drain_timeout, Millis(120000));

  ASSERT_EQ(c.listeners.size(), 2u);
  const ListenerConfig& web = c.listeners[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.address.text, "127.0.0.1:10000");
  EXPECT_EQ(web.protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(web.idle_timeout, Millis(90000));
  ASSERT_EQ(web.virtual_hosts.size(), 2u);

  const VirtualHostConfig& api = web.virtual_hosts[0];
  EXPECT_EQ(api.name, "api");
  EXPECT_EQ(api.domains, (std::vector<std::string>{"api.example.com", "api.example.com:8080"}));
  ASSERT_EQ(api.routes.size(), 2u);
  EXPECT_EQ(api.routes[0].match.path_kind, policy::PathMatchKind::kExact);
  EXPECT_EQ(api.routes[0].match.path, "/healthz");
  EXPECT_EQ(api.routes[0].backends[0].cluster, "health");
  EXPECT_EQ(api.routes[0].backends[0].cluster_index, 1u);
  EXPECT_EQ(api.routes[0].timeout, Millis(0));
  EXPECT_EQ(api.routes[1].match.path_kind, policy::PathMatchKind::kPrefix);
  EXPECT_EQ(api.routes[1].match.path, "/v1/");
  EXPECT_EQ(api.routes[1].backends[0].cluster_index, 0u);
  EXPECT_EQ(api.routes[1].timeout, Millis(1500));

  const VirtualHostConfig& fallback = web.virtual_hosts[1];
  EXPECT_EQ(fallback.domains, (std::vector<std::string>{"*.example.com", "example.*", "*"}));
  ASSERT_EQ(fallback.routes.size(), 1u);
  EXPECT_EQ(fallback.routes[0].timeout, Millis(15000));

  const ListenerConfig& db = c.listeners[1];
  EXPECT_EQ(db.name, "db");
  EXPECT_EQ(db.address.text, "[::1]:10001");
  EXPECT_EQ(db.address.family(), AF_INET6);
  EXPECT_EQ(db.protocol, ListenerProtocol::kTcp);
  EXPECT_EQ(db.idle_timeout, Millis(3600000));
  EXPECT_EQ(db.cluster, "db");
  EXPECT_EQ(db.cluster_index, 2u);
  EXPECT_TRUE(db.virtual_hosts.empty());

  ASSERT_EQ(c.clusters.size(), 3u);
  const ClusterConfig& api_cluster = c.clusters[0];
  EXPECT_EQ(api_cluster.name, "api");
  EXPECT_EQ(api_cluster.lb.algorithm, policy::LbAlgorithm::kRoundRobin);
  EXPECT_EQ(api_cluster.connect_timeout, Millis(250));
  EXPECT_EQ(api_cluster.idle_timeout, Millis(30000));
  EXPECT_EQ(api_cluster.max_idle_per_endpoint, 0u);
  ASSERT_EQ(api_cluster.endpoints.size(), 2u);
  EXPECT_EQ(api_cluster.endpoints[0].address.text, "10.0.0.1:8081");
  EXPECT_EQ(api_cluster.endpoints[0].weight, 3u);
  EXPECT_EQ(api_cluster.endpoints[1].address.text, "[2001:db8::1]:8081");
  EXPECT_EQ(api_cluster.endpoints[1].weight, 1u);
  EXPECT_TRUE(c.clusters[1].endpoints.empty());
  EXPECT_EQ(c.clusters[2].endpoints[0].weight, 1000000u);
}

TEST(ConfigTest, EmptyTextTakesDefaults) {
  ConfigLoad result = load("");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(result.config.source, "test.yaml");
  EXPECT_EQ(result.config.admin.address.text, "127.0.0.1:9901");
  EXPECT_EQ(result.config.admin.address.length, sizeof(sockaddr_in));
  EXPECT_TRUE(result.config.access_log.path.empty());
  EXPECT_EQ(result.config.drain_timeout, Millis(10000));
  EXPECT_TRUE(result.config.listeners.empty());
  EXPECT_TRUE(result.config.clusters.empty());
}

TEST(ConfigTest, EmptySectionsTakeDefaults) {
  for (const char* text :
       {"admin:\n", "# nothing but a comment\n", "admin:\naccess_log:\nlisteners:\nclusters: []\n",
        "admin: {}\naccess_log: {}\n"}) {
    ConfigLoad result = load(text);
    ASSERT_TRUE(result.ok()) << text << "\n" << all_errors(result);
    EXPECT_EQ(result.config.admin.address.text, "127.0.0.1:9901");
    EXPECT_TRUE(result.config.access_log.path.empty());
    EXPECT_TRUE(result.config.listeners.empty());
  }
}

TEST(ConfigTest, FieldDefaults) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: default
        domains: ["*"]
        routes:
          - match: { prefix: / }
            cluster: web
clusters:
  - name: web
    endpoints:
      - address: 127.0.0.1:8081
)"));
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const ListenerConfig& listener = result.config.listeners.at(0);
  EXPECT_EQ(listener.protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(listener.idle_timeout, Millis(300000));
  EXPECT_EQ(listener.virtual_hosts.at(0).routes.at(0).timeout, Millis(15000));
  const ClusterConfig& cluster = result.config.clusters.at(0);
  EXPECT_EQ(cluster.lb.algorithm, policy::LbAlgorithm::kPeakEwma);
  EXPECT_EQ(cluster.connect_timeout, Millis(1000));
  EXPECT_EQ(cluster.idle_timeout, Millis(60000));
  EXPECT_EQ(cluster.max_idle_per_endpoint, 64u);
  EXPECT_EQ(cluster.endpoints.at(0).weight, 1u);
}

TEST(ConfigTest, ExampleFileIsValid) {
  std::filesystem::path example = std::filesystem::path(TRELLIS_SOURCE_DIR) / "examples/proxy-basic.yaml";
  ASSERT_TRUE(std::filesystem::exists(example)) << example;
  ConfigLoad result = load_config_file(example.string());
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(result.config.source, example.string());
  EXPECT_EQ(result.config.admin.address.text, "127.0.0.1:9901");
  ASSERT_EQ(result.config.listeners.size(), 1u);
  EXPECT_EQ(result.config.listeners[0].address.text, "127.0.0.1:10000");
  EXPECT_EQ(result.config.listeners[0].virtual_hosts.at(0).routes.at(0).backends.at(0).cluster, "web");
  ASSERT_EQ(result.config.clusters.size(), 1u);
  EXPECT_EQ(result.config.clusters[0].endpoints.at(0).address.text, "127.0.0.1:8081");
}

TEST(ConfigTest, UnknownFieldIsAnError) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: default
        domains: ["*"]
        routes:
          - match: { prefix: / }
            cluster: web
            timout: 5s
clusters:
  - name: web
)"));
  expect_single_error(result, 10, 13, "listeners[0].virtual_hosts[0].routes[0].timout",
                      "unknown field \"timout\" (did you mean \"timeout\"?)");
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:10:13: listeners[0].virtual_hosts[0].routes[0].timout: "
            "unknown field \"timout\" (did you mean \"timeout\"?)");
}

TEST(ConfigTest, UnknownFieldWithoutNearMatchHasNoSuggestion) {
  expect_single_error(load("admin:\n  address: 127.0.0.1:9901\n  color: blue\n"), 3, 3, "admin.color",
                      "unknown field \"color\"");
  expect_single_error(load("stats: {}\n"), 1, 1, "stats", "unknown field \"stats\"");
}

TEST(ConfigTest, DuplicateYamlKeyIsAnError) {
  expect_single_error(load("drain_timeout: 1s\ndrain_timeout: 2s\n"), 2, 1, "drain_timeout",
                      "duplicate field \"drain_timeout\"");
}

TEST(ConfigTest, MissingRequiredFieldPointsAtParentMap) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - address: 127.0.0.1:10000
    virtual_hosts:
      - name: default
        domains: ["*"]
        routes:
          - match: { prefix: / }
)"));
  ASSERT_EQ(result.errors.size(), 2u) << all_errors(result);
  EXPECT_EQ(result.errors[0].to_string(), "test.yaml:2:5: listeners[0].name: required field is missing");
  // A route may go to a cluster, to weighted backends or answer a redirect: the error names all three.
  EXPECT_EQ(result.errors[1].line, 7);
  EXPECT_EQ(result.errors[1].column, 13);
  EXPECT_EQ(result.errors[1].path, "listeners[0].virtual_hosts[0].routes[0]");
  EXPECT_EQ(result.errors[1].message, "needs \"cluster\", \"backends\" or \"redirect\"");
}

TEST(ConfigTest, WrongTypesAreErrors) {
  expect_single_error(load("listeners:\n  name: web\n"), 2, 3, "listeners", "expected a list");
  expect_single_error(load("admin: [127.0.0.1:9901]\n"), 1, 8, "admin", "expected a map");
  expect_single_error(load("- a\n- b\n"), 1, 1, "", "expected a map");
  expect_single_error(load("clusters:\n  - name: [a, b]\n"), 2, 11, "clusters[0].name", "expected a string");
  expect_single_error(load("clusters:\n  - name: web\n    max_idle_per_endpoint: \"8\"\n"), 3, 28,
                      "clusters[0].max_idle_per_endpoint", "expected an integer");
  expect_single_error(load("clusters:\n  - name: web\n    max_idle_per_endpoint: eight\n"), 3, 28,
                      "clusters[0].max_idle_per_endpoint", "expected an integer");
  expect_single_error(load("clusters:\n  - name: web\n    max_idle_per_endpoint: 1.5\n"), 3, 28,
                      "clusters[0].max_idle_per_endpoint", "expected an integer");
  expect_single_error(load("drain_timeout: {seconds: 1}\n"), 1, 16, "drain_timeout",
                      "expected a duration like \"250ms\", \"1.5s\" or \"1h30m\"");
  // An empty value is blamed on its key's line, not on whatever follows it.
  expect_single_error(load("clusters:\n  - name:\n    endpoints: []\n"), 2, 5, "clusters[0].name",
                      "expected a string");
}

TEST(ConfigTest, IntegerRanges) {
  const char* base =
      "clusters:\n  - name: web\n    endpoints:\n      - address: 127.0.0.1:80\n        weight: ";
  expect_single_error(load(std::string(base) + "-1\n"), 5, 17, "clusters[0].endpoints[0].weight",
                      "must be between 0 and 1000000");
  expect_single_error(load(std::string(base) + "1000001\n"), 5, 17, "clusters[0].endpoints[0].weight",
                      "must be between 0 and 1000000");
  expect_single_error(load(std::string(base) + "99999999999999999999999\n"), 5, 17,
                      "clusters[0].endpoints[0].weight", "must be between 0 and 1000000");
  expect_single_error(load("clusters:\n  - name: web\n    max_idle_per_endpoint: -1\n"), 3, 28,
                      "clusters[0].max_idle_per_endpoint", "must be between 0 and 4294967295");
}

TEST(ConfigTest, UnknownCluster) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: default
        domains: ["*"]
        routes:
          - match: { prefix: / }
            cluster: wbe
  - name: db
    address: 127.0.0.1:10001
    protocol: tcp
    cluster: postgres
clusters:
  - name: web
)"));
  ASSERT_EQ(result.errors.size(), 2u) << all_errors(result);
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:9:22: listeners[0].virtual_hosts[0].routes[0].cluster: unknown cluster \"wbe\"");
  EXPECT_EQ(result.errors[1].to_string(),
            "test.yaml:13:14: listeners[1].cluster: unknown cluster \"postgres\"");
}

TEST(ConfigTest, ClustersMayFollowOrPrecedeListeners) {
  ConfigLoad result = load(yaml(R"(
clusters:
  - name: a
  - name: b
listeners:
  - name: db
    address: 127.0.0.1:10001
    protocol: tcp
    cluster: b
)"));
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(result.config.listeners[0].cluster_index, 1u);
}

TEST(ConfigTest, BrokenClustersSectionDoesNotCascade) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: db
    address: 127.0.0.1:10001
    protocol: tcp
    cluster: db
clusters:
  name: db
)"));
  expect_single_error(result, 7, 3, "clusters", "expected a list");
}

TEST(ConfigTest, DuplicateNames) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: default
        domains: ["a.example.com"]
        routes: [{ match: { prefix: / }, cluster: web }]
      - name: default
        domains: ["b.example.com"]
        routes: [{ match: { prefix: / }, cluster: web }]
  - name: web
    address: 127.0.0.1:10001
    protocol: tcp
    cluster: web
clusters:
  - name: web
  - name: web
)"));
  ASSERT_EQ(result.errors.size(), 3u) << all_errors(result);
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:8:15: listeners[0].virtual_hosts[1].name: duplicate virtual host name \"default\"");
  EXPECT_EQ(result.errors[1].to_string(),
            "test.yaml:11:11: listeners[1].name: duplicate listener name \"web\"");
  EXPECT_EQ(result.errors[2].to_string(),
            "test.yaml:17:11: clusters[1].name: duplicate cluster name \"web\"");
}

TEST(ConfigTest, DuplicateAndOverlappingAddresses) {
  ConfigLoad result = load(yaml(R"(
admin:
  address: 127.0.0.1:9901
listeners:
  - { name: a, address: 127.0.0.1:10000, protocol: tcp, cluster: c }
  - { name: b, address: 127.0.0.1:10000, protocol: tcp, cluster: c }
  - { name: c, address: 0.0.0.0:10000, protocol: tcp, cluster: c }
  - { name: d, address: 127.0.0.1:9901, protocol: tcp, cluster: c }
  - { name: e, address: "[::1]:10000", protocol: tcp, cluster: c }
  - { name: f, address: 127.0.0.2:10001, protocol: tcp, cluster: c }
clusters:
  - name: c
)"));
  ASSERT_EQ(result.errors.size(), 3u) << all_errors(result);
  EXPECT_EQ(
      result.errors[0].to_string(),
      "test.yaml:5:25: listeners[1].address: address \"127.0.0.1:10000\" is already used by listener \"a\"");
  EXPECT_EQ(result.errors[1].to_string(),
            "test.yaml:6:25: listeners[2].address: address \"0.0.0.0:10000\" overlaps listener \"a\" "
            "(127.0.0.1:10000)");
  EXPECT_EQ(result.errors[2].to_string(),
            "test.yaml:7:25: listeners[3].address: address \"127.0.0.1:9901\" is already used by the admin "
            "listener");
}

TEST(ConfigTest, DomainsAreLowerCasedAndUniquePerListener) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: one
        domains: ["Example.com", "example.COM"]
        routes: [{ match: { prefix: / }, cluster: web }]
      - name: two
        domains: ["EXAMPLE.com", "*"]
        routes: [{ match: { prefix: / }, cluster: web }]
  - name: other
    address: 127.0.0.1:10001
    virtual_hosts:
      - name: one
        domains: ["example.com"]
        routes: [{ match: { prefix: / }, cluster: web }]
clusters:
  - name: web
)"));
  ASSERT_EQ(result.errors.size(), 2u) << all_errors(result);
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:6:34: listeners[0].virtual_hosts[0].domains[1]: duplicate domain \"example.com\"");
  EXPECT_EQ(
      result.errors[1].to_string(),
      "test.yaml:9:19: listeners[0].virtual_hosts[1].domains[0]: domain \"example.com\" is already used by "
      "virtual host \"one\"");
  EXPECT_EQ(result.config.listeners[0].virtual_hosts[0].domains, std::vector<std::string>{"example.com"});
}

TEST(ConfigTest, InvalidDomains) {
  auto domain_error = [](const std::string& domains) {
    ConfigLoad result = load(
        "listeners:\n  - name: web\n    address: 127.0.0.1:10000\n    virtual_hosts:\n      - name: v\n"
        "        domains: " +
        domains + "\n        routes: [{ match: { prefix: / }, cluster: web }]\nclusters:\n  - name: web\n");
    return result.errors.size() == 1 ? result.errors[0].path + ": " + result.errors[0].message
                                     : all_errors(result);
  };
  EXPECT_EQ(
      domain_error("[\"a.*.com\"]"),
      "listeners[0].virtual_hosts[0].domains[0]: invalid wildcard in \"a.*.com\": at most one '*', at the "
      "start or the end (e.g. \"*.example.com\", \"example.*\")");
  EXPECT_EQ(domain_error("[\"*.example.*\"]").substr(0, 61),
            "listeners[0].virtual_hosts[0].domains[0]: invalid wildcard in");
  EXPECT_EQ(domain_error("[\"a b\"]"),
            "listeners[0].virtual_hosts[0].domains[0]: invalid character in domain \"a b\"");
  EXPECT_EQ(domain_error("[\"\"]"), "listeners[0].virtual_hosts[0].domains[0]: must not be empty");
  EXPECT_EQ(domain_error("[]"),
            "listeners[0].virtual_hosts[0].domains: must list at least one domain (\"*\" matches any)");
  EXPECT_EQ(domain_error("\"*\""), "listeners[0].virtual_hosts[0].domains: expected a list");
}

TEST(ConfigTest, RouteMatchRules) {
  auto match_error = [](const std::string& match) {
    ConfigLoad result = load(
        "listeners:\n  - name: web\n    address: 127.0.0.1:10000\n    virtual_hosts:\n      - name: v\n"
        "        domains: [\"*\"]\n        routes:\n          - match: " +
        match + "\n            cluster: web\nclusters:\n  - name: web\n");
    return result.errors.size() == 1 ? result.errors[0].to_string() : all_errors(result);
  };
  EXPECT_EQ(match_error("{ prefix: /, exact: /a }"),
            "test.yaml:8:20: listeners[0].virtual_hosts[0].routes[0].match: set only one of \"prefix\", "
            "\"exact\" or \"regex\"");
  EXPECT_EQ(match_error("{}"),
            "test.yaml:8:20: listeners[0].virtual_hosts[0].routes[0].match: needs \"prefix\", \"exact\" or "
            "\"regex\"");
  EXPECT_EQ(match_error("{ prefix: api }"),
            "test.yaml:8:30: listeners[0].virtual_hosts[0].routes[0].match.prefix: must start with \"/\"");
  EXPECT_EQ(match_error("{ exact: \"\" }"),
            "test.yaml:8:29: listeners[0].virtual_hosts[0].routes[0].match.exact: must start with \"/\"");
  // An unsupported kind of match is named, with the near miss offered.
  EXPECT_EQ(
      match_error("{ regexp: \"/.*\" }"),
      "test.yaml:8:20: listeners[0].virtual_hosts[0].routes[0].match: needs \"prefix\", \"exact\" or "
      "\"regex\"\n"
      "test.yaml:8:22: listeners[0].virtual_hosts[0].routes[0].match.regexp: unknown field \"regexp\" (did "
      "you mean \"regex\"?)\n");
}

TEST(ConfigTest, HttpAndTcpListenerShapes) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: web
    address: 127.0.0.1:10000
    cluster: web
  - name: db
    address: 127.0.0.1:10001
    protocol: tcp
    virtual_hosts: []
  - name: http-empty
    address: 127.0.0.1:10002
    virtual_hosts: []
  - name: odd
    address: 127.0.0.1:10003
    protocol: udp
    cluster: web
clusters:
  - name: web
)"));
  ASSERT_EQ(result.errors.size(), 6u) << all_errors(result);
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:2:5: listeners[0].virtual_hosts: required field is missing");
  EXPECT_EQ(result.errors[1].to_string(),
            "test.yaml:4:5: listeners[0].cluster: \"cluster\" is only for tcp and auto listeners; http "
            "listeners route "
            "through virtual_hosts");
  EXPECT_EQ(result.errors[2].to_string(), "test.yaml:5:5: listeners[1].cluster: required field is missing");
  EXPECT_EQ(
      result.errors[3].to_string(),
      "test.yaml:8:5: listeners[1].virtual_hosts: \"virtual_hosts\" is only for http and auto listeners");
  EXPECT_EQ(result.errors[4].to_string(),
            "test.yaml:11:20: listeners[2].virtual_hosts: an http listener needs at least one virtual host");
  EXPECT_EQ(result.errors[5].to_string(),
            "test.yaml:14:15: listeners[3].protocol: unknown protocol \"udp\" (expected http, tcp or auto)");
}

TEST(ConfigTest, ListenerNamesAreRestricted) {
  expect_single_error(load("listeners:\n  - name: \"my web\"\n    address: 127.0.0.1:1\n    protocol: tcp\n"
                           "    cluster: c\nclusters: [{ name: c }]\n"),
                      2, 11, "listeners[0].name",
                      "invalid name \"my web\": use only letters, digits, '_', '.', '-' and '/'");
  expect_single_error(load("clusters: [{ name: \"\" }]\n"), 1, 20, "clusters[0].name", "must not be empty");
}

TEST(ConfigTest, ClusterRules) {
  ConfigLoad result = load(yaml(R"(
clusters:
  - name: web
    lb_policy: least_requests
    connect_timeout: 0s
    endpoints:
      - weight: 2
      - address: 127.0.0.1
)"));
  ASSERT_EQ(result.errors.size(), 4u) << all_errors(result);
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:3:16: clusters[0].lb_policy: unknown lb_policy \"least_requests\" (did you mean "
            "\"least_request\"?)");
  EXPECT_EQ(result.errors[1].to_string(),
            "test.yaml:4:22: clusters[0].connect_timeout: must be greater than 0");
  EXPECT_EQ(result.errors[2].to_string(),
            "test.yaml:6:9: clusters[0].endpoints[0].address: required field is missing");
  EXPECT_EQ(result.errors[3].to_string(),
            "test.yaml:7:18: clusters[0].endpoints[1].address: missing port: must be \"ip:port\" or "
            "\"[ipv6]:port\"");
}

TEST(ConfigTest, IdleTimeoutsMustBePositive) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: db
    address: 127.0.0.1:10001
    protocol: tcp
    idle_timeout: 0s
    cluster: db
clusters:
  - name: db
    idle_timeout: 0ms
)"));
  ASSERT_EQ(result.errors.size(), 2u) << all_errors(result);
  EXPECT_EQ(result.errors[0].to_string(),
            "test.yaml:5:19: listeners[0].idle_timeout: must be greater than 0");
  EXPECT_EQ(result.errors[1].to_string(), "test.yaml:9:19: clusters[0].idle_timeout: must be greater than 0");
  // The defaults stay in place rather than a rejected value.
  EXPECT_EQ(result.config.listeners[0].idle_timeout, Millis(300000));
}

TEST(ConfigTest, DrainTimeoutMayBeZero) {
  ConfigLoad result = load("drain_timeout: 0s\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(result.config.drain_timeout, Millis(0));
}

TEST(ConfigTest, AccessLogPathMustNotBeEmpty) {
  expect_single_error(load("access_log:\n  path: \"\"\n"), 2, 9, "access_log.path",
                      "must not be empty (leave out access_log to turn logging off)");
}

// A sidecar trusts the control plane through its bundle and proves who it is
// with a join token: neither has a default, and its certificate comes from
// the control plane, never from mtls files beside it.
TEST(ConfigTest, ControlPlaneNeedsItsTrustAndCredentials) {
  const std::string head =
      "control_plane:\n  address: 127.0.0.1:15010\n  node: { service: web, namespace: shop }\n";
  const std::string files =
      "  trust_bundle: /etc/trellis/bundle.pem\n  join_token_file: /etc/trellis/token\n";
  ConfigLoad good = load(head + files);
  ASSERT_TRUE(good.ok()) << good.errors[0].to_string();
  EXPECT_EQ(good.config.control_plane.identity(), "spiffe://cluster.local/ns/shop/sa/web");
  ConfigLoad domain = load(head + files + "  trust_domain: example.org\n");
  ASSERT_TRUE(domain.ok());
  EXPECT_EQ(domain.config.control_plane.identity(), "spiffe://example.org/ns/shop/sa/web");

  ConfigLoad missing = load(head);
  ASSERT_EQ(missing.errors.size(), 2u);
  EXPECT_EQ(missing.errors[0].path, "control_plane.trust_bundle");
  EXPECT_EQ(missing.errors[1].path, "control_plane.join_token_file");
  expect_single_error(load(head + files + "  trust_domain: Example.org\n"), 6, 17,
                      "control_plane.trust_domain",
                      "the trust domain \"Example.org\" has the character 'E': use lower-case letters, "
                      "digits, '.', '-' and '_'");
  ConfigLoad both =
      load(head + files + "mtls: { certificate_chain: a.pem, private_key: k.pem, trust_bundle: b.pem }\n");
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.errors[0].path, "mtls");
  EXPECT_NE(both.errors[0].message.find("gets its certificate from the control plane"), std::string::npos);
}

TEST(ConfigTest, ReportsEveryErrorInFileOrder) {
  ConfigLoad result = load(yaml(R"(
admin:
  address: 127.0.0.1
drain_timeout: 10
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: default
        domains: ["*"]
        routes:
          - match: { prefix: / }
            cluster: wbe
            timeout: soon
clusters:
  - name: web
    connect_timeout: 1s
    endpoints:
      - address: "[::1]:65536"
)"));
  ASSERT_EQ(result.errors.size(), 5u) << all_errors(result);
  EXPECT_EQ(all_errors(result),
            "test.yaml:2:12: admin.address: missing port: must be \"ip:port\" or \"[ipv6]:port\"\n"
            "test.yaml:3:16: drain_timeout: a unit is required (ns, us, ms, s, m or h), e.g. \"10s\"\n"
            "test.yaml:12:22: listeners[0].virtual_hosts[0].routes[0].cluster: unknown cluster \"wbe\"\n"
            "test.yaml:13:22: listeners[0].virtual_hosts[0].routes[0].timeout: expected a duration like "
            "\"250ms\", \"1.5s\" or \"1h30m\"\n"
            "test.yaml:18:18: clusters[0].endpoints[0].address: port must be between 1 and 65535\n");
  EXPECT_FALSE(result.ok());
}

TEST(ConfigTest, YamlSyntaxError) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: web
    address: [127.0.0.1:10000
clusters: []
)"));
  expect_single_error(result, 4, 9, "", "end of sequence flow not found");
  EXPECT_EQ(result.errors[0].to_string(), "test.yaml:4:9: end of sequence flow not found");
}

TEST(ConfigTest, YamlIndentationError) {
  // A key indented less than its siblings but more than its parent fits nowhere.
  expect_single_error(load("admin:\n  address: 127.0.0.1:9901\n bad: 1\n"), 3, 2, "", "end of map not found");
}

TEST(ConfigTest, StrayFlowIndicatorIsAnErrorNotAHang) {
  // yaml-cpp 0.7 would loop forever on these if asked to load every document.
  expect_single_error(load(","), 1, 1, "", "unexpected \",\"");
  expect_single_error(load(",\nadmin: {}\n"), 1, 1, "", "unexpected \",\"");
  expect_single_error(load("drain_timeout: 1s\n---\n,\n"), 3, 1, "", "unexpected \",\"");
}

TEST(ConfigTest, SeveralDocumentsAreAnError) {
  expect_single_error(load("drain_timeout: 1s\n---\ndrain_timeout: 2s\n"), 3, 1, "",
                      "expected a single YAML document");
  // A trailing document marker alone is harmless.
  EXPECT_TRUE(load("drain_timeout: 1s\n---\n").ok());
}

TEST(ConfigTest, ToStringShapes) {
  ConfigError full{"f.yaml", 3, 7, "listeners[0].name", "bad"};
  EXPECT_EQ(full.to_string(), "f.yaml:3:7: listeners[0].name: bad");
  ConfigError no_path{"f.yaml", 3, 7, "", "bad"};
  EXPECT_EQ(no_path.to_string(), "f.yaml:3:7: bad");
  ConfigError no_line{"f.yaml", 0, 0, "", "No such file or directory"};
  EXPECT_EQ(no_line.to_string(), "f.yaml: No such file or directory");
  ConfigError path_no_line{"f.yaml", 0, 0, "admin", "bad"};
  EXPECT_EQ(path_no_line.to_string(), "f.yaml: admin: bad");
}

TEST(ConfigTest, SocketAddressesV4) {
  net::SocketAddress address;
  std::string error;
  ASSERT_TRUE(net::parse_socket_address("10.1.2.3:8080", address, error)) << error;
  EXPECT_EQ(address.text, "10.1.2.3:8080");
  EXPECT_EQ(address.family(), AF_INET);
  EXPECT_EQ(address.length, sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(address.sa());
  EXPECT_EQ(ntohs(sin->sin_port), 8080);
  EXPECT_EQ(ntohl(sin->sin_addr.s_addr), 0x0a010203u);

  EXPECT_EQ(canonical("0.0.0.0:1"), "0.0.0.0:1");
  EXPECT_EQ(canonical("127.0.0.1:65535"), "127.0.0.1:65535");
  EXPECT_EQ(canonical("127.0.0.1:00080"), "127.0.0.1:80");
}

TEST(ConfigTest, SocketAddressesV6) {
  net::SocketAddress address;
  std::string error;
  ASSERT_TRUE(net::parse_socket_address("[2001:DB8:0:0::1]:443", address, error)) << error;
  EXPECT_EQ(address.text, "[2001:db8::1]:443");
  EXPECT_EQ(address.family(), AF_INET6);
  EXPECT_EQ(address.length, sizeof(sockaddr_in6));
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6*>(address.sa())->sin6_port), 443);

  EXPECT_EQ(canonical("[::]:80"), "[::]:80");
  EXPECT_EQ(canonical("[::ffff:127.0.0.1]:80"), "[::ffff:127.0.0.1]:80");
}

TEST(ConfigTest, BadSocketAddresses) {
  const std::string shape = "must be \"ip:port\" or \"[ipv6]:port\"";
  EXPECT_EQ(parse_error(""), "missing port: " + shape);
  EXPECT_EQ(parse_error("127.0.0.1"), "missing port: " + shape);
  EXPECT_EQ(parse_error("127.0.0.1:"), "missing port: " + shape);
  EXPECT_EQ(parse_error(":80"), "missing IP: " + shape);
  EXPECT_EQ(parse_error("127.0.0.1:0"), "port must be between 1 and 65535");
  EXPECT_EQ(parse_error("127.0.0.1:65536"), "port must be between 1 and 65535");
  EXPECT_EQ(parse_error("127.0.0.1:1000000"), "port must be between 1 and 65535");
  EXPECT_EQ(parse_error("127.0.0.1:http"), "invalid port \"http\"");
  EXPECT_EQ(parse_error("127.0.0.1:-1"), "invalid port \"-1\"");
  EXPECT_EQ(parse_error("localhost:80"),
            "\"localhost\" is not a numeric IP address (host names are not resolved)");
  EXPECT_EQ(parse_error("256.0.0.1:80"), "\"256.0.0.1\" is not a valid IPv4 address");
  EXPECT_EQ(parse_error("10.1:80"), "\"10.1\" is not a valid IPv4 address");
  EXPECT_EQ(parse_error("::1:80"), "IPv6 addresses must be in brackets, e.g. \"[::1]:8080\"");
  EXPECT_EQ(parse_error("[::1]"), "missing port: " + shape);
  EXPECT_EQ(parse_error("[::1]80"), shape);
  EXPECT_EQ(parse_error("[::1:80"), "missing \"]\": " + shape);
  EXPECT_EQ(parse_error("[]:80"), "missing IP: " + shape);
  EXPECT_EQ(parse_error("[127.0.0.1]:80"), "\"127.0.0.1\" is not a valid IPv6 address");
  EXPECT_EQ(parse_error("[fe80::1%eth0]:80"), "\"fe80::1%eth0\" is not a valid IPv6 address");
}

TEST(ConfigTest, BadAddressInYamlHasLineAndPath) {
  ConfigLoad result = load("clusters:\n  - name: web\n    endpoints:\n      - address: db.internal:5432\n");
  expect_single_error(result, 4, 18, "clusters[0].endpoints[0].address",
                      "\"db.internal\" is not a numeric IP address (host names are not resolved)");
}

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/trellis-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

TEST_F(ConfigFileTest, LoadsFileAndRecordsSource) {
  std::string path = write("proxy.yaml", "drain_timeout: 3s\n");
  ConfigLoad result = load_config_file(path);
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(result.config.source, path);
  EXPECT_EQ(result.config.drain_timeout, Millis(3000));
}

TEST_F(ConfigFileTest, ErrorsNameTheFile) {
  std::string path = write("proxy.yaml", "drain_timeout: 3\n");
  ConfigLoad result = load_config_file(path);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].to_string(),
            path + ":1:16: drain_timeout: a unit is required (ns, us, ms, s, m or h), e.g. \"10s\"");
}

TEST_F(ConfigFileTest, MissingFile) {
  std::string path = dir_ + "/absent.yaml";
  ConfigLoad result = load_config_file(path);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].file, path);
  EXPECT_EQ(result.errors[0].line, 0);
  EXPECT_EQ(result.errors[0].message, "No such file or directory");
  EXPECT_EQ(result.errors[0].to_string(), path + ": No such file or directory");
}

TEST_F(ConfigFileTest, DirectoryIsNotAConfig) {
  ConfigLoad result = load_config_file(dir_);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].message, "Is a directory");
}

TEST(ConfigTest, MetricLabelsFromTheConfig) {
  ConfigLoad result = load(yaml(R"(
listeners:
  - name: in
    address: 127.0.0.1:10000
    direction: inbound
    virtual_hosts:
      - name: v
        domains: ["*"]
        routes:
          - name: shop/checkout
            match: { prefix: / }
            cluster: web
clusters:
  - name: web
    service: payments
    namespace: shop
)"));
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(result.config.listeners[0].direction, Direction::kInbound);
  EXPECT_EQ(result.config.listeners[0].virtual_hosts[0].routes[0].name, "shop/checkout");
  EXPECT_EQ(result.config.clusters[0].service, "payments");
  EXPECT_EQ(result.config.clusters[0].service_namespace, "shop");

  expect_single_error(load("listeners:\n  - name: l\n    address: 127.0.0.1:1\n    protocol: tcp\n"
                           "    direction: sideways\n    cluster: c\nclusters: [{ name: c }]\n"),
                      5, 16, "listeners[0].direction",
                      "unknown direction \"sideways\" (expected inbound or outbound)");
  expect_single_error(load("clusters: [{ name: c, service: \"a b\" }]\n"), 1, 32, "clusters[0].service",
                      "invalid name \"a b\": use only letters, digits, '_', '.', '-' and '/'");
}

}  // namespace
}  // namespace trellis::proxy
