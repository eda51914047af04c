#include "policy/cors.h"

#include <gtest/gtest.h>

namespace trellis::policy {
namespace {

TEST(Cors, OriginPatterns) {
  for (const char* ok : {"*", "https://a.example", "http://a.example:8080", "https://*.example.com",
                         "http://*", "HTTPS://A.Example"})
    EXPECT_EQ(check_origin_pattern(ok), std::nullopt) << ok;
  for (const char* bad :
       {"", "a.example", "https://", "https://a.example/", "https://a.example/x", "ftp://a.example",
        "https://a.*.example", "https://*a.example", "https://a.example:0", "https://a.example:65536",
        "https://a.example:x", "https://a_b.example"})
    EXPECT_NE(check_origin_pattern(bad), std::nullopt) << bad;
}

TEST(Cors, OriginsAllowed) {
  const std::vector<std::string> patterns = {"https://www.example.com", "http://*.example.org:8080",
                                             "https://*.example.net"};
  EXPECT_TRUE(origin_allowed(patterns, "https://www.example.com"));
  EXPECT_TRUE(origin_allowed(patterns, "https://WWW.Example.com")) << "hosts compare without case";
  EXPECT_TRUE(origin_allowed(patterns, "https://www.example.com:443")) << "the scheme's port";
  EXPECT_FALSE(origin_allowed(patterns, "http://www.example.com")) << "another scheme";
  EXPECT_FALSE(origin_allowed(patterns, "https://www.example.com:8443")) << "another port";
  EXPECT_TRUE(origin_allowed(patterns, "http://a.example.org:8080"));
  EXPECT_TRUE(origin_allowed(patterns, "http://a.b.example.org:8080")) << "any labels to the left";
  EXPECT_FALSE(origin_allowed(patterns, "http://example.org:8080")) << "at least one label";
  EXPECT_FALSE(origin_allowed(patterns, "http://a.example.org")) << "port 80, not 8080";
  EXPECT_FALSE(origin_allowed(patterns, "https://evilexample.net")) << "a label boundary";
  EXPECT_TRUE(origin_allowed(patterns, "https://x.example.net"));
  EXPECT_FALSE(origin_allowed(patterns, "null"));
  EXPECT_FALSE(origin_allowed(patterns, "https://www.example.com.evil"));
  EXPECT_TRUE(origin_allowed({"*"}, "null")) << "\"*\" allows every origin";
  EXPECT_FALSE(origin_allowed({}, "https://a.example"));
}

}  // namespace
}  // namespace trellis::policy
