// What the HTTP/1.1 parser promises about its results, written out once for the
// request, response and round-trip targets. Deliberately re-derived from the
// headers it returns rather than from the parser's own helpers, so a mistake in
// the parser is not simply repeated here.
#pragma once

#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "http/http1/parser.h"

namespace fuzz_http1 {

using trellis::http::http1::BodyKind;
using trellis::http::http1::Header;
using trellis::http::http1::HeaderList;
using trellis::http::http1::MessageInfo;
using trellis::http::http1::ParseResult;
using trellis::http::http1::ParseStatus;
using trellis::http::http1::RequestHead;
using trellis::http::http1::ResponseHead;

inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

// RFC 9110 5.6.2 tchar.
inline bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// Field-value and reason-phrase bytes: HTAB, SP, VCHAR and obs-text. CR, LF and
// NUL are the ones that matter: any of them in a value could end a line early
// on the next hop.
inline bool is_value_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7F);
}

inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

inline bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

inline bool starts_with_any_case(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequal(s.substr(0, prefix.size()), prefix);
}

// True if some element of some `name` field's comma-separated list equals
// `token` (any case). Written independently of the parser's list walker.
inline bool list_has(const HeaderList& headers, std::string_view name, std::string_view token) {
  for (const Header& h : headers) {
    if (!iequal(h.name, name)) continue;
    size_t begin = 0;
    const std::string_view v = h.value;
    while (begin <= v.size()) {
      size_t end = v.find(',', begin);
      if (end == std::string_view::npos) end = v.size();
      std::string_view element = v.substr(begin, end - begin);
      while (!element.empty() && is_ows(element.front())) element.remove_prefix(1);
      while (!element.empty() && is_ows(element.back())) element.remove_suffix(1);
      if (iequal(element, token)) return true;
      begin = end + 1;
    }
  }
  return false;
}

// A parsed field: a token name, and a value with no leading or trailing
// whitespace and no byte that could break the line.
inline void check_field(const Header& h, std::string_view input) {
  CHECK(view_inside(h.name, input));
  CHECK(view_inside(h.value, input));
  CHECK(is_token(h.name));
  for (char c : h.value) CHECK(is_value_byte(c));
  if (!h.value.empty()) {
    CHECK(!is_ows(h.value.front()));
    CHECK(!is_ows(h.value.back()));
  }
}

// The framing-relevant fields of a head, counted from the field list.
struct FramingFields {
  int content_length = 0;
  int transfer_encoding = 0;
  int host = 0;
  int upgrade = 0;
  std::string_view content_length_value;
  std::string_view transfer_encoding_value;
  std::string_view host_value;
  std::string_view upgrade_value;
};

inline FramingFields count_framing(const HeaderList& headers) {
  FramingFields f;
  for (const Header& h : headers) {
    if (iequal(h.name, "content-length")) {
      ++f.content_length;
      f.content_length_value = h.value;
    } else if (iequal(h.name, "transfer-encoding")) {
      ++f.transfer_encoding;
      f.transfer_encoding_value = h.value;
    } else if (iequal(h.name, "host")) {
      ++f.host;
      f.host_value = h.value;
    } else if (iequal(h.name, "upgrade")) {
      ++f.upgrade;
      f.upgrade_value = h.value;
    }
  }
  return f;
}

// Decimal digits only, and few enough that the value cannot overflow.
inline bool decimal_value(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  out = n;
  return true;
}

// The smuggling rules, whichever side of the proxy the head came from: one
// framing, stated once, in a form both ends read the same way.
inline void check_framing_rules(const FramingFields& f, int version_minor) {
  CHECK(f.content_length <= 1);
  CHECK(f.transfer_encoding <= 1);
  CHECK(f.content_length == 0 || f.transfer_encoding == 0);
  CHECK(f.upgrade <= 1);
  if (f.transfer_encoding == 1) {
    CHECK(iequal(f.transfer_encoding_value, "chunked"));
    CHECK(version_minor == 1);
  }
  if (f.content_length == 1) {
    uint64_t n = 0;
    CHECK(decimal_value(f.content_length_value, n));
  }
}

// Holds for every result, whatever the input.
inline void check_result(const ParseResult& r, size_t input_size, bool is_request) {
  CHECK(r.error != nullptr);
  switch (r.status) {
    case ParseStatus::kNeedMore:
      CHECK(r.consumed == 0);
      CHECK(r.error_status == 0);
      // An input that already fills the head limit is never left waiting.
      CHECK(input_size < trellis::http::http1::kMaxHeadBytes);
      break;
    case ParseStatus::kDone:
      CHECK(r.consumed > 0);
      CHECK(r.consumed <= input_size);
      CHECK(r.consumed <= trellis::http::http1::kMaxHeadBytes);
      CHECK(r.error_status == 0);
      break;
    case ParseStatus::kError:
      CHECK(r.consumed == 0);
      CHECK(r.error[0] != '\0');
      if (is_request) {
        CHECK(r.error_status == 400 || r.error_status == 431 || r.error_status == 505);
      } else {
        CHECK(r.error_status == 502);
      }
      break;
    default:
      CHECK(false && "unknown ParseStatus");
  }
}

// kDone means the head ends with its empty line and nothing before it is one.
inline void check_head_end(std::string_view head) {
  CHECK(head.size() >= 4);
  CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
}

inline bool same_result(const ParseResult& a, const ParseResult& b) {
  return a.status == b.status && a.consumed == b.consumed && a.error_status == b.error_status &&
         std::strcmp(a.error, b.error) == 0;
}

inline bool same_headers(const HeaderList& a, const HeaderList& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
  }
  return true;
}

inline bool same_info(const MessageInfo& a, const MessageInfo& b) {
  return a.body == b.body && a.content_length == b.content_length && a.keep_alive == b.keep_alive &&
         a.connection_upgrade == b.connection_upgrade && a.upgrade == b.upgrade &&
         a.expect_continue == b.expect_continue && a.te_trailers == b.te_trailers;
}

inline bool same_request(const RequestHead& a, const RequestHead& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path && a.host == b.host &&
         a.version_minor == b.version_minor && same_headers(a.headers, b.headers) &&
         same_info(a.info, b.info);
}

inline bool same_response(const ResponseHead& a, const ResponseHead& b) {
  return a.status == b.status && a.reason == b.reason && a.version_minor == b.version_minor &&
         same_headers(a.headers, b.headers) && same_info(a.info, b.info);
}

// Prefix lengths below `consumed` worth trying: all of them for small heads,
// a spread (both ends, the middle, a data-dependent one) for large ones, so
// one input costs O(n) parses at most a few times.
template <typename Fn>
void for_each_prefix(size_t consumed, size_t hash, Fn&& fn) {
  if (consumed <= 256) {
    for (size_t k = 0; k < consumed; ++k) fn(k);
    return;
  }
  for (size_t k : {size_t{0}, size_t{1}, consumed / 2, hash % consumed, consumed - 2, consumed - 1}) fn(k);
}

}  // namespace fuzz_http1
