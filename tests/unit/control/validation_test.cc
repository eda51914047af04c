#include "control/validation.h"

#include <gtest/gtest.h>

#include "common/log_format.h"

#include "resource_test_helpers.h"

#include <functional>
#include <string>
#include <vector>

namespace trellis::control {
namespace {

// ---- helpers ----

using namespace ::trellis::control::testing;  // NOLINT: test helpers

::testing::AssertionResult IsValid(const char* doc_text, const Json& doc) {
  std::vector<std::string> lines = error_lines(doc);
  if (lines.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << doc_text << " has errors:\n" << joined(lines);
}

#define EXPECT_VALID(doc) EXPECT_PRED_FORMAT1(IsValid, doc)

Json document(const char* api_version, const char* kind, const char* spec) {
  Json doc = {{"apiVersion", api_version},
              {"kind", kind},
              {"metadata", {{"name", "reviews"}, {"namespace", "bookinfo"}}},
              {"spec", Json::parse(spec)}};
  return doc;
}

// A 90/10 canary between two Services.
Json route() {
  return document("gateway.networking.k8s.io/v1", "HTTPRoute", R"({
    "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
    "hostnames": ["reviews.bookinfo.svc.cluster.local", "*.example.com"],
    "rules": [{
      "matches": [{"path": {"type": "PathPrefix", "value": "/reviews"}}],
      "backendRefs": [{"name": "reviews-v1", "port": 9080, "weight": 90},
                      {"name": "reviews-v2", "port": 9080, "weight": 10}],
      "timeouts": {"request": "10s", "backendRequest": "3s"}
    }]
  })");
}

// Calls of shop.v1.Cart/Get to a canary for the callers that ask for it.
Json grpc_route() {
  return document("gateway.networking.k8s.io/v1", "GRPCRoute", R"({
    "parentRefs": [{"group": "", "kind": "Service", "name": "cart", "port": 9090}],
    "rules": [{
      "matches": [{"method": {"service": "shop.v1.Cart", "method": "Get"},
                   "headers": [{"name": "x-canary", "value": "1"}]},
                  {"method": {"type": "RegularExpression", "service": "shop\\.v[0-9]+\\.Cart"}}],
      "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]}}],
      "backendRefs": [{"name": "cart-v2", "port": 9090}]
    }]
  })");
}

Json route_with_filters(const char* filters) {
  return with(route(), "/spec/rules/0/filters", Json::parse(filters));
}

Json destination_policy() {
  return document("trellis.dev/v1alpha1", "DestinationPolicy", R"({
    "targetRef": {"kind": "Service", "name": "reviews"},
    "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}}],
    "loadBalancer": {"algorithm": "RingHash", "hash": {"header": "x-user"}, "ringPoints": 4096,
                     "locality": {"enabled": true, "minHealthyPercent": 70}},
    "connectionPool": {"maxConnections": 100, "maxPendingRequests": 50, "maxRequests": 200,
                       "maxRetries": 3, "connectTimeout": "1s", "idleTimeout": "60s"},
    "outlierDetection": {"consecutive5xx": 5, "consecutiveGatewayErrors": 3,
                         "successRate": {"minimumHosts": 5, "requestVolume": 100, "stdevFactor": 1.9},
                         "interval": "10s", "baseEjectionTime": "30s",
                         "maxEjectionPercent": 10, "panicThresholdPercent": 50},
    "retries": {"attempts": 2, "perTryTimeout": "2s",
                "retryOn": ["connect-failure", "reset", "retriable-status-codes"],
                "retriableStatusCodes": [503],
                "backoff": {"baseInterval": "25ms", "maxInterval": "250ms"},
                "budget": {"percent": 20, "minRetriesPerSecond": 10}},
    "healthCheck": {"http": {"path": "/healthz", "expectedStatuses": [200, "300-399"]},
                    "interval": "5s", "timeout": "1s", "healthyThreshold": 2,
                    "unhealthyThreshold": 3, "jitterPercent": 10}
  })");
}

Json rate_limit_policy() {
  return document("trellis.dev/v1alpha1", "RateLimitPolicy", R"({
    "targetRef": {"kind": "Service", "name": "reviews"},
    "limits": [
      {"name": "per-client", "key": {"source": "Address"},
       "tokenBucket": {"requestsPerUnit": 100, "unit": "Second", "burst": 50}},
      {"name": "writes",
       "match": {"path": {"type": "PathPrefix", "value": "/reviews"}, "method": "POST",
                 "headers": [{"name": "x-tenant", "value": "free"}]},
       "key": {"header": "x-api-key"},
       "leakyBucket": {"ratePerSecond": 0.5, "queueSize": 10, "maxDelay": "2s"}}
    ]
  })");
}

Json authorization_policy() {
  return document("trellis.dev/v1alpha1", "AuthorizationPolicy", R"({
    "targetRef": {"kind": "Service", "name": "reviews"},
    "action": "ALLOW",
    "rules": [
      {"from": [{"identities": ["spiffe://cluster.local/ns/bookinfo/sa/productpage",
                                "spiffe://cluster.local/ns/ops/*"]}],
       "to": [{"methods": ["GET", "HEAD"], "paths": ["/reviews/*", "/health"]}]},
      {"from": [{"namespaces": ["ops"], "ipBlocks": ["10.20.0.0/16", "fd00:20::/64", "192.168.1.7"]}],
       "to": [{"ports": [9080]}]}
    ]
  })");
}

Json mesh_config() {
  Json doc = document("trellis.dev/v1alpha1", "MeshConfig", R"({
    "mtls": {"mode": "PERMISSIVE"},
    "trustDomain": "cluster.local",
    "defaults": {"requestTimeout": "15s", "idleTimeout": "5m"},
    "accessLog": {"enabled": true},
    "tracing": {"collector": "10.0.0.20:4318", "samplingPercent": 0.5}
  })");
  doc["metadata"] = {{"name", "default"}};
  return doc;
}

Json fault_injection() {
  return document("trellis.dev/v1alpha1", "FaultInjection", R"({
    "abort": {"httpStatus": 503, "percent": 10},
    "delay": {"fixedDelay": "2s", "percent": 0.5}
  })");
}

// ---- durations and names ----

TEST(ParseDuration, AcceptsTheGatewayApiFormat) {
  EXPECT_EQ(parse_duration_ms("10s"), 10000);
  EXPECT_EQ(parse_duration_ms("500ms"), 500);
  EXPECT_EQ(parse_duration_ms("0s"), 0);
  EXPECT_EQ(parse_duration_ms("1h2m"), 3720000);
  EXPECT_EQ(parse_duration_ms("1h2m3s4ms"), 3723004);
  EXPECT_EQ(parse_duration_ms("99999h"), int64_t{99999} * 3600 * 1000);
  EXPECT_EQ(parse_duration_ms("1m1m"), 120000) << "repeated units add up, as the pattern allows";
}

TEST(ParseDuration, RejectsEverythingElse) {
  for (const char* text : {"", "10", "1.5s", "1d", "123456s", "1h2m3s4ms5ms", "s", "-1s", " 1s", "1s ", "1S",
                           "10 s", "1us", "ms"}) {
    EXPECT_EQ(parse_duration_ms(text), std::nullopt) << text;
  }
}

TEST(DnsNames, LabelsAndSubdomains) {
  EXPECT_TRUE(is_dns1123_label("reviews-v1"));
  EXPECT_TRUE(is_dns1123_label("a"));
  EXPECT_TRUE(is_dns1123_label(std::string(63, 'a')));
  for (const char* bad : {"", "-a", "a-", "A", "a.b", "a_b"}) EXPECT_FALSE(is_dns1123_label(bad)) << bad;
  EXPECT_FALSE(is_dns1123_label(std::string(64, 'a')));
  EXPECT_TRUE(is_dns1123_subdomain("reviews.bookinfo.svc"));
  for (const char* bad : {"", ".a", "a.", "a..b", "a.-b", "A.b"}) {
    EXPECT_FALSE(is_dns1123_subdomain(bad)) << bad;
  }
  EXPECT_FALSE(is_dns1123_subdomain(std::string(254, 'a')));
}

// ---- every kind: a complete valid example ----

Json reference_grant() {
  return document("gateway.networking.k8s.io/v1", "ReferenceGrant", R"({
    "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"},
             {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute", "namespace": "shop"}],
    "to": [{"group": "", "kind": "Service", "name": "reviews"}, {"group": "", "kind": "Service"}]})");
}

TEST(Validation, ValidExampleOfEveryKindPasses) {
  EXPECT_VALID(route());
  EXPECT_VALID(grpc_route());
  EXPECT_VALID(destination_policy());
  EXPECT_VALID(rate_limit_policy());
  EXPECT_VALID(authorization_policy());
  EXPECT_VALID(mesh_config());
  EXPECT_VALID(fault_injection());
  EXPECT_VALID(reference_grant());
}

TEST(Validation, GrpcRouteMatchesAndWhatItHasNot) {
  const std::string kMatch = "spec.rules[0].matches[0].method";
  EXPECT_ONLY_ERROR(with(grpc_route(), "/spec/rules/0/matches/0/method", Json::object()), kMatch,
                    "set service, method or both");
  EXPECT_ONLY_ERROR(with(grpc_route(), "/spec/rules/0/matches/0/method/service", "shop/Cart"),
                    kMatch + ".service", "\"shop/Cart\" is not a gRPC service name such as \"shop.v1.Cart\"");
  EXPECT_ONLY_ERROR(with(grpc_route(), "/spec/rules/0/matches/0/method/service", "shop..Cart"),
                    kMatch + ".service",
                    "\"shop..Cart\" is not a gRPC service name such as \"shop.v1.Cart\"");
  EXPECT_ONLY_ERROR(with(grpc_route(), "/spec/rules/0/matches/0/method/method", "1Get"), kMatch + ".method",
                    "\"1Get\" is not a gRPC method name such as \"Get\"");
  EXPECT_ONLY_ERROR(with(grpc_route(), "/spec/rules/0/matches/1/method/service", "shop(.Cart"),
                    "spec.rules[0].matches[1].method.service",
                    "invalid regular expression: missing ): shop(.Cart");
  EXPECT_ONLY_ERROR(with(grpc_route(), "/spec/rules/0/matches/0/path", {{"value", "/x"}}),
                    "spec.rules[0].matches[0].path", "unknown field \"path\"");
  // No redirects, rewrites or timeouts in a GRPCRoute: refused, never ignored.
  EXPECT_ONLY_ERROR(with(grpc_route(), "/spec/rules/0/timeouts", {{"request", "1s"}}),
                    "spec.rules[0].timeouts", "unknown field \"timeouts\"");
  EXPECT_FALSE(error_lines(with(grpc_route(), "/spec/rules/0/filters/0",
                                Json::parse(R"({"type": "URLRewrite", "urlRewrite": {"hostname": "a"}})")))
                   .empty());
  EXPECT_FALSE(error_lines(with(grpc_route(), "/spec/rules/0/backendRefs/0/filters/0",
                                Json::parse(R"({"type": "URLRewrite", "urlRewrite": {"hostname": "a"}})")))
                   .empty());
  EXPECT_ONLY_ERROR(
      with(grpc_route(), "/spec/parentRefs/0/kind", "Gateway"), "spec.parentRefs[0].kind",
      "\"Gateway\" is not supported: in the mesh a GRPCRoute attaches to a Service (kind Service, group "
      "\"\")");
  // A backend's own mirrors and header changes.
  EXPECT_VALID(with(grpc_route(), "/spec/rules/0/backendRefs/0/filters", Json::parse(R"([
    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "cart-shadow", "port": 9090}}},
    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-b", "value": "2"}]}}])")));
}

TEST(Validation, ValidateSpecReportsPathsFromTheDocumentRoot) {
  std::vector<FieldError> errors = validate_spec(
      "HTTPRoute",
      Json::parse(R"({"parentRefs": [{"group": "", "kind": "Service", "name": "a", "port": 0}]})"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "spec.parentRefs[0].port");
  EXPECT_EQ(errors[0].message, "must be between 1 and 65535");
  errors = validate_spec("Gateway", Json::object());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].to_string(), "kind: unknown kind \"Gateway\"");
}

// The validators read only after checking types: any value anywhere gives
// errors, never an exception.
TEST(Validation, AnyValueInAnyPlaceIsReportedNotThrown) {
  const std::vector<Json> replacements = {nullptr,
                                          true,
                                          -1,
                                          4294967296LL * 4294967,
                                          1.5,
                                          "",
                                          "x",
                                          Json::array(),
                                          Json::array({1}),
                                          Json::object(),
                                          Json::parse(R"({"a":1})")};
  for (const Json& doc :
       {route(), destination_policy(), rate_limit_policy(), authorization_policy(), mesh_config(),
        fault_injection(), reference_grant(), route_with_filters(R"([{"type": "ExtensionRef", "extensionRef":
            {"group": "trellis.dev", "kind": "FaultInjection", "name": "reviews-faults"}}])")}) {
    Json flat = doc.flatten();
    for (const auto& [pointer, unused] : flat.items()) {
      Json::json_pointer p(pointer);
      // Replace the leaf and each of its parents in turn.
      for (Json::json_pointer at = p; !at.empty(); at = at.parent_pointer()) {
        for (const Json& value : replacements) {
          Json mutated = doc;
          mutated[at] = value;
          EXPECT_NO_THROW((void)parse_resource(mutated)) << at.to_string() << " = " << value.dump();
        }
      }
    }
  }
}

// ---- HTTPRoute ----

TEST(HttpRoute, MinimalRouteAndSubsetBackendsPass) {
  EXPECT_VALID(document("gateway.networking.k8s.io/v1", "HTTPRoute",
                        R"({"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}]})"));
  EXPECT_VALID(with(route(), "/spec/rules/0/backendRefs", Json::parse(R"([
    {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v1", "port": 9080, "weight": 90},
    {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v2", "port": 9080, "weight": 10,
     "namespace": "bookinfo"}])")));
}

TEST(HttpRoute, ParentRefs) {
  EXPECT_ONLY_ERROR(without(route(), "/spec/parentRefs"), "spec.parentRefs", "required field is missing");
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs", Json::array()), "spec.parentRefs",
                    "must have at least 1 item");
  // The Gateway API's defaults: without kind and group, a parent is a Gateway.
  const char* no_gateways =
      ", and Trellis runs no Gateways: in the mesh an HTTPRoute attaches to a Service; write kind: "
      "Service and group: \"\"";
  EXPECT_ONLY_ERROR(
      without(without(route(), "/spec/parentRefs/0/kind"), "/spec/parentRefs/0/group"),
      "spec.parentRefs[0].kind",
      std::string("a parentRef without kind names a Gateway (the Gateway API's default)") + no_gateways);
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs/0/kind", "Gateway"), "spec.parentRefs[0].kind",
                    "\"Gateway\" is not supported: in the mesh an HTTPRoute attaches to a Service (kind "
                    "Service, group \"\")");
  EXPECT_ONLY_ERROR(without(with(route(), "/spec/parentRefs/0/kind", "Gateway"), "/spec/parentRefs/0/group"),
                    "spec.parentRefs[0].kind", std::string("kind Gateway") + no_gateways);
  EXPECT_ONLY_ERROR(without(route(), "/spec/parentRefs/0/group"), "spec.parentRefs[0].group",
                    "required for kind Service: must be \"\" (the core group); left out, it is "
                    "\"gateway.networking.k8s.io\", where no Service is");
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs/0/group", "gateway.networking.k8s.io"),
                    "spec.parentRefs[0].group", "must be \"\" for kind Service (the core group)");
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs/0/kind", "service"), "spec.parentRefs[0].kind",
                    "\"service\" is not supported: in the mesh an HTTPRoute attaches to a Service (kind "
                    "Service, group \"\") (did you mean \"Service\"?)");
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs/0/port", 65536), "spec.parentRefs[0].port",
                    "must be between 1 and 65535");
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs/0/sectionName", "HTTP"), "spec.parentRefs[0].sectionName",
                    "\"HTTP\" is not a valid DNS label: use lower-case letters, digits and '-', "
                    "starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs/0/name", "reviews.bookinfo"), "spec.parentRefs[0].name",
                    "\"reviews.bookinfo\" is not a valid DNS label: use lower-case letters, digits "
                    "and '-', starting and ending with a letter or digit");
}

TEST(HttpRoute, TheSameParentTwiceNeedsDistinctPorts) {
  EXPECT_VALID(with(route(), "/spec/parentRefs", Json::parse(R"([
    {"group": "", "kind": "Service", "name": "reviews", "port": 9080}, {"group": "", "kind": "Service", "name": "reviews", "port": 9443}])")));
  EXPECT_VALID(with(route(), "/spec/parentRefs", Json::parse(R"([
    {"group": "", "kind": "Service", "name": "reviews"}, {"group": "", "kind": "Service", "name": "reviews", "namespace": "other"}])")));
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs", Json::parse(R"([
    {"group": "", "kind": "Service", "name": "reviews"}, {"group": "", "kind": "Service", "name": "reviews", "port": 9080}])")),
                    "spec.parentRefs[0]",
                    "this Service is referenced more than once: each reference to it must set port "
                    "or sectionName");
  EXPECT_ONLY_ERROR(with(route(), "/spec/parentRefs", Json::parse(R"([
    {"group": "", "kind": "Service", "name": "reviews", "port": 9080}, {"group": "", "kind": "Service", "name": "reviews", "port": 9080}])")),
                    "spec.parentRefs[1]", "duplicate reference to the same Service with port 9080");
}

TEST(HttpRoute, Hostnames) {
  const std::string kLabels =
      " is not a valid host name: use lower-case letters, digits and '-', in '.'-separated labels "
      "of at most 63 characters that start and end with a letter or digit";
  EXPECT_ONLY_ERROR(with(route(), "/spec/hostnames/0", "Reviews.local"), "spec.hostnames[0]",
                    "\"Reviews.local\"" + kLabels);
  EXPECT_ONLY_ERROR(with(route(), "/spec/hostnames/0", "10.0.0.1"), "spec.hostnames[0]",
                    "\"10.0.0.1\" must be a host name, not an IP address");
  EXPECT_ONLY_ERROR(with(route(), "/spec/hostnames/0", "reviews:9080"), "spec.hostnames[0]",
                    "\"reviews:9080\" must be a host name without a port, not an IP address");
  EXPECT_ONLY_ERROR(with(route(), "/spec/hostnames/0", "api.*.com"), "spec.hostnames[0]",
                    "\"api.*.com\": '*' is only allowed as the whole first label, as in \"*.example.com\"");
  EXPECT_ONLY_ERROR(with(route(), "/spec/hostnames/0", "*"), "spec.hostnames[0]",
                    "\"*\": '*' is only allowed as the whole first label, as in \"*.example.com\"");
  EXPECT_ONLY_ERROR(with(route(), "/spec/hostnames/0", 7), "spec.hostnames[0]",
                    "expected a string, got an integer");
  Json many = Json::array();
  for (int i = 0; i < 17; ++i) many.push_back("h" + std::to_string(i) + ".example.com");
  EXPECT_ONLY_ERROR(with(route(), "/spec/hostnames", many), "spec.hostnames",
                    "must have at most 16 items, has 17");
}

TEST(HttpRoute, ListLimits) {
  Json rules = Json::array();
  for (int i = 0; i < 17; ++i) rules.push_back(Json::object());
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules", rules), "spec.rules", "must have at most 16 items, has 17");
  // 64 matches a rule, 128 in all, as the Gateway API's schema bounds them.
  Json matches = Json::array();
  for (int i = 0; i < 64; ++i) matches.push_back({{"path", {{"value", "/m" + std::to_string(i)}}}});
  EXPECT_VALID(with(route(), "/spec/rules/0/matches", matches));
  Json two = with(route(), "/spec/rules/0/matches", matches);
  two["spec"]["rules"].push_back(two["spec"]["rules"][0]);
  EXPECT_VALID(two);
  Json three = two;
  three["spec"]["rules"].push_back(route()["spec"]["rules"][0]);
  EXPECT_ONLY_ERROR(three, "spec.rules", "has 129 matches in all: at most 128 over all rules");
  matches.push_back({{"method", "GET"}});
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches", matches), "spec.rules[0].matches",
                    "must have at most 64 items, has 65");
}

TEST(HttpRoute, CorsFilter) {
  Json cors = route_with_filters(R"([{"type": "CORS", "cors": {
    "allowOrigins": ["https://www.example.com", "http://*.example.org:8080"], "allowCredentials": true,
    "allowMethods": ["GET", "PUT"], "allowHeaders": ["x-user"], "exposeHeaders": ["x-total"], "maxAge": 600}}])");
  EXPECT_VALID(cors);
  EXPECT_VALID(route_with_filters(R"([{"type": "CORS", "cors": {"allowOrigins": ["*"], "allowMethods": ["*"],
    "allowHeaders": ["*"], "exposeHeaders": ["*"]}}])"));
  const std::string kCors = "spec.rules[0].filters[0].cors";
  EXPECT_ONLY_ERROR(
      with(cors, "/spec/rules/0/filters/0/cors/allowOrigins/0", "www.example.com"),
      kCors + ".allowOrigins[0]",
      "\"www.example.com\" is not an origin: write \"*\" or scheme://host[:port] with scheme http or "
      "https, e.g. \"https://*.example.com\" (no path)");
  EXPECT_FALSE(
      error_lines(with(cors, "/spec/rules/0/filters/0/cors/allowOrigins/0", "https://a.example/path"))
          .empty());
  EXPECT_FALSE(
      error_lines(with(cors, "/spec/rules/0/filters/0/cors/allowOrigins/0", "ftp://a.example")).empty());
  EXPECT_FALSE(
      error_lines(with(cors, "/spec/rules/0/filters/0/cors/allowOrigins/0", "https://a.*.example")).empty());
  EXPECT_ONLY_ERROR(with(cors, "/spec/rules/0/filters/0/cors/allowOrigins/1", "*"),
                    kCors + ".allowOrigins[1]", "\"*\" allows everything: it must be alone in allowOrigins");
  EXPECT_ONLY_ERROR(
      with(cors, "/spec/rules/0/filters/0/cors/allowMethods/1", "get"), kCors + ".allowMethods[1]",
      "\"get\" is not one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH, or \"*\"");
  EXPECT_ONLY_ERROR(with(cors, "/spec/rules/0/filters/0/cors/allowMethods/1", "GET"),
                    kCors + ".allowMethods[1]", "\"GET\" is listed twice");
  EXPECT_ONLY_ERROR(with(cors, "/spec/rules/0/filters/0/cors/maxAge", 0), kCors + ".maxAge",
                    "must be between 1 and 86400");
  EXPECT_ONLY_ERROR(
      with(cors, "/spec/rules/0/filters/0/cors/exposeHeaders", Json::array({"*"})), kCors + ".exposeHeaders",
      "\"*\" cannot be used with allowCredentials: browsers then take it as a header's name; list the "
      "headers");
  EXPECT_ONLY_ERROR(with(cors, "/spec/rules/0/filters/0/cors/allowOrigin", Json::array()),
                    kCors + ".allowOrigin", "unknown field \"allowOrigin\" (did you mean \"allowOrigins\"?)");
  // Not on a backend, not in a GRPCRoute.
  EXPECT_FALSE(error_lines(with(route(), "/spec/rules/0/backendRefs/0/filters",
                                Json::parse(R"([{"type": "CORS", "cors": {}}])")))
                   .empty());
  EXPECT_FALSE(error_lines(with(grpc_route(), "/spec/rules/0/filters/0",
                                Json::parse(R"({"type": "CORS", "cors": {}})")))
                   .empty());
}

TEST(HttpRoute, TheMeshsOwnHeaderIsNotForFilters) {
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"type": "RequestHeaderModifier",
      "requestHeaderModifier": {"set": [{"name": "X-Trellis-Port", "value": "1"}]}}])"),
                    "spec.rules[0].filters[0].requestHeaderModifier.set[0].name",
                    "\"X-Trellis-Port\" is the mesh's own header (the Service port of a request)");
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"type": "RequestHeaderModifier",
      "requestHeaderModifier": {"remove": ["x-trellis-port"]}}])"),
                    "spec.rules[0].filters[0].requestHeaderModifier.remove[0]",
                    "\"x-trellis-port\" is the mesh's own header (the Service port of a request)");
}

TEST(HttpRoute, RuleNames) {
  EXPECT_VALID(with(route(), "/spec/rules/0/name", "canary"));
  EXPECT_VALID(with(grpc_route(), "/spec/rules/0/name", "cart.v2"));
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/name", "Canary"), "spec.rules[0].name",
                    "\"Canary\" is not a valid name: use lower-case letters, digits, '-' and '.', "
                    "each '.'-separated part starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/name", 7), "spec.rules[0].name", "expected a string");
  Json twice = with(route(), "/spec/rules/0/name", "canary");
  twice["spec"]["rules"].push_back(twice["spec"]["rules"][0]);
  twice["spec"]["rules"][1]["matches"][0]["path"]["value"] = "/other";
  EXPECT_ONLY_ERROR(twice, "spec.rules[1].name", "rule name \"canary\" is already used by spec.rules[0]");
}

TEST(HttpRoute, PathMatches) {
  const std::string kValue = "spec.rules[0].matches[0].path.value";
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/type", "Prefix"),
                    "spec.rules[0].matches[0].path.type",
                    "\"Prefix\" is not one of Exact, PathPrefix or RegularExpression (did you mean "
                    "\"PathPrefix\"?)");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/value", "reviews"), kValue,
                    "must start with \"/\"");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/value", "/a//b"), kValue,
                    "must not contain \"//\"");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/value", "/a/../b"), kValue,
                    "must not contain the dot segments \"/./\" or \"/../\"");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/value", "/a/."), kValue,
                    "must not contain the dot segments \"/./\" or \"/../\"");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/value", "/a%2Fb"), kValue,
                    "must not contain an encoded \"/\" (%2F)");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/value", "/a#b"), kValue,
                    "must not contain \"#\"");
  EXPECT_ONLY_ERROR(
      with(route(), "/spec/rules/0/matches/0/path/value", "/a b"), kValue,
      "contains \" \", which is not allowed in a URL path (percent-encode it, e.g. \" \" as %20)");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/matches/0/path/value", "/a%zz"), kValue,
                    "has a '%' that does not start an escape like %20");
  EXPECT_VALID(with(route(), "/spec/rules/0/matches/0/path/value", "/a%20b/c;v=1/~x"));
  EXPECT_VALID(with(route(), "/spec/rules/0/matches/0/path", Json::object()));
}

TEST(HttpRoute, RegularExpressionsMustSuitALinearTimeEngine) {
  auto regex_route = [](const char* pattern) {
    return with(route(), "/spec/rules/0/matches/0/path", {{"type", "RegularExpression"}, {"value", pattern}});
  };
  const std::string kValue = "spec.rules[0].matches[0].path.value";
  const std::string kLinear = " (the data plane matches regular expressions in linear time, RE2 syntax)";
  EXPECT_VALID(regex_route("/reviews/[0-9]+(/.*)?"));
  EXPECT_VALID(regex_route("(?i)/Reviews/\\d{1,1000}"));
  EXPECT_VALID(regex_route("/(?P<id>[a-z]+)/(?:x|y)\\z"));
  EXPECT_VALID(regex_route("/a{2}{"));  // a brace that starts no repetition is a literal
  EXPECT_ONLY_ERROR(regex_route("/(a)\\1"), kValue, "backreferences (\\1) are not supported" + kLinear);
  EXPECT_ONLY_ERROR(regex_route("/(?=a)"), kValue,
                    "lookahead ((?=...) and (?!...)) is not supported" + kLinear);
  EXPECT_ONLY_ERROR(regex_route("/(?<!a)b"), kValue,
                    "lookbehind ((?<=...) and (?<!...)) is not supported" + kLinear);
  EXPECT_ONLY_ERROR(regex_route("/a{1001}"), kValue,
                    "repetition counts may be at most 1000, also when nested repetitions multiply ({1001})");
  EXPECT_ONLY_ERROR(regex_route("/(a{100}){20}"), kValue,
                    "repetition counts may be at most 1000, also when nested repetitions multiply ({20})");
  // Other reasons are RE2's own.
  EXPECT_ONLY_ERROR(regex_route("/(a"), kValue, "invalid regular expression: missing ): /(a");
  EXPECT_ONLY_ERROR(regex_route("/a)"), kValue, "invalid regular expression: unexpected ): /a)");
  EXPECT_ONLY_ERROR(regex_route("/[a"), kValue, "invalid regular expression: missing ]: [a");
  EXPECT_ONLY_ERROR(regex_route("*a"), kValue,
                    "invalid regular expression: no argument for repetition operator: *");
  EXPECT_ONLY_ERROR(regex_route("/[z-a]"), kValue,
                    "invalid regular expression: invalid character class range: z-a");
  EXPECT_ONLY_ERROR(regex_route("/[[:letters:]]"), kValue,
                    "invalid regular expression: invalid character class range: [:letters:]");
  EXPECT_ONLY_ERROR(regex_route("/a**"), kValue, "invalid regular expression: bad repetition operator: **");
  EXPECT_ONLY_ERROR(regex_route("/\\q"), kValue, "invalid regular expression: invalid escape sequence: \\q");
  EXPECT_ONLY_ERROR(regex_route("/(?P=id)"), kValue,
                    "backreferences ((?P=name)) are not supported" + kLinear);
  EXPECT_ONLY_ERROR(regex_route("/(?x)a"), kValue, "invalid regular expression: invalid perl operator: (?x");
  EXPECT_ONLY_ERROR(regex_route((std::string(101, '(') + std::string(101, ')')).c_str()), kValue,
                    "invalid regular expression: groups nested more than 100 deep");
  EXPECT_ONLY_ERROR(regex_route("/\\x4"), kValue,
                    "invalid regular expression: invalid escape sequence: \\x4");
  EXPECT_VALID(regex_route((std::string(100, '(') + std::string(100, ')')).c_str()));
  EXPECT_VALID(regex_route("/[(](\\()\\Q((\\E"));  // escaped and bracketed parentheses do not nest
  // RE2's own syntax, all of it.
  for (const char* good : {"/a*?b+?", "^*/x", "/\\Q(*)\\E", "/\\pL\\p{Greek}[\\pN_]", "/[[:word:][:^ascii:]]",
                           "/\\x{1F600}[\\x00-\\x{10FFFF}]", "/(?i:ab)(?s).\\C", "/[]a]", "/\\012"}) {
    EXPECT_VALID(regex_route(good)) << good;
  }
  EXPECT_ONLY_ERROR(regex_route("/a{3,2}"), kValue,
                    "invalid regular expression: {3,2} has its minimum above its maximum");
  EXPECT_ONLY_ERROR(regex_route("/(|*)"), kValue,
                    "invalid regular expression: no argument for repetition operator: *");
  EXPECT_VALID(regex_route(("/" + std::string(1000, 'a')).c_str()));
  EXPECT_ONLY_ERROR(regex_route(("/" + std::string(1024, 'a')).c_str()), kValue,
                    "must be at most 1024 characters, has 1025");
  EXPECT_VALID(regex_route("/[а-я]+/[\\x{400}-\\x{4FF}]"));
  EXPECT_ONLY_ERROR(regex_route("/[я-а]"), kValue,
                    "invalid regular expression: invalid character class range: я-а");
  // Size once repetitions are expanded, as RE2 compiles it.
  EXPECT_VALID(regex_route("/[a-z]{1000}"));
  EXPECT_ONLY_ERROR(regex_route("(abcdefghijk){1000}"), kValue,
                    "invalid regular expression: too large once its repetitions are expanded (13004 "
                    "steps, at most 10000)");
  EXPECT_ONLY_ERROR(regex_route("/\\pL{10}"), kValue,
                    "invalid regular expression: too large once its repetitions are expanded (11935 "
                    "steps, at most 10000)");
  EXPECT_ONLY_ERROR(regex_route("/\xff"), kValue, "must be valid UTF-8");
  // Header values may be longer, and a pattern with thousands of terms is fine.
  std::string many_terms;
  for (int i = 0; i < 500; ++i) many_terms += "a*[b-c]";
  EXPECT_VALID(with(route(), "/spec/rules/0/matches/0/headers",
                    {{{"type", "RegularExpression"}, {"name", "x-a"}, {"value", many_terms}}}));
  EXPECT_VALID(with(route(), "/spec/rules/0/matches/0/headers",
                    {{{"type", "RegularExpression"}, {"name", "x-a"}, {"value", std::string(4000, 'a')}}}));
}

TEST(HttpRoute, HeaderQueryAndMethodMatches) {
  Json r = with(route(), "/spec/rules/0/matches/0/headers", Json::parse(R"([
    {"name": "x-user", "value": "alice"},
    {"type": "RegularExpression", "name": "x-id", "value": "[0-9]+"}])"));
  r = with(r, "/spec/rules/0/matches/0/queryParams", Json::parse(R"([{"name": "debug", "value": "1"}])"));
  r = with(r, "/spec/rules/0/matches/0/method", "PATCH");
  EXPECT_VALID(r);
  const std::string kHeaders = "spec.rules[0].matches[0].headers";
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/headers/1/name", "X-User"), kHeaders + "[1].name",
                    "header \"X-User\" is already matched in this list");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/headers/0/name", "x user"), kHeaders + "[0].name",
                    "\"x user\" is not a valid header name: use letters, digits and any of "
                    "!#$%&'*+-.^_`|~");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/headers/0/name", ":authority"), kHeaders + "[0].name",
                    "\":authority\" is not a valid header name: use letters, digits and any of "
                    "!#$%&'*+-.^_`|~");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/headers/1/value", "(x"), kHeaders + "[1].value",
                    "invalid regular expression: missing ): (x");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/headers/0/type", "Prefix"), kHeaders + "[0].type",
                    "\"Prefix\" is not one of Exact or RegularExpression");
  EXPECT_ONLY_ERROR(without(r, "/spec/rules/0/matches/0/headers/0/value"), kHeaders + "[0].value",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/headers/0/value", ""), kHeaders + "[0].value",
                    "must be 1 to 4096 characters");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/queryParams/1", {{"name", "debug"}, {"value", "2"}}),
                    "spec.rules[0].matches[0].queryParams[1].name",
                    "query parameter \"debug\" is already matched in this list");
  EXPECT_ONLY_ERROR(without(r, "/spec/rules/0/matches/0/queryParams/0/name"),
                    "spec.rules[0].matches[0].queryParams[0].name", "required field is missing");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/matches/0/method", "get"), "spec.rules[0].matches[0].method",
                    "\"get\" is not one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or "
                    "PATCH (did you mean \"GET\"?)");
}

TEST(HttpRoute, FilterTypeAndItsConfigGoTogether) {
  const std::string kFilter = "spec.rules[0].filters[0]";
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"requestHeaderModifier": {}}])"), kFilter + ".type",
                    "required field is missing");
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"type": "RequestHeaderModifier"}])"),
                    kFilter + ".requestHeaderModifier", "required when type is RequestHeaderModifier");
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"type": "RequestHeaderModifier", "requestHeaderModifier": {},
                                            "responseHeaderModifier": {}}])"),
                    kFilter + ".responseHeaderModifier", "only allowed when type is ResponseHeaderModifier");
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"type": "HeaderModifier"}])"), kFilter + ".type",
                    "\"HeaderModifier\" is not one of RequestHeaderModifier, ResponseHeaderModifier, "
                    "RequestMirror, RequestRedirect, URLRewrite, ExtensionRef or CORS (did you mean "
                    "\"RequestHeaderModifier\"?)");
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"type": "URLRewrite", "urlRewrite": {}},
                                           {"type": "URLRewrite", "urlRewrite": {}}])"),
                    "spec.rules[0].filters[1].type",
                    "URLRewrite may appear only once in a filters list (first at filters[0])");
  EXPECT_VALID(route_with_filters(R"([
    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "a", "port": 80}}},
    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "b", "port": 80}}}])"));
}

TEST(HttpRoute, ExtensionRefNamesAFaultInjection) {
  const std::string kRef = "spec.rules[0].filters[0].extensionRef";
  Json r = route_with_filters(R"([{"type": "ExtensionRef", "extensionRef":
      {"group": "trellis.dev", "kind": "FaultInjection", "name": "reviews-faults"}}])");
  EXPECT_VALID(r);
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/filters/0/extensionRef/group", "gateway.networking.k8s.io"),
                    kRef + ".group",
                    "\"gateway.networking.k8s.io\" is not a supported extension group: the one extension "
                    "is kind FaultInjection in group \"trellis.dev\"");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/filters/0/extensionRef/kind", "Faultinjection"), kRef + ".kind",
                    "\"Faultinjection\" is not a supported extension: the one extension is kind "
                    "FaultInjection in group \"trellis.dev\" (did you mean \"FaultInjection\"?)");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/filters/0/extensionRef/kind", "RateLimitPolicy"), kRef + ".kind",
                    "\"RateLimitPolicy\" is not a supported extension: the one extension is kind "
                    "FaultInjection in group \"trellis.dev\"");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/filters/0/extensionRef/name", "Faults"), kRef + ".name",
                    "\"Faults\" is not a valid name: use lower-case letters, digits, '-' and '.', each "
                    "'.'-separated part starting and ending with a letter or digit");
  EXPECT_EQ(error_lines(route_with_filters(R"([{"type": "ExtensionRef", "extensionRef": {}}])")),
            (std::vector<std::string>{kRef + ".group: required field is missing",
                                      kRef + ".kind: required field is missing",
                                      kRef + ".name: required field is missing"}));
  EXPECT_ONLY_ERROR(route_with_filters(R"([{"type": "ExtensionRef"}])"), kRef,
                    "required when type is ExtensionRef");
  // One fault per rule.
  Json twice = with(r, "/spec/rules/0/filters/1", r["spec"]["rules"][0]["filters"][0]);
  EXPECT_ONLY_ERROR(twice, "spec.rules[0].filters[1].type",
                    "ExtensionRef may appear only once in a filters list (first at filters[0])");
  // A fault may apply to one backend's requests, once.
  Json backend = with(r, "/spec/rules/0/backendRefs/0/filters", r["spec"]["rules"][0]["filters"]);
  EXPECT_VALID(backend);
  EXPECT_ONLY_ERROR(
      with(backend, "/spec/rules/0/backendRefs/0/filters/1", r["spec"]["rules"][0]["filters"][0]),
      "spec.rules[0].backendRefs[0].filters[1].type",
      "ExtensionRef may appear only once in a filters list (first at filters[0])");
}

TEST(HttpRoute, RedirectAndRewriteRules) {
  const std::string kRedirect = R"({"type": "RequestRedirect",
      "requestRedirect": {"scheme": "https", "hostname": "reviews.example.com", "port": 443,
                          "statusCode": 301}})";
  Json redirect_only =
      without(route_with_filters(("[" + kRedirect + "]").c_str()), "/spec/rules/0/backendRefs");
  EXPECT_VALID(redirect_only);
  EXPECT_ONLY_ERROR(route_with_filters(("[" + kRedirect + "]").c_str()), "spec.rules[0].filters[0]",
                    "a rule with a RequestRedirect filter must have no backendRefs: the redirect "
                    "answers the request");
  EXPECT_ONLY_ERROR(
      without(
          route_with_filters(("[" + kRedirect + R"(, {"type": "URLRewrite", "urlRewrite": {}}])").c_str()),
          "/spec/rules/0/backendRefs"),
      "spec.rules[0].filters[1].type", "a rule may have a RequestRedirect or a URLRewrite filter, not both");
  const std::string kRedirectConfig = "/spec/rules/0/filters/0/requestRedirect";
  EXPECT_ONLY_ERROR(with(redirect_only, kRedirectConfig + "/statusCode", 305),
                    "spec.rules[0].filters[0].requestRedirect.statusCode",
                    "must be one of 301, 302, 303, 307 or 308");
  EXPECT_ONLY_ERROR(with(redirect_only, kRedirectConfig + "/scheme", "ftp"),
                    "spec.rules[0].filters[0].requestRedirect.scheme", "\"ftp\" is not one of http or https");
  EXPECT_ONLY_ERROR(with(redirect_only, kRedirectConfig + "/scheme", "htps"),
                    "spec.rules[0].filters[0].requestRedirect.scheme",
                    "\"htps\" is not one of http or https (did you mean \"https\"?)");
  EXPECT_ONLY_ERROR(with(redirect_only, kRedirectConfig + "/hostname", "*.example.com"),
                    "spec.rules[0].filters[0].requestRedirect.hostname",
                    "\"*.example.com\" must be a precise host name, without '*'");
  EXPECT_ONLY_ERROR(with(redirect_only, kRedirectConfig + "/port", 0),
                    "spec.rules[0].filters[0].requestRedirect.port", "must be between 1 and 65535");
}

TEST(HttpRoute, PathModifiers) {
  auto rewrite = [](const char* path) {
    return route_with_filters(
        (std::string(R"([{"type": "URLRewrite", "urlRewrite": {"hostname": "reviews", "path": )") + path +
         "}}]")
            .c_str());
  };
  const std::string kPath = "spec.rules[0].filters[0].urlRewrite.path";
  EXPECT_VALID(rewrite(R"({"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"})"));
  EXPECT_VALID(rewrite(R"({"type": "ReplaceFullPath", "replaceFullPath": "/index.html"})"));
  EXPECT_ONLY_ERROR(rewrite(R"({"type": "ReplaceFullPath"})"), kPath + ".replaceFullPath",
                    "required when type is ReplaceFullPath");
  EXPECT_ONLY_ERROR(
      rewrite(R"({"type": "ReplaceFullPath", "replaceFullPath": "/a", "replacePrefixMatch": "/b"})"),
      kPath + ".replacePrefixMatch", "only allowed when type is ReplacePrefixMatch");
  EXPECT_ONLY_ERROR(rewrite(R"({"type": "ReplaceFullPath", "replaceFullPath": "index.html"})"),
                    kPath + ".replaceFullPath", "must start with \"/\"");
  EXPECT_ONLY_ERROR(rewrite(R"({"replaceFullPath": "/a"})"), kPath + ".type", "required field is missing");
  // ReplacePrefixMatch needs one PathPrefix match to know what to replace.
  const std::string kNeedsPrefix =
      "ReplacePrefixMatch needs the rule to have exactly one match, with a path of type PathPrefix "
      "(the prefix it replaces)";
  Json prefix = rewrite(R"({"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"})");
  EXPECT_ONLY_ERROR(with(prefix, "/spec/rules/0/matches/0/path/type", "Exact"), kPath + ".type",
                    kNeedsPrefix);
  EXPECT_ONLY_ERROR(with(prefix, "/spec/rules/0/matches/1", {{"method", "GET"}}), kPath + ".type",
                    kNeedsPrefix);
  EXPECT_VALID(without(prefix, "/spec/rules/0/matches")) << "no matches means PathPrefix \"/\"";
  EXPECT_VALID(with(prefix, "/spec/rules/0/matches/0", {{"method", "GET"}}))
      << "a match without a path has the default PathPrefix \"/\"";
}

TEST(HttpRoute, HeaderModifiers) {
  auto modifier = [](const char* config) {
    return route_with_filters(
        (std::string(R"([{"type": "ResponseHeaderModifier", "responseHeaderModifier": )") + config + "}]")
            .c_str());
  };
  const std::string kConfig = "spec.rules[0].filters[0].responseHeaderModifier";
  EXPECT_VALID(modifier(R"({"set": [{"name": "x-a", "value": "1"}], "add": [{"name": "x-a", "value": "2"}],
                            "remove": ["server"]})"));
  EXPECT_ONLY_ERROR(modifier(R"({"set": [{"name": "x-a", "value": "1"}, {"name": "X-A", "value": "2"}]})"),
                    kConfig + ".set[1].name", "header \"X-A\" is already listed in set");
  EXPECT_ONLY_ERROR(modifier(R"({"add": [{"name": "x-a", "value": "a\r\nx-injected: 1"}]})"),
                    kConfig + ".add[0].value", "must not contain control characters such as line breaks");
  EXPECT_ONLY_ERROR(modifier(R"({"add": [{"name": "x-a", "value": ""}]})"), kConfig + ".add[0].value",
                    "must be 1 to 4096 characters");
  EXPECT_ONLY_ERROR(modifier(R"({"remove": ["server", "Server"]})"), kConfig + ".remove[1]",
                    "header \"Server\" is already listed in remove");
  EXPECT_ONLY_ERROR(modifier(R"({"remove": ["a b"]})"), kConfig + ".remove[0]",
                    "\"a b\" is not a valid header name: use letters, digits and any of !#$%&'*+-.^_`|~");
  EXPECT_ONLY_ERROR(modifier(R"({"set": {"name": "x"}})"), kConfig + ".set", "expected a list, got a map");
  EXPECT_ONLY_ERROR(modifier(R"({"replace": []})"), kConfig + ".replace", "unknown field \"replace\"");
}

TEST(HttpRoute, RequestMirror) {
  auto mirror = [](const char* config) {
    return route_with_filters(
        (std::string(R"([{"type": "RequestMirror", "requestMirror": )") + config + "}]").c_str());
  };
  const std::string kConfig = "spec.rules[0].filters[0].requestMirror";
  EXPECT_VALID(mirror(R"({"backendRef": {"name": "shadow", "port": 80}, "percent": 10})"));
  EXPECT_VALID(mirror(
      R"({"backendRef": {"name": "shadow", "port": 80}, "fraction": {"numerator": 1, "denominator": 1000}})"));
  EXPECT_ONLY_ERROR(mirror(R"({"percent": 10})"), kConfig + ".backendRef", "required field is missing");
  EXPECT_ONLY_ERROR(mirror(R"({"backendRef": {"name": "shadow", "port": 80}, "percent": 101})"),
                    kConfig + ".percent", "must be between 0 and 100");
  EXPECT_ONLY_ERROR(
      mirror(R"({"backendRef": {"name": "shadow", "port": 80}, "fraction": {"numerator": 150}})"),
      kConfig + ".fraction.numerator", "must not be greater than the denominator (100)");
  EXPECT_ONLY_ERROR(
      mirror(
          R"({"backendRef": {"name": "shadow", "port": 80}, "fraction": {"numerator": 1, "denominator": 0}})"),
      kConfig + ".fraction.denominator", "must be between 1 and 2147483647");
  EXPECT_ONLY_ERROR(
      mirror(R"({"backendRef": {"name": "shadow", "port": 80}, "percent": 5, "fraction": {"numerator": 1}})"),
      kConfig, "set percent or fraction, not both");
  EXPECT_ONLY_ERROR(mirror(R"({"backendRef": {"name": "shadow", "port": 80, "weight": 1}})"),
                    kConfig + ".backendRef.weight", "unknown field \"weight\"");
}

TEST(HttpRoute, BackendRefs) {
  const std::string kRef = "spec.rules[0].backendRefs[1]";
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/weight", 2000000), kRef + ".weight",
                    "must be between 0 and 1000000");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/weight", -1), kRef + ".weight",
                    "must be between 0 and 1000000");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/weight", "10"), kRef + ".weight",
                    "expected an integer, got a string");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/weight", 1.5), kRef + ".weight",
                    "expected an integer, got a decimal number");
  EXPECT_VALID(with(route(), "/spec/rules/0/backendRefs/1/weight", 0));
  EXPECT_ONLY_ERROR(without(route(), "/spec/rules/0/backendRefs/1/port"), kRef + ".port",
                    "required field is missing: the port to send to");
  EXPECT_ONLY_ERROR(without(route(), "/spec/rules/0/backendRefs/1/name"), kRef + ".name",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/namespace", "Other"), kRef + ".namespace",
                    "\"Other\" is not a valid DNS label: use lower-case letters, digits and '-', "
                    "starting and ending with a letter or digit");
  // Kinds Trellis does not know are accepted, as the Gateway API says: their
  // share is answered 500 and the route's status says InvalidKind.
  Json import = with(with(route(), "/spec/rules/0/backendRefs/1/kind", "ServiceImport"),
                     "/spec/rules/0/backendRefs/1/group", "multicluster.x-k8s.io");
  EXPECT_VALID(import);
  EXPECT_VALID(without(import, "/spec/rules/0/backendRefs/1/port"));
  EXPECT_VALID(with(route(), "/spec/rules/0/backendRefs/1/kind", "service"));
  EXPECT_VALID(with(route(), "/spec/rules/0/backendRefs/1/group", "apps"));
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/kind", "Service Import"), kRef + ".kind",
                    "\"Service Import\" is not a kind name: a letter, then letters, digits and '-', at "
                    "most 63 characters");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/group", "Apps!"), kRef + ".group",
                    "\"Apps!\" is not an API group: \"\" or a DNS subdomain");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/weigth", 1), kRef + ".weigth",
                    "unknown field \"weigth\" (did you mean \"weight\"?)");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/backendRefs/1/subset", {{"labels", {{"version", "v2"}}}}),
                    kRef + ".subset", "unknown field \"subset\"");
}

TEST(HttpRoute, SubsetBackends) {
  Json subset = with(route(), "/spec/rules/0/backendRefs/1",
                     {{"group", "trellis.dev"}, {"kind", "Subset"}, {"name", "reviews/v2"}, {"port", 9080}});
  EXPECT_VALID(subset);
  const std::string kRef = "spec.rules[0].backendRefs[1]";
  // Subset in another group is a kind Trellis does not know: accepted, 500.
  EXPECT_VALID(without(subset, "/spec/rules/0/backendRefs/1/group"));
  EXPECT_VALID(with(subset, "/spec/rules/0/backendRefs/1/group", "trellis.io"));
  EXPECT_ONLY_ERROR(
      with(subset, "/spec/rules/0/backendRefs/1/name", "reviews-v2"), kRef + ".name",
      "\"reviews-v2\" is not a subset reference: write \"<service>/<subset>\", e.g. \"reviews/v2\"");
  EXPECT_ONLY_ERROR(with(subset, "/spec/rules/0/backendRefs/1/name", "reviews/V2"), kRef + ".name",
                    "the subset part of \"reviews/V2\": \"V2\" is not a valid DNS label: use lower-case "
                    "letters, digits and '-', starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(with(subset, "/spec/rules/0/backendRefs/1/name", "/v2"), kRef + ".name",
                    "the service part of \"/v2\": must not be empty");
  EXPECT_ONLY_ERROR(without(subset, "/spec/rules/0/backendRefs/1/port"), kRef + ".port",
                    "required field is missing: the port to send to");
}

TEST(HttpRoute, BackendFilters) {
  Json r = with(route(), "/spec/rules/0/backendRefs/0/filters", Json::parse(R"([
    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-v", "value": "1"}]}},
    {"type": "URLRewrite", "urlRewrite": {"hostname": "v1.example",
                                          "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"}}},
    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow", "port": 9080}}},
    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "audit", "port": 9080}, "percent": 10}}])"));
  EXPECT_VALID(r);
  const std::string kFilters = "spec.rules[0].backendRefs[0].filters";
  // They are checked as a rule's are.
  EXPECT_ONLY_ERROR(
      with(r, "/spec/rules/0/matches/0/path/type", "Exact"), kFilters + "[1].urlRewrite.path.type",
      "ReplacePrefixMatch needs the rule to have exactly one match, with a path of type PathPrefix "
      "(the prefix it replaces)");
  EXPECT_ONLY_ERROR(
      with(r, "/spec/rules/0/backendRefs/0/filters/4", r["spec"]["rules"][0]["backendRefs"][0]["filters"][1]),
      kFilters + "[4].type", "URLRewrite may appear only once in a filters list (first at filters[1])");
  EXPECT_ONLY_ERROR(with(r, "/spec/rules/0/backendRefs/0/filters/3/requestMirror/percent", 101),
                    kFilters + "[3].requestMirror.percent", "must be between 0 and 100");
  // A redirect answers that backend's share: alone, since nothing else
  // would act on it.
  Json redirect =
      with(r, "/spec/rules/0/backendRefs/0/filters",
           Json::array({{{"type", "RequestRedirect"}, {"requestRedirect", {{"statusCode", 301}}}}}));
  EXPECT_VALID(redirect);
  EXPECT_ONLY_ERROR(
      with(redirect, "/spec/rules/0/backendRefs/0/filters/1",
           r["spec"]["rules"][0]["backendRefs"][0]["filters"][2]),
      kFilters + "[0].type",
      "a RequestRedirect answers this backend's share, so the backend's other filters would never "
      "act: remove them");
  EXPECT_EQ(error_lines(with(redirect, "/spec/rules/0/backendRefs/0/filters/1",
                             r["spec"]["rules"][0]["backendRefs"][0]["filters"][1])),
            (std::vector<std::string>{
                kFilters + "[1].type: a rule may have a RequestRedirect or a URLRewrite filter, not both",
                kFilters + "[0].type: a RequestRedirect answers this backend's share, so the backend's other "
                           "filters would never act: remove them"}));
  // A CORS preflight is answered before a backend is chosen.
  EXPECT_ONLY_ERROR(
      with(r, "/spec/rules/0/backendRefs/0/filters/1",
           {{"type", "CORS"}, {"cors", {{"allowOrigins", {"*"}}}}}),
      kFilters + "[1].type",
      "CORS is not supported in a backendRef's filters: a preflight is answered before a backend "
      "is chosen; put it in the rule's filters");
}

TEST(HttpRoute, Timeouts) {
  const std::string kTimeouts = "spec.rules[0].timeouts";
  const std::string kShape =
      " is not a duration: write 1 to 4 parts, each a whole number (up to 5 digits) and a unit h, m, "
      "s or ms, e.g. \"10s\", \"500ms\", \"1h30m\"";
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/timeouts/request", "10"), kTimeouts + ".request",
                    "\"10\"" + kShape);
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/timeouts/request", "1.5s"), kTimeouts + ".request",
                    "\"1.5s\"" + kShape);
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/timeouts/request", 10), kTimeouts + ".request",
                    "expected a duration such as \"10s\", got an integer");
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/timeouts/backendRequest", "11s"),
                    kTimeouts + ".backendRequest", "must not be longer than request (10s)");
  EXPECT_VALID(with(route(), "/spec/rules/0/timeouts/request", "0s")) << "0s turns the limit off";
  EXPECT_VALID(with(route(), "/spec/rules/0/timeouts/backendRequest", "10s"));
  EXPECT_ONLY_ERROR(with(route(), "/spec/rules/0/timeout", "5s"), "spec.rules[0].timeout",
                    "unknown field \"timeout\" (did you mean \"timeouts\"?)");
}

TEST(HttpRoute, ReportsEveryProblemInOnePass) {
  Json r = route();
  r["spec"]["parentRefs"][0]["kind"] = "Gateway";
  r["spec"]["rules"][0]["matches"][0]["path"]["value"] = "reviews";
  r["spec"]["rules"][0]["backendRefs"][0]["weight"] = 2000000;
  r["spec"]["rules"][0]["backendRefs"][1].erase("port");
  r["spec"]["rules"][0]["timeouts"]["backendRequest"] = "1m";
  r["spec"]["rules"].push_back({{"backendRefs", {{{"name", "Reviews"}, {"port", 80}}}}});
  EXPECT_EQ(error_lines(r),
            (std::vector<std::string>{
                "spec.parentRefs[0].kind: \"Gateway\" is not supported: in the mesh an HTTPRoute "
                "attaches to a Service (kind Service, group \"\")",
                "spec.rules[0].matches[0].path.value: must start with \"/\"",
                "spec.rules[0].backendRefs[0].weight: must be between 0 and 1000000",
                "spec.rules[0].backendRefs[1].port: required field is missing: the port to send to",
                "spec.rules[0].timeouts.backendRequest: must not be longer than request (10s)",
                "spec.rules[1].backendRefs[0].name: \"Reviews\" is not a valid DNS label: use "
                "lower-case letters, digits and '-', starting and ending with a letter or digit",
            }));
}

// ---- ReferenceGrant ----

TEST(ReferenceGrant, GrantsFromRoutesToServices) {
  EXPECT_VALID(reference_grant());
  EXPECT_VALID(with(reference_grant(), "/apiVersion", "gateway.networking.k8s.io/v1beta1"));
  EXPECT_ONLY_ERROR(with(reference_grant(), "/apiVersion", "gateway.networking.k8s.io/v1alpha2"),
                    "apiVersion",
                    "must be \"gateway.networking.k8s.io/v1\" or \"gateway.networking.k8s.io/v1beta1\" for "
                    "kind ReferenceGrant");
  EXPECT_ONLY_ERROR(with(reference_grant(), "/spec/from", Json::array()), "spec.from",
                    "must have at least 1 item");
  EXPECT_ONLY_ERROR(without(reference_grant(), "/spec/to"), "spec.to", "required field is missing");
  EXPECT_ONLY_ERROR(without(reference_grant(), "/spec/from/0/namespace"), "spec.from[0].namespace",
                    "required field is missing");
  EXPECT_ONLY_ERROR(without(reference_grant(), "/spec/to/0/group"), "spec.to[0].group",
                    "required field is missing");
  // What Trellis would not act on is refused, not stored to do nothing.
  EXPECT_ONLY_ERROR(with(reference_grant(), "/spec/from/0/kind", "Gateway"), "spec.from[0].kind",
                    "\"Gateway\" is not supported: in the mesh only routes refer to Services, so a grant is "
                    "from HTTPRoute or GRPCRoute");
  EXPECT_ONLY_ERROR(with(reference_grant(), "/spec/from/0/group", ""), "spec.from[0].group",
                    "must be \"gateway.networking.k8s.io\", the group of HTTPRoute");
  EXPECT_ONLY_ERROR(with(reference_grant(), "/spec/to/0/kind", "Secret"), "spec.to[0].kind",
                    "\"Secret\" is not supported: routes in the mesh send to Services, so a grant is to kind "
                    "Service (with group \"\")");
  EXPECT_ONLY_ERROR(with(reference_grant(), "/spec/to/0/group", "apps"), "spec.to[0].group",
                    "must be \"\" (the core group, where Services are)");
  EXPECT_ONLY_ERROR(
      with(reference_grant(), "/spec/to/0/name", "Reviews"), "spec.to[0].name",
      "\"Reviews\" is not a valid DNS label: use lower-case letters, digits and '-', starting and "
      "ending with a letter or digit");
}

// ---- DestinationPolicy ----

TEST(DestinationPolicy, MinimalPolicyPasses) {
  EXPECT_VALID(document("trellis.dev/v1alpha1", "DestinationPolicy",
                        R"({"targetRef": {"kind": "Service", "name": "reviews"}})"));
}

TEST(DestinationPolicy, TargetRef) {
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/targetRef"), "spec.targetRef",
                    "required field is missing");
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/targetRef/kind"), "spec.targetRef.kind",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/targetRef/kind", "HTTPRoute"), "spec.targetRef.kind",
                    "\"HTTPRoute\" is not one of Service");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/targetRef/group", "core"), "spec.targetRef.group",
                    "must be \"\" for kind Service (the core group), or left out");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/targetRef/namespace", "x"), "spec.targetRef.namespace",
                    "unknown field \"namespace\"");
}

TEST(DestinationPolicy, MutualTlsMode) {
  EXPECT_VALID(with(destination_policy(), "/spec/mtls", {{"mode", "STRICT"}}));
  EXPECT_VALID(with(destination_policy(), "/spec/mtls", {{"mode", "DISABLE"}}));
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/mtls", Json::object()), "spec.mtls.mode",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/mtls", {{"mode", "strict"}}), "spec.mtls.mode",
                    "\"strict\" is not one of STRICT, PERMISSIVE or DISABLE (did you mean \"STRICT\"?)");
}

TEST(DestinationPolicy, TlsOrigination) {
  EXPECT_VALID(with(destination_policy(), "/spec/tls", {{"sni", "api.example.com"}}));
  EXPECT_VALID(
      with(destination_policy(), "/spec/tls",
           {{"sni", "api.example.com"}, {"caCertificates", "-----BEGIN CERTIFICATE-----\nMII...\n"}}));
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/tls", Json::object()), "spec.tls.sni",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/tls", {{"sni", "*.example.com"}}), "spec.tls.sni",
                    "must be the DNS name the service's certificate carries, e.g. api.example.com");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/tls", {{"sni", "a.example"}, {"caCertificates", "x"}}),
                    "spec.tls.caCertificates", "must be PEM certificates (-----BEGIN CERTIFICATE-----)");
}

TEST(DestinationPolicy, LoadBalancer) {
  const std::string kLb = "spec.loadBalancer";
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/algorithm", "roundRobin"),
                    kLb + ".algorithm",
                    "\"roundRobin\" is not one of RoundRobin, WeightedRoundRobin, Random, LeastRequest, "
                    "PeakEWMA, RingHash or Maglev (did you mean \"RoundRobin\"?)");
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/loadBalancer/hash"), kLb + ".hash",
                    "required when algorithm is RingHash: what to hash requests on");
  EXPECT_ONLY_ERROR(
      without(without(destination_policy(), "/spec/loadBalancer/algorithm"), "/spec/loadBalancer/ringPoints"),
      kLb + ".hash", "only allowed when algorithm is RingHash or Maglev (the default algorithm is PeakEWMA)");
  Json maglev = without(with(destination_policy(), "/spec/loadBalancer/algorithm", "Maglev"),
                        "/spec/loadBalancer/ringPoints");
  EXPECT_VALID(maglev);
  EXPECT_ONLY_ERROR(with(maglev, "/spec/loadBalancer/ringPoints", 2048), kLb + ".ringPoints",
                    "only allowed when algorithm is RingHash");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/ringPoints", 65537), kLb + ".ringPoints",
                    "must be between 1 and 65536");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/hash/cookie", {{"name", "session"}}),
                    kLb + ".hash", "set only one of header, cookie or sourceIP, not header and cookie");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/hash", Json::object()), kLb + ".hash",
                    "set exactly one of header, cookie or sourceIP");
  EXPECT_VALID(with(destination_policy(), "/spec/loadBalancer/hash", {{"sourceIP", true}}));
  EXPECT_VALID(with(destination_policy(), "/spec/loadBalancer/hash",
                    {{"cookie", {{"name", "session"}, {"ttl", "1h"}}}}));
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/hash", {{"sourceIP", false}}),
                    kLb + ".hash.sourceIP",
                    "must be true when set (to hash on a header or cookie, set that instead)");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/hash", {{"cookie", {{"ttl", "1h"}}}}),
                    kLb + ".hash.cookie.name", "required field is missing");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/locality/minHealthyPercent", 101),
                    kLb + ".locality.minHealthyPercent", "must be between 0 and 100");
}

TEST(DestinationPolicy, SlowStart) {
  Json lr = document("trellis.dev/v1alpha1", "DestinationPolicy", R"({
    "targetRef": {"kind": "Service", "name": "reviews"},
    "loadBalancer": {"algorithm": "LeastRequest", "slowStart": {"window": "30s"}}})");
  EXPECT_VALID(lr);
  EXPECT_ONLY_ERROR(with(lr, "/spec/loadBalancer/slowStart/window", "0s"),
                    "spec.loadBalancer.slowStart.window", "must be greater than 0s");
  EXPECT_ONLY_ERROR(with(lr, "/spec/loadBalancer/slowStart", Json::object()),
                    "spec.loadBalancer.slowStart.window", "required field is missing");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/loadBalancer/slowStart", {{"window", "30s"}}),
                    "spec.loadBalancer.slowStart",
                    "not supported with RingHash: hashing keeps each key on its instance, so new "
                    "instances cannot be ramped up gradually");
}

TEST(DestinationPolicy, ConnectionPoolAndOutlierDetection) {
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/connectionPool/maxConnections", 0),
                    "spec.connectionPool.maxConnections", "must be between 1 and 4294967295");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/connectionPool/connectTimeout", "0s"),
                    "spec.connectionPool.connectTimeout", "must be greater than 0s");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/connectionPool/maxConnection", 10),
                    "spec.connectionPool.maxConnection",
                    "unknown field \"maxConnection\" (did you mean \"maxConnections\"?)");
  const std::string kOutlier = "spec.outlierDetection";
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/outlierDetection/maxEjectionPercent", 150),
                    kOutlier + ".maxEjectionPercent", "must be between 0 and 100");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/outlierDetection/panicThresholdPercent", -1),
                    kOutlier + ".panicThresholdPercent", "must be between 0 and 100");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/outlierDetection/successRate/stdevFactor", 0),
                    kOutlier + ".successRate.stdevFactor", "must be greater than 0");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/outlierDetection/successRate/minimumHosts", 0),
                    kOutlier + ".successRate.minimumHosts", "must be between 1 and 4294967295");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/outlierDetection/baseEjectionTime", "30"),
                    kOutlier + ".baseEjectionTime",
                    "\"30\" is not a duration: write 1 to 4 parts, each a whole number (up to 5 "
                    "digits) and a unit h, m, s or ms, e.g. \"10s\", \"500ms\", \"1h30m\"");
  EXPECT_VALID(with(destination_policy(), "/spec/outlierDetection/consecutive5xx", 0));
  EXPECT_VALID(with(destination_policy(), "/spec/connectionPool/requestIdleTimeout", "30s"));
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/connectionPool/requestIdleTimeout", "0s"),
                    "spec.connectionPool.requestIdleTimeout", "must be greater than 0s");
}

TEST(DestinationPolicy, Retries) {
  const std::string kRetries = "spec.retries";
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/attempts", 11), kRetries + ".attempts",
                    "must be between 0 and 10");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/retryOn/0", "connect_failure"),
                    kRetries + ".retryOn[0]",
                    "\"connect_failure\" is not one of connect-failure, reset, 5xx, gateway-error, "
                    "retriable-status-codes, cancelled, deadline-exceeded, resource-exhausted, internal or "
                    "unavailable (did you mean \"connect-failure\"?)");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/retryOn/1", "connect-failure"),
                    kRetries + ".retryOn[1]", "\"connect-failure\" is listed twice");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/retriableStatusCodes/0", 600),
                    kRetries + ".retriableStatusCodes[0]", "must be between 100 and 599");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/retryOn", {"5xx"}),
                    kRetries + ".retriableStatusCodes",
                    "only used when retryOn includes \"retriable-status-codes\"");
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/retries/retryOn"),
                    kRetries + ".retriableStatusCodes",
                    "only used when retryOn includes \"retriable-status-codes\" (the default retryOn "
                    "is connect-failure and reset)");
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/retries/retriableStatusCodes"),
                    kRetries + ".retryOn[2]",
                    "\"retriable-status-codes\" needs retriableStatusCodes, the codes to retry on");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/backoff/maxInterval", "10ms"),
                    kRetries + ".backoff.maxInterval", "must not be shorter than baseInterval (25ms)");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/backoff", {{"maxInterval", "10ms"}}),
                    kRetries + ".backoff.maxInterval",
                    "must not be shorter than baseInterval (25ms, the default)");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/budget/percent", 120),
                    kRetries + ".budget.percent", "must be between 0 and 100");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/perTryTimeout", "0s"),
                    kRetries + ".perTryTimeout", "must be greater than 0s");
  EXPECT_VALID(with(destination_policy(), "/spec/retries/nonIdempotent", true));
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/retries/nonIdempotent", "yes"),
                    kRetries + ".nonIdempotent", "expected true or false, got a string");
}

TEST(DestinationPolicy, HealthCheck) {
  const std::string kHealth = "spec.healthCheck";
  EXPECT_VALID(
      with(without(destination_policy(), "/spec/healthCheck/http"), "/spec/healthCheck/tcp", Json::object()));
  EXPECT_VALID(
      with(without(destination_policy(), "/spec/healthCheck/http"), "/spec/healthCheck/tcp", nullptr))
      << "\"tcp:\" with nothing under it chooses the TCP check";
  EXPECT_VALID(with(without(destination_policy(), "/spec/healthCheck/http"), "/spec/healthCheck/grpc",
                    {{"service", "reviews.v1.Reviews"}}));
  EXPECT_ONLY_ERROR(with(without(destination_policy(), "/spec/healthCheck/http"), "/spec/healthCheck/grpc",
                         {{"service", "reviews v1"}}),
                    kHealth + ".grpc.service",
                    "must be at most 200 printable ASCII characters without spaces");
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/healthCheck/http"), kHealth,
                    "set exactly one of http, tcp or grpc");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/tcp", Json::object()), kHealth,
                    "set only one of http, tcp or grpc, not http and tcp");
  EXPECT_ONLY_ERROR(
      with(without(destination_policy(), "/spec/healthCheck/http"), "/spec/healthCheck/tcp", {{"port", 1}}),
      kHealth + ".tcp.port", "unknown field \"port\"");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/timeout", "5s"), kHealth + ".timeout",
                    "must be shorter than interval (5s)");
  EXPECT_ONLY_ERROR(
      with(without(destination_policy(), "/spec/healthCheck/interval"), "/spec/healthCheck/timeout", "15s"),
      kHealth + ".timeout", "must be shorter than interval (10s, the default)");
  EXPECT_ONLY_ERROR(
      with(without(destination_policy(), "/spec/healthCheck/timeout"), "/spec/healthCheck/interval", "1s"),
      kHealth + ".interval", "must be longer than timeout (1s, the default)");
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/healthCheck/http/path"), kHealth + ".http.path",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/healthyThreshold", 0),
                    kHealth + ".healthyThreshold", "must be between 1 and 4294967295");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/unhealthyThreshold", 0),
                    kHealth + ".unhealthyThreshold", "must be between 1 and 4294967295");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/jitterPercent", 101),
                    kHealth + ".jitterPercent", "must be between 0 and 100");
  const std::string kStatusShape =
      "must be a status code (e.g. 204) or an inclusive range of them (e.g. \"200-299\"), between "
      "100 and 599";
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/http/expectedStatuses/1", "2xx"),
                    kHealth + ".http.expectedStatuses[1]", "\"2xx\": " + kStatusShape);
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/http/expectedStatuses/1", "300-200"),
                    kHealth + ".http.expectedStatuses[1]",
                    "\"300-200\": the range must not end below its start");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/http/expectedStatuses/0", 99),
                    kHealth + ".http.expectedStatuses[0]", "must be between 100 and 599");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/healthCheck/http/expectedStatuses/0", true),
                    kHealth + ".http.expectedStatuses[0]", kStatusShape);
}

TEST(DestinationPolicy, Subsets) {
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/subsets/1/name", "v1"), "spec.subsets[1].name",
                    "subset \"v1\" is defined twice");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/subsets/1/name", "V2"), "spec.subsets[1].name",
                    "\"V2\" is not a valid DNS label: use lower-case letters, digits and '-', "
                    "starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/subsets/1/labels", Json::object()),
                    "spec.subsets[1].labels",
                    "must have at least one label (a subset without labels would be the whole Service)");
  EXPECT_ONLY_ERROR(without(destination_policy(), "/spec/subsets/1/labels"), "spec.subsets[1].labels",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/subsets/1/labels/version", 2),
                    "spec.subsets[1].labels[version]", "expected a string, got an integer");
  EXPECT_ONLY_ERROR(with(destination_policy(), "/spec/subsets/1/labels", {{"ver sion", "v2"}}),
                    "spec.subsets[1].labels[ver sion]",
                    "\"ver sion\" is not a valid label key: a label key is a name of at most 63 "
                    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit, "
                    "with an optional DNS prefix and '/', e.g. \"app.kubernetes.io/name\"");
}

// ---- RateLimitPolicy ----

TEST(RateLimitPolicy, TargetsServicesAndRoutes) {
  EXPECT_VALID(
      with(rate_limit_policy(), "/spec/targetRef",
           {{"group", "gateway.networking.k8s.io"}, {"kind", "HTTPRoute"}, {"name", "reviews.canary"}}));
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/targetRef/kind", "Gateway"), "spec.targetRef.kind",
                    "\"Gateway\" is not one of Service or HTTPRoute");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/targetRef",
                         {{"group", "trellis.dev"}, {"kind", "HTTPRoute"}, {"name", "r"}}),
                    "spec.targetRef.group",
                    "must be \"gateway.networking.k8s.io\" for kind HTTPRoute, or left out");
}

TEST(RateLimitPolicy, Limits) {
  EXPECT_ONLY_ERROR(without(rate_limit_policy(), "/spec/limits"), "spec.limits", "required field is missing");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits", Json::array()), "spec.limits",
                    "must have at least 1 item");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/name", "per-client"), "spec.limits[1].name",
                    "limit \"per-client\" is defined twice");
  EXPECT_VALID(without(rate_limit_policy(), "/spec/limits/0/name"));
}

TEST(RateLimitPolicy, Keys) {
  const std::string kKey = "spec.limits[0].key";
  EXPECT_ONLY_ERROR(without(rate_limit_policy(), "/spec/limits/0/key"), kKey, "required field is missing");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/0/key", Json::object()), kKey,
                    "set exactly one of source or header");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/0/key/header", "x-user"), kKey,
                    "set only one of source or header, not source and header");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/0/key/source", "IP"), kKey + ".source",
                    "\"IP\" is not one of Address or Identity");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/key/header", "x api key"),
                    "spec.limits[1].key.header",
                    "\"x api key\" is not a valid header name: use letters, digits and any of "
                    "!#$%&'*+-.^_`|~");
}

TEST(RateLimitPolicy, Buckets) {
  const std::string kLimit = "spec.limits[0]";
  EXPECT_ONLY_ERROR(without(rate_limit_policy(), "/spec/limits/0/tokenBucket"), kLimit,
                    "set exactly one of tokenBucket or leakyBucket");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/0/leakyBucket", {{"ratePerSecond", 1}}), kLimit,
                    "set only one of tokenBucket or leakyBucket, not tokenBucket and leakyBucket");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/0/tokenBucket/requestsPerUnit", 0),
                    kLimit + ".tokenBucket.requestsPerUnit", "must be between 1 and 4294967295");
  EXPECT_ONLY_ERROR(without(rate_limit_policy(), "/spec/limits/0/tokenBucket/unit"),
                    kLimit + ".tokenBucket.unit", "required field is missing");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/0/tokenBucket/unit", "Day"),
                    kLimit + ".tokenBucket.unit", "\"Day\" is not one of Second, Minute or Hour");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/0/tokenBucket/burst", -1),
                    kLimit + ".tokenBucket.burst", "must be between 0 and 4294967295");
  const std::string kLeaky = "spec.limits[1].leakyBucket";
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/leakyBucket/ratePerSecond", 0),
                    kLeaky + ".ratePerSecond", "must be greater than 0");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/leakyBucket/ratePerSecond", -2),
                    kLeaky + ".ratePerSecond", "must be between 0 and 1e+09");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/leakyBucket/queueSize", 0),
                    kLeaky + ".maxDelay",
                    "only allowed when queueSize is greater than 0: without a queue no request waits");
  EXPECT_VALID(without(without(rate_limit_policy(), "/spec/limits/1/leakyBucket/queueSize"),
                       "/spec/limits/1/leakyBucket/maxDelay"));
}

TEST(RateLimitPolicy, Matches) {
  const std::string kMatch = "spec.limits[1].match";
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/match/path/type", "RegularExpression"),
                    kMatch + ".path.type", "\"RegularExpression\" is not one of Exact or PathPrefix");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/match/path/value", "reviews"),
                    kMatch + ".path.value", "must start with \"/\"");
  EXPECT_ONLY_ERROR(with(rate_limit_policy(), "/spec/limits/1/match/method", "FETCH"), kMatch + ".method",
                    "\"FETCH\" is not one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH");
  EXPECT_ONLY_ERROR(
      with(rate_limit_policy(), "/spec/limits/1/match/headers/1", {{"name", "X-Tenant"}, {"value", "x"}}),
      kMatch + ".headers[1].name", "header \"X-Tenant\" is already matched in this list");
}

// ---- AuthorizationPolicy ----

TEST(AuthorizationPolicy, ActionAndEmptyRules) {
  EXPECT_VALID(without(authorization_policy(), "/spec/rules")) << "ALLOW with no rules denies everything";
  EXPECT_VALID(with(authorization_policy(), "/spec/action", "DENY"));
  EXPECT_VALID(with(authorization_policy(), "/spec/rules", {Json::object()}))
      << "a rule with no from/to matches all";
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/action", "allow"), "spec.action",
                    "\"allow\" is not one of ALLOW or DENY (did you mean \"ALLOW\"?)");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/targetRef/kind", "HTTPRoute"), "spec.targetRef.kind",
                    "\"HTTPRoute\" is not one of Service");
}

TEST(AuthorizationPolicy, Sources) {
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/0/from/0", Json::object()),
                    "spec.rules[0].from[0]", "set at least one of identities, namespaces or ipBlocks");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/0/from/0", {{"identities", Json::array()}}),
                    "spec.rules[0].from[0]", "set at least one of identities, namespaces or ipBlocks");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/1/from/0/namespaces/0", "Ops"),
                    "spec.rules[1].from[0].namespaces[0]",
                    "\"Ops\" is not a valid DNS label: use lower-case letters, digits and '-', "
                    "starting and ending with a letter or digit");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/1/from/0/ipBlocks/0", "10.20.0.1/16"),
                    "spec.rules[1].from[0].ipBlocks[0]",
                    "\"10.20.0.1/16\" has bits set after its /16 prefix (did you mean \"10.20.0.0/16\"?)");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/1/from/0/ipBlocks/0", "2001:db8::1/32"),
                    "spec.rules[1].from[0].ipBlocks[0]",
                    "\"2001:db8::1/32\" has bits set after its /32 prefix (did you mean \"2001:db8::/32\"?)");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/1/from/0/ipBlocks/0", "10.0.0.0/33"),
                    "spec.rules[1].from[0].ipBlocks[0]",
                    "\"10.0.0.0/33\": the prefix length must be at most 32 for IPv4");
  const std::string kNotCidr =
      " is not an IP address or CIDR block, e.g. \"10.0.0.0/8\", \"192.168.1.7\" or \"2001:db8::/32\"";
  for (const char* bad : {"10.0.0/8", "10.0.0.0/", "fe80::1%eth0", "any", "10.0.0.0/-1"}) {
    EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/1/from/0/ipBlocks/0", bad),
                      "spec.rules[1].from[0].ipBlocks[0]", "\"" + std::string(bad) + "\"" + kNotCidr);
  }
  EXPECT_VALID(with(authorization_policy(), "/spec/rules/1/from/0/ipBlocks/0", "::/0"));
}

TEST(AuthorizationPolicy, Identities) {
  auto with_identity = [](const char* id) {
    return with(authorization_policy(), "/spec/rules/0/from/0/identities/0", id);
  };
  for (const char* good :
       {"*", "spiffe://cluster.local/ns/bookinfo/sa/productpage", "spiffe://cluster.local/ns/bookinfo/sa/*",
        "spiffe://cluster.local/ns/bookinfo/sa/web-*", "spiffe://cluster.local/ns/book*",
        "spiffe://cluster.local/*", "spiffe://*", "spiffe://my_domain.example/ns/a/sa/b.c"}) {
    EXPECT_VALID(with_identity(good)) << good;
  }
  const std::string kPath = "spec.rules[0].from[0].identities[0]";
  const std::string kShape =
      "expected \"spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>\", \"*\", or such an "
      "ID cut short and ending in \"*\"";
  EXPECT_ONLY_ERROR(with_identity("cluster.local/ns/a/sa/b"), kPath,
                    "\"cluster.local/ns/a/sa/b\" is not a SPIFFE ID: " + kShape);
  EXPECT_ONLY_ERROR(with_identity("spiffe://cluster.local/ns/a"), kPath,
                    "\"spiffe://cluster.local/ns/a\" is not a SPIFFE ID: " + kShape);
  EXPECT_ONLY_ERROR(with_identity("spiffe://cluster.local/namespace/a/sa/b"), kPath,
                    "\"spiffe://cluster.local/namespace/a/sa/b\" is not a SPIFFE ID: " + kShape);
  EXPECT_ONLY_ERROR(with_identity("spiffe://cluster.local/ns/a/sa/b/c"), kPath,
                    "\"spiffe://cluster.local/ns/a/sa/b/c\" has too many '/'-separated parts: " + kShape);
  EXPECT_ONLY_ERROR(with_identity("spiffe://*/ns/a/sa/b"), kPath,
                    "\"spiffe://*/ns/a/sa/b\": '*' is only allowed at the end, or alone");
  EXPECT_ONLY_ERROR(with_identity("spiffe://cluster.local/ns/Prod/sa/b"), kPath,
                    "\"spiffe://cluster.local/ns/Prod/sa/b\" has an invalid namespace \"Prod\"");
  EXPECT_ONLY_ERROR(with_identity("spiffe://Cluster.local/ns/a/sa/b"), kPath,
                    "\"spiffe://Cluster.local/ns/a/sa/b\" has an invalid trust domain \"Cluster.local\"");
  EXPECT_ONLY_ERROR(with_identity("spiffe://cluster.local/ns/a/sa/B"), kPath,
                    "\"spiffe://cluster.local/ns/a/sa/B\" has an invalid service account \"B\"");
}

TEST(AuthorizationPolicy, Operations) {
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/0/to/0", Json::object()), "spec.rules[0].to[0]",
                    "set at least one of methods, paths or ports");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/0/to/0/methods/1", "head"),
                    "spec.rules[0].to[0].methods[1]",
                    "\"head\" is not one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or "
                    "PATCH (did you mean \"HEAD\"?)");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/0/to/0/paths/0", "reviews/*"),
                    "spec.rules[0].to[0].paths[0]", "must start with \"/\"");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/0/to/0/paths/0", "/a*/b"),
                    "spec.rules[0].to[0].paths[0]", "'*' is only allowed at the end, as in \"/api/*\"");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/0/to/0/paths/0", "*"),
                    "spec.rules[0].to[0].paths[0]", "must start with \"/\"");
  EXPECT_VALID(with(authorization_policy(), "/spec/rules/0/to/0/paths/0", "/*"));
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/1/to/0/ports/0", 70000),
                    "spec.rules[1].to[0].ports[0]", "must be between 1 and 65535");
  EXPECT_ONLY_ERROR(with(authorization_policy(), "/spec/rules/1/to/0/ports/0", "9080"),
                    "spec.rules[1].to[0].ports[0]", "expected an integer, got a string");
}

// ---- MeshConfig ----

TEST(MeshConfig, FieldsAreChecked) {
  Json empty = mesh_config();
  empty["spec"] = Json::object();
  EXPECT_VALID(empty);
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/mtls/mode", "strict"), "spec.mtls.mode",
                    "\"strict\" is not one of STRICT, PERMISSIVE or DISABLE (did you mean \"STRICT\"?)");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/trustDomain", "Cluster.Local"), "spec.trustDomain",
                    "\"Cluster.Local\" is not a valid trust domain: use lower-case letters, digits, "
                    "'.', '-' and '_', e.g. \"cluster.local\"");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/defaults/requestTimeout", "15"),
                    "spec.defaults.requestTimeout",
                    "\"15\" is not a duration: write 1 to 4 parts, each a whole number (up to 5 digits) "
                    "and a unit h, m, s or ms, e.g. \"10s\", \"500ms\", \"1h30m\"");
  EXPECT_VALID(with(mesh_config(), "/spec/defaults/requestTimeout", "0s"));
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/defaults/idleTimeout", "0s"), "spec.defaults.idleTimeout",
                    "must be greater than 0s");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/accessLog/enabled", "yes"), "spec.accessLog.enabled",
                    "expected true or false, got a string");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/tracing/samplingPercent", 100.5),
                    "spec.tracing.samplingPercent", "must be between 0 and 100");
  EXPECT_ONLY_ERROR(
      with(mesh_config(), "/spec/accessLog", Json::parse(R"({"enabled": true, "format": "text"})")),
      "spec.accessLog.template", "required field is missing");
  EXPECT_ONLY_ERROR(
      with(mesh_config(), "/spec/accessLog",
           Json::parse(R"({"enabled": true, "format": "text", "template": "$status $$ $nope"})")),
      "spec.accessLog.template", "unknown field \"nope\" (known: " + log_field_names() + ")");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/accessLog",
                         Json::parse(R"({"enabled": true, "fields": ["status", "status"]})")),
                    "spec.accessLog.fields[1]", "field \"status\" is listed twice");
  EXPECT_VALID(
      with(mesh_config(), "/spec/accessLog",
           Json::parse(R"({"enabled": true, "format": "text", "template": "$status $response_flags"})")));
  // Per service: each entry takes from the mesh's settings what it does not set.
  EXPECT_VALID(with(mesh_config(), "/spec/accessLog", Json::parse(R"({"enabled": false, "services": [
      {"service": "details", "enabled": true, "format": "text", "template": "$status"},
      {"service": "details", "namespace": "shop", "enabled": true, "fields": ["status"]}]})")));
  EXPECT_VALID(with(mesh_config(), "/spec/accessLog", Json::parse(R"({"enabled": true, "format": "text",
      "template": "$status", "services": [{"service": "details", "enabled": false}]})")));
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/accessLog",
                         Json::parse(R"({"services": [{"service": "details", "format": "text"}]})")),
                    "spec.accessLog.services[0].template", "required field is missing");
  EXPECT_ONLY_ERROR(
      with(mesh_config(), "/spec/accessLog", Json::parse(R"({"format": "text", "template": "$status",
                         "services": [{"service": "details", "fields": ["status"]}]})")),
      "spec.accessLog.services[0].fields", "is for format json (a text line says what its template says)");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/accessLog",
                         Json::parse(R"({"services": [{"service": "details"}, {"service": "details"}]})")),
                    "spec.accessLog.services[1].service",
                    "service details in namespace default is listed twice");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/accessLog",
                         Json::parse(R"({"services": [{"namespace": "shop", "enabled": true}]})")),
                    "spec.accessLog.services[0].service", "required field is missing");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/accessLog",
                         Json::parse(R"({"services": [{"service": "details", "enabeld": true}]})")),
                    "spec.accessLog.services[0].enabeld",
                    "unknown field \"enabeld\" (did you mean \"enabled\"?)");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/tracing", Json::parse(R"({"samplingPercent": 5})")),
                    "spec.tracing.collector", "required field is missing");
  {
    std::vector<std::string> lines =
        error_lines(with(mesh_config(), "/spec/tracing/collector", "collector.example:4318"));
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(lines[0].starts_with("spec.tracing.collector: an OTLP/HTTP receiver's \"ip:port\""))
        << lines[0];
  }
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/mtls/modes", "STRICT"), "spec.mtls.modes",
                    "unknown field \"modes\" (did you mean \"mode\"?)");
  EXPECT_VALID(with(mesh_config(), "/spec/mtls/mode", "STRICT"));
  EXPECT_VALID(with(mesh_config(), "/spec/mtls/certificateLifetime", "1m"));
  EXPECT_VALID(with(mesh_config(), "/spec/mtls/certificateLifetime", "168h"));
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/mtls/certificateLifetime", "30s"),
                    "spec.mtls.certificateLifetime", "must be from 1m to 168h");
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/mtls/certificateLifetime", "169h"),
                    "spec.mtls.certificateLifetime", "must be from 1m to 168h");
  EXPECT_VALID(with(mesh_config(), "/spec/authorization/defaultAction", "DENY"));
  EXPECT_ONLY_ERROR(with(mesh_config(), "/spec/authorization/defaultAction", "deny"),
                    "spec.authorization.defaultAction",
                    "\"deny\" is not one of ALLOW or DENY (did you mean \"DENY\"?)");
}

// ---- FaultInjection ----

TEST(FaultInjection, AbortDelayOrBoth) {
  EXPECT_VALID(without(fault_injection(), "/spec/delay"));
  EXPECT_VALID(without(fault_injection(), "/spec/abort"));
  EXPECT_VALID(without(fault_injection(), "/spec/abort/percent"));  // 100%
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec", Json::object()), "spec",
                    "set abort, delay or both: a FaultInjection without either injects nothing");
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec/delays", Json::object()), "spec.delays",
                    "unknown field \"delays\" (did you mean \"delay\"?)");
}

TEST(FaultInjection, FieldsAreChecked) {
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec/abort/httpStatus", 600), "spec.abort.httpStatus",
                    "must be between 200 and 599");
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec/abort/httpStatus", 199), "spec.abort.httpStatus",
                    "must be between 200 and 599");
  EXPECT_ONLY_ERROR(without(fault_injection(), "/spec/abort/httpStatus"), "spec.abort.httpStatus",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec/abort/percent", 100.5), "spec.abort.percent",
                    "must be between 0 and 100");
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec/delay/percent", "50%"), "spec.delay.percent",
                    "expected a number, got a string");
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec/delay/fixedDelay", "0s"), "spec.delay.fixedDelay",
                    "must be greater than 0s");
  EXPECT_ONLY_ERROR(without(fault_injection(), "/spec/delay/fixedDelay"), "spec.delay.fixedDelay",
                    "required field is missing");
  EXPECT_ONLY_ERROR(with(fault_injection(), "/spec/delay/fixedDelay", "1.5s"), "spec.delay.fixedDelay",
                    "\"1.5s\" is not a duration: write 1 to 4 parts, each a whole number (up to 5 digits) "
                    "and a unit h, m, s or ms, e.g. \"10s\", \"500ms\", \"1h30m\"");
}

}  // namespace
}  // namespace trellis::control
