// What both ends of the proxy's HTTP/2 share: field blocks for nghttp2 with
// names in lower case and HTTP/1.1's connection-specific fields left out
// (RFC 9113 §8.2.2), and the send loop that gathers nghttp2's frames into
// one write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nghttp2/nghttp2.h>

#include "http/header.h"
#include "net/buffer.h"
#include "net/transport.h"

namespace trellis::proxy::http2 {

// Between sidecars every request is an HTTP/2 stream: the client sidecar
// names the protocol its client spoke when that was HTTP/1.x, so that the
// destination restores it (a cluster with protocol downstream). The server
// end takes the field off every request.
inline constexpr std::string_view kOriginalProtocol = "trellis-original-protocol";

// Fields HTTP/2 forbids (RFC 9113 §8.2.2); `te` is allowed only as
// "trailers", which the caller decides.
bool connection_specific(std::string_view lower_name);

inline nghttp2_nv field(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// A header or trailer section for nghttp2, kept until nghttp2 copied it.
// Values are views that must outlive the submit call, unless copied.
class FieldBlock {
 public:
  void clear() {
    names_.clear();
    values_.clear();
    spans_.clear();
  }
  bool empty() const { return spans_.empty(); }
  // Adds a field, its name lower-cased unless `lower` is false (a pseudo-
  // header or a literal already in lower case).
  void add(std::string_view name, std::string_view value, bool lower = true);
  // Adds the end-to-end fields of `fields`; connection-specific ones, empty
  // names and pseudo-headers are left out. `trailers`: a trailer section,
  // submitted later than it arrived (the block keeps its own copy of the
  // values), without http::barred_from_trailers fields.
  void add_fields(const http::HeaderList& fields, bool trailers = false);
  const std::vector<nghttp2_nv>& nv();

 private:
  struct Span {
    size_t at, size;
    std::string_view value;        // unless copied:
    size_t value_at = kNotCopied;  // in values_
  };
  static constexpr size_t kNotCopied = SIZE_MAX;
  std::string names_;
  std::string values_;
  std::vector<Span> spans_;
  std::vector<nghttp2_nv> nv_;
};

// A new session with the callbacks and options `configure` sets, whose
// windows open only as the caller takes the data (no automatic
// WINDOW_UPDATE), its SETTINGS `settings` queued and its connection window
// opened to `connection_window`. Null when nghttp2 is out of memory.
nghttp2_session* open_session(bool server, void* user, std::span<const nghttp2_settings_entry> settings,
                              int32_t connection_window,
                              void (*configure)(nghttp2_session_callbacks*, nghttp2_option*));

// Moves what nghttp2 has queued into `output` until `transport` holds
// `high_watermark` bytes unsent, and writes it, one call per round; rounds go
// on while the socket takes everything, so nothing queued is left without a
// writable event to come. Returns the bytes written, or -1 when the session
// or the transport failed.
int64_t send_frames(nghttp2_session* session, net::Transport& transport, net::Buffer& output,
                    size_t high_watermark);

}  // namespace trellis::proxy::http2
