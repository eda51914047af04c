#include "common/duration.h"

#include <gtest/gtest.h>

namespace trellis {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

nanoseconds ok(std::string_view text, const DurationLimits& limits = {}) {
  auto d = parse_duration(text, limits);
  EXPECT_TRUE(d.ok()) << text << ": " << (d.ok() ? "" : d.error().message);
  return d.ok() ? *d : nanoseconds(-1);
}

std::string error(std::string_view text, const DurationLimits& limits = {}) {
  auto d = parse_duration(text, limits);
  return d.ok() ? "accepted" : d.error().message;
}

TEST(Duration, OneGrammarForEveryUnitAndCompoundParts) {
  EXPECT_EQ(ok("250ms"), milliseconds(250));
  EXPECT_EQ(ok("1.5s"), milliseconds(1500));
  EXPECT_EQ(ok("0s"), nanoseconds(0));
  EXPECT_EQ(ok("2m"), std::chrono::minutes(2));
  EXPECT_EQ(ok("1h30m"), std::chrono::minutes(90));
  EXPECT_EQ(ok("1s500ms"), milliseconds(1500));
  EXPECT_EQ(ok("100us"), std::chrono::microseconds(100));
  EXPECT_EQ(ok("100\xC2\xB5s"), std::chrono::microseconds(100));
  EXPECT_EQ(ok("7ns"), nanoseconds(7));
  EXPECT_EQ(ok("007s"), std::chrono::seconds(7));
  EXPECT_EQ(ok("0.000000001s"), nanoseconds(1));
  EXPECT_EQ(ok("0.25h"), std::chrono::minutes(15));
}

TEST(Duration, ErrorsSayWhatIsWrong) {
  const std::string shape = "expected a duration like \"250ms\", \"1.5s\" or \"1h30m\"";
  EXPECT_EQ(error(""), shape);
  EXPECT_EQ(error("s"), shape);
  EXPECT_EQ(error(".5s"), shape);
  EXPECT_EQ(error("1.s"), shape);
  EXPECT_EQ(error("soon"), shape);
  EXPECT_EQ(error("10"), "a unit is required (ns, us, ms, s, m or h), e.g. \"10s\"");
  EXPECT_EQ(error("1m30"), "a unit is required (ns, us, ms, s, m or h), e.g. \"10s\"");
  EXPECT_EQ(error("-1s"), "must not be negative");
  EXPECT_EQ(error("1d"), "unknown unit \"d\" (use ns, us, ms, s, m or h)");
  EXPECT_EQ(error("1 s"), "unknown unit \" s\" (use ns, us, ms, s, m or h)");
  EXPECT_EQ(error("0.0000000001s"), "must be a whole number of multiples of 1ns");
}

TEST(Duration, LimitsOfTheCaller) {
  DurationLimits config{hours(8760), "8760h", milliseconds(1)};
  EXPECT_EQ(ok("8760h", config), hours(8760));
  EXPECT_EQ(error("8760.001h", config), "must be at most 8760h");
  EXPECT_EQ(error("99999999999999999999h", config), "must be at most 8760h");
  EXPECT_EQ(error("999999999999999999999999999h", config), "must be at most 8760h");
  EXPECT_EQ(error("0.5ms", config), "must be a whole number of milliseconds");
  EXPECT_EQ(error("1.0001s", config), "must be a whole number of milliseconds");
  EXPECT_EQ(error("1500us", {hours(1), "1h", std::chrono::seconds(1)}), "must be a whole number of seconds");
}

TEST(Duration, GatewayApiFormIsNarrower) {
  for (std::string_view good : {"10s", "500ms", "1h30m", "1s500ms", "99999h", "1h1m1s1ms", "0s"})
    EXPECT_TRUE(is_gateway_api_duration(good)) << good;
  for (std::string_view bad : {"", "1.5s", "10", "1d", "-1s", "100000s", "1h1m1s1ms1s", "100us", "1 s"})
    EXPECT_FALSE(is_gateway_api_duration(bad)) << bad;
  // Whatever the narrower form accepts, the grammar reads the same way.
  EXPECT_EQ(ok("1h1m1s1ms"), hours(1) + std::chrono::minutes(1) + std::chrono::seconds(1) + milliseconds(1));
}

}  // namespace
}  // namespace trellis
