// Small text helpers shared by the config loaders and the data plane.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace trellis {

// Edit distance with a swap of two neighbours as one edit (optimal string
// alignment), for "did you mean ...?" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate `given` is most likely a slip for, or empty, for "did you
// mean ...?" suggestions: a case slip first ("pathPrefix"), then, with
// `partial`, a candidate that contains it ("Prefix" for "PathPrefix"), then a
// near miss: at most two edits, and fewer for short words, where two edits
// turn anything into anything ("ftp" is not a typo of "http").
std::string_view closest_match(std::string_view given, std::span<const std::string_view> candidates,
                               bool partial = false);

// ASCII letters in lower case; other bytes as they are.
std::string ascii_lower(std::string_view text);

// `text` without the bytes of `blanks` at either end.
std::string_view trim(std::string_view text, std::string_view blanks = " \t\r\n");

// `s` in double quotes, for error messages: unknown field "x".
std::string in_quotes(std::string_view s);

// Field paths in error messages: "listeners[0].routes" style.
// Percent-encodes one path segment or query value: names that come from a
// user must not be able to change the route.
std::string url_encode(std::string_view text);

// The value of `key` in a URL query ("a=1&b=x%2Fy"), percent-decoded ('+'
// is a space); nullopt when the key is absent. A malformed escape is kept
// as it is.
std::optional<std::string> query_parameter(std::string_view query, std::string_view key);

std::string field_path(std::string_view parent, std::string_view key);  // parent.key
std::string item_path(std::string_view parent, size_t index);           // parent[index]

// FNV-1a, 64 bits: a stable hash of bytes (the same in every process), for
// host ids and hash-balancing keys. Callers that need a good spread mix it.
inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace trellis
