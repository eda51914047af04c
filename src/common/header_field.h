// A header field as views, shared by the codecs (which own the bytes) and the
// policy code that reads requests (route matching, hashing).
#pragma once

#include <string_view>

namespace trellis {

struct HeaderField {
  std::string_view name;
  std::string_view value;
};

}  // namespace trellis
