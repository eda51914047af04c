#include "control/rate_limit_translation.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mesh_test_helpers.h"

namespace trellis::control {
namespace {

using namespace ::trellis::control::testing;  // NOLINT: test helpers

Resource rate_limit_policy(std::string name, const std::string& limits, std::string target_kind = "Service",
                           std::string target = "reviews", std::string ns = "default") {
  std::string spec = R"({"targetRef": {"kind": ")" + target_kind + R"(", "name": ")" + target +
                     R"("}, "limits": )" + limits + "}";
  return resource("RateLimitPolicy", std::move(name), spec.c_str(), 1, std::move(ns));
}

std::vector<v1::RateLimit> limits_of(const MeshView& mesh, const std::string& kind = "Service",
                                     const std::string& name = "reviews") {
  google::protobuf::RepeatedPtrField<v1::RateLimit> out;
  add_rate_limits(mesh, kind, "default", name, out);
  return {out.begin(), out.end()};
}

v1::RateLimit only_limit(const char* limit) {
  MeshView mesh;
  mesh.rate_limit_policies = {rate_limit_policy("p", std::string("[") + limit + "]")};
  std::vector<v1::RateLimit> limits = limits_of(mesh);
  EXPECT_EQ(limits.size(), 1u);
  return limits.empty() ? v1::RateLimit() : limits[0];
}

std::vector<std::string> names(const std::vector<v1::RateLimit>& limits) {
  std::vector<std::string> out;
  for (const v1::RateLimit& l : limits) out.push_back(l.name());
  return out;
}

TEST(RateLimitTranslation, TokenBucketLimitWithEveryCondition) {
  v1::RateLimit l = only_limit(R"({"name": "writes",
      "match": {"path": {"type": "Exact", "value": "/reviews/1"}, "method": "POST",
                "headers": [{"name": "X-Tenant", "value": "free"},
                            {"type": "RegularExpression", "name": "x-ID", "value": "[0-9]+"}]},
      "key": {"header": "X-Api-Key"},
      "tokenBucket": {"requestsPerUnit": 4294967295, "unit": "Minute", "burst": 50}})");
  EXPECT_EQ(l.name(), "writes");
  EXPECT_TRUE(l.has_path());
  EXPECT_EQ(l.path_kind(), v1::Route::EXACT);
  EXPECT_EQ(l.path(), "/reviews/1");
  EXPECT_EQ(l.method(), "POST");
  ASSERT_EQ(l.headers_size(), 2);
  EXPECT_EQ(l.headers(0).name(), "x-tenant") << "header names are compared without case: sent lower case";
  EXPECT_FALSE(l.headers(0).regex());
  EXPECT_EQ(l.headers(0).value(), "free");
  EXPECT_EQ(l.headers(1).name(), "x-id");
  EXPECT_TRUE(l.headers(1).regex());
  EXPECT_EQ(l.headers(1).value(), "[0-9]+");
  EXPECT_EQ(l.key(), v1::RateLimit::HEADER);
  EXPECT_EQ(l.key_header(), "x-api-key");
  ASSERT_TRUE(l.has_token_bucket());
  EXPECT_EQ(l.token_bucket().requests_per_unit(), 4294967295u);
  EXPECT_EQ(l.token_bucket().unit(), v1::TokenBucket::MINUTE);
  EXPECT_EQ(l.token_bucket().burst(), 50u);
}

TEST(RateLimitTranslation, LeakyBucketLimit) {
  v1::RateLimit l = only_limit(R"({"name": "slow", "match": {"path": {"type": "PathPrefix", "value": "/api"}},
      "key": {"source": "Identity"},
      "leakyBucket": {"ratePerSecond": 0.5, "queueSize": 10, "maxDelay": "1m2s500ms"}})");
  EXPECT_TRUE(l.has_path());
  EXPECT_EQ(l.path_kind(), v1::Route::PREFIX);
  EXPECT_EQ(l.path(), "/api");
  EXPECT_EQ(l.key(), v1::RateLimit::IDENTITY);
  EXPECT_EQ(l.key_header(), "");
  ASSERT_TRUE(l.has_leaky_bucket());
  EXPECT_FALSE(l.has_token_bucket());
  EXPECT_DOUBLE_EQ(l.leaky_bucket().rate_per_second(), 0.5);
  EXPECT_EQ(l.leaky_bucket().queue_size(), 10u);
  EXPECT_EQ(l.leaky_bucket().max_delay_ms(), 62500u);
}

TEST(RateLimitTranslation, LeftOutFieldsTakeTheirDefaults) {
  v1::RateLimit every = only_limit(R"({"key": {"source": "Address"},
      "tokenBucket": {"requestsPerUnit": 10, "unit": "Second"}})");
  EXPECT_EQ(every.name(), "") << "a limit without a name";
  EXPECT_FALSE(every.has_path()) << "no match: every request counts";
  EXPECT_EQ(every.method(), "");
  EXPECT_EQ(every.headers_size(), 0);
  EXPECT_EQ(every.key(), v1::RateLimit::ADDRESS);
  EXPECT_EQ(every.token_bucket().unit(), v1::TokenBucket::SECOND);
  EXPECT_EQ(every.token_bucket().burst(), 0u);

  v1::RateLimit default_path =
      only_limit(R"({"match": {"path": {"value": "/v2"}}, "key": {"source": "Address"},
      "tokenBucket": {"requestsPerUnit": 1, "unit": "Hour"}})");
  EXPECT_TRUE(default_path.has_path());
  EXPECT_EQ(default_path.path_kind(), v1::Route::PREFIX) << "a path's type defaults to PathPrefix";
  EXPECT_EQ(default_path.path(), "/v2");
  EXPECT_EQ(default_path.token_bucket().unit(), v1::TokenBucket::HOUR);

  v1::RateLimit default_value =
      only_limit(R"({"match": {"path": {"type": "Exact"}}, "key": {"source": "Address"},
      "tokenBucket": {"requestsPerUnit": 1, "unit": "Second"}})");
  EXPECT_EQ(default_value.path_kind(), v1::Route::EXACT);
  EXPECT_EQ(default_value.path(), "/") << "a path's value defaults to /";

  v1::RateLimit no_queue =
      only_limit(R"({"key": {"source": "Address"}, "leakyBucket": {"ratePerSecond": 3}})");
  EXPECT_EQ(no_queue.leaky_bucket().queue_size(), 0u) << "refuse at once what exceeds the rate";
  EXPECT_EQ(no_queue.leaky_bucket().max_delay_ms(), 0u);

  v1::RateLimit drain = only_limit(R"({"key": {"source": "Address"},
      "leakyBucket": {"ratePerSecond": 4, "queueSize": 8}})");
  EXPECT_EQ(drain.leaky_bucket().queue_size(), 8u);
  EXPECT_EQ(drain.leaky_bucket().max_delay_ms(), 0u) << "0: the time to drain a full queue (here 2 s)";
}

// A policy's limits, one per name, in that order.
std::string limits_named(const std::vector<std::string>& limit_names) {
  Json limits = Json::array();
  for (const std::string& n : limit_names) {
    limits.push_back(
        {{"name", n}, {"key", {{"source", "Address"}}}, {"leakyBucket", {{"ratePerSecond", 1}}}});
  }
  return limits.dump();
}

TEST(RateLimitTranslation, AllPoliciesOnTheTargetApplyOrderedByNameThenLimit) {
  MeshView mesh;
  mesh.rate_limit_policies = {
      rate_limit_policy("zeta", limits_named({"z2", "z1"})),
      rate_limit_policy("alpha", limits_named({"a2", "a1"})),
      rate_limit_policy("mid", limits_named({"m"})),
      rate_limit_policy("other-namespace", limits_named({"x"}), "Service", "reviews", "prod"),
      rate_limit_policy("other-service", limits_named({"x"}), "Service", "ratings"),
      rate_limit_policy("route-of-that-name", limits_named({"route"}), "HTTPRoute", "reviews"),
  };
  EXPECT_EQ(names(limits_of(mesh)), (std::vector<std::string>{"a2", "a1", "m", "z2", "z1"}));
  EXPECT_EQ(names(limits_of(mesh, "HTTPRoute", "reviews")), std::vector<std::string>{"route"})
      << "a Service and an HTTPRoute of the same name are different targets";
  EXPECT_TRUE(limits_of(mesh, "Service", "details").empty()) << "no policy: no limits";
}

}  // namespace
}  // namespace trellis::control
