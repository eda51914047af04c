// Protocol-neutral HTTP header types shared by every codec (HTTP/1.1 today, HTTP/2 next).
#pragma once

#include <string_view>
#include <vector>

#include "common/header_field.h"

namespace trellis::http {

// A header field as it appears on the wire; views stay valid only while the
// buffer they point into is unchanged (codecs document when that is).
using Header = trellis::HeaderField;

using HeaderList = std::vector<Header>;

// ASCII case-insensitive comparison; `lower` must already be lower case.
inline bool iequals(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != lower[i]) return false;
  }
  return true;
}

// Framing and routing fields, which no trailer section may carry (RFC 9110
// 6.5.1) and which an HTTP/1.1 peer's chunked trailers can hold anyway: left
// out wherever trailers are sent on, in either protocol. Any case.
inline bool barred_from_trailers(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "host");
}

}  // namespace trellis::http
