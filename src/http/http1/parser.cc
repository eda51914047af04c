#include "http/http1/parser.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace trellis::http::http1 {
namespace {

using http::iequals;

// RFC 9112 2.2 asks servers to skip "at least one" empty line before a request;
// a handful covers stray CRLFs after a previous body without inviting abuse.
constexpr size_t kMaxLeadingEmptyLines = 4;
// 18 digits always fit in uint64_t, so no overflow check is needed.
constexpr size_t kMaxContentLengthDigits = 18;
constexpr size_t kMaxChunkSizeDigits = 16;
// A size line longer than this is extension abuse, not framing.
constexpr size_t kMaxChunkLine = 4096;

enum ByteClass : uint8_t {
  kTchar = 1 << 0,       // RFC 9110 5.6.2 token character
  kFieldByte = 1 << 1,   // field-value / reason-phrase byte: HTAB, SP, VCHAR, obs-text
  kTargetByte = 1 << 2,  // request-target byte: visible ASCII except '#'
  kHexDigit = 1 << 3,
  kRegName = 1 << 4,  // RFC 3986 reg-name: unreserved, sub-delims, '%' (checked separately)
  kQdText = 1 << 5,   // quoted-string content that needs no escape
};

constexpr bool in_set(int c, std::string_view set) {
  for (char s : set) {
    if (static_cast<unsigned char>(s) == c) return true;
  }
  return false;
}

constexpr std::array<uint8_t, 256> build_byte_classes() {
  std::array<uint8_t, 256> table{};
  for (int c = 0; c < 256; ++c) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    uint8_t v = 0;
    if (alpha || digit || in_set(c, "!#$%&'*+-.^_`|~")) v |= kTchar;
    if (c == '\t' || (c >= 0x20 && c != 0x7F)) v |= kFieldByte;
    if (c > 0x20 && c < 0x7F && c != '#') v |= kTargetByte;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= kHexDigit;
    if (alpha || digit || in_set(c, "-._~!$&'()*+,;=%")) v |= kRegName;
    if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x7E && c != '\\') || c >= 0x80) {
      v |= kQdText;
    }
    table[c] = v;
  }
  return table;
}

constexpr std::array<uint8_t, 256> kByteClass = build_byte_classes();

inline bool has_class(char c, uint8_t cls) { return (kByteClass[static_cast<unsigned char>(c)] & cls) != 0; }

inline bool is_ows(char c) { return c == ' ' || c == '\t'; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

inline char to_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool equal_any_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  }
  return true;
}

inline int hex_value(char c) {
  if (c <= '9') return c - '0';
  return (c | 0x20) - 'a' + 10;
}

std::string_view trim_ows(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && is_ows(s[b])) ++b;
  while (e > b && is_ows(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Calls fn(element) for each non-empty element of an RFC 9110 5.6.1 list, OWS
// trimmed; stops early when fn returns true, and returns whether it did.
template <typename Fn>
bool any_list_element(std::string_view list, Fn&& fn) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view element = trim_ows(list.substr(0, comma));
    if (!element.empty() && fn(element)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

inline std::string_view line_at(const char* base, size_t begin, size_t lf) {
  return std::string_view(base + begin, lf - 1 - begin);  // drops the CR
}

inline size_t find_lf(std::string_view s, size_t from) {
  const void* hit = std::memchr(s.data() + from, '\n', s.size() - from);
  return static_cast<const char*>(hit) - s.data();
}

// ---- head boundaries --------------------------------------------------------

struct HeadScan {
  enum Kind : uint8_t { kFound, kNeedMore, kTooLarge, kBareLf };
  Kind kind;
  size_t end = 0;  // kFound: one past the LF of the empty line that ends the head
};

// Finds the empty line ending a head whose first line starts at `start`. Every
// LF met on the way must close a CRLF, so a bare-LF peer fails immediately
// instead of waiting for a terminator it will never send; afterwards the line
// parsers may assume every LF in the head has a CR before it. Only the first
// kMaxHeadBytes of `in` are searched: a head ending beyond them is too large.
HeadScan scan_head(std::string_view in, size_t start) {
  const size_t window = std::min(in.size(), kMaxHeadBytes);
  const char* base = in.data();
  size_t line_start = start;
  while (line_start < window) {
    const void* hit = std::memchr(base + line_start, '\n', window - line_start);
    if (hit == nullptr) break;
    const size_t lf = static_cast<const char*>(hit) - base;
    if (lf == line_start || base[lf - 1] != '\r') return {HeadScan::kBareLf};
    if (lf - 1 == line_start) return {HeadScan::kFound, lf + 1};
    line_start = lf + 1;
  }
  return {in.size() >= kMaxHeadBytes ? HeadScan::kTooLarge : HeadScan::kNeedMore};
}

// ---- field lines ------------------------------------------------------------

struct Fault {
  int status = 0;  // 0: no fault
  const char* reason = "";
  explicit operator bool() const { return status != 0; }
};

inline Fault bad(const char* reason) { return {400, reason}; }

// One field line without its CRLF; RFC 9112 5 with obs-fold refused.
Fault parse_field_line(std::string_view line, Header& out) {
  const size_t n = line.size();
  if (is_ows(line[0])) return bad("obs-fold");
  size_t i = 0;
  while (i < n && has_class(line[i], kTchar)) ++i;
  if (i == n) return bad("missing colon");
  if (line[i] != ':') {
    if (is_ows(line[i])) return bad("whitespace before colon");
    return bad("bad header name");
  }
  if (i == 0) return bad("empty header name");
  out.name = line.substr(0, i);
  ++i;
  while (i < n && is_ows(line[i])) ++i;
  size_t end = i;  // one past the last non-OWS byte
  for (size_t k = i; k < n; ++k) {
    const char c = line[k];
    if (!has_class(c, kFieldByte)) return bad("bad header value");
    if (!is_ows(c)) end = k + 1;
  }
  out.value = line.substr(i, end - i);
  return {};
}

// What the framing and connection rules need from the fields, collected while
// they are parsed so no one walks the list twice.
struct FieldFacts {
  uint32_t content_length_count = 0;
  uint32_t transfer_encoding_count = 0;
  uint32_t host_count = 0;
  uint32_t upgrade_count = 0;
  bool close = false;
  bool keep_alive = false;
  bool expect_continue = false;
  std::string_view host;
};

bool parse_content_length(std::string_view v, uint64_t& out) {
  if (v.empty() || v.size() > kMaxContentLengthDigits) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (!is_digit(c)) return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  out = n;
  return true;
}

Fault note_field(const Header& h, bool is_request, FieldFacts& facts, MessageInfo& info) {
  const std::string_view name = h.name;
  switch (name.size()) {
    case 2:
      if (is_request && iequals(name, "te")) {
        if (any_list_element(h.value, [](std::string_view e) { return iequals(e, "trailers"); })) {
          info.te_trailers = true;
        }
      }
      break;
    case 4:
      if (is_request && iequals(name, "host")) {
        if (++facts.host_count > 1) return bad("duplicate Host");
        facts.host = h.value;
      }
      break;
    case 6:
      if (is_request && iequals(name, "expect") && iequals(h.value, "100-continue")) {
        facts.expect_continue = true;
      }
      break;
    case 7:
      if (iequals(name, "upgrade")) {
        // Two Upgrade fields could let a check on one hide the protocol the
        // upstream acts on (h2c smuggling), so only one is accepted.
        if (++facts.upgrade_count > 1) return bad("duplicate Upgrade");
        info.upgrade = h.value;
      }
      break;
    case 10:
      if (iequals(name, "connection")) {
        any_list_element(h.value, [&](std::string_view e) {
          if (iequals(e, "close")) {
            facts.close = true;
          } else if (iequals(e, "keep-alive")) {
            facts.keep_alive = true;
          } else if (iequals(e, "upgrade")) {
            info.connection_upgrade = true;
          }
          return false;
        });
      }
      break;
    case 14:
      if (iequals(name, "content-length")) {
        if (++facts.content_length_count > 1) return bad("duplicate Content-Length");
        if (!parse_content_length(h.value, info.content_length)) return bad("bad Content-Length");
      }
      break;
    case 17:
      if (iequals(name, "transfer-encoding")) {
        if (++facts.transfer_encoding_count > 1) return bad("multiple Transfer-Encoding");
        if (!iequals(h.value, "chunked")) return bad("unsupported Transfer-Encoding");
      }
      break;
    default:
      break;
  }
  return {};
}

// Parses the field lines of head[pos, end), where `end` is one past the final
// empty line found by scan_head.
Fault parse_fields(std::string_view head, size_t pos, bool is_request, HeaderList& headers, FieldFacts& facts,
                   MessageInfo& info) {
  for (;;) {
    const size_t lf = find_lf(head, pos);
    if (lf == pos + 1) return {};  // the empty line
    if (headers.size() == kMaxHeaderFields) return {431, "too many header fields"};
    Header h;
    if (Fault f = parse_field_line(line_at(head.data(), pos, lf), h)) return f;
    headers.push_back(h);
    if (Fault f = note_field(h, is_request, facts, info)) return f;
    pos = lf + 1;
  }
}

// Framing rules shared by requests and responses (RFC 9112 6.1, 6.3).
Fault check_framing(const FieldFacts& facts, int version_minor) {
  if (facts.transfer_encoding_count > 0) {
    if (facts.content_length_count > 0) return bad("both Content-Length and Transfer-Encoding");
    if (version_minor == 0) return bad("Transfer-Encoding in HTTP/1.0");
  }
  return {};
}

bool keep_alive_for(const FieldFacts& facts, int version_minor) {
  if (facts.close) return false;
  return version_minor == 1 || facts.keep_alive;
}

// ---- start lines ------------------------------------------------------------

// "HTTP/" DIGIT "." DIGIT, the only shape RFC 9112 2.3 allows.
bool is_http_version(std::string_view v) {
  return v.size() == 8 && v.substr(0, 5) == "HTTP/" && is_digit(v[5]) && v[6] == '.' && is_digit(v[7]);
}

// Sets `minor` for HTTP/1.0 and HTTP/1.1; false for any other version.
bool supported_minor(std::string_view v, int& minor) {
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return false;
  minor = v[7] - '0';
  return true;
}

bool valid_port(std::string_view port) {
  if (port.empty() || port.size() > 5) return false;
  uint32_t n = 0;
  for (char c : port) {
    if (!is_digit(c)) return false;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  return n <= 65535;
}

bool valid_ipv6(std::string_view text) {
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buf)) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  in6_addr addr;
  return inet_pton(AF_INET6, buf, &addr) == 1;
}

bool valid_reg_name(std::string_view host) {
  if (host.empty()) return false;
  for (size_t i = 0; i < host.size(); ++i) {
    const char c = host[i];
    if (!has_class(c, kRegName)) return false;
    if (c == '%') {
      if (i + 2 >= host.size() || !has_class(host[i + 1], kHexDigit) || !has_class(host[i + 2], kHexDigit)) {
        return false;
      }
      i += 2;
    }
  }
  return true;
}

// uri-host [ ":" port ] with no userinfo (RFC 9110 4.2.4 says to treat it as an
// error). An empty host or an empty port is refused: neither can name an origin.
bool valid_authority(std::string_view a, bool port_required) {
  std::string_view host;
  std::string_view rest;
  if (!a.empty() && a[0] == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos || !valid_ipv6(a.substr(1, close - 1))) return false;
    host = a.substr(0, close + 1);
    rest = a.substr(close + 1);
  } else {
    const size_t colon = a.find(':');
    host = a.substr(0, colon);
    if (!valid_reg_name(host)) return false;
    rest = colon == std::string_view::npos ? std::string_view() : a.substr(colon);
  }
  if (rest.empty()) return !port_required;
  return rest[0] == ':' && valid_port(rest.substr(1));
}

bool starts_with_scheme(std::string_view target, std::string_view lower_scheme) {
  return target.size() >= lower_scheme.size() && iequals(target.substr(0, lower_scheme.size()), lower_scheme);
}

// Classifies the target (RFC 9112 3.2) and fills path; `authority` is set for
// absolute-form. Bytes were already checked against kTargetByte.
Fault parse_target(RequestHead& out, std::string_view& authority) {
  const std::string_view t = out.target;
  const bool connect = out.method == "CONNECT";
  if (t[0] == '/') {
    if (connect) return bad("CONNECT needs authority-form");
    out.path = t.substr(0, t.find('?'));
    return {};
  }
  if (connect) {
    if (!valid_authority(t, /*port_required=*/true)) return bad("bad CONNECT target");
    return {};
  }
  if (t == "*") {
    if (out.method != "OPTIONS") return bad("asterisk-form only for OPTIONS");
    return {};
  }
  size_t scheme_len = 0;
  if (starts_with_scheme(t, "http://")) {
    scheme_len = 7;
  } else if (starts_with_scheme(t, "https://")) {
    scheme_len = 8;
  } else {
    return bad("bad target");
  }
  const std::string_view rest = t.substr(scheme_len);
  const size_t auth_end = std::min(rest.find('/'), rest.find('?'));
  authority = rest.substr(0, auth_end);
  if (!valid_authority(authority, /*port_required=*/false)) return bad("bad target authority");
  if (auth_end == std::string_view::npos || rest[auth_end] == '?') {
    out.path = "/";
  } else {
    const std::string_view path = rest.substr(auth_end);
    out.path = path.substr(0, path.find('?'));
  }
  return {};
}

// method SP request-target SP HTTP-version (RFC 9112 3), exactly one SP each.
Fault parse_request_line(std::string_view line, RequestHead& out, std::string_view& authority) {
  const size_t n = line.size();
  size_t i = 0;
  while (i < n && has_class(line[i], kTchar)) ++i;
  if (i == 0 || i == n || line[i] != ' ') return bad("bad method");
  out.method = line.substr(0, i);

  const size_t target_begin = ++i;
  while (i < n && has_class(line[i], kTargetByte)) ++i;
  if (i == target_begin) return bad(i < n && line[i] == ' ' ? "empty target" : "bad target");
  if (i == n) return bad("missing HTTP version");
  if (line[i] != ' ') return bad(line[i] == '#' ? "fragment in target" : "bad target");
  out.target = line.substr(target_begin, i - target_begin);

  const std::string_view version = line.substr(i + 1);
  if (!is_http_version(version)) return bad("bad HTTP version");
  if (!supported_minor(version, out.version_minor)) return {505, "unsupported HTTP version"};
  return parse_target(out, authority);
}

// HTTP-version SP 3DIGIT SP [ reason-phrase ] (RFC 9112 4). The SP before an
// empty reason may be missing: common in the wild and harmless.
Fault parse_status_line(std::string_view line, ResponseHead& out) {
  if (line.size() < 12 || !is_http_version(line.substr(0, 8)) || line[8] != ' ') {
    return bad("bad status line");
  }
  if (!supported_minor(line.substr(0, 8), out.version_minor)) return bad("unsupported HTTP version");
  const char d0 = line[9];
  const char d1 = line[10];
  const char d2 = line[11];
  if (d0 < '1' || d0 > '9' || !is_digit(d1) || !is_digit(d2)) return bad("bad status code");
  out.status = (d0 - '0') * 100 + (d1 - '0') * 10 + (d2 - '0');
  if (line.size() == 12) return {};
  if (line[12] != ' ') return bad("bad status code");
  out.reason = line.substr(13);
  for (char c : out.reason) {
    if (!has_class(c, kFieldByte)) return bad("bad reason phrase");
  }
  return {};
}

inline ParseResult need_more() { return {}; }

inline ParseResult failed(Fault f) { return {ParseStatus::kError, 0, f.status, f.reason}; }

inline ParseResult failed_scan(HeadScan::Kind kind) {
  if (kind == HeadScan::kTooLarge) return failed({431, "head too large"});
  return failed(bad("bare LF"));
}

inline ParseResult as_response_error(ParseResult r) {
  if (r.status == ParseStatus::kError) r.error_status = 502;
  return r;
}

// ---- chunked framing --------------------------------------------------------

enum class LineStatus : uint8_t { kOk, kNeedMore, kError };

// Parses `chunk-size [ chunk-ext ] CRLF` (RFC 9112 7.1, 7.1.1) at the start of
// `in`, rejecting a byte as soon as it cannot belong to a valid line.
LineStatus parse_chunk_line(std::string_view in, uint64_t& size, size_t& used, const char*& error) {
  const size_t n = in.size();
  size_t i = 0;
  uint64_t value = 0;
  while (i < n && has_class(in[i], kHexDigit)) {
    if (i == kMaxChunkSizeDigits) {
      error = "bad chunk size";
      return LineStatus::kError;
    }
    value = (value << 4) | static_cast<uint64_t>(hex_value(in[i]));
    ++i;
  }
  if (i == n) return LineStatus::kNeedMore;
  if (i == 0) {
    error = "bad chunk size";
    return LineStatus::kError;
  }
  const char* const bad_size = "bad chunk size";
  const char* const bad_ext = "bad chunk extension";
  const char* fault = bad_size;  // until the first ';', junk belongs to the size
  for (;;) {
    // BWS is only allowed in front of ';' (and around '=' below), so whitespace
    // straight before the CRLF is an error.
    bool skipped = false;
    while (i < n && is_ows(in[i])) {
      ++i;
      skipped = true;
    }
    if (i == n) return LineStatus::kNeedMore;
    if (in[i] == '\r' && !skipped) {
      if (i + 1 == n) return LineStatus::kNeedMore;
      if (in[i + 1] != '\n') break;
      size = value;
      used = i + 2;
      return LineStatus::kOk;
    }
    if (in[i] != ';') break;
    fault = bad_ext;
    ++i;
    while (i < n && is_ows(in[i])) ++i;
    const size_t name_begin = i;
    while (i < n && has_class(in[i], kTchar)) ++i;
    if (i == n) return LineStatus::kNeedMore;
    if (i == name_begin) break;
    size_t after_name = i;
    while (i < n && is_ows(in[i])) ++i;
    if (i == n) return LineStatus::kNeedMore;
    if (in[i] != '=') {
      i = after_name;  // let the loop head judge the whitespace
      continue;
    }
    ++i;
    while (i < n && is_ows(in[i])) ++i;
    if (i == n) return LineStatus::kNeedMore;
    if (in[i] == '"') {
      ++i;
      for (;;) {
        if (i == n) return LineStatus::kNeedMore;
        const char c = in[i];
        if (c == '"') break;
        if (c == '\\') {
          if (i + 1 == n) return LineStatus::kNeedMore;
          const char e = in[i + 1];
          if (!has_class(e, kFieldByte)) {
            error = bad_ext;
            return LineStatus::kError;
          }
          i += 2;
          continue;
        }
        if (!has_class(c, kQdText)) {
          error = bad_ext;
          return LineStatus::kError;
        }
        ++i;
      }
      ++i;  // closing quote
    } else {
      const size_t value_begin = i;
      while (i < n && has_class(in[i], kTchar)) ++i;
      if (i == n) return LineStatus::kNeedMore;
      if (i == value_begin) break;
    }
  }
  error = fault;
  return LineStatus::kError;
}

}  // namespace

bool valid_host(std::string_view authority) { return valid_authority(authority, /*port_required=*/false); }

bool valid_target_bytes(std::string_view target) {
  if (target.empty()) return false;
  for (char c : target)
    if (!has_class(c, kTargetByte)) return false;
  return true;
}

// ---- requests and responses -------------------------------------------------

ParseResult parse_request(std::string_view in, RequestHead& out) {
  out.method = out.target = out.path = out.host = {};
  out.version_minor = 1;
  out.headers.clear();
  out.info = MessageInfo{};

  size_t start = 0;
  for (size_t skipped = 0;; ++skipped) {
    if (start == in.size()) return need_more();
    if (in[start] == '\n') return failed(bad("bare LF"));
    if (in[start] != '\r') break;
    if (start + 1 == in.size()) return need_more();
    if (in[start + 1] != '\n') return failed(bad("bad request line"));
    if (skipped == kMaxLeadingEmptyLines) return failed(bad("too many empty lines"));
    start += 2;
  }

  const HeadScan scan = scan_head(in, start);
  if (scan.kind == HeadScan::kNeedMore) return need_more();
  if (scan.kind != HeadScan::kFound) return failed_scan(scan.kind);
  const std::string_view head = in.substr(0, scan.end);

  const size_t line_end = find_lf(head, start);
  std::string_view authority;
  if (Fault f = parse_request_line(line_at(head.data(), start, line_end), out, authority)) {
    return failed(f);
  }

  FieldFacts facts;
  MessageInfo& info = out.info;
  if (Fault f = parse_fields(head, line_end + 1, true, out.headers, facts, info)) return failed(f);

  // RFC 9112 3.2: HTTP/1.1 needs exactly one Host, valid even when an
  // absolute-form target overrides it.
  if (facts.host_count == 0) {
    if (out.version_minor == 1) return failed(bad("missing Host"));
  } else if (!valid_authority(facts.host, /*port_required=*/false)) {
    return failed(bad("bad Host"));
  }
  out.host = authority.empty() ? facts.host : authority;

  if (Fault f = check_framing(facts, out.version_minor)) return failed(f);
  if (facts.transfer_encoding_count > 0) {
    info.body = BodyKind::kChunked;
  } else if (facts.content_length_count > 0 && info.content_length > 0) {
    info.body = BodyKind::kContentLength;
  }
  info.keep_alive = keep_alive_for(facts, out.version_minor);
  // RFC 9110 10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
  info.expect_continue = facts.expect_continue && out.version_minor == 1;
  return {ParseStatus::kDone, scan.end, 0, ""};
}

ParseResult parse_response(std::string_view in, bool request_method_head, ResponseHead& out) {
  out.status = 0;
  out.reason = {};
  out.version_minor = 1;
  out.headers.clear();
  out.info = MessageInfo{};

  const HeadScan scan = scan_head(in, 0);
  if (scan.kind == HeadScan::kNeedMore) return need_more();
  if (scan.kind != HeadScan::kFound) return as_response_error(failed_scan(scan.kind));
  const std::string_view head = in.substr(0, scan.end);

  const size_t line_end = find_lf(head, 0);
  if (Fault f = parse_status_line(line_at(head.data(), 0, line_end), out)) {
    return as_response_error(failed(f));
  }

  FieldFacts facts;
  MessageInfo& info = out.info;
  if (Fault f = parse_fields(head, line_end + 1, false, out.headers, facts, info)) {
    return as_response_error(failed(f));
  }
  if (Fault f = check_framing(facts, out.version_minor)) return as_response_error(failed(f));

  // RFC 9112 6.3, in order.
  const bool bodiless = request_method_head || out.status < 200 || out.status == 204 || out.status == 304;
  if (bodiless) {
    info.body = BodyKind::kNone;
  } else if (facts.transfer_encoding_count > 0) {
    info.body = BodyKind::kChunked;
  } else if (facts.content_length_count > 0) {
    info.body = info.content_length > 0 ? BodyKind::kContentLength : BodyKind::kNone;
  } else {
    info.body = BodyKind::kUntilClose;
  }
  info.keep_alive = info.body != BodyKind::kUntilClose && keep_alive_for(facts, out.version_minor);
  return {ParseStatus::kDone, scan.end, 0, ""};
}

// ---- chunked decoder --------------------------------------------------------

ChunkedDecoder::Step ChunkedDecoder::fail(size_t consumed, const char* error) {
  state_ = State::kError;
  error_ = error;
  return {Kind::kError, consumed, {}, error};
}

ChunkedDecoder::Step ChunkedDecoder::next(std::string_view in) {
  size_t pos = 0;
  for (;;) {
    switch (state_) {
      case State::kSize: {
        const std::string_view rest = in.substr(pos);
        uint64_t size = 0;
        size_t used = 0;
        const char* error = "";
        switch (parse_chunk_line(rest.substr(0, kMaxChunkLine), size, used, error)) {
          case LineStatus::kNeedMore:
            if (rest.size() >= kMaxChunkLine) return fail(pos, "chunk size line too long");
            return {Kind::kNeedMore, pos, {}, ""};
          case LineStatus::kError:
            return fail(pos, error);
          case LineStatus::kOk:
            break;
        }
        pos += used;
        remaining_ = size;
        state_ = size == 0 ? State::kTrailers : State::kData;
        break;
      }
      case State::kData: {
        if (pos == in.size()) return {Kind::kNeedMore, pos, {}, ""};
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - pos));
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kDataCrlf;
        return {Kind::kData, pos + n, in.substr(pos, n), ""};
      }
      case State::kDataCrlf: {
        const size_t avail = in.size() - pos;
        if (avail >= 1 && in[pos] != '\r') return fail(pos, "bad chunk terminator");
        if (avail < 2) return {Kind::kNeedMore, pos, {}, ""};
        if (in[pos + 1] != '\n') return fail(pos, "bad chunk terminator");
        pos += 2;
        state_ = State::kSize;
        break;
      }
      case State::kTrailers: {
        const std::string_view rest = in.substr(pos);
        trailers_.clear();
        const HeadScan scan = scan_head(rest, 0);
        if (scan.kind == HeadScan::kNeedMore) return {Kind::kNeedMore, pos, {}, ""};
        if (scan.kind == HeadScan::kTooLarge) return fail(pos, "trailer section too large");
        if (scan.kind == HeadScan::kBareLf) return fail(pos, "bare LF");
        if (scan.end > 2) {
          for (size_t line = 0; line + 2 < scan.end;) {
            const size_t lf = find_lf(rest, line);
            if (trailers_.size() == kMaxHeaderFields) return fail(pos, "too many trailer fields");
            Header h;
            if (Fault f = parse_field_line(line_at(rest.data(), line, lf), h)) {
              return fail(pos, f.reason);
            }
            trailers_.push_back(h);
            line = lf + 1;
          }
        }
        state_ = State::kDone;
        return {Kind::kDone, pos + scan.end, {}, ""};
      }
      case State::kDone:
        return {Kind::kDone, pos, {}, ""};
      case State::kError:
        return {Kind::kError, pos, {}, error_};
    }
  }
}

void ChunkedDecoder::reset() {
  state_ = State::kSize;
  remaining_ = 0;
  error_ = "";
  trailers_.clear();
}

// ---- forwarding helpers -----------------------------------------------------

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "upgrade") || iequals(name, "trailer");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    case 18:
      return iequals(name, "proxy-authenticate");
    case 19:
      return iequals(name, "proxy-authorization");
    default:
      return false;
  }
}

bool connection_lists(const HeaderList& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (!iequals(h.name, "connection")) continue;
    if (any_list_element(h.value, [name](std::string_view e) { return equal_any_case(e, name); })) {
      return true;
    }
  }
  return false;
}

}  // namespace trellis::http::http1
