#include "control/cluster_translation.h"

#include <gtest/gtest.h>

#include "mesh_test_helpers.h"

namespace trellis::control {
namespace {

using namespace ::trellis::control::testing;  // NOLINT: test helpers

Resource policy(const char* spec, const std::string& name = "reviews") {
  Json doc = Json::parse(spec);
  doc["targetRef"] = {{"kind", "Service"}, {"name", "reviews"}};
  return resource("DestinationPolicy", name, doc.dump().c_str());
}

v1::Cluster reviews_cluster(const MeshView& mesh, const std::string& subset = "") {
  return build_cluster(mesh, {{"reviews", "default"}, subset});
}

std::vector<std::string> addresses(const v1::Cluster& c) {
  std::vector<std::string> out;
  for (const v1::Endpoint& e : c.endpoints()) out.push_back(e.address());
  return out;
}

TEST(ClusterTranslation, WithoutAPolicyTheDocumentedDefaults) {
  MeshView mesh;
  v1::Cluster c = reviews_cluster(mesh);
  EXPECT_EQ(c.name(), "reviews.default");
  EXPECT_EQ(c.connect_timeout_ms(), 1000u);
  EXPECT_EQ(c.idle_timeout_ms(), 60000u);
  EXPECT_EQ(c.request_idle_timeout_ms(), 300000u);
  EXPECT_EQ(c.load_balancer().algorithm(), v1::LoadBalancer::PEAK_EWMA);
  EXPECT_FALSE(c.has_retry()) << "without a retries section nothing is retried";
  EXPECT_EQ(c.endpoints_size(), 0) << "a Service without instances still has its cluster";
}

TEST(ClusterTranslation, EndpointsAreTheLiveInstancesWithTheirZones) {
  MeshView mesh;
  mesh.instances = {instance("reviews", "10.0.0.2:9080"), instance("reviews", "10.0.0.1:9080"),
                    instance("reviews", "10.0.0.3:9080", {}, "other"), instance("ratings", "10.0.0.4:9080")};
  mesh.instances[0].zone = "zone-b";
  mesh.instances[0].weight = 3;
  v1::Cluster c = reviews_cluster(mesh);
  EXPECT_EQ(addresses(c), (std::vector<std::string>{"10.0.0.1:9080", "10.0.0.2:9080"}));
  EXPECT_EQ(c.endpoints(1).zone(), "zone-b");
  EXPECT_EQ(c.endpoints(1).weight(), 3u);
}

TEST(ClusterTranslation, ASubsetHasTheInstancesWithAllOfItsLabels) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({
    "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                {"name": "v1-canary", "labels": {"version": "v1", "track": "canary"}}],
    "loadBalancer": {"algorithm": "LeastRequest"}})")};
  mesh.instances = {instance("reviews", "10.0.0.1:9080", {{"version", "v1"}}),
                    instance("reviews", "10.0.0.2:9080", {{"version", "v2"}}),
                    instance("reviews", "10.0.0.3:9080", {{"version", "v1"}, {"track", "canary"}}),
                    instance("reviews", "10.0.0.4:9080")};
  v1::Cluster v1 = reviews_cluster(mesh, "v1");
  EXPECT_EQ(v1.name(), "reviews.default/v1");
  EXPECT_EQ(addresses(v1), (std::vector<std::string>{"10.0.0.1:9080", "10.0.0.3:9080"}));
  EXPECT_EQ(v1.load_balancer().algorithm(), v1::LoadBalancer::LEAST_REQUEST)
      << "a subset is called like its Service";
  EXPECT_EQ(v1.endpoints(1).labels().at("track"), "canary");
  EXPECT_EQ(addresses(reviews_cluster(mesh, "v1-canary")), (std::vector<std::string>{"10.0.0.3:9080"}));
  EXPECT_EQ(reviews_cluster(mesh, "v3").endpoints_size(), 0);
  EXPECT_EQ(addresses(reviews_cluster(mesh)).size(), 4u);
}

TEST(ClusterTranslation, TheDestinationPolicyWhoseNameSortsFirstApplies) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"loadBalancer": {"algorithm": "Random"}})", "zz"),
                               policy(R"({"loadBalancer": {"algorithm": "RoundRobin"}})", "aa")};
  EXPECT_EQ(reviews_cluster(mesh).load_balancer().algorithm(), v1::LoadBalancer::ROUND_ROBIN);
}

TEST(ClusterTranslation, LoadBalancerAlgorithms) {
  const std::pair<const char*, v1::LoadBalancer::Algorithm> kAlgorithms[] = {
      {"RoundRobin", v1::LoadBalancer::ROUND_ROBIN},
      {"WeightedRoundRobin", v1::LoadBalancer::WEIGHTED_ROUND_ROBIN},
      {"Random", v1::LoadBalancer::RANDOM},
      {"LeastRequest", v1::LoadBalancer::LEAST_REQUEST},
      {"PeakEWMA", v1::LoadBalancer::PEAK_EWMA},
      {"RingHash", v1::LoadBalancer::RING_HASH},
      {"Maglev", v1::LoadBalancer::MAGLEV},
  };
  for (const auto& [name, algorithm] : kAlgorithms) {
    MeshView mesh;
    mesh.destination_policies = {
        policy((R"({"loadBalancer": {"algorithm": ")" + std::string(name) + "\"}}").c_str())};
    EXPECT_EQ(reviews_cluster(mesh).load_balancer().algorithm(), algorithm) << name;
  }
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"loadBalancer": {"locality": {"enabled": true}}})")};
  EXPECT_EQ(reviews_cluster(mesh).load_balancer().algorithm(), v1::LoadBalancer::PEAK_EWMA) << "the default";
}

TEST(ClusterTranslation, HashingLocalityAndSlowStart) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"loadBalancer": {"algorithm": "RingHash", "ringPoints": 4096,
    "hash": {"cookie": {"name": "reviews-session", "ttl": "1h"}},
    "locality": {"enabled": true, "minHealthyPercent": 50}}})")};
  v1::LoadBalancer lb = reviews_cluster(mesh).load_balancer();
  EXPECT_EQ(lb.hash_on(), v1::LoadBalancer::COOKIE);
  EXPECT_EQ(lb.hash_name(), "reviews-session");
  EXPECT_TRUE(lb.cookie_ttl_set());
  EXPECT_EQ(lb.cookie_ttl_seconds(), 3600u);
  EXPECT_EQ(lb.ring_points(), 4096u);
  EXPECT_TRUE(lb.locality_enabled());
  EXPECT_EQ(lb.locality_min_healthy_percent(), 50u);

  mesh.destination_policies = {
      policy(R"({"loadBalancer": {"algorithm": "Maglev", "hash": {"cookie": {"name": "s"}},
                                          "locality": {"enabled": true}}})")};
  lb = reviews_cluster(mesh).load_balancer();
  EXPECT_FALSE(lb.cookie_ttl_set()) << "no ttl: the proxy never sets the cookie";
  EXPECT_EQ(lb.locality_min_healthy_percent(), 70u) << "the default";

  mesh.destination_policies = {
      policy(R"({"loadBalancer": {"algorithm": "Maglev", "hash": {"cookie": {"name": "s", "ttl": "0s"}}}})")};
  lb = reviews_cluster(mesh).load_balancer();
  EXPECT_TRUE(lb.cookie_ttl_set());
  EXPECT_EQ(lb.cookie_ttl_seconds(), 0u) << "0s: a session cookie";
  mesh.destination_policies = {policy(
      R"({"loadBalancer": {"algorithm": "Maglev", "hash": {"cookie": {"name": "s", "ttl": "1500ms"}}}})")};
  EXPECT_EQ(reviews_cluster(mesh).load_balancer().cookie_ttl_seconds(), 2u)
      << "rounded up, never to a session cookie";

  mesh.destination_policies = {
      policy(R"({"loadBalancer": {"algorithm": "Maglev", "hash": {"header": "X-User"}}})")};
  lb = reviews_cluster(mesh).load_balancer();
  EXPECT_EQ(lb.hash_on(), v1::LoadBalancer::HEADER);
  EXPECT_EQ(lb.hash_name(), "x-user");
  EXPECT_EQ(lb.ring_points(), 0u);

  mesh.destination_policies = {
      policy(R"({"loadBalancer": {"algorithm": "RingHash", "hash": {"sourceIP": true}}})")};
  EXPECT_EQ(reviews_cluster(mesh).load_balancer().hash_on(), v1::LoadBalancer::SOURCE_IP);

  mesh.destination_policies = {policy(R"({"loadBalancer": {"slowStart": {"window": "30s"}}})")};
  lb = reviews_cluster(mesh).load_balancer();
  EXPECT_EQ(lb.slow_start_window_ms(), 30000u);
  EXPECT_EQ(lb.hash_on(), v1::LoadBalancer::NONE);
  EXPECT_FALSE(lb.locality_enabled());
}

TEST(ClusterTranslation, ConnectionPoolTimeouts) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"connectionPool": {"connectTimeout": "250ms", "idleTimeout": "2m",
                                                              "requestIdleTimeout": "30s", "maxConnections": 10}})")};
  v1::Cluster c = reviews_cluster(mesh);
  EXPECT_EQ(c.connect_timeout_ms(), 250u);
  EXPECT_EQ(c.idle_timeout_ms(), 120000u);
  EXPECT_EQ(c.request_idle_timeout_ms(), 30000u);
  mesh.destination_policies = {policy(R"({"connectionPool": {"maxConnections": 10}})")};
  c = reviews_cluster(mesh);
  EXPECT_EQ(c.connect_timeout_ms(), 1000u);
  EXPECT_EQ(c.request_idle_timeout_ms(), 300000u);
}

TEST(ClusterTranslation, RetriesEveryField) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"retries": {"attempts": 3, "perTryTimeout": "2s",
    "retryOn": ["5xx", "retriable-status-codes"], "retriableStatusCodes": [409, 503],
    "backoff": {"baseInterval": "50ms", "maxInterval": "1s"}, "budget": {"percent": 30, "minRetriesPerSecond": 5},
    "nonIdempotent": true}})")};
  v1::RetryPolicy r = reviews_cluster(mesh).retry();
  EXPECT_EQ(r.attempts(), 3u);
  EXPECT_EQ(r.per_try_timeout_ms(), 2000u);
  EXPECT_EQ(std::vector<std::string>(r.retry_on().begin(), r.retry_on().end()),
            (std::vector<std::string>{"5xx", "retriable-status-codes"}));
  EXPECT_EQ(std::vector<uint32_t>(r.retriable_status_codes().begin(), r.retriable_status_codes().end()),
            (std::vector<uint32_t>{409, 503}));
  EXPECT_EQ(r.backoff_base_ms(), 50u);
  EXPECT_EQ(r.backoff_max_ms(), 1000u);
  EXPECT_TRUE(r.budget_set());
  EXPECT_EQ(r.budget_percent(), 30u);
  EXPECT_EQ(r.budget_min_per_second(), 5u);
  EXPECT_TRUE(r.non_idempotent());
}

TEST(ClusterTranslation, GrpcRetryConditions) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"retries": {"retryOn": ["unavailable", "resource-exhausted"]}})")};
  v1::RetryPolicy r = reviews_cluster(mesh).retry();
  EXPECT_EQ(std::vector<std::string>(r.retry_on().begin(), r.retry_on().end()),
            (std::vector<std::string>{"unavailable", "resource-exhausted"}));
}

TEST(ClusterTranslation, HealthChecks) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"healthCheck": {"grpc": {"service": "reviews.v1.Reviews"},
                                                          "interval": "5s"}})")};
  v1::HealthCheck hc = reviews_cluster(mesh).health_check();
  EXPECT_EQ(hc.kind(), v1::HealthCheck::GRPC);
  EXPECT_EQ(hc.grpc_service(), "reviews.v1.Reviews");
  EXPECT_EQ(hc.interval_ms(), 5000u);
  mesh.destination_policies = {policy(R"({"healthCheck": {"grpc": {}}})")};
  hc = reviews_cluster(mesh).health_check();
  EXPECT_EQ(hc.kind(), v1::HealthCheck::GRPC);
  EXPECT_EQ(hc.grpc_service(), "") << "the server as a whole";
  mesh.destination_policies = {policy(R"({"healthCheck": {"tcp": {}}})")};
  EXPECT_EQ(reviews_cluster(mesh).health_check().kind(), v1::HealthCheck::TCP);
}

TEST(ClusterTranslation, RetriesDefaultsWhenTheSectionIsPresent) {
  MeshView mesh;
  mesh.destination_policies = {policy(R"({"retries": {}})")};
  v1::Cluster c = reviews_cluster(mesh);
  ASSERT_TRUE(c.has_retry());
  const v1::RetryPolicy& r = c.retry();
  EXPECT_EQ(r.attempts(), 2u);
  EXPECT_EQ(r.per_try_timeout_ms(), 0u);
  EXPECT_EQ(std::vector<std::string>(r.retry_on().begin(), r.retry_on().end()),
            (std::vector<std::string>{"connect-failure", "reset"}));
  EXPECT_EQ(r.backoff_base_ms(), 25u);
  EXPECT_EQ(r.backoff_max_ms(), 250u);
  EXPECT_FALSE(r.budget_set()) << "the proxy's default budget applies";
  EXPECT_FALSE(r.non_idempotent());

  mesh.destination_policies = {policy(R"({"retries": {"attempts": 0, "backoff": {"baseInterval": "100ms"},
                                                       "budget": {"minRetriesPerSecond": 1}}})")};
  c = reviews_cluster(mesh);
  EXPECT_EQ(c.retry().attempts(), 0u) << "0 turns retries off";
  EXPECT_EQ(c.retry().backoff_max_ms(), 1000u) << "10 x the base";
  EXPECT_TRUE(c.retry().budget_set());
  EXPECT_EQ(c.retry().budget_percent(), 20u);
  EXPECT_EQ(c.retry().budget_min_per_second(), 1u);
}

}  // namespace
}  // namespace trellis::control
