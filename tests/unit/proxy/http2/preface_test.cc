#include <gtest/gtest.h>

#include "proxy/http2/server_connection.h"

namespace trellis::proxy {
namespace {

TEST(Http2Preface, TellsThePrefaceFromHttp1ByTheFirstBytes) {
  constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  EXPECT_EQ(http2_preface(kPreface), Http2Preface::kYes);
  EXPECT_EQ(http2_preface(std::string(kPreface) + "\x00\x00\x12\x04"), Http2Preface::kYes);
  for (size_t n = 1; n < kPreface.size(); ++n)
    EXPECT_EQ(http2_preface(kPreface.substr(0, n)), Http2Preface::kMaybe) << n;
  EXPECT_EQ(http2_preface(""), Http2Preface::kMaybe);
  EXPECT_EQ(http2_preface("POST / HTTP/1.1\r\n"), Http2Preface::kNo);
  EXPECT_EQ(http2_preface("PRI * HTTP/1.1\r\n\r\n"), Http2Preface::kNo);
  EXPECT_EQ(http2_preface("GET / HTTP/1.1\r\n"), Http2Preface::kNo);
}

}  // namespace
}  // namespace trellis::proxy
