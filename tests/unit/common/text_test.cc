#include "common/text.h"

#include <gtest/gtest.h>

#include <array>

namespace trellis {
namespace {

TEST(Text, EditDistanceCountsASwapAsOneEdit) {
  EXPECT_EQ(edit_distance("value", "value"), 0u);
  EXPECT_EQ(edit_distance("valeu", "value"), 1u);
  EXPECT_EQ(edit_distance("weigth", "weight"), 1u);
  EXPECT_EQ(edit_distance("adress", "address"), 1u);
  EXPECT_EQ(edit_distance("push", "post"), 2u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
}

TEST(Text, ClosestMatchPrefersACaseSlipThenAPartThenANearMiss) {
  std::array<std::string_view, 3> kinds = {"Exact", "PathPrefix", "RegularExpression"};
  EXPECT_EQ(closest_match("pathprefix", kinds), "PathPrefix");
  EXPECT_EQ(closest_match("Prefix", kinds), "");
  EXPECT_EQ(closest_match("Prefix", kinds, /*partial=*/true), "PathPrefix");
  EXPECT_EQ(closest_match("Exatc", kinds), "Exact");
  // Two edits in a short word turn anything into anything: no suggestion.
  std::array<std::string_view, 2> schemes = {"http", "https"};
  EXPECT_EQ(closest_match("ftp", schemes), "");
  EXPECT_EQ(closest_match("htps", schemes), "https");
}

TEST(Text, QueryParametersAreFoundAndDecoded) {
  EXPECT_EQ(query_parameter("a=1&path=%2Fapi%2Fx+y&b", "path"), "/api/x y");
  EXPECT_EQ(query_parameter("a=1&b", "b"), "");
  EXPECT_EQ(query_parameter("a=1", "b"), std::nullopt);
  EXPECT_EQ(query_parameter("p=%zz%4", "p"), "%zz%4") << "a malformed escape is kept";
  EXPECT_EQ(query_parameter("pa=1&p=2", "p"), "2");
}

TEST(Text, UrlEncodeRoundTripsThroughQueryParameter) {
  std::string text = "/a b&c=d?e%f\xC3\xA9";
  EXPECT_EQ(url_encode(text), "%2Fa%20b%26c%3Dd%3Fe%25f%C3%A9");
  EXPECT_EQ(query_parameter("x=" + url_encode(text), "x"), text);
}

TEST(Text, AsciiLowerLeavesOtherBytes) { EXPECT_EQ(ascii_lower("AbC-\xC3\x89"), "abc-\xC3\x89"); }

}  // namespace
}  // namespace trellis
