#include "control/route_translation.h"

#include <gtest/gtest.h>

#include <set>

#include "mesh_test_helpers.h"

namespace trellis::control {
namespace {

using namespace ::trellis::control::testing;  // NOLINT: test helpers

// The routes a client in `client_namespace` gets for calls to reviews.default.
// Every backend the routes name is registered, but those in `missing`.
v1::VirtualHost routes_of(const MeshView& mesh, const std::string& client_namespace = "default",
                          const std::set<std::string>& missing = {}) {
  v1::VirtualHost vh;
  add_service_routes(with_backends(mesh, missing), {"reviews", "default"}, client_namespace, vh);
  return vh;
}

v1::Route first_route(const MeshView& mesh) { return routes_of(mesh).routes(0); }

Resource reviews_policy() {
  return resource("DestinationPolicy", "reviews", R"({
    "targetRef": {"kind": "Service", "name": "reviews"},
    "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})");
}

// A Service without routes takes its requests itself; with routes, it is
// served by them alone (a request none matches gets 404), as the Gateway
// API's mesh profile has it.
TEST(RouteTranslation, AServiceWithRoutesIsServedByThemAlone) {
  MeshView mesh;
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{"PREFIX / -> reviews.default"}));
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/api"}}], "backendRefs": [{"name": "api"}]}]})")};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{"PREFIX /api -> api.default=1"}));
  EXPECT_EQ(describe_all(routes_of(mesh, "shop")), (std::vector<std::string>{"PREFIX /api -> api.default=1"}))
      << "a producer route serves every client";
  mesh.http_routes[0].namespace_ = "shop";
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{"PREFIX / -> reviews.default"}))
      << "a consumer route elsewhere changes nothing here";
}

// A route without rules has the Gateway API's default rule: every request,
// no backends, 500.
TEST(RouteTranslation, ARouteWithoutRulesAnswers500ForEverything) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}]})")};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{"PREFIX / -> !no backends"}));
}

TEST(RouteTranslation, EachRuleAndMatchIsOneRouteInGatewayApiPrecedence) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({
    "parentRefs": [{"name": "reviews"}],
    "rules": [
      {"backendRefs": [{"name": "catch-all"}]},
      {"matches": [{"path": {"value": "/api"}}], "backendRefs": [{"name": "api"}]},
      {"matches": [{"path": {"type": "Exact", "value": "/api/health"}}], "backendRefs": [{"name": "health"}]},
      {"matches": [{"path": {"value": "/api/v1"}}], "backendRefs": [{"name": "v1"}]},
      {"matches": [{"path": {"type": "RegularExpression", "value": "/api/[0-9]+"}}], "backendRefs": [{"name": "ids"}]},
      {"matches": [{"path": {"value": "/api"}, "queryParams": [{"name": "q", "value": "1"}]}],
       "backendRefs": [{"name": "query"}]},
      {"matches": [{"path": {"value": "/api"}, "headers": [{"name": "x-a", "value": "1"}]},
                   {"path": {"value": "/api"}, "headers": [{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "1"}]}],
       "backendRefs": [{"name": "headers"}]},
      {"matches": [{"path": {"value": "/api"}, "method": "GET"}], "backendRefs": [{"name": "get"}]}
    ]})")};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{
                                               "EXACT /api/health -> health.default=1",
                                               "REGEX /api/[0-9]+ -> ids.default=1",
                                               "PREFIX /api/v1 -> v1.default=1",
                                               "PREFIX /api GET -> get.default=1",
                                               "PREFIX /api h:x-a h:x-b -> headers.default=1",
                                               "PREFIX /api h:x-a -> headers.default=1",
                                               "PREFIX /api q:q -> query.default=1",
                                               "PREFIX /api -> api.default=1",
                                               "PREFIX / -> catch-all.default=1",
                                           }));
}

TEST(RouteTranslation, GrpcRouteMethodsArePathMatchesInTheirPrecedence) {
  MeshView mesh;
  mesh.grpc_routes = {resource("GRPCRoute", "reviews-grpc", R"({
    "parentRefs": [{"name": "reviews"}],
    "rules": [
      {"backendRefs": [{"name": "any", "port": 9090}]},
      {"matches": [{"method": {"service": "shop.v1.Cart"}}], "backendRefs": [{"name": "cart", "port": 9090}]},
      {"matches": [{"method": {"service": "shop.v1.Cart", "method": "Get"}}],
       "backendRefs": [{"name": "get", "port": 9090}]},
      {"matches": [{"method": {"method": "Watch"}, "headers": [{"name": "X-Canary", "value": "1"}]}],
       "backendRefs": [{"name": "watch", "port": 9090}]},
      {"matches": [{"method": {"type": "RegularExpression", "service": "shop\\.v[0-9]+\\.Cart", "method": "Li.*"}}],
       "backendRefs": [{"name": "list", "port": 9090}]}
    ]})")};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{
                                               "EXACT /shop.v1.Cart/Get -> get.default=1",
                                               "REGEX /(?:shop\\.v[0-9]+\\.Cart)/(?:Li.*) -> list.default=1",
                                               "REGEX /shop\\.v1\\.Cart/[^/]+ -> cart.default=1",
                                               "REGEX /[^/]+/Watch h:x-canary -> watch.default=1",
                                               "PREFIX / -> any.default=1",
                                           }));
}

TEST(RouteTranslation, HttpAndGrpcRoutesOfAServiceShareItsVirtualHost) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/api"}}], "backendRefs": [{"name": "api", "port": 80}]}]})",
                                 1)};
  mesh.grpc_routes = {resource("GRPCRoute", "reviews-grpc", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"method": {"service": "shop.Cart", "method": "Get"}}],
               "backendRefs": [{"name": "cart", "port": 9090}]}]})",
                               2)};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{
                                               "EXACT /shop.Cart/Get -> cart.default=1",
                                               "PREFIX /api -> api.default=1",
                                           }));
  std::set<ClusterRef> clusters;
  add_route_clusters(with_backends(mesh), {"reviews", "default"}, "default", clusters);
  EXPECT_EQ(clusters.size(), 2u);
  // gRPC calls end at their own deadline; the others at the default.
  v1::VirtualHost vh = routes_of(mesh);
  EXPECT_EQ(vh.routes(0).timeout_ms(), 0u);
  EXPECT_EQ(vh.routes(1).timeout_ms(), 15000u);
}

TEST(RouteTranslation, TiesGoToTheOlderRouteThenByNameThenToTheFirstRule) {
  const char* spec = R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"backendRefs": [{"name": "%s-first"}]}, {"backendRefs": [{"name": "%s-second"}]}]})";
  auto route = [&](const std::string& name, uint64_t version) {
    std::string text = spec;
    for (size_t at; (at = text.find("%s")) != std::string::npos;) text.replace(at, 2, name);
    return http_route(name, text.c_str(), version);
  };
  MeshView mesh;
  mesh.http_routes = {route("a", 5), route("c", 3), route("b", 3)};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{
                                               "PREFIX / -> b-first.default=1",
                                               "PREFIX / -> b-second.default=1",
                                               "PREFIX / -> c-first.default=1",
                                               "PREFIX / -> c-second.default=1",
                                               "PREFIX / -> a-first.default=1",
                                               "PREFIX / -> a-second.default=1",
                                           }));
}

TEST(RouteTranslation, RoutesWithMoreSpecificHostnamesComeFirst) {
  MeshView mesh;
  mesh.http_routes = {
      http_route("exact-path", R"({"parentRefs": [{"name": "reviews"}],
        "rules": [{"matches": [{"path": {"type": "Exact", "value": "/x"}}], "backendRefs": [{"name": "any-host"}]}]})"),
      http_route("hosts", R"({"parentRefs": [{"name": "reviews"}],
        "hostnames": ["*.example.com", "reviews.example.com", "ratings.example.com"],
        "rules": [{"backendRefs": [{"name": "hosts"}]}]})"),
      http_route("deeper", R"({"parentRefs": [{"name": "reviews"}], "hostnames": ["*.reviews.example.com"],
        "rules": [{"backendRefs": [{"name": "deeper"}]}]})"),
  };
  EXPECT_EQ(describe_all(routes_of(mesh)),
            (std::vector<std::string>{
                "PREFIX / hosts:reviews.example.com,ratings.example.com -> hosts.default=1",
                "PREFIX / hosts:*.reviews.example.com -> deeper.default=1",
                "PREFIX / hosts:*.example.com -> hosts.default=1",
                "EXACT /x -> any-host.default=1",
            }));
}

TEST(RouteTranslation, MatchConditions) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "/reviews/[0-9]+"}, "method": "PATCH",
                            "headers": [{"name": "X-User", "value": "alice"},
                                        {"type": "RegularExpression", "name": "x-id", "value": "[0-9]+"}],
                            "queryParams": [{"name": "Debug", "value": "1"}]}],
               "backendRefs": [{"name": "reviews-v2"}]}]})")};
  const v1::Route& r = first_route(mesh);
  EXPECT_EQ(r.path_kind(), v1::Route::REGEX);
  EXPECT_EQ(r.path(), "/reviews/[0-9]+");
  EXPECT_EQ(r.method(), "PATCH");
  ASSERT_EQ(r.headers_size(), 2);
  EXPECT_EQ(r.headers(0).name(), "x-user") << "header names are compared without case: sent lower case";
  EXPECT_FALSE(r.headers(0).regex());
  EXPECT_EQ(r.headers(0).value(), "alice");
  EXPECT_TRUE(r.headers(1).regex());
  ASSERT_EQ(r.query_params_size(), 1);
  EXPECT_EQ(r.query_params(0).name(), "Debug") << "query names are case-sensitive";
  EXPECT_TRUE(r.hosts().empty());
}

TEST(RouteTranslation, HeaderModifiersRewriteAndPerBackendFilters) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/v1/reviews"}}],
      "filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {
          "set": [{"name": "X-Env", "value": "prod"}], "add": [{"name": "x-trace", "value": "1"}], "remove": ["X-Debug"]}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["server"]}},
        {"type": "URLRewrite", "urlRewrite": {"hostname": "reviews.internal",
          "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/reviews"}}}],
      "backendRefs": [
        {"name": "reviews-v1", "weight": 90},
        {"name": "reviews-v2", "weight": 10, "filters": [
          {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-canary", "value": "v2"}]}},
          {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-served-by", "value": "v2"}]}}]},
        {"name": "reviews-v3", "weight": 0},
        {"name": "reviews-v4"}]}]})")};
  const v1::Route& r = first_route(mesh);
  ASSERT_EQ(r.request_headers().set_size(), 1);
  EXPECT_EQ(r.request_headers().set(0).name(), "x-env");
  EXPECT_EQ(r.request_headers().set(0).value(), "prod");
  ASSERT_EQ(r.request_headers().add_size(), 1);
  EXPECT_EQ(r.request_headers().add(0).name(), "x-trace");
  EXPECT_EQ(
      std::vector<std::string>(r.request_headers().remove().begin(), r.request_headers().remove().end()),
      std::vector<std::string>{"x-debug"});
  EXPECT_EQ(r.response_headers().remove_size(), 1);
  EXPECT_EQ(r.rewrite().hostname(), "reviews.internal");
  EXPECT_EQ(r.rewrite().path().kind(), v1::PathModifier::PREFIX);
  EXPECT_EQ(r.rewrite().path().value(), "/reviews");
  EXPECT_FALSE(r.redirect().enabled());
  EXPECT_EQ(describe(r),
            "PREFIX /v1/reviews -> reviews-v1.default=90,reviews-v2.default=10,reviews-v3.default=0,"
            "reviews-v4.default=1");
  EXPECT_FALSE(r.backends(0).has_request_headers());
  ASSERT_EQ(r.backends(1).request_headers().add_size(), 1);
  EXPECT_EQ(r.backends(1).request_headers().add(0).name(), "x-canary");
  ASSERT_EQ(r.backends(1).response_headers().set_size(), 1);
  EXPECT_EQ(r.backends(1).response_headers().set(0).value(), "v2");
}

// A backendRef's URLRewrite, RequestMirror and ExtensionRef act on the
// requests sent to that backend only.
TEST(RouteTranslation, BackendsHaveTheirOwnRewriteMirrorsAndFault) {
  MeshView mesh;
  mesh.fault_injections = {
      resource("FaultInjection", "flaky", R"({"abort": {"httpStatus": 503, "percent": 25}})")};
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/api"}}],
      "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "audit"}}}],
      "backendRefs": [
        {"name": "reviews-v1"},
        {"name": "reviews-v2", "filters": [
          {"type": "URLRewrite", "urlRewrite": {"hostname": "v2.internal",
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
          {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow"}, "percent": 10}},
          {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "nowhere", "kind": "Bucket"}}},
          {"type": "ExtensionRef", "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection", "name": "flaky"}}]}]}]})")};
  const v1::Route& r = first_route(mesh);
  ASSERT_EQ(r.backends_size(), 2);
  const v1::Backend& plain = r.backends(0);
  EXPECT_FALSE(plain.has_rewrite());
  EXPECT_EQ(plain.mirrors_size(), 0);
  EXPECT_FALSE(plain.has_fault());
  const v1::Backend& v2 = r.backends(1);
  EXPECT_EQ(v2.rewrite().hostname(), "v2.internal");
  EXPECT_EQ(v2.rewrite().path().kind(), v1::PathModifier::PREFIX);
  EXPECT_EQ(v2.rewrite().path().value(), "/v2");
  ASSERT_EQ(v2.mirrors_size(), 1) << "a mirror to a backend Trellis does not know sends nothing";
  EXPECT_EQ(v2.mirrors(0).cluster(), "shadow.default");
  EXPECT_EQ(v2.mirrors(0).numerator(), 10u);
  EXPECT_EQ(v2.fault().abort_status(), 503u);
  EXPECT_EQ(v2.fault().abort_per_million(), 250000u);
  // The rule's own stay on the route, for every backend.
  EXPECT_FALSE(r.has_rewrite());
  EXPECT_FALSE(r.has_fault());
  ASSERT_EQ(r.mirrors_size(), 1);
  EXPECT_EQ(r.mirrors(0).cluster(), "audit.default");
}

TEST(RouteTranslation, ABackendsRedirectAnswersItsShare) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/old"}}], "backendRefs": [
      {"name": "reviews", "weight": 9},
      {"name": "reviews", "weight": 1, "filters": [{"type": "RequestRedirect", "requestRedirect": {
        "hostname": "new.example", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]}]}]})")};
  const v1::Route& r = first_route(mesh);
  EXPECT_FALSE(r.redirect().enabled()) << "the rule forwards; one backend's share is redirected";
  EXPECT_TRUE(r.direct_error().empty());
  ASSERT_EQ(r.backends_size(), 2);
  EXPECT_FALSE(r.backends(0).redirect().enabled());
  const v1::Redirect& redirect = r.backends(1).redirect();
  EXPECT_TRUE(redirect.enabled());
  EXPECT_EQ(redirect.hostname(), "new.example");
  EXPECT_EQ(redirect.path().kind(), v1::PathModifier::PREFIX);
  EXPECT_EQ(redirect.path().value(), "/new");
  EXPECT_EQ(redirect.status(), 302u);
}

TEST(RouteTranslation, RedirectsAnswerInsteadOfForwarding) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [
      {"matches": [{"path": {"type": "Exact", "value": "/old"}}],
       "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "new.example.com",
         "port": 8443, "statusCode": 301, "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}}}]},
      {"matches": [{"path": {"value": "/v1"}}],
       "filters": [{"type": "RequestRedirect", "requestRedirect": {
         "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}]}]})")};
  v1::VirtualHost vh = routes_of(mesh);
  ASSERT_EQ(vh.routes_size(), 2);
  const v1::Route& full = vh.routes(0);
  EXPECT_EQ(describe(full), "EXACT /old -> redirect") << "a redirect needs no backends and is no error";
  EXPECT_EQ(full.redirect().scheme(), "https");
  EXPECT_EQ(full.redirect().hostname(), "new.example.com");
  EXPECT_EQ(full.redirect().port(), 8443u);
  EXPECT_EQ(full.redirect().status(), 301u);
  EXPECT_EQ(full.redirect().path().kind(), v1::PathModifier::FULL);
  EXPECT_EQ(full.redirect().path().value(), "/new");
  const v1::Route& prefix = vh.routes(1);
  EXPECT_TRUE(prefix.redirect().enabled());
  EXPECT_EQ(prefix.redirect().status(), 302u) << "the default status";
  EXPECT_EQ(prefix.redirect().scheme(), "") << "the request's";
  EXPECT_EQ(prefix.redirect().port(), 0u);
  EXPECT_EQ(prefix.redirect().path().kind(), v1::PathModifier::PREFIX);
}

TEST(RouteTranslation, ARuleWithoutBackendsAnswers500) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/closed"}}]},
              {"matches": [{"path": {"value": "/empty"}}], "backendRefs": []}]})")};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{
                                               "PREFIX /closed -> !no backends",
                                               "PREFIX /empty -> !no backends",
                                           }));
}

TEST(RouteTranslation, SubsetBackendsNameTheirSubsetClusterOrNothing) {
  MeshView mesh;
  mesh.destination_policies = {reviews_policy()};
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"backendRefs": [
      {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v1", "weight": 80},
      {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v2", "weight": 10},
      {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v3", "weight": 5},
      {"group": "trellis.dev", "kind": "Subset", "name": "ratings/v1", "weight": 5},
      {"name": "ratings", "namespace": "prod"}]}]})")};
  mesh.reference_grants = {reference_grant("prod", "default")};
  EXPECT_EQ(describe(first_route(mesh)),
            "PREFIX / -> reviews.default/v1=80,reviews.default/v2=10,=5,=5,ratings.prod=1")
      << "a subset its Service's DestinationPolicy does not define has no cluster: its share answers 500";
}

TEST(RouteTranslation, MirrorsSendAShareOfCopies) {
  MeshView mesh;
  mesh.destination_policies = {reviews_policy()};
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"filters": [
      {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow"}, "percent": 5}},
      {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "audit", "namespace": "ops"},
                                                  "fraction": {"numerator": 1, "denominator": 1000}}},
      {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "all"}}},
      {"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "trellis.dev", "kind": "Subset",
                                                                 "name": "reviews/v2"}, "fraction": {"numerator": 3}}},
      {"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "trellis.dev", "kind": "Subset",
                                                                 "name": "reviews/v9"}}}],
      "backendRefs": [{"name": "reviews-v1"}]}]})")};
  auto mirrors = [&] {
    std::vector<std::string> out;
    const v1::Route r = first_route(mesh);
    for (const v1::Mirror& m : r.mirrors()) {
      out.push_back(m.cluster() + " " + std::to_string(m.numerator()) + "/" +
                    std::to_string(m.denominator()));
    }
    return out;
  };
  EXPECT_EQ(mirrors(), (std::vector<std::string>{"shadow.default 5/100", "all.default 100/100",
                                                 "reviews.default/v2 3/100"}))
      << "a mirror to a subset that does not exist, or to another namespace without a grant, sends nothing";
  mesh.reference_grants = {reference_grant("ops", "default", "audit")};
  EXPECT_EQ(mirrors(), (std::vector<std::string>{"shadow.default 5/100", "audit.ops 1/1000",
                                                 "all.default 100/100", "reviews.default/v2 3/100"}));
}

TEST(RouteTranslation, CorsFilterGoesToTheRoute) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"filters": [{"type": "CORS", "cors": {"allowOrigins": ["https://*.example.com"],
                 "allowCredentials": true, "allowMethods": ["PUT"], "allowHeaders": ["X-User"],
                 "exposeHeaders": ["X-Total"]}}],
               "backendRefs": [{"name": "v1"}]}]})")};
  const v1::Route r = first_route(mesh);
  ASSERT_TRUE(r.has_cors());
  EXPECT_EQ(r.cors().allow_origins(0), "https://*.example.com");
  EXPECT_TRUE(r.cors().allow_credentials());
  EXPECT_EQ(r.cors().allow_methods(0), "PUT");
  EXPECT_EQ(r.cors().allow_headers(0), "x-user");
  EXPECT_EQ(r.cors().expose_headers(0), "x-total");
  EXPECT_EQ(r.cors().max_age_seconds(), 5u) << "the Gateway API's default";
  EXPECT_EQ(routes_of(mesh).routes_size(), 1) << "nothing else: other requests are answered 404";
}

// The Gateway API's ReferenceGrant: a backend in another namespace is sent
// to only when that namespace allows it; unknown kinds are never sent to.
TEST(RouteTranslation, BackendsElsewhereNeedAGrantAndUnknownKindsGet500) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"backendRefs": [{"name": "ratings", "namespace": "ops", "weight": 3},
                               {"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "far"}]}]})")};
  EXPECT_EQ(describe_all(routes_of(mesh)), (std::vector<std::string>{"PREFIX / -> =3,=1"}))
      << "both shares are answered 500";
  mesh.reference_grants = {reference_grant("ops", "default", "details"), reference_grant("ops", "shop")};
  EXPECT_EQ(describe_all(routes_of(mesh))[0], "PREFIX / -> =3,=1") << "grants for others allow nothing";
  mesh.reference_grants.push_back(reference_grant("ops", "default"));
  EXPECT_EQ(describe_all(routes_of(mesh))[0], "PREFIX / -> ratings.ops=3,=1");
  mesh.reference_grants = {reference_grant("ops", "default", "ratings")};
  EXPECT_EQ(describe_all(routes_of(mesh))[0], "PREFIX / -> ratings.ops=3,=1");
  mesh.reference_grants[0].spec["from"][0]["kind"] = "GRPCRoute";
  EXPECT_EQ(describe_all(routes_of(mesh))[0], "PREFIX / -> =3,=1") << "a grant is for one kind of route";

  // A route with a parent in its own namespace serves every client of it:
  // another parent elsewhere lends it no consent.
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"},
                                                              {"name": "payments", "namespace": "finance"}],
    "rules": [{"backendRefs": [{"name": "payments", "namespace": "finance"}]}]})")};
  EXPECT_EQ(describe_all(routes_of(mesh))[0], "PREFIX / -> =1");

  // A consumer route's own parent needs no grant.
  mesh.reference_grants.clear();
  mesh.http_routes = {http_route("consumer", R"({"parentRefs": [{"name": "reviews", "namespace": "default"}],
    "rules": [{"backendRefs": [{"name": "reviews", "namespace": "default"},
                               {"name": "ratings", "namespace": "default"}]}]})",
                                 1, "shop")};
  EXPECT_EQ(describe_all(routes_of(mesh, "shop"))[0], "PREFIX / -> reviews.default=1,=1");
}

TEST(RouteTranslation, TimeoutsDefaultToTheMeshConfigs) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/a"}}], "timeouts": {"request": "10s", "backendRequest": "3s"},
               "backendRefs": [{"name": "a"}]},
              {"matches": [{"path": {"value": "/b"}}], "timeouts": {"request": "0s"}, "backendRefs": [{"name": "b"}]},
              {"matches": [{"path": {"value": "/c"}}], "timeouts": {"backendRequest": "1s"}, "backendRefs": [{"name": "c"}]},
              {"matches": [{"path": {"value": "/d"}}], "backendRefs": [{"name": "d"}]}]})")};
  auto timeouts = [&] {
    std::vector<std::pair<uint32_t, uint32_t>> out;
    v1::VirtualHost vh = routes_of(mesh);
    for (const v1::Route& r : vh.routes()) out.emplace_back(r.timeout_ms(), r.per_try_timeout_ms());
    return out;
  };
  using T = std::vector<std::pair<uint32_t, uint32_t>>;
  EXPECT_EQ(timeouts(), (T{{10000, 3000}, {0, 0}, {15000, 1000}, {15000, 0}}))
      << "without a MeshConfig the default is 15s";
  mesh.mesh_configs = {resource("MeshConfig", "default", R"({"defaults": {"requestTimeout": "1m"}})")};
  EXPECT_EQ(timeouts(), (T{{10000, 3000}, {0, 0}, {60000, 1000}, {60000, 0}}));
  mesh.mesh_configs = {resource("MeshConfig", "default", R"({"defaults": {"requestTimeout": "0s"}})")};
  EXPECT_EQ(timeouts(), (T{{10000, 3000}, {0, 0}, {0, 1000}, {0, 0}})) << "0s: no limit";
  mesh.mesh_configs = {resource("MeshConfig", "default", R"({"defaults": {"idleTimeout": "5m"}})")};
  EXPECT_EQ(timeouts()[3], (std::pair<uint32_t, uint32_t>{15000, 0}));
}

TEST(RouteTranslation, AnExtensionRefInjectsTheFaultsOfItsFaultInjection) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"matches": [{"path": {"value": "/both"}}], "backendRefs": [{"name": "a"}],
               "filters": [{"type": "ExtensionRef",
                            "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection", "name": "both"}}]},
              {"matches": [{"path": {"value": "/abort"}}], "backendRefs": [{"name": "a"}],
               "filters": [{"type": "ExtensionRef",
                            "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection", "name": "abort"}}]},
              {"matches": [{"path": {"value": "/gone"}}], "backendRefs": [{"name": "a"}],
               "filters": [{"type": "ExtensionRef",
                            "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection", "name": "gone"}}]},
              {"matches": [{"path": {"value": "/none"}}], "backendRefs": [{"name": "a"}]}]})")};
  mesh.fault_injections = {
      resource("FaultInjection", "both", R"({"abort": {"httpStatus": 503, "percent": 10},
                                             "delay": {"fixedDelay": "2s", "percent": 0.5}})"),
      resource("FaultInjection", "abort", R"({"abort": {"httpStatus": 429}})"),
      resource("FaultInjection", "gone", R"({"abort": {"httpStatus": 500}})", 1, "elsewhere"),
  };
  v1::VirtualHost vh = routes_of(mesh);
  auto route_for = [&](const std::string& path) {
    for (const v1::Route& r : vh.routes())
      if (r.path() == path) return r;
    ADD_FAILURE() << "no route for " << path;
    return v1::Route();
  };
  auto fault_of = [&](const std::string& path) { return route_for(path).fault(); };
  v1::Fault both = fault_of("/both");
  EXPECT_EQ(both.abort_status(), 503u);
  EXPECT_EQ(both.abort_per_million(), 100000u);
  EXPECT_EQ(both.delay_ms(), 2000u);
  EXPECT_EQ(both.delay_per_million(), 5000u);
  v1::Fault abort = fault_of("/abort");
  EXPECT_EQ(abort.abort_status(), 429u);
  EXPECT_EQ(abort.abort_per_million(), 1000000u) << "percent defaults to 100";
  EXPECT_EQ(abort.delay_ms(), 0u);
  EXPECT_EQ(abort.delay_per_million(), 0u);
  EXPECT_FALSE(route_for("/gone").has_fault())
      << "a FaultInjection that does not exist in the route's namespace injects nothing";
  EXPECT_FALSE(route_for("/none").has_fault());
}

TEST(RouteTranslation, ConsumerRoutesApplyOnlyToClientsInTheirNamespace) {
  MeshView mesh;
  mesh.http_routes = {
      http_route("producer", R"({"parentRefs": [{"name": "reviews"}],
        "rules": [{"matches": [{"path": {"value": "/p"}}], "backendRefs": [{"name": "producer"}]}]})"),
      http_route("consumer", R"({"parentRefs": [{"name": "reviews", "namespace": "default"}],
        "rules": [{"matches": [{"path": {"value": "/c"}}], "backendRefs": [{"name": "consumer"}]}]})",
                 1, "shop"),
  };
  EXPECT_EQ(describe_all(routes_of(mesh, "default")),
            (std::vector<std::string>{"PREFIX /p -> producer.default=1"}));
  EXPECT_EQ(describe_all(routes_of(mesh, "shop")),
            (std::vector<std::string>{"PREFIX /p -> producer.default=1", "PREFIX /c -> consumer.shop=1"}))
      << "the consumer route's backends are in its own namespace";
}

// A RateLimitPolicy on HTTPRoute `route` with one limit per name.
Resource route_rate_limit(std::string name, const std::string& route, const std::vector<std::string>& limits,
                          std::string ns = "default") {
  Json spec{{"targetRef", {{"group", "gateway.networking.k8s.io"}, {"kind", "HTTPRoute"}, {"name", route}}},
            {"limits", Json::array()}};
  for (const std::string& l : limits) {
    spec["limits"].push_back({{"name", l},
                              {"key", {{"source", "Address"}}},
                              {"tokenBucket", {{"requestsPerUnit", 5}, {"unit", "Second"}}}});
  }
  return resource("RateLimitPolicy", std::move(name), spec.dump().c_str(), 1, std::move(ns));
}

// Each route as describe() has it, then the names of its limits: "PREFIX / -> x.default=1 [a,b]".
std::vector<std::string> describe_with_limits(const v1::VirtualHost& vh) {
  std::vector<std::string> out;
  for (const v1::Route& r : vh.routes()) {
    std::string limits;
    for (const v1::RateLimit& l : r.rate_limits()) limits += (limits.empty() ? "" : ",") + l.name();
    out.push_back(describe(r) + " [" + limits + "]");
  }
  return out;
}

TEST(RouteTranslation, AnHttpRoutesLimitsAreOnEveryRouteMadeFromItAndNoOther) {
  MeshView mesh;
  mesh.http_routes = {
      http_route("limited", R"({"parentRefs": [{"name": "reviews"}], "hostnames": ["a.example", "*.example"],
        "rules": [{"matches": [{"path": {"value": "/a"}}, {"method": "POST"}], "backendRefs": [{"name": "v1"}]},
                  {"matches": [{"path": {"type": "Exact", "value": "/r"}}],
                   "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "b.example"}}]},
                  {"matches": [{"path": {"value": "/none"}}]}]})"),
      http_route("free", R"({"parentRefs": [{"name": "reviews"}],
        "rules": [{"matches": [{"path": {"value": "/f"}}], "backendRefs": [{"name": "v2"}]}]})"),
  };
  mesh.rate_limit_policies = {
      route_rate_limit("b", "limited", {"b1"}),
      route_rate_limit("a", "limited", {"a1", "a2"}),
      route_rate_limit("elsewhere", "limited", {"x"}, "prod"),
      route_rate_limit("on-service", "reviews", {"x"}),
  };
  mesh.rate_limit_policies.push_back(resource("RateLimitPolicy", "service", R"({
      "targetRef": {"kind": "Service", "name": "reviews"},
      "limits": [{"name": "s", "key": {"source": "Address"}, "leakyBucket": {"ratePerSecond": 1}}]})"));
  EXPECT_EQ(describe_with_limits(routes_of(mesh)),
            (std::vector<std::string>{
                "EXACT /r hosts:a.example -> redirect [a1,a2,b1]",
                "PREFIX /none hosts:a.example -> !no backends [a1,a2,b1]",
                "PREFIX /a hosts:a.example -> v1.default=1 [a1,a2,b1]",
                "PREFIX / POST hosts:a.example -> v1.default=1 [a1,a2,b1]",
                "EXACT /r hosts:*.example -> redirect [a1,a2,b1]",
                "PREFIX /none hosts:*.example -> !no backends [a1,a2,b1]",
                "PREFIX /a hosts:*.example -> v1.default=1 [a1,a2,b1]",
                "PREFIX / POST hosts:*.example -> v1.default=1 [a1,a2,b1]",
                "PREFIX /f -> v2.default=1 []",
            }))
      << "a policy on another route, on a route of that name in another namespace, or on the Service "
         "(enforced by the Service's own proxies) adds nothing to the clients' routes";
}

TEST(RouteTranslation, AConsumerRoutesLimitsAreThoseInItsNamespace) {
  MeshView mesh;
  mesh.http_routes = {http_route("consumer", R"({"parentRefs": [{"name": "reviews", "namespace": "default"}],
        "rules": [{"backendRefs": [{"name": "reviews", "namespace": "default"}]}]})",
                                 1, "shop")};
  mesh.rate_limit_policies = {route_rate_limit("shop-limit", "consumer", {"shop"}, "shop"),
                              route_rate_limit("default-limit", "consumer", {"default"})};
  EXPECT_EQ(describe_with_limits(routes_of(mesh, "shop")),
            (std::vector<std::string>{"PREFIX / -> reviews.default=1 [shop]"}));
}

TEST(RouteTranslation, LimitsOfARouteThatDoesNotExistGoNowhere) {
  MeshView mesh;
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
        "rules": [{"backendRefs": [{"name": "v1"}]}]})")};
  mesh.rate_limit_policies = {route_rate_limit("early", "not-yet", {"x"})};
  EXPECT_EQ(describe_with_limits(routes_of(mesh)), (std::vector<std::string>{"PREFIX / -> v1.default=1 []"}));
  mesh.http_routes.push_back(http_route("not-yet", R"({"parentRefs": [{"name": "reviews"}],
        "rules": [{"matches": [{"path": {"value": "/new"}}], "backendRefs": [{"name": "v2"}]}]})",
                                        2));
  EXPECT_EQ(describe_with_limits(routes_of(mesh)),
            (std::vector<std::string>{"PREFIX /new -> v2.default=1 [x]", "PREFIX / -> v1.default=1 []"}))
      << "the limits apply once the route is there";
}

TEST(RouteTranslation, RouteClustersAreEveryResolvedBackendAndMirror) {
  MeshView mesh;
  mesh.destination_policies = {reviews_policy()};
  mesh.http_routes = {http_route("reviews", R"({"parentRefs": [{"name": "reviews"}],
    "rules": [{"backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "reviews/v1"},
                               {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v7"}],
               "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow"}}}]},
              {"backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "reviews/v1"},
                               {"name": "ratings", "namespace": "prod", "filters": [
                                 {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "copies"}}}]}]}]})")};
  mesh.reference_grants = {reference_grant("prod", "default")};
  std::set<ClusterRef> clusters;
  add_route_clusters(with_backends(mesh), {"reviews", "default"}, "default", clusters);
  std::vector<std::string> names;
  for (const ClusterRef& c : clusters) names.push_back(c.cluster_name());
  EXPECT_EQ(names, (std::vector<std::string>{"copies.default", "ratings.prod", "reviews.default/v1",
                                             "shadow.default"}));
  // A Service with no instance keeps its cluster: it does not come and go with them.
  std::set<ClusterRef> without_shadow;
  add_route_clusters(with_backends(mesh, {"shadow.default"}), {"reviews", "default"}, "default",
                     without_shadow);
  EXPECT_EQ(without_shadow.size(), clusters.size());
  EXPECT_EQ(without_shadow.count({{"shadow", "default"}, "", 0}), 1u);
}

}  // namespace
}  // namespace trellis::control
