#include "proxy/http2/priority_scan.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace trellis::proxy::http2 {
namespace {

const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string frame(uint8_t type, uint32_t stream, const std::string& payload) {
  std::string f;
  f += static_cast<char>(payload.size() >> 16);
  f += static_cast<char>(payload.size() >> 8);
  f += static_cast<char>(payload.size());
  f += static_cast<char>(type);
  f += '\0';  // flags
  for (int shift : {24, 16, 8, 0}) f += static_cast<char>(stream >> shift);
  return f + payload;
}

std::string priority(uint32_t stream, uint32_t depends_on) {
  std::string p;
  for (int shift : {24, 16, 8, 0}) p += static_cast<char>(depends_on >> shift);
  return frame(0x2, stream, p + '\x0f');
}

TEST(PriorityScan, FindsAStreamThatDependsOnItselfAfterOtherFrames) {
  PriorityScan scan;
  std::string bytes = kPreface + frame(0x4, 0, "") + frame(0x1, 1, std::string(300, 'h')) + priority(3, 1) +
                      frame(0x0, 1, std::string(70000, 'd'));
  EXPECT_FALSE(scan.self_dependency(bytes));
  EXPECT_TRUE(scan.self_dependency(priority(5, 5)));
}

TEST(PriorityScan, FindsItWhateverWayTheBytesAreCut) {
  std::string bytes = kPreface + frame(0x4, 0, "") + priority(1, 3) + frame(0x6, 0, "12345678") +
                      priority(7, 0x80000007);  // the exclusive bit is not part of the id
  for (size_t piece : {1, 2, 5, 9, 13, 100}) {
    PriorityScan scan;
    bool found = false;
    for (size_t at = 0; at < bytes.size() && !found; at += piece)
      found = scan.self_dependency(std::string_view(bytes).substr(at, piece));
    EXPECT_TRUE(found) << piece;
  }
}

TEST(PriorityScan, LeavesOtherFramesAlone) {
  PriorityScan scan;
  // A DATA frame whose payload looks like a self-dependent PRIORITY frame,
  // and a HEADERS frame on stream 1 carrying "1" where a dependency would be.
  std::string bytes = kPreface + frame(0x0, 1, priority(9, 9)) +
                      frame(0x1, 1, std::string("\0\0\0\1\x0f", 5)) + priority(0, 0) +
                      frame(0x2, 11, std::string("\0\0\0\x0b", 4));  // wrong length
  EXPECT_FALSE(scan.self_dependency(bytes));
}

}  // namespace
}  // namespace trellis::proxy::http2
