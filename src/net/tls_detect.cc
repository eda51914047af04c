#include "net/tls_detect.h"

#include <cstdint>

namespace trellis::net {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
// A record's body is at most 2^14 bytes of plaintext (RFC 8446 5.1).
constexpr size_t kMaxRecordBody = 16384;

}  // namespace

bool looks_like_tls(std::string_view first_bytes) {
  if (first_bytes.size() < kTlsDetectBytes) return false;
  auto byte = [&](size_t i) { return static_cast<uint8_t>(first_bytes[i]); };
  if (byte(0) != kHandshakeRecord || byte(1) != 3 || byte(2) < 1 || byte(2) > 4) return false;
  if (first_bytes.size() >= 5) {
    size_t length = (static_cast<size_t>(byte(3)) << 8) | byte(4);
    if (length == 0 || length > kMaxRecordBody) return false;
  }
  if (first_bytes.size() >= kTlsClientHelloBytes && byte(5) != kClientHello) return false;
  return true;
}

}  // namespace trellis::net
