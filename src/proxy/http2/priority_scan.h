// A scan of a client's HTTP/2 frames for what nghttp2 does not check.
#pragma once

#include <cstdint>
#include <string_view>

namespace trellis::proxy::http2 {

// Walks a client's bytes frame by frame for the one check nghttp2 leaves
// out: without a priority tree (see the SETTINGS sent) it skips PRIORITY
// payloads unread, so a stream made to depend on itself (a PROTOCOL_ERROR,
// RFC 9113 §5.3.1) would pass. Reads 9 bytes a frame header and 4 of a
// PRIORITY payload; the rest is skipped by length.
class PriorityScan {
 public:
  // Takes the next bytes of the stream, the connection preface first; true
  // when a PRIORITY frame in them names its own stream.
  bool self_dependency(std::string_view bytes);

 private:
  uint32_t skip_ = 24;  // the preface, then what is left of each payload
  uint8_t want_ = 9;    // a frame header, plus 4 bytes for PRIORITY
  uint8_t have_ = 0;
  uint8_t head_[13] = {};
};

}  // namespace trellis::proxy::http2
