// The gRPC health checking messages, byte for byte.
#include "proxy/upstream/grpc_health.h"

#include <gtest/gtest.h>

#include <string>

namespace trellis::proxy {
namespace {

std::string framed(const std::string& message) {
  std::string out(5, '\0');
  out[4] = static_cast<char>(message.size());
  return out + message;
}

TEST(GrpcHealthTest, RequestIsALengthPrefixedMessage) {
  EXPECT_EQ(grpc_health_request(""), std::string(5, '\0'));
  EXPECT_EQ(grpc_health_request("shop.Cart"), framed(std::string("\x0a\x09shop.Cart", 11)));
  // A name of 200 bytes needs a two-byte length.
  std::string request = grpc_health_request(std::string(200, 'a'));
  ASSERT_EQ(request.size(), 5u + 3u + 200u);
  EXPECT_EQ(request.substr(0, 8), std::string("\0\0\0\0\xcb\x0a\xc8\x01", 8));
}

TEST(GrpcHealthTest, ResponseStatus) {
  std::string why;
  EXPECT_EQ(parse_grpc_health_response(framed("\x08\x01"), why), 1);
  EXPECT_EQ(parse_grpc_health_response(framed("\x08\x02"), why), 2);
  EXPECT_EQ(parse_grpc_health_response(framed("\x08\x03"), why), 3);
  // A status left out is UNKNOWN (proto3 default).
  EXPECT_EQ(parse_grpc_health_response(framed(""), why), 0);
  // Unknown fields of every wire type are skipped.
  EXPECT_EQ(parse_grpc_health_response(framed(std::string("\x12\x02hi\x08\x01\x19", 7) + std::string(8, 'x') +
                                              std::string("\x25\x00\x00\x00\x00\x30\x05", 7)),
                                       why),
            1);
}

TEST(GrpcHealthTest, MalformedResponsesAreRefused) {
  std::string why;
  EXPECT_EQ(parse_grpc_health_response("", why), std::nullopt);
  EXPECT_EQ(why, "no response message");
  EXPECT_EQ(parse_grpc_health_response(std::string("\x01\0\0\0\x02\x08\x01", 7), why), std::nullopt);
  EXPECT_EQ(why, "compressed response message");
  EXPECT_EQ(parse_grpc_health_response(std::string("\0\0\0\0\x03\x08\x01", 7), why), std::nullopt);
  EXPECT_EQ(why, "response message length does not match its frame");
  for (std::string message : {std::string("\x08"), std::string("\x08\x80"), std::string("\x12\x05hi"),
                              std::string("\x0b"), std::string("\x0d\x01"), std::string("\x80")}) {
    why.clear();
    EXPECT_EQ(parse_grpc_health_response(framed(message), why), std::nullopt) << message.size();
    EXPECT_EQ(why, "malformed response message");
  }
}

TEST(GrpcHealthTest, StatusNames) {
  EXPECT_EQ(serving_status_name(1), "SERVING");
  EXPECT_EQ(serving_status_name(2), "NOT_SERVING");
  EXPECT_EQ(serving_status_name(9), "status 9");
}

}  // namespace
}  // namespace trellis::proxy
