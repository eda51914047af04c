#include "net/tls_detect.h"

#include <gtest/gtest.h>

#include <string>

namespace trellis::net {
namespace {

std::string bytes(std::initializer_list<unsigned char> list) { return std::string(list.begin(), list.end()); }

TEST(TlsDetect, AClientHelloRecordIsTls) {
  // Handshake record, TLS 1.0 record version (what TLS 1.3 clients send),
  // 512 bytes, ClientHello.
  EXPECT_TRUE(looks_like_tls(bytes({0x16, 0x03, 0x01, 0x02, 0x00, 0x01})));
  EXPECT_TRUE(looks_like_tls(bytes({0x16, 0x03, 0x03, 0x00, 0x80, 0x01})));
  // The header alone is enough to say yes.
  EXPECT_TRUE(looks_like_tls(bytes({0x16, 0x03, 0x01})));
}

TEST(TlsDetect, PlaintextProtocolsAreNot) {
  EXPECT_FALSE(looks_like_tls("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_FALSE(looks_like_tls("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
  EXPECT_FALSE(looks_like_tls("CONNECT a:443 HTTP/1.1\r\n"));
  EXPECT_FALSE(looks_like_tls(bytes({0x00, 0x00, 0x12, 0x04})));  // a bare HTTP/2 frame
}

TEST(TlsDetect, OtherRecordsAndTooFewBytesAreNot) {
  EXPECT_FALSE(looks_like_tls(""));
  EXPECT_FALSE(looks_like_tls(bytes({0x16, 0x03})));                          // too short to tell
  EXPECT_FALSE(looks_like_tls(bytes({0x16, 0x03, 0x00})));                    // SSL 3.0
  EXPECT_FALSE(looks_like_tls(bytes({0x16, 0x03, 0x05})));                    // no such version
  EXPECT_FALSE(looks_like_tls(bytes({0x15, 0x03, 0x03})));                    // an alert
  EXPECT_FALSE(looks_like_tls(bytes({0x16, 0x03, 0x01, 0x00, 0x00})));        // empty record
  EXPECT_FALSE(looks_like_tls(bytes({0x16, 0x03, 0x01, 0x48, 0x01})));        // longer than a record may be
  EXPECT_FALSE(looks_like_tls(bytes({0x16, 0x03, 0x03, 0x00, 0x80, 0x02})));  // a ServerHello
}

}  // namespace
}  // namespace trellis::net
