#include "control/snapshot_builder.h"

#include <gtest/gtest.h>

#include "mesh_test_helpers.h"

namespace trellis::control {
namespace {

using namespace ::trellis::control::testing;  // NOLINT: test helpers

Resource route(std::string name, const Json& spec, uint64_t version = 1) {
  return http_route(std::move(name), spec.dump().c_str(), version);
}

const v1::Cluster* find_cluster(const v1::ConfigUpdate& u, const std::string& name) {
  for (const auto& c : u.clusters())
    if (c.name() == name) return &c;
  return nullptr;
}

const v1::Listener* find_listener(const v1::ConfigUpdate& u, const std::string& name) {
  for (const auto& l : u.listeners())
    if (l.name() == name) return &l;
  return nullptr;
}

TEST(SnapshotBuilder, InboundListenerForwardsToTheLocalApplication) {
  MeshView mesh;
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({}));
  const v1::Listener* in = find_listener(u, "inbound");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->address(), "127.0.0.1:16000");
  const v1::Cluster* local = find_cluster(u, "inbound");
  ASSERT_NE(local, nullptr);
  ASSERT_EQ(local->endpoints_size(), 1);
  EXPECT_EQ(local->endpoints(0).address(), "127.0.0.1:9080");
  EXPECT_EQ(local->protocol(), v1::Cluster::DOWNSTREAM) << "gRPC callers reach the application in HTTP/2";
  EXPECT_EQ(find_listener(u, "outbound"), nullptr)
      << "an application that calls nothing needs no outbound listener";
}

// Sidecars serve mTLS as MeshConfig says, or as their own service's
// DestinationPolicy says; instances a sidecar registered are called over mTLS
// with the identity of their service, those registered through the API (no
// sidecar) in plain text.
TEST(SnapshotBuilder, MutualTlsFollowsTheMeshAndEachServicesPolicy) {
  MeshView mesh;
  mesh.trust_domain = "cluster.local";
  Instance sidecar = instance("reviews", "127.0.0.1:7001");
  sidecar.registered_by = "reviews-1";
  Instance api = instance("reviews", "127.0.0.1:7002");
  api.registered_by = "api";
  mesh.instances = {sidecar, api};
  auto inbound_tls = [&](const v1::ConfigUpdate& u) {
    const v1::Listener* in = find_listener(u, "inbound");
    return in->has_tls() ? std::string(v1::ListenerTls::Mode_Name(in->tls().mode())) : std::string("none");
  };
  auto identities = [&](const v1::ConfigUpdate& u) {
    std::vector<std::string> out;
    for (const auto& e : find_cluster(u, "reviews.default")->endpoints()) out.push_back(e.identity());
    return out;
  };
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"reviews"}));
  EXPECT_EQ(inbound_tls(u), "PERMISSIVE") << "the default";
  EXPECT_EQ(identities(u), (std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/reviews", ""}));

  mesh.mesh_configs = {resource("MeshConfig", "default", R"({"mtls": {"mode": "STRICT"}})")};
  EXPECT_EQ(inbound_tls(build_proxy_config(mesh, hello({"reviews"}))), "STRICT");

  mesh.mesh_configs = {resource("MeshConfig", "default", R"({"mtls": {"mode": "DISABLE"}})")};
  u = build_proxy_config(mesh, hello({"reviews"}));
  EXPECT_EQ(inbound_tls(u), "none");
  EXPECT_EQ(identities(u), (std::vector<std::string>{"", ""}));

  // Per service: productpage's policy governs its inbound listener, reviews'
  // how productpage calls reviews.
  mesh.destination_policies = {
      resource("DestinationPolicy", "productpage",
               R"({"targetRef": {"kind": "Service", "name": "productpage"}, "mtls": {"mode": "STRICT"}})"),
      resource("DestinationPolicy", "reviews",
               R"({"targetRef": {"kind": "Service", "name": "reviews"}, "mtls": {"mode": "PERMISSIVE"}})")};
  u = build_proxy_config(mesh, hello({"reviews"}));
  EXPECT_EQ(inbound_tls(u), "STRICT");
  EXPECT_EQ(identities(u), (std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/reviews", ""}));
  mesh.mesh_configs.clear();
  mesh.destination_policies[1] =
      resource("DestinationPolicy", "reviews",
               R"({"targetRef": {"kind": "Service", "name": "reviews"}, "mtls": {"mode": "DISABLE"}})");
  EXPECT_EQ(identities(build_proxy_config(mesh, hello({"reviews"}))), (std::vector<std::string>{"", ""}));
}

TEST(SnapshotBuilder, OnlyTheServicesItCallsAndWhatTheirRoutesReach) {
  MeshView mesh;
  mesh.instances = {instance("reviews-v1", "127.0.0.1:7001"), instance("reviews-v2", "127.0.0.1:7002"),
                    instance("ratings", "127.0.0.1:7003"), instance("details", "127.0.0.1:7004"),
                    instance("unrelated", "127.0.0.1:7005")};
  mesh.http_routes = {route("reviews-canary", Json::parse(R"({
      "parentRefs": [{"kind": "Service", "name": "reviews"}],
      "rules": [{"backendRefs": [{"name": "reviews-v1", "weight": 90}, {"name": "reviews-v2", "weight": 10}]}]})"))};
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"reviews", "details"}));
  std::vector<std::string> names;
  for (const auto& c : u.clusters()) names.push_back(c.name());
  EXPECT_EQ(names, (std::vector<std::string>{"inbound", "details.default", "reviews.default",
                                             "reviews-v1.default", "reviews-v2.default"}));
  EXPECT_EQ(find_cluster(u, "unrelated.default"), nullptr);
  EXPECT_EQ(find_cluster(u, "ratings.default"), nullptr);
  ASSERT_EQ(find_cluster(u, "reviews-v2.default")->endpoints_size(), 1);
  EXPECT_EQ(find_cluster(u, "reviews-v2.default")->endpoints(0).address(), "127.0.0.1:7002");
}

TEST(SnapshotBuilder, OutboundVirtualHostsAnswerTheServiceNames) {
  MeshView mesh;
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"details", "ratings.prod", "details"}));
  const v1::Listener* out = find_listener(u, "outbound");
  ASSERT_NE(out, nullptr);
  ASSERT_EQ(out->virtual_hosts_size(), 2) << "a service named twice is one virtual host";
  const auto& details = out->virtual_hosts(0);
  EXPECT_EQ(details.name(), "details.default");
  std::vector<std::string> domains(details.domains().begin(), details.domains().end());
  EXPECT_EQ(domains, (std::vector<std::string>{"details", "details.default", "details.default.svc",
                                               "details.default.svc.cluster.local"}));
  ASSERT_EQ(details.routes_size(), 1);
  EXPECT_EQ(details.routes(0).cluster(), "details.default");
  EXPECT_EQ(out->virtual_hosts(1).name(), "ratings.prod");
  EXPECT_EQ(out->virtual_hosts(1).domains(0), "ratings") << "the only ratings called";

  // The same name in two namespaces: the bare name is the client's own
  // namespace's, as in Kubernetes; the other answers its qualified names.
  u = build_proxy_config(mesh, hello({"ratings", "ratings.prod"}));
  out = find_listener(u, "outbound");
  ASSERT_EQ(out->virtual_hosts_size(), 2);
  std::vector<std::string> first(out->virtual_hosts(0).domains().begin(),
                                 out->virtual_hosts(0).domains().end());
  std::vector<std::string> second(out->virtual_hosts(1).domains().begin(),
                                  out->virtual_hosts(1).domains().end());
  EXPECT_EQ(out->virtual_hosts(0).name(), "ratings.default");
  EXPECT_EQ(first.front(), "ratings");
  EXPECT_EQ(second,
            (std::vector<std::string>{"ratings.prod", "ratings.prod.svc", "ratings.prod.svc.cluster.local"}));
}

TEST(SnapshotBuilder, OutboundRoutesComeFromTheHttpRoutes) {
  MeshView mesh;
  mesh.http_routes = {route("split", Json::parse(R"({
      "parentRefs": [{"name": "reviews"}],
      "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "timeouts": {"request": "1m30s"},
         "backendRefs": [{"name": "reviews-v2"}]},
        {"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}], "backendRefs": [{"name": "reviews-v2"}]},
        {"matches": [{"path": {"type": "Exact", "value": "/health"}}], "backendRefs": [{"name": "reviews-v1"}]}
      ]})"))};
  mesh = with_backends(mesh);
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"reviews"}));
  const auto& vh = find_listener(u, "outbound")->virtual_hosts(0);
  EXPECT_EQ(describe_all(vh), (std::vector<std::string>{
                                  "EXACT /health -> reviews-v1.default=1",
                                  "PREFIX /api -> reviews-v2.default=1",
                                  "PREFIX / h:x-canary -> reviews-v2.default=1",
                              }))
      << "a request no rule matches is answered 404";
  EXPECT_EQ(vh.routes(1).timeout_ms(), 90000u);
  EXPECT_EQ(vh.routes(2).timeout_ms(), 15000u);
}

TEST(SnapshotBuilder, SubsetAndMirrorClustersAreInScopeOnceEach) {
  MeshView mesh;
  mesh.destination_policies = {resource("DestinationPolicy", "reviews", R"({
      "targetRef": {"kind": "Service", "name": "reviews"},
      "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})")};
  mesh.instances = {instance("reviews", "10.0.0.1:9080", {{"version", "v1"}}),
                    instance("reviews", "10.0.0.2:9080", {{"version", "v2"}})};
  const char* spec = R"({"parentRefs": [{"name": "reviews"}],
      "rules": [{"backendRefs": [{"group": "trellis.dev", "kind": "Subset", "name": "reviews/v1", "weight": 90},
                                 {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v2", "weight": 10},
                                 {"group": "trellis.dev", "kind": "Subset", "name": "reviews/v3"}],
                 "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "reviews-shadow"}}}]}]})";
  mesh.http_routes = {http_route("a", spec), http_route("b", spec)};
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"reviews"}));
  std::vector<std::string> names;
  for (const auto& c : u.clusters()) names.push_back(c.name());
  EXPECT_EQ(names, (std::vector<std::string>{"inbound", "reviews.default", "reviews.default/v1",
                                             "reviews.default/v2", "reviews-shadow.default"}));
  ASSERT_EQ(find_cluster(u, "reviews.default/v2")->endpoints_size(), 1);
  EXPECT_EQ(find_cluster(u, "reviews.default/v2")->endpoints(0).address(), "10.0.0.2:9080");
  EXPECT_EQ(find_cluster(u, "reviews-shadow.default")->endpoints_size(), 0)
      << "a backend Service without instances keeps its (empty) cluster, so that it does not come and go";
  EXPECT_TRUE(find_listener(u, "outbound")->virtual_hosts(0).routes(0).mirrors().empty())
      << "but nothing is sent there until it exists";
  std::vector<std::string> keys;
  for (const auto& p : u.policies()) keys.push_back(p.key());
  EXPECT_EQ(keys, std::vector<std::string>{"DestinationPolicy/default/reviews"});
}

TEST(SnapshotBuilder, AChangedFaultInjectionChangesTheConfig) {
  MeshView mesh;
  mesh.http_routes = {route("chaos", Json::parse(R"({"parentRefs": [{"name": "ratings"}],
      "rules": [{"filters": [{"type": "ExtensionRef",
                              "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection", "name": "flaky"}}],
                 "backendRefs": [{"name": "ratings"}]}]})"))};
  auto fault = [&] {
    return find_listener(build_proxy_config(mesh, hello({"ratings"})), "outbound")
        ->virtual_hosts(0)
        .routes(0)
        .fault();
  };
  EXPECT_EQ(fault().abort_status(), 0u) << "not applied yet: no fault";
  mesh.fault_injections = {
      resource("FaultInjection", "flaky", R"({"abort": {"httpStatus": 503, "percent": 50}})")};
  EXPECT_EQ(fault().abort_status(), 503u);
  EXPECT_EQ(fault().abort_per_million(), 500000u);
  mesh.fault_injections[0].spec["abort"]["httpStatus"] = 504;
  EXPECT_EQ(fault().abort_status(), 504u);
}

Resource policy(std::string kind, std::string name, std::string target_kind, std::string target) {
  Resource r;
  r.api_version = "trellis.dev/v1alpha1";
  r.kind = std::move(kind);
  r.name = std::move(name);
  r.namespace_ = "default";
  r.resource_version = 7;
  r.spec = Json{{"targetRef", {{"kind", target_kind}, {"name", target}}}};
  return r;
}

TEST(SnapshotBuilder, PoliciesReachOnlyTheProxiesTheyConcern) {
  MeshView mesh;
  mesh.destination_policies = {policy("DestinationPolicy", "details-lb", "Service", "details"),
                               policy("DestinationPolicy", "other-lb", "Service", "unrelated")};
  mesh.rate_limit_policies = {policy("RateLimitPolicy", "own-limit", "Service", "productpage"),
                              policy("RateLimitPolicy", "their-limit", "Service", "details")};
  mesh.authorization_policies = {policy("AuthorizationPolicy", "own-authz", "Service", "productpage")};
  Resource mesh_config;
  mesh_config.kind = "MeshConfig";
  mesh_config.name = "default";
  mesh_config.spec = Json{{"mtls", {{"mode", "PERMISSIVE"}}}};
  mesh.mesh_configs = {mesh_config};
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"details"}));
  std::vector<std::string> keys;
  for (const auto& p : u.policies()) keys.push_back(p.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"DestinationPolicy/default/details-lb",
                                            "RateLimitPolicy/default/own-limit",
                                            "AuthorizationPolicy/default/own-authz", "MeshConfig//default"}));
  EXPECT_EQ(u.policies(0).resource_version(), 7u);
  EXPECT_EQ(Json::parse(u.policies(0).spec_json())["targetRef"]["name"], "details");
}

// A proxy of `service` that calls `upstreams`.
v1::Hello hello_of(const std::string& service, std::vector<std::string> upstreams,
                   const std::string& ns = "") {
  v1::Hello h = hello(std::move(upstreams), /*with_instance=*/true, ns);
  h.mutable_node()->set_id(service + "-1");
  h.mutable_node()->set_service(service);
  return h;
}

Resource rate_limit(std::string name, const std::string& target_kind, const std::string& target,
                    const std::string& limit_name, std::string ns = "default") {
  Json spec{{"targetRef", {{"kind", target_kind}, {"name", target}}},
            {"limits",
             {{{"name", limit_name},
               {"key", {{"source", "Address"}}},
               {"tokenBucket", {{"requestsPerUnit", 100}, {"unit", "Second"}}}}}}};
  return resource("RateLimitPolicy", std::move(name), spec.dump().c_str(), 1, std::move(ns));
}

// The names of the limits on each route of `listener` ("" when it has none), "|" between virtual hosts.
std::vector<std::string> limits_on(const v1::ConfigUpdate& u, const std::string& listener) {
  std::vector<std::string> out;
  const v1::Listener* l = find_listener(u, listener);
  if (l == nullptr) return out;
  for (const v1::VirtualHost& vh : l->virtual_hosts()) {
    if (!out.empty()) out.push_back("|");
    for (const v1::Route& r : vh.routes()) {
      std::string names;
      for (const v1::RateLimit& limit : r.rate_limits()) names += (names.empty() ? "" : ",") + limit.name();
      out.push_back(names);
    }
  }
  return out;
}

TEST(SnapshotBuilder, ServiceLimitsAreOnTheInboundRouteOfTheServicesOwnProxiesOnly) {
  MeshView mesh;
  mesh.rate_limit_policies = {rate_limit("reviews-b", "Service", "reviews", "b"),
                              rate_limit("reviews-a", "Service", "reviews", "a"),
                              rate_limit("ratings", "Service", "ratings", "r"),
                              rate_limit("reviews-prod", "Service", "reviews", "prod", "prod")};
  v1::ConfigUpdate reviews = build_proxy_config(mesh, hello_of("reviews", {"ratings"}));
  EXPECT_EQ(limits_on(reviews, "inbound"), (std::vector<std::string>{"a,b"}))
      << "every policy on the Service, by policy name; not those on a namesake in another namespace";
  EXPECT_EQ(limits_on(reviews, "outbound"), (std::vector<std::string>{""}))
      << "the limits on ratings are its own proxies' to enforce, not its clients'";
  EXPECT_EQ(limits_on(build_proxy_config(mesh, hello_of("reviews", {}, "prod")), "inbound"),
            (std::vector<std::string>{"prod"}));
  v1::ConfigUpdate client = build_proxy_config(mesh, hello_of("productpage", {"reviews"}));
  EXPECT_EQ(limits_on(client, "inbound"), (std::vector<std::string>{""}));
  EXPECT_EQ(limits_on(client, "outbound"), (std::vector<std::string>{""}));
}

TEST(SnapshotBuilder, RouteLimitsAreOnTheClientsRoutesOnly) {
  MeshView mesh;
  mesh.http_routes = {route("reviews-split", Json::parse(R"({"parentRefs": [{"name": "reviews"}],
      "rules": [{"matches": [{"path": {"value": "/api"}}, {"method": "POST"}], "backendRefs": [{"name": "reviews-v2"}]}]})")),
                      route("details", Json::parse(R"({"parentRefs": [{"name": "details"}],
      "rules": [{"backendRefs": [{"name": "details-v1"}]}]})"))};
  mesh.rate_limit_policies = {rate_limit("split-limit", "HTTPRoute", "reviews-split", "split")};
  v1::ConfigUpdate client = build_proxy_config(mesh, hello_of("productpage", {"details", "reviews"}));
  EXPECT_EQ(limits_on(client, "outbound"), (std::vector<std::string>{"", "|", "split", "split"}))
      << "details' route carries nothing";
  EXPECT_EQ(limits_on(client, "inbound"), (std::vector<std::string>{""}));
  v1::ConfigUpdate server = build_proxy_config(mesh, hello_of("reviews", {}));
  EXPECT_EQ(limits_on(server, "inbound"), (std::vector<std::string>{""}))
      << "the route's clients enforce its limits, not the Service's proxies";
  std::vector<std::string> keys;
  for (const auto& p : server.policies()) keys.push_back(p.key());
  EXPECT_EQ(keys, std::vector<std::string>{"RateLimitPolicy/default/split-limit"})
      << "the policy itself still goes to the proxies of the Service the route is attached to";
}

TEST(SnapshotBuilder, AChangedRateLimitPolicyChangesTheListenersItConcerns) {
  MeshView mesh;
  mesh.http_routes = {route("reviews", Json::parse(R"({"parentRefs": [{"name": "reviews"}],
      "rules": [{"backendRefs": [{"name": "reviews"}]}]})"))};
  v1::Hello client = hello_of("productpage", {"reviews"});
  v1::Hello server = hello_of("reviews", {});
  auto listener = [&](const v1::Hello& h, const char* name) {
    return find_listener(build_proxy_config(mesh, h), name)->SerializeAsString();
  };
  std::string client_before = listener(client, "outbound");
  std::string server_before = listener(server, "inbound");

  mesh.rate_limit_policies = {rate_limit("on-service", "Service", "reviews", "s")};
  EXPECT_EQ(listener(client, "outbound"), client_before);
  std::string server_limited = listener(server, "inbound");
  EXPECT_NE(server_limited, server_before);
  mesh.rate_limit_policies[0].spec["limits"][0]["tokenBucket"]["requestsPerUnit"] = 5;
  EXPECT_NE(listener(server, "inbound"), server_limited) << "a changed rate is a changed listener";

  mesh.rate_limit_policies = {rate_limit("on-route", "HTTPRoute", "reviews", "r")};
  EXPECT_EQ(listener(server, "inbound"), server_before) << "a removed policy's limits are gone";
  std::string client_limited = listener(client, "outbound");
  EXPECT_NE(client_limited, client_before);
  mesh.rate_limit_policies[0].spec["limits"][0]["key"] = {{"header", "x-user"}};
  EXPECT_NE(listener(client, "outbound"), client_limited);
}

TEST(SnapshotBuilder, SameInputSameOutput) {
  MeshView mesh;
  mesh.instances = {instance("details", "127.0.0.1:7002"), instance("details", "127.0.0.1:7001")};
  std::string a = build_proxy_config(mesh, hello({"details"})).SerializeAsString();
  std::swap(mesh.instances[0], mesh.instances[1]);
  std::string b = build_proxy_config(mesh, hello({"details"})).SerializeAsString();
  EXPECT_EQ(a, b) << "endpoint order must not depend on registry order";
}

// ---- Service ports ----

std::vector<std::string> domains_of(const v1::ConfigUpdate& u) {
  std::vector<std::string> out;
  for (const v1::VirtualHost& vh : find_listener(u, "outbound")->virtual_hosts()) {
    std::string line = vh.name() + ":";
    for (const std::string& d : vh.domains()) line += " " + d;
    out.push_back(line);
  }
  return out;
}

const v1::VirtualHost* find_vhost(const v1::ConfigUpdate& u, const std::string& name) {
  for (const v1::VirtualHost& vh : find_listener(u, "outbound")->virtual_hosts())
    if (vh.name() == name) return &vh;
  return nullptr;
}

std::string port_header(const v1::HeaderModifier& m) {
  for (const v1::HeaderPair& p : m.set())
    if (p.name() == "x-trellis-port") return p.value();
  return "";
}

// reviews serves http on 9080 (the application on 8080) and admin on 9443;
// one instance through its sidecar, one registered through the API.
MeshView ported_mesh() {
  MeshView mesh;
  Instance sidecar = instance("reviews", "127.0.0.1:7001");
  sidecar.registered_by = "reviews-1";
  sidecar.ports = {{"http", 9080, 8080, "http"}, {"admin", 9443, 9443, ""}};
  Instance api = instance("reviews", "10.0.0.2:7002");
  api.registered_by = "api";
  api.ports = {{"http", 9080, 8081, "grpc"}};
  mesh.instances = {sidecar, api};
  return mesh;
}

TEST(SnapshotBuilder, EachPortOfAServiceIsAVirtualHostAndAClusterOfItsOwn) {
  MeshView mesh = ported_mesh();
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"reviews"}));
  EXPECT_EQ(domains_of(u),
            (std::vector<std::string>{
                "reviews.default_9080: reviews:9080 reviews.default:9080 reviews.default.svc:9080 "
                "reviews.default.svc.cluster.local:9080",
                "reviews.default_9443: reviews:9443 reviews.default:9443 reviews.default.svc:9443 "
                "reviews.default.svc.cluster.local:9443"}))
      << "two ports, neither 80: a Host without a port names neither";
  const v1::Cluster* http = find_cluster(u, "reviews.default_9080");
  ASSERT_NE(http, nullptr);
  ASSERT_EQ(http->endpoints_size(), 2);
  EXPECT_EQ(http->endpoints(0).address(), "10.0.0.2:8081") << "no sidecar: the instance's own port";
  EXPECT_EQ(http->endpoints(1).address(), "127.0.0.1:7001") << "a sidecar: through it";
  EXPECT_EQ(http->protocol(), v1::Cluster::HTTP1) << "the mesh's protocol to sidecars";
  const v1::Cluster* admin = find_cluster(u, "reviews.default_9443");
  ASSERT_NE(admin, nullptr);
  ASSERT_EQ(admin->endpoints_size(), 1) << "only the instances that serve the port";
  EXPECT_EQ(find_cluster(u, "reviews.default"), nullptr);
  const v1::VirtualHost* vh = find_vhost(u, "reviews.default_9443");
  ASSERT_NE(vh, nullptr);
  const v1::Route& fallback = vh->routes(vh->routes_size() - 1);
  EXPECT_EQ(fallback.cluster(), "reviews.default_9443");
  EXPECT_EQ(port_header(fallback.request_headers()), "9443") << "the callee's sidecar learns the port";

  // No sidecar anywhere: the port's protocol is the cluster's.
  mesh.instances.erase(mesh.instances.begin());
  u = build_proxy_config(mesh, hello({"reviews"}));
  EXPECT_EQ(find_cluster(u, "reviews.default_9080")->protocol(), v1::Cluster::HTTP2) << "grpc";
  EXPECT_EQ(domains_of(u),
            (std::vector<std::string>{
                "reviews.default_9080: reviews:9080 reviews reviews.default:9080 reviews.default "
                "reviews.default.svc:9080 reviews.default.svc reviews.default.svc.cluster.local:9080 "
                "reviews.default.svc.cluster.local"}))
      << "the only port also takes a Host without one";
}

TEST(SnapshotBuilder, TheInstancesSidecarSendsEachPortToItsTargetPort) {
  MeshView mesh;
  v1::Hello h = hello({});
  h.mutable_instance()->set_app_address("127.0.0.5:9080");
  v1::ServicePort* http = h.mutable_instance()->add_ports();
  http->set_name("http");
  http->set_port(80);
  http->set_target_port(8080);
  http->set_protocol("h2c");
  v1::ServicePort* admin = h.mutable_instance()->add_ports();
  admin->set_name("admin");
  admin->set_port(9443);
  admin->set_target_port(9443);
  v1::ConfigUpdate u = build_proxy_config(mesh, h);
  const v1::Listener* in = find_listener(u, "inbound");
  ASSERT_EQ(in->virtual_hosts(0).routes_size(), 3);
  std::vector<std::string> routes;
  for (const v1::Route& r : in->virtual_hosts(0).routes()) {
    std::string line = r.cluster();
    for (const v1::ValueMatch& m : r.headers()) line += " if " + m.name() + "=" + m.value();
    for (const std::string& gone : r.request_headers().remove()) line += " -" + gone;
    routes.push_back(line);
  }
  EXPECT_EQ(routes, (std::vector<std::string>{"inbound_80 if x-trellis-port=80 -x-trellis-port",
                                              "inbound_9443 if x-trellis-port=9443 -x-trellis-port",
                                              "inbound -x-trellis-port"}));
  const v1::Cluster* c = find_cluster(u, "inbound_80");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->endpoints(0).address(), "127.0.0.5:8080");
  EXPECT_EQ(c->protocol(), v1::Cluster::HTTP2);
  EXPECT_EQ(find_cluster(u, "inbound_9443")->protocol(), v1::Cluster::DOWNSTREAM);
  EXPECT_EQ(find_cluster(u, "inbound")->endpoints(0).address(), "127.0.0.5:9080");
}

// The Gateway API's mesh ports: a parentRef's port or sectionName scopes the
// route to that port; a backendRef's port picks the backend's port, and one
// the backend does not declare is answered 500.
TEST(SnapshotBuilder, RoutesApplyToTheirParentsPortAndSendToTheBackendsPort) {
  MeshView mesh = ported_mesh();
  Instance other = instance("ratings", "127.0.0.1:7003");
  other.registered_by = "ratings-1";
  other.ports = {{"", 8080, 8080, ""}};
  mesh.instances.push_back(other);
  mesh.http_routes = {
      route("on-admin", Json::parse(R"({"parentRefs": [{"name": "reviews", "port": 9443}],
        "rules": [{"matches": [{"path": {"value": "/a"}}], "backendRefs": [{"name": "ratings", "port": 8080}]}]})")),
      route("on-http", Json::parse(R"({"parentRefs": [{"name": "reviews", "sectionName": "http"}],
        "rules": [{"matches": [{"path": {"value": "/h"}}], "backendRefs": [{"name": "ratings", "port": 9999}]}]})")),
      route("everywhere", Json::parse(R"({"parentRefs": [{"name": "reviews"}],
        "rules": [{"matches": [{"path": {"value": "/e"}}], "backendRefs": [{"name": "ratings", "port": 8080}]}]})"))};
  v1::ConfigUpdate u = build_proxy_config(mesh, hello({"reviews"}));
  auto described = [&](const std::string& vhost) {
    std::vector<std::string> out;
    for (const v1::Route& r : find_vhost(u, vhost)->routes()) {
      std::string line = describe(r);
      for (const v1::Backend& b : r.backends()) line += " [" + port_header(b.request_headers()) + "]";
      out.push_back(line);
    }
    return out;
  };
  EXPECT_EQ(described("reviews.default_9443"),
            (std::vector<std::string>{"PREFIX /e -> ratings.default_8080=1 [8080]",
                                      "PREFIX /a -> ratings.default_8080=1 [8080]"}))
      << "equal prefixes: the route whose name sorts first";
  EXPECT_EQ(described("reviews.default_9080"),
            (std::vector<std::string>{"PREFIX /e -> ratings.default_8080=1 [8080]", "PREFIX /h -> =1 []"}))
      << "ratings has no port 9999: that share is answered 500";
  EXPECT_NE(find_cluster(u, "ratings.default_8080"), nullptr);
}

}  // namespace
}  // namespace trellis::control
