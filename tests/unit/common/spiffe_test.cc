#include "common/spiffe.h"

#include <gtest/gtest.h>

#include <string>

namespace trellis {
namespace {

TEST(SpiffeId, ParsesTheMeshShapeAndPrintsItBack) {
  auto id = SpiffeId::parse("spiffe://cluster.local/ns/bookinfo/sa/product-page");
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(id->trust_domain, "cluster.local");
  EXPECT_EQ(id->namespace_, "bookinfo");
  EXPECT_EQ(id->service_account, "product-page");
  EXPECT_EQ(id->to_string(), "spiffe://cluster.local/ns/bookinfo/sa/product-page");
}

TEST(SpiffeId, AcceptsTheEdgesOfEachPart) {
  std::string td(255, 'a');
  std::string ns(63, 'n');
  // 253 characters: labels of 63 joined by dots, the last one shorter.
  std::string sa = std::string(63, 's') + "." + std::string(63, 's') + "." + std::string(63, 's') + "." +
                   std::string(61, 's');
  ASSERT_EQ(sa.size(), 253u);
  for (const std::string& uri : {
           "spiffe://" + td + "/ns/" + ns + "/sa/" + sa,
           std::string("spiffe://td_1-x.example/ns/a/sa/b"),
           std::string("spiffe://9/ns/0-9/sa/a.b-c.d"),
       }) {
    auto id = SpiffeId::parse(uri);
    ASSERT_TRUE(id) << uri << ": " << id.error().message;
    EXPECT_EQ(id->to_string(), uri);
  }
}

struct InvalidCase {
  std::string uri;
  std::string reason;  // a part of the error message
};

TEST(SpiffeId, RefusesEverythingElseWithAReason) {
  const std::string long_td(256, 'a');
  const std::string long_label(64, 'a');
  const std::string long_sa = std::string(63, 'a') + "." + std::string(63, 'a') + "." + std::string(63, 'a') +
                              "." + std::string(63, 'a');  // 255
  const InvalidCase cases[] = {
      {"", "must start with \"spiffe://\""},
      {"https://cluster.local/ns/a/sa/b", "must start with \"spiffe://\""},
      {"spiffe:/cluster.local/ns/a/sa/b", "must start with \"spiffe://\""},
      {"SPIFFE://cluster.local/ns/a/sa/b", "in lower case"},
      {"spiffe://", "the trust domain is empty"},
      {"spiffe:///ns/a/sa/b", "the trust domain is empty"},
      {"spiffe://cluster.local", "path \"/ns/<namespace>/sa/<service account>\" is missing"},
      {"spiffe://cluster.local/", "the path has an empty segment"},
      {"spiffe://Cluster.local/ns/a/sa/b", "has the character 'C'"},
      {"spiffe://cluster.local:8443/ns/a/sa/b", "a port is not allowed"},
      {"spiffe://user@cluster.local/ns/a/sa/b", "userinfo is not allowed"},
      {"spiffe://cluster.local/ns/a/sa/b?x=1", "a query is not allowed"},
      {"spiffe://cluster.local/ns/a/sa/b#frag", "a fragment is not allowed"},
      {"spiffe://cluster.local/ns/a/sa/b%2Fc", "percent-encoding is not allowed"},
      {"spiffe://cluster.local/ns/a/sa/b/", "a trailing slash is not allowed"},
      {"spiffe://cluster.local/ns/a//sa/b", "empty segment"},
      {"spiffe://cluster.local/ns/a/sa", "the path must be"},
      {"spiffe://cluster.local/ns/a/sa/b/c", "the path must be"},
      {"spiffe://cluster.local/namespace/a/sa/b", "the path must be"},
      {"spiffe://cluster.local/sa/b/ns/a", "the path must be"},
      {"spiffe://cluster.local/workload", "the path must be"},
      {"spiffe://.cluster.local/ns/a/sa/b", "empty label"},
      {"spiffe://cluster..local/ns/a/sa/b", "empty label"},
      {"spiffe://cluster local/ns/a/sa/b", "has the character ' '"},
      {"spiffe://" + long_td + "/ns/a/sa/b", "longer than 255"},
      {"spiffe://cluster.local/ns/Default/sa/b", "has the character 'D'"},
      {"spiffe://cluster.local/ns/-a/sa/b", "must start and end with a letter or digit"},
      {"spiffe://cluster.local/ns/a-/sa/b", "must start and end with a letter or digit"},
      {"spiffe://cluster.local/ns/a.b/sa/b", "has the character '.'"},
      {"spiffe://cluster.local/ns/a_b/sa/b", "has the character '_'"},
      {"spiffe://cluster.local/ns/" + long_label + "/sa/b", "longer than 63"},
      {"spiffe://cluster.local/ns/a/sa/.b", "empty label"},
      {"spiffe://cluster.local/ns/a/sa/b.", "empty label"},
      {"spiffe://cluster.local/ns/a/sa/b..c", "empty label"},
      {"spiffe://cluster.local/ns/a/sa/b.-c", "must start and end with a letter or digit"},
      {"spiffe://cluster.local/ns/a/sa/" + long_label, "longer than 63"},
      {"spiffe://cluster.local/ns/a/sa/" + long_sa, "longer than 253"},
      {"spiffe://cluster.local/ns/a/sa/b\n", "has the character \\x0a"},
      {std::string("spiffe://cluster.local/ns/a/sa/b\0c", 34), "has the character \\x00"},
  };
  for (const InvalidCase& c : cases) {
    auto id = SpiffeId::parse(c.uri);
    ASSERT_FALSE(id) << c.uri << " parsed";
    EXPECT_NE(id.error().message.find("invalid SPIFFE ID"), std::string::npos) << id.error().message;
    EXPECT_NE(id.error().message.find(c.reason), std::string::npos)
        << c.uri << ": expected \"" << c.reason << "\" in: " << id.error().message;
  }
}

TEST(SpiffeId, ErrorsCutAHugeInputShort) {
  std::string uri = "spiffe://cluster.local/ns/a/sa/" + std::string(10000, 'X');
  auto id = SpiffeId::parse(uri);
  ASSERT_FALSE(id);
  EXPECT_LT(id.error().message.size(), 600u) << id.error().message;
}

TEST(SpiffeId, MakeChecksEachPart) {
  auto id = SpiffeId::make("cluster.local", "bookinfo", "reviews");
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(id->to_string(), "spiffe://cluster.local/ns/bookinfo/sa/reviews");
  EXPECT_EQ(*SpiffeId::parse(id->to_string()), *id);

  auto bad_td = SpiffeId::make("cluster.local:1", "a", "b");
  ASSERT_FALSE(bad_td);
  EXPECT_NE(bad_td.error().message.find("trust domain"), std::string::npos);
  auto bad_ns = SpiffeId::make("cluster.local", "", "b");
  ASSERT_FALSE(bad_ns);
  EXPECT_NE(bad_ns.error().message.find("the namespace is empty"), std::string::npos);
  auto bad_sa = SpiffeId::make("cluster.local", "a", "b/c");
  ASSERT_FALSE(bad_sa);
  EXPECT_NE(bad_sa.error().message.find("service account"), std::string::npos);
}

}  // namespace
}  // namespace trellis
