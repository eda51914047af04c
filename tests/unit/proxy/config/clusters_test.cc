// Clusters in the bootstrap file (src/proxy/config_clusters.cc): load
// balancing, retries, timeouts and endpoint zones; and the proxy's own zone.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config_test_helpers.h"
#include "proxy/config/config.h"

namespace trellis::proxy {
namespace {

using namespace config_test;
using policy::LbAlgorithm;

const ClusterConfig& only_cluster(const ConfigLoad& result) { return result.config.clusters.at(0); }

std::string cluster_error(const std::string& fields) {
  return only_error(load_cluster(("name: c\n" + fields).c_str()));
}

// ---- health checks

TEST(ConfigClustersTest, GrpcHealthCheck) {
  ConfigLoad result = load_cluster(
      "name: c\nprotocol: http2\nhealth_check: { grpc: { service: shop.Cart, authority: cart.local }, "
      "interval: 2s }\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const HealthCheckConfig& hc = only_cluster(result).health_check;
  EXPECT_EQ(hc.kind, HealthCheckConfig::Kind::kGrpc);
  EXPECT_EQ(hc.grpc_service, "shop.Cart");
  EXPECT_EQ(hc.host, "cart.local");
  // The server as a whole, on a cluster of any protocol over plain TCP.
  result = load_cluster("name: c\nhealth_check: { grpc: {} }\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(only_cluster(result).health_check.grpc_service, "");
}

TEST(ConfigClustersTest, HealthCheckRules) {
  EXPECT_EQ(cluster_error("health_check: { interval: 2s }\n"),
            "clusters[0].health_check: needs \"http\", \"tcp\" or \"grpc\"");
  EXPECT_EQ(cluster_error("health_check: { tcp: {}, grpc: {} }\n"),
            "clusters[0].health_check.grpc: set only one of \"http\", \"tcp\" or \"grpc\"");
  EXPECT_EQ(cluster_error("health_check: { grpc: { service: \"a b\" } }\n"),
            "clusters[0].health_check.grpc.service: must be printable ASCII without spaces");
  EXPECT_EQ(cluster_error("health_check: { grpc: { port: 1 } }\n").substr(0, 41),
            "clusters[0].health_check.grpc.port: unkno");
  // Over TLS an http1 cluster asks the server for HTTP/1.1.
  EXPECT_EQ(
      cluster_error("tls: { server_name: a.example }\nhealth_check: { grpc: {} }\n"),
      "clusters[0].health_check: grpc checks speak HTTP/2, which this cluster's TLS does not offer; set "
      "protocol: http2");
  EXPECT_TRUE(
      load_cluster("name: c\nprotocol: http2\ntls: { server_name: a.example }\nhealth_check: { grpc: {} }\n")
          .ok());
  // HTTP checks follow the cluster's protocol.
  EXPECT_TRUE(load_cluster("name: c\nprotocol: http2\nhealth_check: { http: { path: /healthz } }\n").ok());
}

// ---- load balancing

TEST(ConfigClustersTest, EveryLbPolicy) {
  struct Case {
    const char* yaml;
    LbAlgorithm algorithm;
  };
  for (const Case& c : {Case{"lb_policy: peak_ewma", LbAlgorithm::kPeakEwma},
                        Case{"lb_policy: round_robin", LbAlgorithm::kRoundRobin},
                        Case{"lb_policy: weighted_round_robin", LbAlgorithm::kWeightedRoundRobin},
                        Case{"lb_policy: random", LbAlgorithm::kRandom},
                        Case{"lb_policy: weighted_random", LbAlgorithm::kWeightedRandom},
                        Case{"lb_policy: least_request", LbAlgorithm::kLeastRequest},
                        Case{"lb_policy: ring_hash\nhash: { header: x-user }", LbAlgorithm::kRingHash},
                        Case{"lb_policy: maglev\nhash: { source_ip: true }", LbAlgorithm::kMaglev}}) {
    ConfigLoad result = load_cluster(("name: c\n" + std::string(c.yaml) + "\n").c_str());
    ASSERT_TRUE(result.ok()) << c.yaml << "\n" << all_errors(result);
    EXPECT_EQ(only_cluster(result).lb.algorithm, c.algorithm) << c.yaml;
  }
}

TEST(ConfigClustersTest, LoadBalancingDefaults) {
  ConfigLoad result = load_cluster("name: c\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const LoadBalancerConfig& lb = only_cluster(result).lb;
  EXPECT_EQ(lb.algorithm, LbAlgorithm::kPeakEwma);
  EXPECT_EQ(lb.hash.kind, HashPolicy::Kind::kNone);
  EXPECT_EQ(lb.ring_points, 160u);
  EXPECT_FALSE(lb.locality_enabled);
  EXPECT_EQ(lb.slow_start_window, Millis(0));
  EXPECT_EQ(only_cluster(result).request_idle_timeout, Millis(300000));
}

TEST(ConfigClustersTest, UnknownLbPolicy) {
  ConfigLoad result = load_cluster("name: c\nlb_policy: ring-hash\n");
  expect_single_error(result, 3, 16, "clusters[0].lb_policy",
                      "unknown lb_policy \"ring-hash\" (did you mean \"ring_hash\"?)");
  EXPECT_EQ(cluster_error("lb_policy: fastest\n"),
            "clusters[0].lb_policy: unknown lb_policy \"fastest\" (expected \"peak_ewma\", \"round_robin\", "
            "\"weighted_round_robin\", \"random\", \"weighted_random\", \"least_request\", \"ring_hash\" or "
            "\"maglev\")");
  EXPECT_EQ(cluster_error("lb_policy: [round_robin]\n"), "clusters[0].lb_policy: expected a string");
}

TEST(ConfigClustersTest, HashPolicies) {
  ConfigLoad header =
      load_cluster("name: c\nlb_policy: ring_hash\nhash: { header: X-User }\nring_points: 65536\n");
  ASSERT_TRUE(header.ok()) << all_errors(header);
  EXPECT_EQ(only_cluster(header).lb.hash.kind, HashPolicy::Kind::kHeader);
  EXPECT_EQ(only_cluster(header).lb.hash.name, "x-user");
  EXPECT_EQ(only_cluster(header).lb.ring_points, 65536u);

  ConfigLoad cookie =
      load_cluster("name: c\nlb_policy: maglev\nhash: { cookie: { name: SessionId, ttl: 1h } }\n");
  ASSERT_TRUE(cookie.ok()) << all_errors(cookie);
  const HashPolicy& hash = only_cluster(cookie).lb.hash;
  EXPECT_EQ(hash.kind, HashPolicy::Kind::kCookie);
  EXPECT_EQ(hash.name, "SessionId");  // cookie names are case-sensitive
  EXPECT_TRUE(hash.cookie_ttl_set);
  EXPECT_EQ(hash.cookie_ttl, Millis(3600000));

  // Without a ttl the proxy hashes on the cookie but never sets it.
  ConfigLoad no_ttl = load_cluster("name: c\nlb_policy: maglev\nhash: { cookie: { name: sid } }\n");
  ASSERT_TRUE(no_ttl.ok()) << all_errors(no_ttl);
  EXPECT_FALSE(only_cluster(no_ttl).lb.hash.cookie_ttl_set);

  ConfigLoad source = load_cluster("name: c\nlb_policy: ring_hash\nhash: { source_ip: true }\n");
  ASSERT_TRUE(source.ok()) << all_errors(source);
  EXPECT_EQ(only_cluster(source).lb.hash.kind, HashPolicy::Kind::kSourceIp);
}

TEST(ConfigClustersTest, HashRules) {
  expect_single_error(load_cluster("name: c\nlb_policy: ring_hash\n"), 2, 5, "clusters[0].hash",
                      "required with lb_policy ring_hash");
  EXPECT_EQ(cluster_error("lb_policy: maglev\n"), "clusters[0].hash: required with lb_policy maglev");
  expect_single_error(load_cluster("name: c\nlb_policy: round_robin\nhash: { header: x }\n"), 4, 5,
                      "clusters[0].hash", "\"hash\" is only for lb_policy ring_hash or maglev");
  EXPECT_EQ(cluster_error("hash: { header: x }\n"),
            "clusters[0].hash: \"hash\" is only for lb_policy ring_hash or maglev");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { header: x, source_ip: true }\n"),
            "clusters[0].hash: set only one of \"header\", \"cookie\" or \"source_ip\"");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: {}\n"),
            "clusters[0].hash: needs \"header\", \"cookie\" or \"source_ip\"");
  EXPECT_EQ(
      cluster_error("lb_policy: ring_hash\nhash: { source_ip: false }\n"),
      "clusters[0].hash.source_ip: must be true (choose \"header\" or \"cookie\" to hash on something else)");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { source_ip: yes }\n"),
            "clusters[0].hash.source_ip: expected true or false");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { header: \"x:y\" }\n"),
            "clusters[0].hash.header: invalid header name \"x:y\": use letters, digits and !#$%&'*+-.^_`|~");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { cookie: { name: \"a b\" } }\n"),
            "clusters[0].hash.cookie.name: invalid cookie name \"a b\"");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { cookie: { ttl: 1h } }\n"),
            "clusters[0].hash.cookie.name: required field is missing");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { cookie: { name: s, ttl: 1500ms } }\n"),
            "clusters[0].hash.cookie.ttl: must be a whole number of seconds");
  // With the policy itself in doubt, the hash is not judged against it.
  EXPECT_EQ(cluster_error("lb_policy: ringhash\nhash: { header: x }\n"),
            "clusters[0].lb_policy: unknown lb_policy \"ringhash\" (did you mean \"ring_hash\"?)");
}

TEST(ConfigClustersTest, RingPointsRules) {
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { header: x }\nring_points: 0\n"),
            "clusters[0].ring_points: must be between 1 and 65536");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { header: x }\nring_points: 8388609\n"),
            "clusters[0].ring_points: must be between 1 and 65536");
  EXPECT_EQ(cluster_error("lb_policy: maglev\nhash: { header: x }\nring_points: 2048\n"),
            "clusters[0].ring_points: \"ring_points\" is only for lb_policy ring_hash");
}

TEST(ConfigClustersTest, LocalityAndSlowStart) {
  ConfigLoad result = load_cluster("name: c\nlocality:\nslow_start: 30s\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_TRUE(only_cluster(result).lb.locality_enabled);
  EXPECT_EQ(only_cluster(result).lb.locality_min_healthy_percent, 70u);
  EXPECT_EQ(only_cluster(result).lb.slow_start_window, Millis(30000));

  ConfigLoad threshold = load_cluster("name: c\nlocality: { min_healthy_percent: 0 }\n");
  ASSERT_TRUE(threshold.ok()) << all_errors(threshold);
  EXPECT_EQ(only_cluster(threshold).lb.locality_min_healthy_percent, 0u);

  EXPECT_EQ(cluster_error("locality: { min_healthy_percent: 101 }\n"),
            "clusters[0].locality.min_healthy_percent: must be between 0 and 100");
  EXPECT_EQ(cluster_error("locality: true\n"), "clusters[0].locality: expected a map");
  EXPECT_EQ(cluster_error("slow_start: 0s\n"), "clusters[0].slow_start: must be greater than 0");
  EXPECT_EQ(cluster_error("lb_policy: ring_hash\nhash: { header: x }\nslow_start: 10s\n"),
            "clusters[0].slow_start: \"slow_start\" does not apply to lb_policy ring_hash: consistent "
            "hashing keeps "
            "each key on its endpoint");
}

TEST(ConfigClustersTest, RequestIdleTimeout) {
  ConfigLoad result = load_cluster("name: c\nrequest_idle_timeout: 90s\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(only_cluster(result).request_idle_timeout, Millis(90000));
  EXPECT_EQ(cluster_error("request_idle_timeout: 0s\n"),
            "clusters[0].request_idle_timeout: must be greater than 0");
}

// ---- retries

TEST(ConfigClustersTest, RetrySectionTurnsRetriesOnWithDefaults) {
  EXPECT_EQ(only_cluster(load_cluster("name: c\n")).retry.attempts, 0u);
  ConfigLoad result = load_cluster("name: c\nretry: {}\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const policy::RetryPolicy& retry = only_cluster(result).retry;
  EXPECT_EQ(retry.attempts, 2u);
  EXPECT_EQ(retry.per_try_timeout, Millis(0));
  EXPECT_EQ(retry.retry_on, policy::kRetryConnectFailure | policy::kRetryReset);
  EXPECT_TRUE(retry.status_codes.empty());
  EXPECT_EQ(retry.backoff_base, Millis(25));
  EXPECT_EQ(retry.backoff_max, Millis(250));
  EXPECT_EQ(retry.budget_percent, 20u);
  EXPECT_EQ(retry.budget_min_per_second, 10u);
  EXPECT_FALSE(retry.non_idempotent);
  EXPECT_EQ(retry.buffer_limit, 65536u);
}

TEST(ConfigClustersTest, RetryEveryField) {
  ConfigLoad result = load_cluster(R"(
name: c
retry:
  attempts: 3
  per_try_timeout: 500ms
  retry_on: [gateway-error, retriable-status-codes, reset]
  status_codes: [409, 503]
  backoff: { base: 50ms }
  budget: { percent: 50, min_per_second: 0 }
  non_idempotent: true
  buffer_limit: 0
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const policy::RetryPolicy& retry = only_cluster(result).retry;
  EXPECT_EQ(retry.attempts, 3u);
  EXPECT_EQ(retry.per_try_timeout, Millis(500));
  EXPECT_EQ(retry.retry_on, policy::kRetryGatewayError | policy::kRetryStatusCodes | policy::kRetryReset);
  EXPECT_EQ(retry.status_codes, (std::vector<uint16_t>{409, 503}));
  EXPECT_EQ(retry.backoff_base, Millis(50));
  EXPECT_EQ(retry.backoff_max, Millis(500));  // ten times the base when not given
  EXPECT_EQ(retry.budget_percent, 50u);
  EXPECT_EQ(retry.budget_min_per_second, 0u);
  EXPECT_TRUE(retry.non_idempotent);
  EXPECT_EQ(retry.buffer_limit, 0u);

  ConfigLoad capped = load_cluster("name: c\nretry: { attempts: 0, backoff: { base: 10ms, max: 10ms } }\n");
  ASSERT_TRUE(capped.ok()) << all_errors(capped);
  EXPECT_EQ(only_cluster(capped).retry.attempts, 0u);
  EXPECT_EQ(only_cluster(capped).retry.backoff_max, Millis(10));
}

TEST(ConfigClustersTest, RetryRules) {
  EXPECT_EQ(cluster_error("retry: { attempts: 11 }\n"),
            "clusters[0].retry.attempts: must be between 0 and 10");
  EXPECT_EQ(cluster_error("retry: { attempts: two }\n"), "clusters[0].retry.attempts: expected an integer");
  EXPECT_EQ(cluster_error("retry: { retry_on: [5xxx] }\n"),
            "clusters[0].retry.retry_on[0]: unknown retry_on condition \"5xxx\" (did you mean \"5xx\"?)");
  EXPECT_EQ(
      cluster_error("retry: { retry_on: [timeout] }\n"),
      "clusters[0].retry.retry_on[0]: unknown retry_on condition \"timeout\" (expected \"connect-failure\", "
      "\"reset\", \"5xx\", \"gateway-error\", \"retriable-status-codes\", \"cancelled\", "
      "\"deadline-exceeded\", \"resource-exhausted\", \"internal\" or \"unavailable\")");
  EXPECT_EQ(cluster_error("retry: { retry_on: [reset, reset] }\n"),
            "clusters[0].retry.retry_on[1]: duplicate condition \"reset\"");
  EXPECT_EQ(
      cluster_error("retry: { retry_on: [] }\n"),
      "clusters[0].retry.retry_on: must list at least one condition (set attempts: 0 to turn retries off)");
  EXPECT_EQ(cluster_error("retry: { retry_on: 5xx }\n"), "clusters[0].retry.retry_on: expected a list");
  EXPECT_EQ(cluster_error("retry: { per_try_timeout: fast }\n"),
            "clusters[0].retry.per_try_timeout: expected a duration like \"250ms\", \"1.5s\" or \"1h30m\"");
  EXPECT_EQ(cluster_error("retry: { budget: { percent: 101 } }\n"),
            "clusters[0].retry.budget.percent: must be between 0 and 100");
  EXPECT_EQ(cluster_error("retry: { budget: { min_per_second: -1 } }\n"),
            "clusters[0].retry.budget.min_per_second: must be between 0 and 4294967295");
  EXPECT_EQ(cluster_error("retry: { non_idempotent: \"true\" }\n"),
            "clusters[0].retry.non_idempotent: expected true or false");
  EXPECT_EQ(cluster_error("retry: { buffer_limit: 16777217 }\n"),
            "clusters[0].retry.buffer_limit: must be between 0 and 16777216");
  EXPECT_EQ(cluster_error("retry: { backoff: { base: 0s } }\n"),
            "clusters[0].retry.backoff.base: must be greater than 0");
  EXPECT_EQ(cluster_error("retry: { backoff: { base: 100ms, max: 50ms } }\n"),
            "clusters[0].retry.backoff.max: must be at least the base (100ms)");
  EXPECT_EQ(cluster_error("retry: { backoff: { max: 10ms } }\n"),
            "clusters[0].retry.backoff.max: must be at least the base (25ms)");
  EXPECT_EQ(cluster_error("retry: { attempt: 3 }\n"),
            "clusters[0].retry.attempt: unknown field \"attempt\" (did you mean \"attempts\"?)");
}

TEST(ConfigClustersTest, StatusCodesGoWithRetriableStatusCodes) {
  ConfigLoad codes_alone = load_cluster("name: c\nretry:\n  status_codes: [503]\n");
  expect_single_error(codes_alone, 4, 7, "clusters[0].retry.status_codes",
                      "needs \"retriable-status-codes\" in retry_on");
  EXPECT_EQ(cluster_error("retry: { retry_on: [5xx], status_codes: [503] }\n"),
            "clusters[0].retry.status_codes: needs \"retriable-status-codes\" in retry_on");
  EXPECT_EQ(cluster_error("retry: { retry_on: [reset, retriable-status-codes] }\n"),
            "clusters[0].retry.retry_on[1]: needs status_codes");
  EXPECT_EQ(cluster_error("retry: { retry_on: [retriable-status-codes], status_codes: [99] }\n"),
            "clusters[0].retry.status_codes[0]: must be between 100 and 599");
  EXPECT_EQ(cluster_error("retry: { retry_on: [retriable-status-codes], status_codes: [503, 503] }\n"),
            "clusters[0].retry.status_codes[1]: duplicate status code 503");
}

// ---- endpoints and zones

TEST(ConfigClustersTest, EndpointZones) {
  ConfigLoad result = load_cluster(R"(
name: c
endpoints:
  - { address: 10.0.0.1:80, zone: eu-west-1a }
  - { address: 10.0.0.2:80 }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(only_cluster(result).endpoints[0].zone, "eu-west-1a");
  EXPECT_EQ(only_cluster(result).endpoints[1].zone, "");
  EXPECT_EQ(cluster_error("endpoints: [{ address: 10.0.0.1:80, zone: \"eu west\" }]\n"),
            "clusters[0].endpoints[0].zone: invalid name \"eu west\": use only letters, digits, '_', '.', "
            "'-' and '/'");
}

TEST(ConfigClustersTest, ProxyZone) {
  ConfigLoad own = load("zone: eu-west-1a\n");
  ASSERT_TRUE(own.ok()) << all_errors(own);
  EXPECT_EQ(own.config.zone, "eu-west-1a");
  EXPECT_TRUE(load("").config.zone.empty());

  const std::string control_plane =
      "control_plane:\n  address: 127.0.0.1:15010\n  node: { service: web, zone: z1 }\n"
      "  trust_bundle: /etc/trellis/trust-bundle.pem\n  join_token_file: /etc/trellis/join-token\n";
  ConfigLoad from_node = load(control_plane);
  ASSERT_TRUE(from_node.ok()) << all_errors(from_node);
  EXPECT_EQ(from_node.config.zone, "z1");
  ConfigLoad both = load("zone: z2\n" + control_plane);
  ASSERT_TRUE(both.ok()) << all_errors(both);
  EXPECT_EQ(both.config.zone, "z2");
  EXPECT_EQ(both.config.control_plane.zone, "z1");

  expect_single_error(load("zone: [a]\n"), 1, 7, "zone", "expected a string");
  expect_single_error(load("zone: \"\"\n"), 1, 7, "zone", "must not be empty");
}

}  // namespace
}  // namespace trellis::proxy
