// Route selection: host precedence, path kinds, and every route condition.
#include "policy/route_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

// Counts allocations so a test can check that matching makes none. (GCC
// pairs the free() below with the library's operator new, not this one.)
namespace {
std::atomic<size_t> g_allocations{0};
}  // namespace
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace trellis::policy {
namespace {

RouteMatch prefix(std::string p) {
  RouteMatch m;
  m.path = std::move(p);
  return m;
}
RouteMatch exact(std::string p) {
  RouteMatch m;
  m.path_kind = PathMatchKind::kExact;
  m.path = std::move(p);
  return m;
}
RouteMatch regex(std::string p) {
  RouteMatch m;
  m.path_kind = PathMatchKind::kRegex;
  m.path = std::move(p);
  return m;
}

size_t add(RouteTable& t, const std::vector<std::string>& domains, const std::vector<RouteMatch>& routes) {
  auto r = t.add_virtual_host(domains, routes);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : SIZE_MAX;
}

// A request to match, built by chained setters.
struct Req {
  std::string_view authority_ = "x";
  std::string_view path_ = "/";
  std::string_view method_ = "GET";
  std::vector<HeaderField> headers_;

  Req& authority(std::string_view v) { return authority_ = v, *this; }
  Req& path(std::string_view v) { return path_ = v, *this; }
  Req& method(std::string_view v) { return method_ = v, *this; }
  Req& header(std::string_view name, std::string_view value) {
    return headers_.push_back({name, value}), *this;
  }
};
// The matched route index, or -1 when nothing matches.
int route_of(const RouteTable& t, const Req& q) {
  RouteRef r;
  if (!t.match({q.authority_, q.method_, q.path_, &q.headers_}, r)) return -1;
  return static_cast<int>(r.route);
}
size_t vhost_of(const RouteTable& t, std::string_view authority) {
  RouteRef r;
  if (!t.match({authority, "GET", "/", nullptr}, r)) return SIZE_MAX;
  return r.virtual_host;
}

TEST(RouteTable, HostPrecedenceExactThenSuffixThenPrefixThenAny) {
  RouteTable t;
  size_t any = add(t, {"*"}, {prefix("/")});
  size_t exact_host = add(t, {"api.example.com"}, {prefix("/")});
  size_t suffix = add(t, {"*.example.com"}, {prefix("/")});
  size_t longer_suffix = add(t, {"*.eu.example.com"}, {prefix("/")});
  size_t pre = add(t, {"internal.*"}, {prefix("/")});
  EXPECT_EQ(vhost_of(t, "api.example.com"), exact_host);
  EXPECT_EQ(vhost_of(t, "API.Example.COM"), exact_host) << "host matching ignores case";
  EXPECT_EQ(vhost_of(t, "web.example.com"), suffix);
  EXPECT_EQ(vhost_of(t, "a.eu.example.com"), longer_suffix) << "longest suffix wins";
  EXPECT_EQ(vhost_of(t, "internal.corp"), pre);
  EXPECT_EQ(vhost_of(t, "example.com"), any) << "*.example.com needs a label before the suffix";
}

TEST(RouteTable, HostPortIsIgnoredUnlessADomainNamesIt) {
  RouteTable t;
  size_t plain = add(t, {"a.test"}, {prefix("/")});
  size_t with_port = add(t, {"a.test:8080"}, {prefix("/")});
  EXPECT_EQ(vhost_of(t, "a.test:9000"), plain);
  EXPECT_EQ(vhost_of(t, "a.test:8080"), with_port);
  EXPECT_EQ(vhost_of(t, "[::1]:8080"), SIZE_MAX);
}

TEST(RouteTable, Ipv6HostWithPort) {
  RouteTable t;
  size_t v6 = add(t, {"[::1]"}, {prefix("/")});
  size_t v6_port = add(t, {"[::1]:8443"}, {prefix("/")});
  EXPECT_EQ(vhost_of(t, "[::1]"), v6);
  EXPECT_EQ(vhost_of(t, "[::1]:8080"), v6) << "the port is stripped after the bracket";
  EXPECT_EQ(vhost_of(t, "[::1]:8443"), v6_port);
  EXPECT_EQ(vhost_of(t, "[::2]"), SIZE_MAX) << "the colons inside brackets are not a port";

  // The same rule applies to a route's hosts condition.
  RouteTable r;
  RouteMatch only_v6 = prefix("/");
  only_v6.hosts = {"[::1]"};
  add(r, {"*"}, {only_v6});
  EXPECT_EQ(route_of(r, Req().authority("[::1]:9000")), 0);
  EXPECT_EQ(route_of(r, Req().authority("[::1]")), 0);
  EXPECT_EQ(route_of(r, Req().authority("[::2]:9000")), -1);
}

TEST(RouteTable, NoVirtualHostNoMatch) {
  RouteTable t;
  add(t, {"a.test"}, {prefix("/")});
  EXPECT_EQ(vhost_of(t, "b.test"), SIZE_MAX);
}

TEST(RouteTable, FirstMatchingRouteWins) {
  RouteTable t;
  add(t, {"*"}, {exact("/healthz"), prefix("/api"), prefix("/")});
  EXPECT_EQ(route_of(t, Req().path("/healthz")), 0);
  EXPECT_EQ(route_of(t, Req().path("/healthz/deep")), 2) << "exact does not match a longer path";
  EXPECT_EQ(route_of(t, Req().path("/api/v1/users?x=1")), 1);
  EXPECT_EQ(route_of(t, Req().path("/other")), 2);
}

TEST(RouteTable, EarlierRouteWinsEvenWhenALaterOneIsMoreSpecific) {
  RouteMatch with_header = prefix("/api");
  with_header.headers = {{"x-canary", false, "1"}};
  RouteTable t;
  add(t, {"*"}, {prefix("/"), with_header});
  EXPECT_EQ(route_of(t, Req().path("/api").header("x-canary", "1")), 0);

  RouteTable u;
  add(u, {"*"}, {with_header, prefix("/")});
  EXPECT_EQ(route_of(u, Req().path("/api").header("x-canary", "1")), 0);
  EXPECT_EQ(route_of(u, Req().path("/api")), 1) << "a route whose condition fails falls through";
}

TEST(RouteTable, PrefixMatchesWholeSegments) {
  EXPECT_TRUE(RouteTable::path_prefix_matches("/api", "/api"));
  EXPECT_TRUE(RouteTable::path_prefix_matches("/api", "/api/"));
  EXPECT_TRUE(RouteTable::path_prefix_matches("/api", "/api/v1"));
  EXPECT_FALSE(RouteTable::path_prefix_matches("/api", "/apis"));
  EXPECT_TRUE(RouteTable::path_prefix_matches("/api/", "/api/x"));
  EXPECT_FALSE(RouteTable::path_prefix_matches("/api/", "/api"));
  EXPECT_TRUE(RouteTable::path_prefix_matches("/", "/anything"));
  EXPECT_FALSE(RouteTable::path_prefix_matches("/api", "/API"));
}

TEST(RouteTable, PathMatchesIgnoreTheQueryString) {
  RouteTable t;
  add(t, {"*"}, {prefix("/api"), exact("/a"), regex("/b/[0-9]+")});
  EXPECT_EQ(route_of(t, Req().path("/api?q=1")), 0);
  EXPECT_EQ(route_of(t, Req().path("/a?b=c")), 1);
  EXPECT_EQ(route_of(t, Req().path("/a/")), -1);
  EXPECT_EQ(route_of(t, Req().path("/A")), -1);
  EXPECT_EQ(route_of(t, Req().path("/b/42?x=/b/y")), 2);
}

TEST(RouteTable, RegexPathIsAFullMatch) {
  RouteTable t;
  add(t, {"*"}, {regex("/users/[0-9]+")});
  EXPECT_EQ(route_of(t, Req().path("/users/17")), 0);
  EXPECT_EQ(route_of(t, Req().path("/users/17/posts")), -1) << "no implicit trailing .*";
  EXPECT_EQ(route_of(t, Req().path("/v1/users/17")), -1) << "no implicit leading .*";
  EXPECT_EQ(route_of(t, Req().path("/users/abc")), -1);
}

TEST(RouteTable, MethodIsExactAndCaseSensitive) {
  RouteMatch post = prefix("/");
  post.method = "POST";
  RouteTable t;
  add(t, {"*"}, {post});
  EXPECT_EQ(route_of(t, Req().method("POST")), 0);
  EXPECT_EQ(route_of(t, Req().method("post")), -1);
  EXPECT_EQ(route_of(t, Req().method("GET")), -1);
  EXPECT_EQ(route_of(t, Req().method("POSTX")), -1);
}

TEST(RouteTable, HostsConditionWithWildcard) {
  RouteMatch m = prefix("/");
  m.hosts = {"a.example", "*.wild.example"};
  RouteTable t;
  add(t, {"*"}, {m});
  EXPECT_EQ(route_of(t, Req().authority("a.example")), 0);
  EXPECT_EQ(route_of(t, Req().authority("A.Example:8080")), 0) << "without port, case-insensitive";
  EXPECT_EQ(route_of(t, Req().authority("b.example")), -1);
  EXPECT_EQ(route_of(t, Req().authority("x.wild.example")), 0);
  EXPECT_EQ(route_of(t, Req().authority("x.y.wild.example")), 0) << "any name under the suffix";
  EXPECT_EQ(route_of(t, Req().authority("wild.example")), -1) << "not the suffix itself";
  EXPECT_EQ(route_of(t, Req().authority("notwild.example")), -1) << "a label boundary is needed";

  RouteTable any_host;
  add(any_host, {"*"}, {prefix("/")});
  EXPECT_EQ(route_of(any_host, Req().authority("whatever")), 0) << "no hosts: any host";
}

TEST(RouteTable, HeaderConditions) {
  RouteMatch m = prefix("/");
  m.headers = {{"x-user", false, "alice"}, {"x-version", true, "v[0-9]+"}};
  RouteTable t;
  add(t, {"*"}, {m});
  EXPECT_EQ(route_of(t, Req().header("X-User", "alice").header("x-version", "v2")), 0)
      << "names compare without case";
  EXPECT_EQ(route_of(t, Req().header("x-user", "Alice").header("x-version", "v2")), -1) << "values are exact";
  EXPECT_EQ(route_of(t, Req().header("x-user", "alice").header("x-version", "v2beta")), -1)
      << "regex values are a full match";
  EXPECT_EQ(route_of(t, Req().header("x-user", "alice")), -1) << "every condition must hold";
  EXPECT_EQ(route_of(t, Req().header("x-user", "bob").header("x-version", "v1").header("x-user", "alice")), 0)
      << "any field of that name may match";
  RouteRef r;
  EXPECT_FALSE(t.match({"x", "GET", "/", nullptr}, r)) << "no headers at all";
}

TEST(RouteTable, HeaderConditionWithEmptyValue) {
  RouteMatch m = prefix("/");
  m.headers = {{"x-empty", false, ""}};
  RouteTable t;
  add(t, {"*"}, {m});
  EXPECT_EQ(route_of(t, Req().header("x-empty", "")), 0);
  EXPECT_EQ(route_of(t, Req()), -1) << "the field must be present";
}

TEST(RouteTable, QueryParamConditions) {
  RouteMatch m = prefix("/search");
  m.query_params = {{"q", false, "cats"}, {"page", true, "[0-9]+"}};
  RouteTable t;
  add(t, {"*"}, {m});
  EXPECT_EQ(route_of(t, Req().path("/search?q=cats&page=2")), 0);
  EXPECT_EQ(route_of(t, Req().path("/search?page=10&x=y&q=cats")), 0) << "order does not matter";
  EXPECT_EQ(route_of(t, Req().path("/search?q=dogs&page=2")), -1);
  EXPECT_EQ(route_of(t, Req().path("/search?q=cats&page=two")), -1);
  EXPECT_EQ(route_of(t, Req().path("/search?q=cats")), -1) << "a missing parameter fails";
  EXPECT_EQ(route_of(t, Req().path("/search")), -1);
  EXPECT_EQ(route_of(t, Req().path("/search?Q=cats&page=2")), -1) << "names are case-sensitive";
  EXPECT_EQ(route_of(t, Req().path("/search?q=dogs&q=cats&page=2")), -1) << "only the first counts";
  EXPECT_EQ(route_of(t, Req().path("/search?q=cats&q=dogs&page=2")), 0);
  EXPECT_EQ(route_of(t, Req().path("/search?q=c%61ts&page=2")), -1) << "values as sent, not decoded";
}

TEST(RouteTable, QueryParamWithoutEqualsHasEmptyValue) {
  RouteMatch m = prefix("/");
  m.query_params = {{"debug", false, ""}};
  RouteTable t;
  add(t, {"*"}, {m});
  EXPECT_EQ(route_of(t, Req().path("/?debug")), 0);
  EXPECT_EQ(route_of(t, Req().path("/?a=1&debug&b")), 0);
  EXPECT_EQ(route_of(t, Req().path("/?debug=")), 0);
  EXPECT_EQ(route_of(t, Req().path("/?debug=1")), -1);
  EXPECT_EQ(route_of(t, Req().path("/?debugger")), -1);
}

TEST(RouteTable, AllConditionsTogether) {
  RouteMatch m = exact("/v1/orders");
  m.method = "PUT";
  m.hosts = {"shop.example"};
  m.headers = {{"x-tenant", false, "acme"}};
  m.query_params = {{"dry_run", false, "true"}};
  RouteTable t;
  add(t, {"*"}, {m, prefix("/")});
  Req ok = Req()
               .authority("shop.example")
               .path("/v1/orders?dry_run=true")
               .method("PUT")
               .header("x-tenant", "acme");
  EXPECT_EQ(route_of(t, ok), 0);
  for (int broken = 0; broken < 5; ++broken) {
    Req q = ok;
    if (broken == 0) q.authority("other.example");
    if (broken == 1) q.path("/v1/orders/1?dry_run=true");
    if (broken == 2) q.method("POST");
    if (broken == 3) q.headers_ = {{"x-tenant", "other"}};
    if (broken == 4) q.path("/v1/orders?dry_run=false");
    EXPECT_EQ(route_of(t, q), 1) << "condition " << broken;
  }
}

TEST(RouteTable, RegexCompileErrorsNameTheFieldAndLeaveTheTableUnchanged) {
  RouteTable t;
  add(t, {"a.test"}, {prefix("/")});

  auto bad_path = t.add_virtual_host({"*"}, {prefix("/"), regex("/(unclosed")});
  ASSERT_FALSE(bad_path.ok());
  EXPECT_EQ(bad_path.error().message.rfind("routes[1].path: ", 0), 0u) << bad_path.error().message;
  EXPECT_GT(bad_path.error().message.size(), std::string("routes[1].path: ").size()) << "with RE2's reason";

  RouteMatch bad_header = prefix("/");
  bad_header.headers = {{"x-ok", true, "a+"}, {"x-bad", true, "[z-a]"}};
  auto h = t.add_virtual_host({"*"}, {bad_header});
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().message.rfind("routes[0].headers[1].value: ", 0), 0u) << h.error().message;

  RouteMatch bad_query = prefix("/");
  bad_query.query_params = {{"q", true, "*"}};
  auto q = t.add_virtual_host({"*"}, {prefix("/x"), prefix("/y"), bad_query});
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().message.rfind("routes[2].query_params[0].value: ", 0), 0u) << q.error().message;

  // None of the failed virtual hosts (all for "*") was added.
  EXPECT_EQ(vhost_of(t, "b.test"), SIZE_MAX);
  EXPECT_EQ(add(t, {"*"}, {prefix("/")}), 1u) << "indices continue as if nothing failed";
}

TEST(RouteTable, NonRegexValuesAreNotCompiled) {
  RouteMatch m = exact("/(literal");
  m.headers = {{"x", false, "[z-a]"}};
  RouteTable t;
  add(t, {"*"}, {m});
  EXPECT_EQ(route_of(t, Req().path("/(literal").header("x", "[z-a]")), 0);
}

TEST(RouteTable, OversizedRegexIsRejected) {
  // Valid syntax, but a thousand copies of the Unicode letter class exceed
  // RE2's default program size.
  auto re = Regex::compile("\\pL{1000}");
  ASSERT_FALSE(re.ok());
  EXPECT_NE(re.error().message.find("too large"), std::string::npos) << re.error().message;
  auto good = Regex::compile("a{3}");
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE((*good)->full_match("aaa"));
  EXPECT_FALSE((*good)->full_match("aaaa"));
}

TEST(RouteTable, MatchingDoesNotAllocate) {
  RouteMatch m = regex("/v[0-9]+/items/.*");
  m.method = "GET";
  m.hosts = {"*.shop.example"};
  m.headers = {{"x-tenant", true, "[a-z]+"}};
  m.query_params = {{"page", true, "[0-9]+"}, {"sort", false, "asc"}};
  RouteTable t;
  add(t, {"Shop.Example", "*.shop.example"}, {exact("/healthz"), m, prefix("/")});
  std::vector<HeaderField> headers = {{"Accept", "*/*"}, {"X-Tenant", "acme"}};
  RequestView request{"EU.Shop.Example:8443", "GET", "/v2/items/42?sort=asc&page=3", &headers};
  RouteRef r;
  ASSERT_TRUE(t.match(request, r));  // RE2 builds its matching caches on first use
  ASSERT_EQ(r.route, 1u);
  size_t before = g_allocations.load();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(t.match(request, r));
  EXPECT_EQ(g_allocations.load() - before, 0u);
  // The counter does see allocations.
  auto probe = std::make_unique<int>(1);
  EXPECT_EQ(g_allocations.load() - before, 1u);
}

TEST(RouteTable, IsMovable) {
  RouteTable t;
  add(t, {"a.test"}, {regex("/r/.*")});
  RouteTable moved(std::move(t));
  RouteRef r;
  EXPECT_TRUE(moved.match({"a.test", "GET", "/r/x", nullptr}, r));
  RouteTable assigned;
  assigned = std::move(moved);
  EXPECT_TRUE(assigned.match({"a.test", "GET", "/r/x", nullptr}, r));
}

}  // namespace
}  // namespace trellis::policy
