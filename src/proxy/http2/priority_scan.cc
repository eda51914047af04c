#include "proxy/http2/priority_scan.h"

#include <algorithm>
#include <cstring>

namespace trellis::proxy::http2 {
namespace {

constexpr uint8_t kPriority = 0x2;  // the frame type (RFC 9113 §6.3)

uint32_t u31(const uint8_t* p) {
  return (uint32_t{p[0]} & 0x7f) << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

}  // namespace

bool PriorityScan::self_dependency(std::string_view bytes) {
  while (!bytes.empty()) {
    if (skip_ > 0) {
      size_t n = std::min<size_t>(skip_, bytes.size());
      skip_ -= static_cast<uint32_t>(n);
      bytes.remove_prefix(n);
      continue;
    }
    size_t n = std::min<size_t>(want_ - have_, bytes.size());
    std::memcpy(head_ + have_, bytes.data(), n);
    have_ += static_cast<uint8_t>(n);
    bytes.remove_prefix(n);
    if (have_ < want_) break;
    uint32_t length = uint32_t{head_[0]} << 16 | uint32_t{head_[1]} << 8 | head_[2];
    uint32_t stream = u31(head_ + 5);
    if (want_ == 9 && head_[3] == kPriority && length == 5 && stream != 0) {
      want_ = 13;  // the dependency next
      continue;
    }
    bool self = want_ == 13 && u31(head_ + 9) == stream;
    skip_ = length - (want_ - 9);
    want_ = 9;
    have_ = 0;
    if (self) return true;
  }
  return false;
}

}  // namespace trellis::proxy::http2
