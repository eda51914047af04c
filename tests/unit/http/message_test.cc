#include "http/message.h"

#include <gtest/gtest.h>

#include <string>

namespace trellis::http {
namespace {

TEST(RequestHeadersCopy, OutlivesTheInputAndSurvivesGrowth) {
  RequestHeadersCopy copy;
  {
    std::string input = "GET/pathhostx-a1";
    RequestHeaders src;
    src.method = std::string_view(input).substr(0, 3);
    src.path = std::string_view(input).substr(3, 5);
    src.authority = std::string_view(input).substr(8, 4);
    src.headers.push_back({std::string_view(input).substr(12, 3), std::string_view(input).substr(15, 1)});
    copy.assign(src);
    input.assign(input.size(), '#');  // the codec's buffer is reused
  }
  // Enough additions to force the storage to move.
  for (int i = 0; i < 200; ++i) copy.add("x-added", std::string(20, static_cast<char>('a' + i % 26)));
  const RequestHeaders& r = copy.get();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/path");
  EXPECT_EQ(r.authority, "host");
  EXPECT_EQ(r.headers[0].name, "x-a");
  EXPECT_EQ(r.headers[0].value, "1");
  EXPECT_EQ(r.headers.back().value, std::string(20, static_cast<char>('a' + 199 % 26)));
}

TEST(FindHeader, IsCaseInsensitive) {
  HeaderList h = {{"X-Request-Id", "abc"}};
  EXPECT_EQ(find_header(h, "x-request-id"), "abc");
  EXPECT_EQ(find_header(h, "x-other"), "");
}

TEST(Grpc, TellsGrpcByTheContentType) {
  EXPECT_TRUE(is_grpc({{"content-type", "application/grpc"}}));
  EXPECT_TRUE(is_grpc({{"Content-Type", "application/grpc+proto"}}));
  EXPECT_TRUE(is_grpc({{"content-type", "application/grpc;charset=utf-8"}}));
  EXPECT_FALSE(is_grpc({{"content-type", "application/grpc-web"}}));
  EXPECT_FALSE(is_grpc({{"content-type", "application/json"}}));
  EXPECT_FALSE(is_grpc({}));
}

TEST(Grpc, ReadsTheStatusOfTrailers) {
  EXPECT_EQ(grpc_status({{"grpc-status", "0"}}), 0);
  EXPECT_EQ(grpc_status({{"grpc-message", "x"}, {"grpc-status", "14"}}), 14);
  EXPECT_EQ(grpc_status({{"grpc-status", "17"}}), 2);  // past the known codes: UNKNOWN
  EXPECT_EQ(grpc_status({{"grpc-status", "1x"}}), -1);
  EXPECT_EQ(grpc_status({{"grpc-status", ""}}), -1);
  EXPECT_EQ(grpc_status({{"grpc-status", "99999999999"}}), -1);
  EXPECT_EQ(grpc_status({}), -1);
}

TEST(Grpc, ReadsTheTimeoutOfACall) {
  Duration d{};
  EXPECT_TRUE(parse_grpc_timeout("100m", d));
  EXPECT_EQ(d, std::chrono::milliseconds(100));
  EXPECT_TRUE(parse_grpc_timeout("2S", d));
  EXPECT_EQ(d, std::chrono::seconds(2));
  EXPECT_TRUE(parse_grpc_timeout("1H", d));
  EXPECT_EQ(d, std::chrono::hours(1));
  EXPECT_TRUE(parse_grpc_timeout("99999999n", d));
  EXPECT_EQ(d, std::chrono::nanoseconds(99999999));
  EXPECT_TRUE(parse_grpc_timeout("0u", d));
  EXPECT_EQ(d, Duration::zero());
  for (std::string_view bad : {"", "m", "100", "100x", "-1S", "123456789S", "1.5S", " 1S"})
    EXPECT_FALSE(parse_grpc_timeout(bad, d)) << bad;
}

}  // namespace
}  // namespace trellis::http
