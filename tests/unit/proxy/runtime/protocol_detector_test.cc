#include "proxy/runtime/protocol_detector.h"

#include <gtest/gtest.h>

#include <string>

namespace trellis::proxy {
namespace {

TEST(SniffProtocol, TellsHttpFromTheRestByTheFirstBytes) {
  EXPECT_EQ(sniff_protocol(""), Sniffed::kMore);
  // HTTP/1.x: a known method, and a request line that ends naming HTTP/1.x.
  EXPECT_EQ(sniff_protocol("GET / HTTP/1.1\r\n"), Sniffed::kHttp1);
  EXPECT_EQ(sniff_protocol("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Sniffed::kHttp1);
  EXPECT_EQ(sniff_protocol("POST /x?y=1 HTTP/1.0\n"), Sniffed::kHttp1);
  EXPECT_EQ(sniff_protocol("OPTIONS * HTTP/1.1\r\n"), Sniffed::kHttp1);
  for (std::string_view prefix : {"G", "GE", "GET", "GET ", "GET /", "GET / HTTP/1.1", "DELE"})
    EXPECT_EQ(sniff_protocol(prefix), Sniffed::kMore) << prefix;
  // A word and a space are not enough: Redis's inline commands look alike.
  EXPECT_EQ(sniff_protocol("GET key\r\n"), Sniffed::kOther);
  EXPECT_EQ(sniff_protocol("GET / HTTP/2.0\r\n"), Sniffed::kOther);
  EXPECT_EQ(sniff_protocol("get / HTTP/1.1\r\n"), Sniffed::kOther);
  EXPECT_EQ(sniff_protocol("FETCH / HTTP/1.1\r\n"), Sniffed::kOther);
  EXPECT_EQ(sniff_protocol("*1\r\n$4\r\nPING\r\n"), Sniffed::kOther);
  // A request line too long to be a head is HTTP's to refuse, not TCP.
  EXPECT_EQ(sniff_protocol("GET /" + std::string(70 * 1024, 'a')), Sniffed::kHttp1);
  // The HTTP/2 preface, whole or begun.
  constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  EXPECT_EQ(sniff_protocol(kPreface), Sniffed::kHttp2);
  EXPECT_EQ(sniff_protocol(kPreface.substr(0, 10)), Sniffed::kMore);
  EXPECT_EQ(sniff_protocol("PRI * HTTP/1.1\r\n"), Sniffed::kOther);
  // TLS: a handshake record, version 3.x.
  EXPECT_EQ(sniff_protocol(std::string_view("\x16", 1)), Sniffed::kMore);
  EXPECT_EQ(sniff_protocol(std::string_view("\x16\x03\x01\x02\x00", 5)), Sniffed::kTls);
  EXPECT_EQ(sniff_protocol(std::string_view("\x16\x04", 2)), Sniffed::kOther);
  // Binary: a MySQL client's first bytes would be an answer; anything else.
  EXPECT_EQ(sniff_protocol(std::string_view("\x00\x01\x02", 3)), Sniffed::kOther);
  EXPECT_EQ(sniff_protocol("SSH-2.0-OpenSSH_9.2\r\n"), Sniffed::kOther);
}

}  // namespace
}  // namespace trellis::proxy
