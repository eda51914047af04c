#include "policy/route_table.h"

#include <gtest/gtest.h>

namespace trellis::policy {
namespace {

PathMatch prefix(std::string p) { return {PathMatchKind::kPrefix, std::move(p)}; }
PathMatch exact(std::string p) { return {PathMatchKind::kExact, std::move(p)}; }

TEST(RouteTable, HostPrecedenceExactThenSuffixThenPrefixThenAny) {
  RouteTable t;
  size_t any = t.add_virtual_host({"*"}, {prefix("/")});
  size_t exact_host = t.add_virtual_host({"api.example.com"}, {prefix("/")});
  size_t suffix = t.add_virtual_host({"*.example.com"}, {prefix("/")});
  size_t longer_suffix = t.add_virtual_host({"*.eu.example.com"}, {prefix("/")});
  size_t pre = t.add_virtual_host({"internal.*"}, {prefix("/")});
  RouteRef r;
  ASSERT_TRUE(t.match("api.example.com", "/", r));
  EXPECT_EQ(r.virtual_host, exact_host);
  ASSERT_TRUE(t.match("API.Example.COM", "/", r));
  EXPECT_EQ(r.virtual_host, exact_host) << "host matching ignores case";
  ASSERT_TRUE(t.match("web.example.com", "/", r));
  EXPECT_EQ(r.virtual_host, suffix);
  ASSERT_TRUE(t.match("a.eu.example.com", "/", r));
  EXPECT_EQ(r.virtual_host, longer_suffix) << "longest suffix wins";
  ASSERT_TRUE(t.match("internal.corp", "/", r));
  EXPECT_EQ(r.virtual_host, pre);
  ASSERT_TRUE(t.match("example.com", "/", r));
  EXPECT_EQ(r.virtual_host, any) << "*.example.com needs a label before the suffix";
}

TEST(RouteTable, HostPortIsIgnoredUnlessADomainNamesIt) {
  RouteTable t;
  size_t plain = t.add_virtual_host({"a.test"}, {prefix("/")});
  size_t with_port = t.add_virtual_host({"a.test:8080"}, {prefix("/")});
  RouteRef r;
  ASSERT_TRUE(t.match("a.test:9000", "/", r));
  EXPECT_EQ(r.virtual_host, plain);
  ASSERT_TRUE(t.match("a.test:8080", "/", r));
  EXPECT_EQ(r.virtual_host, with_port);
  ASSERT_TRUE(t.match("[::1]:8080", "/", r) == false);
}

TEST(RouteTable, NoVirtualHostNoMatch) {
  RouteTable t;
  t.add_virtual_host({"a.test"}, {prefix("/")});
  RouteRef r;
  EXPECT_FALSE(t.match("b.test", "/", r));
}

TEST(RouteTable, FirstMatchingRouteWins) {
  RouteTable t;
  t.add_virtual_host({"*"}, {exact("/healthz"), prefix("/api"), prefix("/")});
  RouteRef r;
  ASSERT_TRUE(t.match("x", "/healthz", r));
  EXPECT_EQ(r.route, 0u);
  ASSERT_TRUE(t.match("x", "/healthz/deep", r));
  EXPECT_EQ(r.route, 2u) << "exact does not match a longer path";
  ASSERT_TRUE(t.match("x", "/api/v1/users?x=1", r));
  EXPECT_EQ(r.route, 1u);
  ASSERT_TRUE(t.match("x", "/other", r));
  EXPECT_EQ(r.route, 2u);
}

TEST(RouteTable, PrefixMatchesWholeSegments) {
  EXPECT_TRUE(RouteTable::path_matches(prefix("/api"), "/api"));
  EXPECT_TRUE(RouteTable::path_matches(prefix("/api"), "/api/"));
  EXPECT_TRUE(RouteTable::path_matches(prefix("/api"), "/api/v1"));
  EXPECT_TRUE(RouteTable::path_matches(prefix("/api"), "/api?q=1"));
  EXPECT_FALSE(RouteTable::path_matches(prefix("/api"), "/apis"));
  EXPECT_TRUE(RouteTable::path_matches(prefix("/api/"), "/api/x"));
  EXPECT_FALSE(RouteTable::path_matches(prefix("/api/"), "/api"));
  EXPECT_TRUE(RouteTable::path_matches(prefix("/"), "/anything"));
}

TEST(RouteTable, ExactIgnoresQueryString) {
  EXPECT_TRUE(RouteTable::path_matches(exact("/a"), "/a?b=c"));
  EXPECT_FALSE(RouteTable::path_matches(exact("/a"), "/a/"));
  EXPECT_FALSE(RouteTable::path_matches(exact("/a"), "/A"));
}

}  // namespace
}  // namespace trellis::policy
