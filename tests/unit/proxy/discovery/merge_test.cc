// What the control plane sends, as the proxy's config model
// (src/proxy/control_config.cc, control_routes.cc, control_clusters.cc):
// every field of a trellis.v1 Route and Cluster, checked as a bootstrap file
// is, with errors that name the field.
#include "proxy/discovery/merge.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace trellis::proxy {
namespace {

using policy::LbAlgorithm;
using policy::PathMatchKind;
using Pairs = std::vector<std::pair<std::string, std::string>>;

const char* const kRoute = "listeners[outbound].virtual_hosts[reviews.default].routes[0]";
const char* const kCluster = "clusters[reviews.default]";

v1::Cluster cluster(const std::string& name) {
  v1::Cluster c;
  c.set_name(name);
  c.add_endpoints()->set_address("10.0.0.1:9080");
  return c;
}

// An update with clusters ratings.default, reviews.default and shadow
// (indices 0, 1, 2 once merged: clusters come in name order), and one
// outbound listener whose only route is `route`.
v1::ConfigUpdate update_with(const v1::Route& route, v1::Cluster reviews = cluster("reviews.default")) {
  v1::ConfigUpdate update;
  update.set_full(true);
  *update.add_clusters() = cluster("ratings.default");
  *update.add_clusters() = std::move(reviews);
  *update.add_clusters() = cluster("shadow");
  v1::Listener* listener = update.add_listeners();
  listener->set_name("outbound");
  listener->set_address("127.0.0.1:15001");
  v1::VirtualHost* vhost = listener->add_virtual_hosts();
  vhost->set_name("reviews.default");
  vhost->add_domains("reviews");
  *vhost->add_routes() = route;
  return update;
}

ConfigLoad merge(const v1::ConfigUpdate& update, const ProxyConfig& bootstrap) {
  DynamicConfig dynamic;
  dynamic.apply(update);
  return merge_dynamic_config(bootstrap, dynamic);
}

// With an empty bootstrap file.
ConfigLoad merge(const v1::ConfigUpdate& update) {
  const ProxyConfig bootstrap;
  return merge(update, bootstrap);
}

std::string errors_of(const ConfigLoad& result) {
  std::string out;
  for (const ConfigError& e : result.errors) out += e.path + ": " + e.message + "\n";
  return out;
}

const RouteConfig& only_route(const ConfigLoad& result) {
  return result.config.listeners.at(0).virtual_hosts.at(0).routes.at(0);
}
const ClusterConfig& reviews(const ConfigLoad& result) { return result.config.clusters.at(1); }

v1::Route route_to(const std::string& cluster_name) {
  v1::Route r;
  r.set_path("/");
  r.set_cluster(cluster_name);
  return r;
}

// The errors of an update whose route is `route` after `change`.
template <class Change>
std::string route_errors(Change change) {
  v1::Route r = route_to("reviews.default");
  change(r);
  return errors_of(merge(update_with(r)));
}

template <class Change>
std::string cluster_errors(Change change) {
  v1::Cluster c = cluster("reviews.default");
  change(c);
  return errors_of(merge(update_with(route_to("reviews.default"), c)));
}

std::string at(const char* base, const std::string& rest) { return std::string(base) + rest; }

// ---- routes

TEST(ControlConfigTest, EveryRouteField) {
  v1::Route r;
  r.set_path_kind(v1::Route::PREFIX);
  r.set_path("/api");
  r.set_method("GET");
  v1::ValueMatch* header = r.add_headers();
  header->set_name("X-Canary");
  header->set_value("yes");
  v1::ValueMatch* query = r.add_query_params();
  query->set_name("Page");
  query->set_regex(true);
  query->set_value("[0-9]+");
  r.add_hosts("Reviews.Example");
  r.add_hosts("*.example");
  v1::Backend* v1 = r.add_backends();
  v1->set_cluster("reviews.default");
  v1->set_weight(80);
  v1::HeaderPair* version = v1->mutable_request_headers()->add_set();
  version->set_name("X-Version");
  version->set_value("v1");
  v1::Backend* v2 = r.add_backends();
  v2->set_cluster("ratings.default");
  v2->set_weight(20);
  v2->mutable_response_headers()->add_remove("Server");
  r.set_cluster("ignored.when.backends.are.set");
  v1::HeaderPair* add = r.mutable_request_headers()->add_add();
  add->set_name("Via");
  add->set_value("trellis");
  r.mutable_request_headers()->add_remove("x-debug");
  v1::HeaderPair* set = r.mutable_response_headers()->add_set();
  set->set_name("cache-control");
  set->set_value("no-store");
  r.mutable_rewrite()->set_hostname("Internal.Example");
  r.mutable_rewrite()->mutable_path()->set_kind(v1::PathModifier::PREFIX);
  r.mutable_rewrite()->mutable_path()->set_value("/v2");
  v1::Mirror* all = r.add_mirrors();
  all->set_cluster("shadow");
  all->set_numerator(100);
  v1::Mirror* some = r.add_mirrors();
  some->set_cluster("shadow");
  some->set_numerator(1);
  some->set_denominator(3);
  r.mutable_fault()->set_abort_status(503);
  r.mutable_fault()->set_abort_per_million(1000);
  r.mutable_fault()->set_delay_ms(250);
  r.mutable_fault()->set_delay_per_million(500000);
  r.set_timeout_ms(3000);
  r.set_per_try_timeout_ms(1000);

  ConfigLoad result = merge(update_with(r));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const RouteConfig& route = only_route(result);
  EXPECT_EQ(route.match.path_kind, PathMatchKind::kPrefix);
  EXPECT_EQ(route.match.path, "/api");
  EXPECT_EQ(route.match.method, "GET");
  ASSERT_EQ(route.match.headers.size(), 1u);
  EXPECT_EQ(route.match.headers[0].name, "x-canary");
  EXPECT_FALSE(route.match.headers[0].regex);
  EXPECT_EQ(route.match.headers[0].value, "yes");
  ASSERT_EQ(route.match.query_params.size(), 1u);
  EXPECT_EQ(route.match.query_params[0].name, "Page");
  EXPECT_TRUE(route.match.query_params[0].regex);
  EXPECT_EQ(route.match.hosts, (std::vector<std::string>{"reviews.example", "*.example"}));

  ASSERT_EQ(route.backends.size(), 2u);
  EXPECT_EQ(route.backends[0].cluster, "reviews.default");
  EXPECT_EQ(route.backends[0].cluster_index, 1u);
  EXPECT_EQ(route.backends[0].weight, 80u);
  EXPECT_EQ(route.backends[0].request_headers.set, (Pairs{{"x-version", "v1"}}));
  EXPECT_EQ(route.backends[1].cluster_index, 0u);
  EXPECT_EQ(route.backends[1].weight, 20u);
  EXPECT_EQ(route.backends[1].response_headers.remove, std::vector<std::string>{"server"});
  EXPECT_EQ(route.request_headers.add, (Pairs{{"via", "trellis"}}));
  EXPECT_EQ(route.request_headers.remove, std::vector<std::string>{"x-debug"});
  EXPECT_EQ(route.response_headers.set, (Pairs{{"cache-control", "no-store"}}));

  EXPECT_FALSE(route.redirect.enabled);
  EXPECT_EQ(route.rewrite.hostname, "internal.example");
  EXPECT_EQ(route.rewrite.path.kind, PathModifier::Kind::kPrefix);
  EXPECT_EQ(route.rewrite.path.value, "/v2");
  ASSERT_EQ(route.mirrors.size(), 2u);
  EXPECT_EQ(route.mirrors[0].cluster_index, 2u);
  EXPECT_EQ(std::pair(route.mirrors[0].numerator, route.mirrors[0].denominator), std::pair(100u, 100u));
  EXPECT_EQ(std::pair(route.mirrors[1].numerator, route.mirrors[1].denominator), std::pair(1u, 3u));
  EXPECT_EQ(route.fault.abort_status, 503);
  EXPECT_EQ(route.fault.abort_per_million, 1000u);
  EXPECT_EQ(route.fault.delay, Millis(250));
  EXPECT_EQ(route.fault.delay_per_million, 500000u);
  EXPECT_EQ(route.timeout, Millis(3000));
  EXPECT_EQ(route.per_try_timeout, Millis(1000));
  EXPECT_TRUE(route.direct_error.empty());
}

TEST(ControlConfigTest, ClusterShorthandRegexAndExact) {
  v1::Route r = route_to("ratings.default");
  r.set_path_kind(v1::Route::REGEX);
  r.set_path("/ratings/[0-9]+");
  ConfigLoad result = merge(update_with(r));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const RouteConfig& route = only_route(result);
  EXPECT_EQ(route.match.path_kind, PathMatchKind::kRegex);
  ASSERT_EQ(route.backends.size(), 1u);
  EXPECT_EQ(route.backends[0].cluster, "ratings.default");
  EXPECT_EQ(route.backends[0].cluster_index, 0u);
  EXPECT_EQ(route.backends[0].weight, 1u);
  // 0 means none for both timeouts.
  EXPECT_EQ(route.timeout, Millis(0));
  EXPECT_EQ(route.per_try_timeout, Millis(0));

  v1::Route exact = route_to("reviews.default");
  exact.set_path_kind(v1::Route::EXACT);
  exact.clear_path();  // an empty path is "/"
  ConfigLoad second = merge(update_with(exact));
  ASSERT_TRUE(second.ok()) << errors_of(second);
  EXPECT_EQ(only_route(second).match.path_kind, PathMatchKind::kExact);
  EXPECT_EQ(only_route(second).match.path, "/");
}

TEST(ControlConfigTest, MissingBackendIsKeptForA500) {
  v1::Route r;
  r.set_path("/");
  r.add_backends()->set_weight(1);  // cluster empty: the backend does not exist
  r.add_backends()->set_cluster("reviews.default");
  r.set_direct_error("backend ratings not found");
  ConfigLoad result = merge(update_with(r));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const RouteConfig& route = only_route(result);
  ASSERT_EQ(route.backends.size(), 2u);
  EXPECT_EQ(route.backends[0].cluster, "");
  EXPECT_EQ(route.backends[0].cluster_index, 0u);
  EXPECT_EQ(route.backends[0].weight, 1u);
  EXPECT_EQ(route.backends[1].weight, 0u);  // a weight is what it says: 0 sends nothing
  EXPECT_EQ(route.direct_error, "backend ratings not found");

  // With neither backends nor a cluster, nothing is forwarded: every request gets 500.
  ConfigLoad none = merge(update_with(route_to("")));
  ASSERT_TRUE(none.ok()) << errors_of(none);
  EXPECT_TRUE(only_route(none).backends.empty());
}

TEST(ControlConfigTest, ABackendsOwnRewriteMirrorsAndFault) {
  v1::Route r;
  r.set_path("/api");
  r.add_backends()->set_cluster("ratings.default");
  v1::Backend* b = r.add_backends();
  b->set_cluster("reviews.default");
  b->mutable_rewrite()->set_hostname("V2.example");
  b->mutable_rewrite()->mutable_path()->set_kind(v1::PathModifier::PREFIX);
  b->mutable_rewrite()->mutable_path()->set_value("/v2");
  b->add_mirrors()->set_cluster("shadow");
  b->mutable_fault()->set_abort_status(503);
  b->mutable_fault()->set_abort_per_million(1000);
  v1::Backend* moved = r.add_backends();
  moved->set_cluster("reviews.default");
  moved->mutable_redirect()->set_enabled(true);
  moved->mutable_redirect()->set_scheme("https");
  ConfigLoad result = merge(update_with(r));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const RouteConfig& route = only_route(result);
  ASSERT_EQ(route.backends.size(), 3u);
  EXPECT_TRUE(route.backends[0].only_headers());
  EXPECT_TRUE(route.backends[2].redirect.enabled);
  EXPECT_EQ(route.backends[2].redirect.scheme, "https");
  const BackendConfig& v2 = route.backends[1];
  EXPECT_EQ(v2.rewrite.hostname, "v2.example");
  EXPECT_EQ(v2.rewrite.path.value, "/v2");
  ASSERT_EQ(v2.mirrors.size(), 1u);
  EXPECT_EQ(v2.mirrors[0].cluster_index, 2u);
  EXPECT_EQ(v2.fault.abort_status, 503);
  EXPECT_EQ(v2.fault.abort_per_million, 1000u);

  // Checked as a route's are.
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.set_path_kind(v1::Route::EXACT);
              v1::Backend* b = r.add_backends();
              b->set_cluster("reviews.default");
              b->mutable_rewrite()->mutable_path()->set_kind(v1::PathModifier::PREFIX);
              b->mutable_rewrite()->mutable_path()->set_value("/v2");
              b->add_mirrors()->set_cluster("nowhere");
              b->mutable_fault()->set_abort_status(99);
            }),
            at(kRoute, ".backends[0].rewrite.path.kind: a prefix rewrite needs path_kind PREFIX\n") +
                at(kRoute, ".backends[0].mirrors[0].cluster: unknown cluster \"nowhere\"\n") +
                at(kRoute, ".backends[0].fault.abort_status: must be between 200 and 599 (0: no abort)\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              v1::Backend* b = r.add_backends();
              b->set_cluster("reviews.default");
              b->mutable_redirect()->set_enabled(true);
              b->mutable_redirect()->set_status(200);
              b->mutable_rewrite()->set_hostname("a.example");
            }),
            at(kRoute, ".backends[0].redirect.status: must be 301, 302, 303, 307 or 308\n") +
                at(kRoute, ".backends[0].rewrite: cannot be combined with a redirect\n") +
                at(kRoute,
                   ".backends[0]: a backend with a redirect answers its share: its header changes, "
                   "rewrite, mirrors and fault would never act\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              for (int i = 0; i < 30; ++i) r.add_mirrors()->set_cluster("shadow");
              v1::Backend* b = r.add_backends();
              b->set_cluster("reviews.default");
              for (int i = 0; i < 3; ++i) b->add_mirrors()->set_cluster("shadow");
            }),
            at(kRoute,
               ".mirrors: a request may be mirrored 32 times at most; this route mirrors 30 and one of "
               "its backends 3 more\n"));
}

TEST(ControlConfigTest, Redirect) {
  v1::Route r;
  r.set_path("/old");
  v1::Redirect* redirect = r.mutable_redirect();
  redirect->set_enabled(true);
  redirect->set_scheme("https");
  redirect->set_hostname("New.Example");
  redirect->set_port(8443);
  redirect->mutable_path()->set_kind(v1::PathModifier::PREFIX);
  redirect->mutable_path()->set_value("/new");
  ConfigLoad result = merge(update_with(r));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const RedirectConfig& out = only_route(result).redirect;
  EXPECT_TRUE(out.enabled);
  EXPECT_EQ(out.scheme, "https");
  EXPECT_EQ(out.hostname, "new.example");
  EXPECT_EQ(out.port, 8443);
  EXPECT_EQ(out.path.kind, PathModifier::Kind::kPrefix);
  EXPECT_EQ(out.path.value, "/new");
  EXPECT_EQ(out.status, 302);  // 0 means 302
  EXPECT_TRUE(only_route(result).backends.empty());

  // Fields of a redirect that is not enabled are not a redirect.
  v1::Route off = route_to("reviews.default");
  off.mutable_redirect()->set_status(301);
  ConfigLoad forwarded = merge(update_with(off));
  ASSERT_TRUE(forwarded.ok()) << errors_of(forwarded);
  EXPECT_FALSE(only_route(forwarded).redirect.enabled);
}

TEST(ControlConfigTest, RouteMatchErrors) {
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.set_path_kind(v1::Route::REGEX);
              r.set_path("/api/(v1");
            }),
            at(kRoute, ".path: invalid regular expression: missing ): /api/(v1\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) { r.set_path("api"); }),
            at(kRoute, ".path: must start with \"/\"\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) { r.set_path_kind(static_cast<v1::Route::PathKind>(9)); }),
            at(kRoute, ".path_kind: unknown path_kind 9\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) { r.set_method("get"); }),
            at(kRoute, ".method: unknown method \"get\" (did you mean \"GET\"?)\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              v1::ValueMatch* h = r.add_headers();
              h->set_name("x-ok");
              h = r.add_headers();
              h->set_name("x-bad");
              h->set_value("a\r\nb");
            }),
            at(kRoute, ".headers[1].value: must not contain CR, LF or NUL\n"));
  EXPECT_EQ(
      route_errors([](v1::Route& r) {
        v1::ValueMatch* h = r.add_headers();
        h->set_name("x y");
        h->set_regex(true);
        h->set_value("(");
      }),
      at(kRoute, ".headers[0].name: invalid header name \"x y\": use letters, digits and !#$%&'*+-.^_`|~\n") +
          at(kRoute, ".headers[0].value: invalid regular expression: missing ): (\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) { r.add_query_params()->set_name("a&b"); }),
            at(kRoute,
               ".query_params[0].name: invalid query parameter name \"a&b\": no spaces, controls, '&', '=' "
               "or '#'\n"));
  EXPECT_EQ(
      route_errors([](v1::Route& r) { r.add_hosts("a.example:80"); }),
      at(kRoute,
         ".hosts[0]: invalid host \"a.example:80\": expected a host name without a port, or \"*.\" and one "
         "(e.g. \"*.example.com\")\n"));
}

TEST(ControlConfigTest, RateLimits) {
  v1::Route r = route_to("reviews.default");
  v1::RateLimit* per_user = r.add_rate_limits();
  per_user->set_name("per-user");
  per_user->set_has_path(true);
  per_user->set_path_kind(v1::Route::EXACT);
  per_user->set_path("/login");
  per_user->set_method("POST");
  v1::ValueMatch* tier = per_user->add_headers();
  tier->set_name("X-Tier");
  tier->set_regex(true);
  tier->set_value("free|trial");
  per_user->set_key(v1::RateLimit::HEADER);
  per_user->set_key_header("X-User");
  per_user->mutable_token_bucket()->set_requests_per_unit(60);
  per_user->mutable_token_bucket()->set_unit(v1::TokenBucket::MINUTE);
  per_user->mutable_token_bucket()->set_burst(10);
  v1::RateLimit* shaped = r.add_rate_limits();
  shaped->set_key(v1::RateLimit::ADDRESS);
  shaped->mutable_leaky_bucket()->set_rate_per_second(0.5);
  shaped->mutable_leaky_bucket()->set_queue_size(4);
  v1::RateLimit* held = r.add_rate_limits();
  held->set_key(v1::RateLimit::IDENTITY);
  held->mutable_leaky_bucket()->set_rate_per_second(100);
  held->mutable_leaky_bucket()->set_queue_size(50);
  held->mutable_leaky_bucket()->set_max_delay_ms(200);
  v1::RateLimit* policed = r.add_rate_limits();
  policed->set_path("/ignored");  // without has_path: every path
  policed->mutable_leaky_bucket()->set_rate_per_second(1e9);
  v1::RateLimit* capped = r.add_rate_limits();
  capped->mutable_token_bucket()->set_requests_per_unit(1'000'000'000);
  capped->mutable_token_bucket()->set_unit(v1::TokenBucket::HOUR);
  capped->mutable_token_bucket()->set_burst(4'000'000'000u);

  ConfigLoad result = merge(update_with(r));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const std::vector<RateLimitConfig>& limits = only_route(result).rate_limits;
  ASSERT_EQ(limits.size(), 5u);

  EXPECT_EQ(limits[0].name, "per-user");
  EXPECT_EQ(limits[0].match.path_kind, PathMatchKind::kExact);
  EXPECT_EQ(limits[0].match.path, "/login");
  EXPECT_EQ(limits[0].match.method, "POST");
  ASSERT_EQ(limits[0].match.headers.size(), 1u);
  EXPECT_EQ(limits[0].match.headers[0].name, "x-tier");
  EXPECT_TRUE(limits[0].match.headers[0].regex);
  EXPECT_EQ(limits[0].key, RateLimitConfig::Key::kHeader);
  EXPECT_EQ(limits[0].key_header, "x-user");
  EXPECT_FALSE(limits[0].leaky);
  EXPECT_EQ(limits[0].token_bucket.requests_per_unit, 60u);
  EXPECT_EQ(limits[0].token_bucket.unit, policy::RateUnit::kMinute);
  // trellis.v1 sends the burst above the rate; the bucket holds both.
  EXPECT_EQ(limits[0].token_bucket.burst, 70u);

  EXPECT_TRUE(limits[1].name.empty());
  EXPECT_EQ(limits[1].match.path, "/");
  EXPECT_EQ(limits[1].key, RateLimitConfig::Key::kAddress);
  EXPECT_TRUE(limits[1].leaky);
  EXPECT_EQ(limits[1].leaky_bucket.rate_per_second, 0.5);
  EXPECT_EQ(limits[1].leaky_bucket.queue, 4u);
  // max_delay_ms 0: the time a full queue takes to leave.
  EXPECT_EQ(limits[1].leaky_bucket.max_delay, Millis(8000));

  EXPECT_EQ(limits[2].key, RateLimitConfig::Key::kIdentity);
  EXPECT_EQ(limits[2].leaky_bucket.max_delay, Millis(200));

  EXPECT_EQ(limits[3].key, RateLimitConfig::Key::kAll);
  EXPECT_EQ(limits[3].match.path_kind, PathMatchKind::kPrefix);
  EXPECT_EQ(limits[3].match.path, "/");
  EXPECT_EQ(limits[3].leaky_bucket.queue, 0u);
  EXPECT_EQ(limits[3].leaky_bucket.max_delay, Millis(0));

  EXPECT_EQ(limits[4].token_bucket.unit, policy::RateUnit::kHour);
  EXPECT_EQ(limits[4].token_bucket.burst, 4294967295u);
}

TEST(ControlConfigTest, RateLimitErrors) {
  // The route's errors for its rate limits after `change` to a valid second one.
  auto limit_errors = [](auto change) {
    return route_errors([&](v1::Route& r) {
      r.add_rate_limits()->mutable_token_bucket()->set_requests_per_unit(1);
      v1::RateLimit* limit = r.add_rate_limits();
      limit->mutable_token_bucket()->set_requests_per_unit(1);
      change(*limit);
    });
  };
  const std::string l = at(kRoute, ".rate_limits[1]");

  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.clear_bucket(); }),
            l + ": needs a token_bucket or a leaky_bucket\n");

  // Names, match and key.
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.set_name("a b"); }),
            l + ".name: invalid name \"a b\": use only letters, digits, '_', '.', '-' and '/'\n");
  EXPECT_EQ(route_errors([](v1::Route& r) {
              for (int i = 0; i < 3; ++i) {
                v1::RateLimit* limit = r.add_rate_limits();
                limit->set_name(i == 1 ? "b" : "a");
                limit->mutable_token_bucket()->set_requests_per_unit(1);
              }
            }),
            at(kRoute, ".rate_limits[2].name: duplicate rate limit name \"a\"\n"));
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) {
              l.set_has_path(true);
              l.set_path_kind(v1::Route::REGEX);
              l.set_path("/a.*");
            }),
            l + ".path_kind: must be PREFIX or EXACT\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) {
              l.set_has_path(true);
              l.set_path_kind(static_cast<v1::Route::PathKind>(7));
            }),
            l + ".path_kind: unknown path_kind 7\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) {
              l.set_has_path(true);
              l.set_path("api");
            }),
            l + ".path: must start with \"/\"\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.set_method("POTS"); }),
            l + ".method: unknown method \"POTS\" (did you mean \"POST\"?)\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) {
              v1::ValueMatch* h = l.add_headers();
              h->set_name("x-tier");
              h->set_regex(true);
              h->set_value("a**");
            }),
            l + ".headers[0].value: invalid regular expression: bad repetition operator: **\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.add_headers()->set_name("x y"); }),
            l + ".headers[0].name: invalid header name \"x y\": use letters, digits and !#$%&'*+-.^_`|~\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.set_key(static_cast<v1::RateLimit::Key>(8)); }),
            l + ".key: unknown key 8\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.set_key(v1::RateLimit::HEADER); }),
            l + ".key_header: must not be empty\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) {
              l.set_key(v1::RateLimit::HEADER);
              l.set_key_header("x:user");
            }),
            l + ".key_header: invalid header name \"x:user\": use letters, digits and !#$%&'*+-.^_`|~\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.set_key_header("x-user"); }),
            l + ".key_header: set only with key HEADER\n");

  // Token buckets.
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) { l.mutable_token_bucket()->set_requests_per_unit(0); }),
            l + ".token_bucket.requests_per_unit: must be between 1 and 1000000000\n");
  EXPECT_EQ(
      limit_errors([](v1::RateLimit& l) { l.mutable_token_bucket()->set_requests_per_unit(1'000'000'001); }),
      l + ".token_bucket.requests_per_unit: must be between 1 and 1000000000\n");
  EXPECT_EQ(limit_errors([](v1::RateLimit& l) {
              l.mutable_token_bucket()->set_unit(static_cast<v1::TokenBucket::Unit>(3));
            }),
            l + ".token_bucket.unit: unknown unit 3\n");

  // Leaky buckets.
  auto leaky_errors = [&](auto change) {
    return limit_errors([&](v1::RateLimit& l) {
      l.mutable_leaky_bucket()->set_rate_per_second(10);
      change(*l.mutable_leaky_bucket());
    });
  };
  const std::string range = ": must be greater than 0 and at most 1000000000\n";
  for (double rate : {0.0, -1.0, 1e9 + 1, std::numeric_limits<double>::infinity(),
                      std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_EQ(leaky_errors([&](v1::LeakyBucket& b) { b.set_rate_per_second(rate); }),
              l + ".leaky_bucket.rate_per_second" + range)
        << rate;
  }
  EXPECT_EQ(
      leaky_errors([](v1::LeakyBucket& b) { b.set_max_delay_ms(100); }),
      l + ".leaky_bucket.max_delay_ms: needs a queue_size greater than 0: without a queue nothing waits\n");
}

TEST(ControlConfigTest, RouteTargetErrors) {
  EXPECT_EQ(route_errors([](v1::Route& r) { r.set_cluster("details.default"); }),
            at(kRoute, ".cluster: unknown cluster \"details.default\"\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.add_backends()->set_cluster("reviews.default");
              v1::Backend* b = r.add_backends();
              b->set_cluster("details.default");
              b->set_weight(2000000);
            }),
            at(kRoute, ".backends[1].cluster: unknown cluster \"details.default\"\n") +
                at(kRoute, ".backends[1].weight: must be between 0 and 1000000\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.mutable_redirect()->set_enabled(true);
              r.mutable_redirect()->set_scheme("htps");
              r.mutable_redirect()->set_status(200);
              r.mutable_redirect()->set_port(70000);
              r.mutable_rewrite()->set_hostname("b.example");
            }),
            at(kRoute, ".redirect: a redirect route must not have backends or a cluster\n") +
                at(kRoute, ".redirect.scheme: unknown scheme \"htps\" (did you mean \"https\"?)\n") +
                at(kRoute, ".redirect.port: must be between 0 and 65535\n") +
                at(kRoute, ".redirect.status: must be 301, 302, 303, 307 or 308\n") +
                at(kRoute, ".rewrite: cannot be combined with a redirect\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.set_path_kind(v1::Route::EXACT);
              r.mutable_rewrite()->mutable_path()->set_kind(v1::PathModifier::PREFIX);
              r.mutable_rewrite()->mutable_path()->set_value("/v2");
            }),
            at(kRoute, ".rewrite.path.kind: a prefix rewrite needs path_kind PREFIX\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.mutable_rewrite()->set_hostname("a.example:80");
              r.mutable_rewrite()->mutable_path()->set_kind(v1::PathModifier::FULL);
              r.mutable_rewrite()->mutable_path()->set_value("v2");
            }),
            at(kRoute, ".rewrite.hostname: invalid host name \"a.example:80\" (no port, no wildcard)\n") +
                at(kRoute, ".rewrite.path.value: must start with \"/\"\n"));
}

TEST(ControlConfigTest, HeaderModifierErrors) {
  EXPECT_EQ(
      route_errors([](v1::Route& r) {
        v1::HeaderModifier* m = r.mutable_request_headers();
        v1::HeaderPair* p = m->add_set();
        p->set_name("X-A");
        p->set_value("1");
        p = m->add_set();
        p->set_name("x-a");
        p->set_value("2");
        p = m->add_add();
        p->set_name("Transfer-Encoding");
        p->set_value("chunked");
        p = m->add_add();
        p->set_name("x-b");
        p->set_value(std::string("a\0b", 3));
        m->add_remove("x-a");
      }),
      at(kRoute, ".request_headers.set[1].name: duplicate header \"x-a\"\n") +
          at(kRoute,
             ".request_headers.add[0].name: \"transfer-encoding\" is managed by the proxy and cannot be "
             "modified\n") +
          at(kRoute, ".request_headers.add[1].value: must not contain CR, LF or NUL\n") +
          at(kRoute, ".request_headers.remove[0]: \"x-a\" is both removed and set or added\n"));
  EXPECT_EQ(
      route_errors([](v1::Route& r) {
        v1::Backend* b = r.add_backends();
        b->set_cluster("reviews.default");
        b->mutable_response_headers()->add_remove("bad name");
      }),
      at(kRoute,
         ".backends[0].response_headers.remove[0]: invalid header name \"bad name\": use letters, digits and "
         "!#$%&'*+-.^_`|~\n"));
}

TEST(ControlConfigTest, MirrorAndFaultErrors) {
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.add_mirrors()->set_numerator(5);
              v1::Mirror* m = r.add_mirrors();
              m->set_cluster("shadow");
              m->set_numerator(101);  // of the default 100
              m = r.add_mirrors();
              m->set_cluster("nowhere");
            }),
            at(kRoute, ".mirrors[0].cluster: must not be empty\n") +
                at(kRoute, ".mirrors[1].numerator: must not exceed the denominator (100)\n") +
                at(kRoute, ".mirrors[2].cluster: unknown cluster \"nowhere\"\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) {
              r.mutable_fault()->set_abort_status(99);
              r.mutable_fault()->set_abort_per_million(1000001);
              r.mutable_fault()->set_delay_per_million(2000000);
            }),
            at(kRoute, ".fault.abort_status: must be between 200 and 599 (0: no abort)\n") +
                at(kRoute, ".fault.abort_per_million: must be between 0 and 1000000\n") +
                at(kRoute, ".fault.delay_per_million: must be between 0 and 1000000\n"));
  EXPECT_EQ(route_errors([](v1::Route& r) { r.set_direct_error("no\r\nway"); }),
            at(kRoute, ".direct_error: must not contain CR, LF or NUL\n"));
}

// ---- clusters

TEST(ControlConfigTest, EveryClusterField) {
  v1::Cluster c = cluster("reviews.default");
  c.set_request_idle_timeout_ms(90000);
  c.mutable_endpoints(0)->set_zone("eu-west-1a");
  c.mutable_endpoints(0)->set_weight(5);
  v1::LoadBalancer* lb = c.mutable_load_balancer();
  lb->set_algorithm(v1::LoadBalancer::RING_HASH);
  lb->set_hash_on(v1::LoadBalancer::COOKIE);
  lb->set_hash_name("session");
  lb->set_cookie_ttl_set(true);
  lb->set_cookie_ttl_seconds(3600);
  lb->set_ring_points(4096);
  lb->set_locality_enabled(true);
  lb->set_locality_min_healthy_percent(50);
  v1::RetryPolicy* retry = c.mutable_retry();
  retry->set_attempts(3);
  retry->set_per_try_timeout_ms(500);
  retry->add_retry_on("gateway-error");
  retry->add_retry_on("retriable-status-codes");
  retry->add_retriable_status_codes(409);
  retry->set_backoff_base_ms(50);
  retry->set_backoff_max_ms(2000);
  retry->set_budget_set(true);
  retry->set_budget_percent(0);
  retry->set_budget_min_per_second(1);
  retry->set_non_idempotent(true);
  retry->set_buffer_limit_bytes(1024);

  ConfigLoad result = merge(update_with(route_to("reviews.default"), c));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const ClusterConfig& out = reviews(result);
  EXPECT_EQ(out.name, "reviews.default");
  EXPECT_EQ(out.request_idle_timeout, Millis(90000));
  EXPECT_EQ(out.endpoints.at(0).zone, "eu-west-1a");
  EXPECT_EQ(out.endpoints.at(0).weight, 5u);
  EXPECT_EQ(out.lb.algorithm, LbAlgorithm::kRingHash);
  EXPECT_EQ(out.lb.hash.kind, HashPolicy::Kind::kCookie);
  EXPECT_EQ(out.lb.hash.name, "session");
  EXPECT_TRUE(out.lb.hash.cookie_ttl_set);
  EXPECT_EQ(out.lb.hash.cookie_ttl, Millis(3600000));
  EXPECT_EQ(out.lb.ring_points, 4096u);
  EXPECT_TRUE(out.lb.locality_enabled);
  EXPECT_EQ(out.lb.locality_min_healthy_percent, 50u);
  EXPECT_EQ(out.retry.attempts, 3u);
  EXPECT_EQ(out.retry.per_try_timeout, Millis(500));
  EXPECT_EQ(out.retry.retry_on, policy::kRetryGatewayError | policy::kRetryStatusCodes);
  EXPECT_EQ(out.retry.status_codes, std::vector<uint16_t>{409});
  EXPECT_EQ(out.retry.backoff_base, Millis(50));
  EXPECT_EQ(out.retry.backoff_max, Millis(2000));
  EXPECT_EQ(out.retry.budget_percent, 0u);
  EXPECT_EQ(out.retry.budget_min_per_second, 1u);
  EXPECT_TRUE(out.retry.non_idempotent);
  EXPECT_EQ(out.retry.buffer_limit, 1024u);

  v1::Cluster slow = cluster("reviews.default");
  slow.mutable_load_balancer()->set_algorithm(v1::LoadBalancer::LEAST_REQUEST);
  slow.mutable_load_balancer()->set_slow_start_window_ms(30000);
  ConfigLoad second = merge(update_with(route_to("reviews.default"), slow));
  ASSERT_TRUE(second.ok()) << errors_of(second);
  EXPECT_EQ(reviews(second).lb.algorithm, LbAlgorithm::kLeastRequest);
  EXPECT_EQ(reviews(second).lb.slow_start_window, Millis(30000));
}

TEST(ControlConfigTest, ZeroesMeanTheDefaults) {
  v1::Cluster c = cluster("reviews.default");
  c.mutable_retry();  // present, every field 0
  c.mutable_load_balancer()->set_algorithm(v1::LoadBalancer::RING_HASH);
  c.mutable_load_balancer()->set_hash_on(v1::LoadBalancer::SOURCE_IP);
  ConfigLoad result = merge(update_with(route_to("reviews.default"), c));
  ASSERT_TRUE(result.ok()) << errors_of(result);
  const ClusterConfig& out = reviews(result);
  EXPECT_EQ(out.request_idle_timeout, Millis(300000));
  EXPECT_EQ(out.lb.ring_points, 160u);
  EXPECT_EQ(out.lb.hash.kind, HashPolicy::Kind::kSourceIp);
  EXPECT_EQ(out.endpoints.at(0).weight, 1u);
  EXPECT_EQ(out.retry.attempts, 0u);
  EXPECT_EQ(out.retry.retry_on, policy::kRetryConnectFailure | policy::kRetryReset);
  EXPECT_EQ(out.retry.backoff_base, Millis(25));
  EXPECT_EQ(out.retry.backoff_max, Millis(250));
  EXPECT_EQ(out.retry.budget_percent, 20u);
  EXPECT_EQ(out.retry.budget_min_per_second, 10u);
  EXPECT_EQ(out.retry.buffer_limit, 65536u);

  // Only a base: the cap is ten times it. No load_balancer: peak EWMA.
  v1::Cluster base = cluster("reviews.default");
  base.mutable_retry()->set_backoff_base_ms(100);
  ConfigLoad second = merge(update_with(route_to("reviews.default"), base));
  ASSERT_TRUE(second.ok()) << errors_of(second);
  EXPECT_EQ(reviews(second).retry.backoff_max, Millis(1000));
  EXPECT_EQ(reviews(second).lb.algorithm, LbAlgorithm::kPeakEwma);
}

TEST(ControlConfigTest, LoadBalancerErrors) {
  using LB = v1::LoadBalancer;
  auto lb_errors = [](auto change) {
    return cluster_errors([&](v1::Cluster& c) { change(*c.mutable_load_balancer()); });
  };
  EXPECT_EQ(lb_errors([](LB& lb) { lb.set_algorithm(LB::MAGLEV); }),
            at(kCluster, ".load_balancer.hash_on: required with algorithm MAGLEV\n"));
  EXPECT_EQ(lb_errors([](LB& lb) {
              lb.set_algorithm(LB::ROUND_ROBIN);
              lb.set_hash_on(LB::HEADER);
              lb.set_hash_name("x-user");
            }),
            at(kCluster, ".load_balancer.hash_on: only for algorithm RING_HASH or MAGLEV\n"));
  EXPECT_EQ(lb_errors([](LB& lb) {
              lb.set_algorithm(LB::RING_HASH);
              lb.set_hash_on(LB::HEADER);
              lb.set_hash_name("x user");
              lb.set_ring_points(70000);
              lb.set_slow_start_window_ms(1000);
            }),
            at(kCluster,
               ".load_balancer.hash_name: invalid header name \"x user\": use letters, digits and "
               "!#$%&'*+-.^_`|~\n") +
                at(kCluster, ".load_balancer.ring_points: must be between 1 and 65536\n") +
                at(kCluster,
                   ".load_balancer.slow_start_window_ms: does not apply to algorithm RING_HASH: consistent "
                   "hashing keeps each key on its endpoint\n"));
  EXPECT_EQ(lb_errors([](LB& lb) {
              lb.set_algorithm(LB::MAGLEV);
              lb.set_hash_on(LB::SOURCE_IP);
              lb.set_hash_name("x");
              lb.set_cookie_ttl_set(true);
              lb.set_ring_points(2048);
            }),
            at(kCluster, ".load_balancer.hash_name: only with hash_on HEADER or COOKIE\n") +
                at(kCluster, ".load_balancer.cookie_ttl_set: only with hash_on COOKIE\n") +
                at(kCluster, ".load_balancer.ring_points: only for algorithm RING_HASH\n"));
  EXPECT_EQ(lb_errors([](LB& lb) {
              lb.set_algorithm(LB::RING_HASH);
              lb.set_hash_on(LB::COOKIE);
              lb.set_hash_name("a;b");
            }),
            at(kCluster, ".load_balancer.hash_name: invalid cookie name \"a;b\"\n"));
  EXPECT_EQ(lb_errors([](LB& lb) { lb.set_algorithm(static_cast<LB::Algorithm>(42)); }),
            at(kCluster, ".load_balancer.algorithm: unknown algorithm 42\n"));
  EXPECT_EQ(lb_errors([](LB& lb) {
              lb.set_locality_enabled(true);
              lb.set_locality_min_healthy_percent(101);
            }),
            at(kCluster, ".load_balancer.locality_min_healthy_percent: must be between 0 and 100\n"));
}

TEST(ControlConfigTest, RetryErrors) {
  auto retry_errors = [](auto change) {
    return cluster_errors([&](v1::Cluster& c) { change(*c.mutable_retry()); });
  };
  EXPECT_EQ(
      retry_errors([](v1::RetryPolicy& r) {
        r.set_attempts(11);
        r.add_retry_on("5xxx");
        r.add_retry_on("reset");
        r.add_retry_on("reset");
        r.add_retry_on("timeout");
      }),
      at(kCluster, ".retry.attempts: must be between 0 and 10\n") +
          at(kCluster, ".retry.retry_on[0]: unknown retry_on condition \"5xxx\" (did you mean \"5xx\"?)\n") +
          at(kCluster, ".retry.retry_on[2]: duplicate condition \"reset\"\n") +
          at(kCluster,
             ".retry.retry_on[3]: unknown retry_on condition \"timeout\" (expected \"connect-failure\", "
             "\"reset\", \"5xx\", \"gateway-error\", \"retriable-status-codes\", \"cancelled\", "
             "\"deadline-exceeded\", \"resource-exhausted\", \"internal\" or \"unavailable\")\n"));
  EXPECT_EQ(retry_errors([](v1::RetryPolicy& r) { r.add_retriable_status_codes(503); }),
            at(kCluster, ".retry.retriable_status_codes: needs \"retriable-status-codes\" in retry_on\n"));
  EXPECT_EQ(retry_errors([](v1::RetryPolicy& r) {
              r.add_retry_on("reset");
              r.add_retry_on("retriable-status-codes");
            }),
            at(kCluster, ".retry.retry_on[1]: needs retriable_status_codes\n"));
  EXPECT_EQ(retry_errors([](v1::RetryPolicy& r) {
              r.add_retry_on("retriable-status-codes");
              r.add_retriable_status_codes(600);
              r.add_retriable_status_codes(503);
              r.add_retriable_status_codes(503);
            }),
            at(kCluster, ".retry.retriable_status_codes[0]: must be between 100 and 599\n") +
                at(kCluster, ".retry.retriable_status_codes[2]: duplicate status code 503\n"));
  EXPECT_EQ(retry_errors([](v1::RetryPolicy& r) {
              r.set_backoff_base_ms(100);
              r.set_backoff_max_ms(50);
              r.set_budget_set(true);
              r.set_budget_percent(101);
              r.set_buffer_limit_bytes(16777217);
            }),
            at(kCluster, ".retry.backoff_max_ms: must be at least the base (100ms)\n") +
                at(kCluster, ".retry.budget_percent: must be between 0 and 100\n") +
                at(kCluster, ".retry.buffer_limit_bytes: must be between 0 and 16777216\n"));
}

TEST(ControlConfigTest, EndpointAndNameErrors) {
  EXPECT_EQ(cluster_errors([](v1::Cluster& c) {
              c.mutable_endpoints(0)->set_zone("eu west");
              c.mutable_endpoints(0)->set_weight(1000001);
              c.add_endpoints()->set_address("10.0.0.1:9080");
              c.add_endpoints()->set_address("reviews:9080");
            }),
            at(kCluster, ".endpoints[0].weight: must be between 0 and 1000000\n") +
                at(kCluster,
                   ".endpoints[0].zone: invalid name \"eu west\": use only letters, digits, '_', '.', '-' "
                   "and '/'\n") +
                at(kCluster, ".endpoints[1].address: duplicate endpoint 10.0.0.1:9080\n") +
                at(kCluster,
                   ".endpoints[2].address: \"reviews\" is not a numeric IP address (host names are not "
                   "resolved)\n"));

  ProxyConfig bootstrap;
  bootstrap.clusters.emplace_back().name = "reviews.default";
  ConfigLoad clash = merge(update_with(route_to("reviews.default")), bootstrap);
  EXPECT_EQ(errors_of(clash),
            "clusters[reviews.default]: duplicate cluster name (a static cluster has it)\n");
}

TEST(ControlConfigTest, ErrorsComeFromTheControlPlane) {
  v1::Route r = route_to("reviews.default");
  r.set_method("PACTH");
  ConfigLoad result = merge(update_with(r));
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(
      result.errors[0].to_string(),
      "control plane: listeners[outbound].virtual_hosts[reviews.default].routes[0].method: unknown method "
      "\"PACTH\" (did you mean \"PATCH\"?)");
}

// ---- updates

TEST(ControlConfigTest, IncrementalUpdatesReplaceAndRemoveByName) {
  DynamicConfig dynamic;
  dynamic.apply(update_with(route_to("reviews.default")));
  EXPECT_EQ(dynamic.clusters.size(), 3u);

  v1::ConfigUpdate change;
  v1::Cluster faster = cluster("reviews.default");
  faster.set_connect_timeout_ms(250);
  *change.add_clusters() = faster;
  change.add_removed_clusters("shadow");
  dynamic.apply(change);
  const ProxyConfig bootstrap;
  ConfigLoad result = merge_dynamic_config(bootstrap, dynamic);
  ASSERT_TRUE(result.ok()) << errors_of(result);
  ASSERT_EQ(result.config.clusters.size(), 2u);
  EXPECT_EQ(result.config.clusters[1].name, "reviews.default");
  EXPECT_EQ(result.config.clusters[1].connect_timeout, Millis(250));
  EXPECT_EQ(only_route(result).backends.at(0).cluster_index, 1u);

  // A full update starts again from nothing.
  v1::ConfigUpdate full;
  full.set_full(true);
  *full.add_clusters() = cluster("ratings.default");
  dynamic.apply(full);
  EXPECT_EQ(dynamic.clusters.size(), 1u);
  EXPECT_TRUE(dynamic.listeners.empty());
}

}  // namespace
}  // namespace trellis::proxy

namespace trellis::proxy {
namespace {

TEST(ControlConfigTest, AuthorizationReachesTheListenerAndBadValuesAreRefusedWithTheirPath) {
  v1::ConfigUpdate update = update_with(route_to("reviews.default"));
  v1::Authorization* authz = update.mutable_listeners(0)->mutable_authorization();
  authz->set_default_action(v1::Authorization::DENY);
  v1::AuthorizationPolicy* p = authz->add_policies();
  p->set_name("default/readers");
  v1::AuthorizationRule* rule = p->add_rules();
  v1::AuthorizationSource* from = rule->add_from();
  from->add_identities("spiffe://cluster.local/ns/default/sa/productpage");
  from->add_ip_blocks("10.0.0.0/8");
  v1::AuthorizationOperation* to = rule->add_to();
  to->add_methods("GET");
  to->add_paths("/api/*");
  to->add_ports(9080);
  ConfigLoad good = merge(update);
  ASSERT_TRUE(good.errors.empty()) << errors_of(good);
  const policy::AuthorizationConfig& a = good.config.listeners.at(0).authorization;
  EXPECT_EQ(a.default_action, policy::AuthzAction::kDeny);
  ASSERT_EQ(a.policies.size(), 1u);
  EXPECT_EQ(a.policies[0].name, "default/readers");
  EXPECT_EQ(a.policies[0].rules.at(0).from.at(0).ip_blocks, std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_EQ(a.policies[0].rules.at(0).to.at(0).ports, std::vector<uint32_t>{9080});

  from->set_ip_blocks(0, "10.0.0.1/8");
  to->set_paths(0, "/a*b");
  to->add_ports(0);
  rule->add_from();
  EXPECT_EQ(
      errors_of(merge(update)),
      "listeners[outbound].authorization.policies[0].rules[0].from[0].ip_blocks[0]: \"10.0.0.1/8\" has bits "
      "set after its prefix\n"
      "listeners[outbound].authorization.policies[0].rules[0].from[1]: sets nothing\n"
      "listeners[outbound].authorization.policies[0].rules[0].to[0].paths[0]: '*' is only allowed at the "
      "end, as in \"/api/*\"\n"
      "listeners[outbound].authorization.policies[0].rules[0].to[0].ports[1]: must be between 1 and 65535\n");
}

}  // namespace
}  // namespace trellis::proxy
