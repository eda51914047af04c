// /config_dump (src/proxy/config_json.cc): every field in the YAML's shape,
// and a dump of a bootstrap file loads back as the same config.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "config_test_helpers.h"
#include "proxy/config/config.h"

namespace trellis::proxy {
namespace {

using namespace config_test;
using Json = nlohmann::json;

// The YAML block under "## Complete example" in docs/proxy-config.md.
std::string docs_complete_example() {
  std::filesystem::path docs = std::filesystem::path(TRELLIS_SOURCE_DIR) / "docs/proxy-config.md";
  std::ifstream in(docs);
  if (!in) return "";
  std::stringstream text;
  text << in.rdbuf();
  std::string page = text.str();
  size_t section = page.find("## Complete example");
  size_t start = page.find("```yaml\n", section);
  if (section == std::string::npos || start == std::string::npos) return "";
  start += 8;
  size_t end = page.find("```", start);
  return page.substr(start, end - start);
}

// Dumps `config`, loads the dump, and checks that it dumps the same again.
void expect_round_trip(const ConfigLoad& first) {
  std::string dump = config_to_json(first.config);
  ConfigLoad second = load(dump);
  ASSERT_TRUE(second.ok()) << all_errors(second) << dump;
  EXPECT_EQ(config_to_json(second.config), dump);
}

TEST(ConfigJsonTest, DocsCompleteExampleLoadsAndRoundTrips) {
  std::string example = docs_complete_example();
  ASSERT_FALSE(example.empty()) << "no complete example in docs/proxy-config.md";
  ConfigLoad result = load(example);
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const ProxyConfig& c = result.config;
  EXPECT_EQ(c.zone, "eu-west-1a");
  EXPECT_EQ(c.clusters.size(), 8u);
  const RouteConfig& split = c.listeners.at(0).virtual_hosts.at(0).routes.at(2);
  ASSERT_EQ(split.backends.size(), 2u);
  EXPECT_EQ(split.backends[1].weight, 10u);
  ASSERT_EQ(split.mirrors.size(), 1u);
  EXPECT_EQ(split.mirrors[0].numerator, 1u);
  EXPECT_EQ(split.mirrors[0].denominator, 100u);
  ASSERT_EQ(split.rate_limits.size(), 2u);
  EXPECT_EQ(split.rate_limits[0].key, RateLimitConfig::Key::kAddress);
  EXPECT_EQ(split.rate_limits[0].token_bucket.burst, 75u);
  EXPECT_EQ(split.rate_limits[1].match.method, "POST");
  EXPECT_EQ(split.rate_limits[1].leaky_bucket.max_delay, Millis(2000));
  expect_round_trip(result);
}

const char* const kEveryField = R"(
zone: z1
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: v
        domains: ["*"]
        routes:
          - match:
              prefix: /api
              method: POST
              headers: [{ name: X-A, value: "1" }, { name: x-b, regex: "b+" }]
              query_params: [{ name: Q, value: "" }]
              hosts: ["*.Example.com"]
            backends:
              - { cluster: a, weight: 3, request_headers: { set: { X-V: "2" } }, response_headers: { remove: [x-r] } }
              - { cluster: a, weight: 0, redirect: { path: { prefix: /moved } } }
              - cluster: b
                weight: 0
                rewrite: { path: { full: /b } }
                mirror: [{ cluster: a, percent: 1 }]
                fault: { delay: { duration: 5ms, percent: 50 } }
            request_headers: { set: { x-s: s }, add: { x-a: a }, remove: [x-d] }
            response_headers: { add: { X-Served-By: trellis } }
            rewrite: { hostname: In.Example, path: { prefix: /v2 } }
            mirror: [{ cluster: b, percent: 0.5 }, { cluster: a }]
            fault: { abort: { status: 503, percent: 12.5 }, delay: { duration: 100ms, percent: 100 } }
            timeout: 0s
            per_try_timeout: 1500ms
          - match: { exact: /old }
            redirect: { scheme: https, hostname: new.example, port: 8443, path: { full: /new } }
clusters:
  - name: a
    protocol: http2
    lb_policy: ring_hash
    hash: { cookie: { name: sid, ttl: 0s } }
    ring_points: 2048
    locality: {}
    request_idle_timeout: 2m
    retry:
      attempts: 1
      retry_on: [5xx, retriable-status-codes]
      status_codes: [429]
      backoff: { base: 10ms }
      non_idempotent: true
    endpoints: [{ address: 10.0.0.1:80, weight: 2, zone: z1 }]
  - name: b
    slow_start: 10s
)";

TEST(ConfigJsonTest, DumpShowsEveryFieldInTheYamlShape) {
  ConfigLoad result = load(yaml(kEveryField));
  ASSERT_TRUE(result.ok()) << all_errors(result);
  Json dump = Json::parse(config_to_json(result.config));
  EXPECT_EQ(dump["zone"], "z1");
  const Json& routes = dump["listeners"][0]["virtual_hosts"][0]["routes"];
  EXPECT_EQ(routes[0], Json::parse(R"({
    "match": {"prefix": "/api", "method": "POST",
              "headers": [{"name": "x-a", "value": "1"}, {"name": "x-b", "regex": "b+"}],
              "query_params": [{"name": "Q", "value": ""}],
              "hosts": ["*.example.com"]},
    "backends": [{"cluster": "a", "weight": 3, "request_headers": {"set": {"x-v": "2"}},
                  "response_headers": {"remove": ["x-r"]}},
                 {"cluster": "a", "weight": 0, "redirect": {"path": {"prefix": "/moved"}, "status": 302}},
                 {"cluster": "b", "weight": 0, "rewrite": {"path": {"full": "/b"}},
                  "mirror": [{"cluster": "a", "percent": 1}],
                  "fault": {"delay": {"duration": "5ms", "percent": 50}}}],
    "request_headers": {"set": {"x-s": "s"}, "add": {"x-a": "a"}, "remove": ["x-d"]},
    "response_headers": {"add": {"x-served-by": "trellis"}},
    "rewrite": {"hostname": "in.example", "path": {"prefix": "/v2"}},
    "mirror": [{"cluster": "b", "percent": 0.5}, {"cluster": "a", "percent": 100}],
    "fault": {"abort": {"status": 503, "percent": 12.5}, "delay": {"duration": "100ms", "percent": 100}},
    "timeout": "0s",
    "per_try_timeout": "1500ms"})"));
  EXPECT_EQ(routes[1], Json::parse(R"({
    "match": {"exact": "/old"},
    "redirect": {"scheme": "https", "hostname": "new.example", "port": 8443, "path": {"full": "/new"},
                 "status": 302},
    "timeout": "15s"})"));
  const Json& clusters = dump["clusters"];
  EXPECT_EQ(clusters[0], Json::parse(R"({
    "name": "a", "protocol": "http2", "lb_policy": "ring_hash", "hash": {"cookie": {"name": "sid", "ttl": "0s"}}, "ring_points": 2048,
    "locality": {"min_healthy_percent": 70},
    "connect_timeout": "1s", "idle_timeout": "60s", "request_idle_timeout": "120s", "max_idle_per_endpoint": 64,
    "retry": {"attempts": 1, "per_try_timeout": "0s", "retry_on": ["5xx", "retriable-status-codes"],
              "status_codes": [429], "backoff": {"base": "10ms", "max": "100ms"},
              "budget": {"percent": 20, "min_per_second": 10}, "non_idempotent": true, "buffer_limit": 65536},
    "endpoints": [{"address": "10.0.0.1:80", "weight": 2, "zone": "z1"}]})"));
  EXPECT_EQ(clusters[1], Json::parse(R"({
    "name": "b", "protocol": "http1", "lb_policy": "peak_ewma", "slow_start": "10s",
    "connect_timeout": "1s", "idle_timeout": "60s", "request_idle_timeout": "300s", "max_idle_per_endpoint": 64,
    "endpoints": []})"));
  expect_round_trip(result);
}

TEST(ConfigJsonTest, RateLimitsAsWritten) {
  ConfigLoad result = load_route(R"(
match: { prefix: / }
cluster: web
rate_limits:
  - name: per-client
    match: { prefix: /api, method: POST, headers: [{ name: X-Tier, value: free }] }
    key: { header: X-User }
    token_bucket: { requests_per_unit: 100, unit: minute, burst: 20 }
  - token_bucket: { requests_per_unit: 5 }
  - match: { exact: /upload }
    key: address
    leaky_bucket: { rate_per_second: 0.5, queue_size: 4 }
  - key: identity
    leaky_bucket: { rate_per_second: 2.5e3, queue_size: 10, max_delay: 250ms }
  - match: { prefix: / }
    leaky_bucket: { rate_per_second: 0.00001 }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  Json dump = Json::parse(config_to_json(result.config));
  // The burst is shown as written, above the rate; a limit that counts every
  // request shows no match; every bucket field that applies is filled in.
  EXPECT_EQ(dump["listeners"][0]["virtual_hosts"][0]["routes"][0]["rate_limits"], Json::parse(R"([
    {"name": "per-client",
     "match": {"prefix": "/api", "method": "POST", "headers": [{"name": "x-tier", "value": "free"}]},
     "key": {"header": "x-user"},
     "token_bucket": {"requests_per_unit": 100, "unit": "minute", "burst": 20}},
    {"key": "all", "token_bucket": {"requests_per_unit": 5, "unit": "second", "burst": 0}},
    {"match": {"exact": "/upload"}, "key": "address",
     "leaky_bucket": {"rate_per_second": 0.5, "queue_size": 4, "max_delay": "8s"}},
    {"key": "identity", "leaky_bucket": {"rate_per_second": 2500, "queue_size": 10, "max_delay": "250ms"}},
    {"key": "all", "leaky_bucket": {"rate_per_second": 0.00001, "queue_size": 0}}])"));
  expect_round_trip(result);

  // No rate limits: no field.
  Json plain = Json::parse(config_to_json(load_route("match: { prefix: / }\ncluster: web\n").config));
  EXPECT_FALSE(plain["listeners"][0]["virtual_hosts"][0]["routes"][0].contains("rate_limits"));
}

TEST(ConfigJsonTest, RateLimitsFromTheControlPlaneLoadBack) {
  // Values no file would write still show as numbers the loader reads back.
  ConfigLoad first = load_route("match: { prefix: / }\ncluster: web\n");
  ASSERT_TRUE(first.ok()) << all_errors(first);
  RouteConfig& route = first.config.listeners[0].virtual_hosts[0].routes[0];
  RateLimitConfig third;
  third.leaky = true;
  third.leaky_bucket = {1.0 / 3, std::chrono::milliseconds(3001), 1};
  route.rate_limits.push_back(third);
  RateLimitConfig capped;
  capped.token_bucket = {1'000'000'000, policy::RateUnit::kHour, 4294967295u};
  route.rate_limits.push_back(capped);
  std::string dump = config_to_json(first.config);
  Json limits = Json::parse(dump)["listeners"][0]["virtual_hosts"][0]["routes"][0]["rate_limits"];
  EXPECT_EQ(limits[0]["leaky_bucket"]["rate_per_second"], 1.0 / 3);
  EXPECT_EQ(limits[0]["leaky_bucket"]["max_delay"], "3001ms");
  EXPECT_EQ(limits[1]["token_bucket"]["burst"], 4294967295u - 1'000'000'000);
  expect_round_trip(first);
}

TEST(ConfigJsonTest, SectionsThatAreOffAreLeftOut) {
  ConfigLoad result = load_route("match: { prefix: / }\ncluster: web\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  Json dump = Json::parse(config_to_json(result.config));
  EXPECT_FALSE(dump.contains("zone"));
  EXPECT_EQ(dump["listeners"][0]["virtual_hosts"][0]["routes"][0],
            Json::parse(R"({"match": {"prefix": "/"}, "cluster": "web", "timeout": "15s"})"));
  for (const char* key : {"hash", "ring_points", "locality", "slow_start", "retry"}) {
    EXPECT_FALSE(dump["clusters"][0].contains(key)) << key;
  }
  // A retry section that keeps retries off and every default says nothing the absence does not.
  Json off = Json::parse(config_to_json(load_cluster("name: c\nretry: { attempts: 0 }\n").config));
  EXPECT_FALSE(off["clusters"][0].contains("retry"));
}

TEST(ConfigJsonTest, WhatOnlyTheControlPlaneSends) {
  ProxyConfig config;
  ListenerConfig listener;
  listener.name = "outbound";
  VirtualHostConfig vhost;
  vhost.name = "reviews";
  RouteConfig route;
  route.backends.push_back(BackendConfig{});  // a backend that does not exist
  route.mirrors.push_back(MirrorConfig{"shadow", 0, 1, 3, {}});
  route.direct_error = "backend \"ratings\" not found";
  vhost.routes.push_back(route);
  listener.virtual_hosts.push_back(vhost);
  config.listeners.push_back(listener);
  Json dumped = Json::parse(config_to_json(config))["listeners"][0]["virtual_hosts"][0]["routes"][0];
  EXPECT_EQ(dumped["backends"], Json::parse(R"([{"cluster": "", "weight": 1}])"));
  EXPECT_EQ(dumped["mirror"], Json::parse(R"([{"cluster": "shadow", "numerator": 1, "denominator": 3}])"));
  EXPECT_EQ(dumped["direct_error"], "backend \"ratings\" not found");

  // A route with nothing to forward to shows an empty list rather than nothing.
  config.listeners[0].virtual_hosts[0].routes[0].backends.clear();
  dumped = Json::parse(config_to_json(config))["listeners"][0]["virtual_hosts"][0]["routes"][0];
  EXPECT_EQ(dumped["backends"], Json::array());
}

TEST(ConfigJsonTest, JsonDumpUsesYamlShapes) {
  ConfigLoad result = load(yaml(kFullConfig));
  ASSERT_TRUE(result.ok()) << all_errors(result);
  nlohmann::json dump = nlohmann::json::parse(config_to_json(result.config));

  EXPECT_EQ(dump["admin"]["address"], "127.0.0.1:9911");
  EXPECT_EQ(dump["access_log"]["path"], "/dev/stdout");
  EXPECT_EQ(dump["drain_timeout"], "120s");
  const auto& web = dump["listeners"][0];
  EXPECT_EQ(web["name"], "web");
  EXPECT_EQ(web["address"], "127.0.0.1:10000");
  EXPECT_EQ(web["protocol"], "http");
  EXPECT_EQ(web["idle_timeout"], "90s");
  EXPECT_FALSE(web.contains("cluster"));
  const auto& route = web["virtual_hosts"][0]["routes"][1];
  EXPECT_EQ(route["match"], nlohmann::json({{"prefix", "/v1/"}}));
  EXPECT_EQ(route["cluster"], "api");
  EXPECT_EQ(route["timeout"], "1500ms");
  EXPECT_EQ(web["virtual_hosts"][0]["routes"][0]["match"], nlohmann::json({{"exact", "/healthz"}}));
  EXPECT_EQ(web["virtual_hosts"][0]["routes"][0]["timeout"], "0s");
  EXPECT_EQ(web["virtual_hosts"][0]["domains"][0], "api.example.com");
  const auto& db = dump["listeners"][1];
  EXPECT_EQ(db["protocol"], "tcp");
  EXPECT_EQ(db["cluster"], "db");
  EXPECT_EQ(db["address"], "[::1]:10001");
  EXPECT_FALSE(db.contains("virtual_hosts"));
  const auto& api = dump["clusters"][0];
  EXPECT_EQ(api["lb_policy"], "round_robin");
  EXPECT_EQ(api["connect_timeout"], "250ms");
  EXPECT_EQ(api["idle_timeout"], "30s");
  EXPECT_EQ(api["max_idle_per_endpoint"], 0);
  EXPECT_EQ(api["endpoints"][0], nlohmann::json({{"address", "10.0.0.1:8081"}, {"weight", 3}}));
  EXPECT_EQ(api["endpoints"][1]["address"], "[2001:db8::1]:8081");
}

TEST(ConfigJsonTest, JsonDumpLoadsBackToTheSameConfig) {
  // JSON is YAML, so the dump is itself a bootstrap file.
  ConfigLoad first = load(yaml(kFullConfig));
  ASSERT_TRUE(first.ok()) << all_errors(first);
  std::string dump = config_to_json(first.config);
  ConfigLoad second = load(dump);
  ASSERT_TRUE(second.ok()) << all_errors(second) << dump;
  EXPECT_EQ(config_to_json(second.config), dump);
  EXPECT_EQ(second.config.listeners[1].cluster_index, first.config.listeners[1].cluster_index);
}

TEST(ConfigJsonTest, JsonDumpOfDefaultsOmitsAccessLog) {
  nlohmann::json dump = nlohmann::json::parse(config_to_json(load("").config));
  EXPECT_FALSE(dump.contains("access_log"));
  EXPECT_EQ(dump["admin"]["address"], "127.0.0.1:9901");
  EXPECT_EQ(dump["drain_timeout"], "10s");
  EXPECT_EQ(dump["listeners"], nlohmann::json::array());
  EXPECT_EQ(dump["clusters"], nlohmann::json::array());
}

}  // namespace
}  // namespace trellis::proxy
