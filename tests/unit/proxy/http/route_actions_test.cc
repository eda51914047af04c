#include "proxy/http/route_actions.h"

#include <gtest/gtest.h>

namespace trellis::proxy {
namespace {

std::string rewrite(PathModifier::Kind kind, const std::string& value, std::string_view prefix,
                    std::string_view path) {
  std::string out;
  rewrite_path(PathModifier{kind, value}, prefix, path, out);
  return out;
}

TEST(RouteActions, PrefixRewriteReplacesTheMatchedSegmentsAndKeepsTheRest) {
  using K = PathModifier::Kind;
  EXPECT_EQ(rewrite(K::kPrefix, "/reviews", "/v1/reviews", "/v1/reviews/7"), "/reviews/7");
  EXPECT_EQ(rewrite(K::kPrefix, "/reviews", "/v1/reviews", "/v1/reviews"), "/reviews");
  EXPECT_EQ(rewrite(K::kPrefix, "/", "/v1/reviews", "/v1/reviews/7"), "/7");
  EXPECT_EQ(rewrite(K::kPrefix, "/", "/v1/reviews", "/v1/reviews"), "/");
  EXPECT_EQ(rewrite(K::kPrefix, "/new", "/", "/a/b"), "/new/a/b");
  EXPECT_EQ(rewrite(K::kPrefix, "/new/", "/old/", "/old/x"), "/new/x");
  EXPECT_EQ(rewrite(K::kPrefix, "/r", "/v1", "/v1/x?q=1&b=2"), "/r/x?q=1&b=2") << "the query is kept";
}

TEST(RouteActions, FullRewriteKeepsTheQuery) {
  EXPECT_EQ(rewrite(PathModifier::Kind::kFull, "/health", "/", "/anything/else?x=1"), "/health?x=1");
  EXPECT_EQ(rewrite(PathModifier::Kind::kNone, "", "/", "/same?x=1"), "/same?x=1");
}

std::string location(const RedirectConfig& r, std::string_view authority, std::string_view path,
                     std::string_view prefix = "/") {
  http::RequestHeaders req;
  req.scheme = "http";
  req.authority = authority;
  req.path = path;
  std::string out;
  redirect_location(r, prefix, req, out);
  return out;
}

TEST(RouteActions, RedirectLocationTakesWhatIsNotSetFromTheRequest) {
  RedirectConfig r;
  r.enabled = true;
  EXPECT_EQ(location(r, "shop.example:8080", "/a?b=1"), "http://shop.example:8080/a?b=1");
  r.scheme = "https";
  EXPECT_EQ(location(r, "shop.example:8080", "/a"), "https://shop.example/a")
      << "a new scheme drops the old port";
  r.port = 443;
  EXPECT_EQ(location(r, "shop.example:8080", "/a"), "https://shop.example/a")
      << "the scheme's default port is left out";
  r.port = 8443;
  r.hostname = "secure.example";
  EXPECT_EQ(location(r, "shop.example", "/a"), "https://secure.example:8443/a");
  r = {};
  r.path = {PathModifier::Kind::kPrefix, "/reviews"};
  EXPECT_EQ(location(r, "[::1]:81", "/v1/reviews/7?x", "/v1/reviews"), "http://[::1]:81/reviews/7?x");
}

TEST(RouteActions, HeaderModifiersSetThenAddThenRemove) {
  http::RequestHeaders src;
  src.method = "GET";
  src.path = "/";
  src.authority = "a";
  src.headers = {{"X-Old", "1"}, {"x-old", "2"}, {"x-keep", "k"}, {"x-gone", "g"}};
  http::RequestHeadersCopy copy;
  copy.assign(src);
  HeaderModifier m;
  m.set = {{"x-old", "new"}};
  m.add = {{"x-keep", "k2"}, {"x-added", "a"}};
  m.remove = {"x-gone"};
  apply_request_modifier(m, copy);
  std::vector<std::pair<std::string, std::string>> got;
  for (const http::Header& h : copy.get().headers) got.emplace_back(h.name, h.value);
  std::vector<std::pair<std::string, std::string>> want = {
      {"x-keep", "k"}, {"x-old", "new"}, {"x-keep", "k2"}, {"x-added", "a"}};
  EXPECT_EQ(got, want);

  http::ResponseHeaders resp;
  resp.headers = {{"Server", "nginx"}, {"cache-control", "no-store"}};
  HeaderModifier rm;
  rm.set = {{"cache-control", "max-age=60"}};
  rm.remove = {"server"};
  apply_response_modifier(rm, resp);
  ASSERT_EQ(resp.headers.size(), 1u);
  EXPECT_EQ(resp.headers[0].name, "cache-control");
  EXPECT_EQ(resp.headers[0].value, "max-age=60");
}

TEST(RouteActions, RewritesOfAuthorityAndPathSurviveLaterAdds) {
  http::RequestHeaders src;
  src.method = "GET";
  src.path = "/old";
  src.authority = "a.example";
  http::RequestHeadersCopy copy;
  copy.assign(src);
  copy.set_authority("b.example");
  copy.set_path("/new/path");
  for (int i = 0; i < 100; ++i) copy.add("x-filler", std::string(100, 'f'));  // forces the storage to grow
  EXPECT_EQ(copy.get().authority, "b.example");
  EXPECT_EQ(copy.get().path, "/new/path");
}

TEST(RouteActions, FindsCookiesAmongOthers) {
  http::HeaderList h = {{"cookie", "a=1; session=abc ; b=2"}, {"Cookie", "late=x"}};
  EXPECT_EQ(find_cookie(h, "session"), "abc");
  EXPECT_EQ(find_cookie(h, "late"), "x");
  EXPECT_EQ(find_cookie(h, "sess"), "");
  std::string out;
  format_set_cookie("sid", "v", Millis(3600000), out);
  EXPECT_EQ(out, "sid=v; Path=/; Max-Age=3600; HttpOnly");
  format_set_cookie("sid", "v", Millis(0), out);
  EXPECT_EQ(out, "sid=v; Path=/; HttpOnly");
}

}  // namespace
}  // namespace trellis::proxy
