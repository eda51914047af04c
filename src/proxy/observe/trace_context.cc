#include "proxy/observe/trace_context.h"

#include <algorithm>

namespace trellis::proxy {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Exactly 2 * N hex digits into `out`; false when malformed or all zeros.
template <size_t N>
bool parse_id(std::string_view text, std::array<uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  bool nonzero = false;
  for (size_t i = 0; i < N; ++i) {
    int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
    nonzero |= out[i] != 0;
  }
  return nonzero;
}

// B3 trace ids may be 64 bits: left-padded with zeros to 128.
bool parse_b3_trace_id(std::string_view text, TraceId& out) {
  if (text.size() == 16) {
    std::array<uint8_t, 8> low{};
    if (!parse_id(text, low)) return false;
    out.fill(0);
    std::copy(low.begin(), low.end(), out.begin() + 8);
    return true;
  }
  return parse_id(text, out);
}

std::string_view header(const http::HeaderList& headers, std::string_view lower_name) {
  for (const http::Header& h : headers)
    if (http::iequals(h.name, lower_name)) return h.value;
  return {};
}

// "00-<32 hex>-<16 hex>-<2 hex>"; a higher version may add fields after.
bool parse_traceparent(std::string_view v, TraceContext& out) {
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  int ver_hi = hex_digit(v[0]), ver_lo = hex_digit(v[1]);
  if (ver_hi < 0 || ver_lo < 0 || (ver_hi == 0xf && ver_lo == 0xf)) return false;
  bool version_zero = ver_hi == 0 && ver_lo == 0;
  if (version_zero ? v.size() != 55 : (v.size() > 55 && v[55] != '-')) return false;
  if (v.substr(0, 55).find_first_of("ABCDEF") != std::string_view::npos) return false;  // lower case only
  int f_hi = hex_digit(v[53]), f_lo = hex_digit(v[54]);
  if (f_hi < 0 || f_lo < 0) return false;
  if (!parse_id(v.substr(3, 32), out.trace_id) || !parse_id(v.substr(36, 16), out.span_id)) return false;
  out.sampled = (f_lo & 1) != 0;
  return true;
}

// "<trace>-<span>[-<1|0|d>[-<parent>]]", or a lone "0"/"1"/"d" decision
// (no parent: the caller treats it as none).
bool parse_b3_single(std::string_view v, TraceContext& out, bool& decided) {
  size_t dash = v.find('-');
  if (dash == std::string_view::npos) return false;
  if (!parse_b3_trace_id(v.substr(0, dash), out.trace_id)) return false;
  v.remove_prefix(dash + 1);
  dash = v.find('-');
  if (!parse_id(v.substr(0, dash), out.span_id)) return false;
  decided = false;
  if (dash == std::string_view::npos) return true;
  v.remove_prefix(dash + 1);
  std::string_view decision = v.substr(0, v.find('-'));
  if (decision == "1" || decision == "d") {
    out.sampled = decided = true;
  } else if (decision == "0") {
    out.sampled = false;
    decided = true;
  } else {
    return false;
  }
  return true;
}

bool parse_b3_multi(const http::HeaderList& headers, TraceContext& out, bool& decided) {
  std::string_view trace = header(headers, "x-b3-traceid");
  if (trace.empty()) return false;
  if (!parse_b3_trace_id(trace, out.trace_id) || !parse_id(header(headers, "x-b3-spanid"), out.span_id))
    return false;
  std::string_view sampled = header(headers, "x-b3-sampled");
  decided = true;
  if (header(headers, "x-b3-flags") == "1" || sampled == "1" || sampled == "true") {
    out.sampled = true;
  } else if (sampled == "0" || sampled == "false") {
    out.sampled = false;
  } else {
    decided = false;
  }
  return true;
}

}  // namespace

TraceContext extract_trace_context(const http::HeaderList& headers, bool& decided) {
  TraceContext ctx;
  uint8_t formats = kTraceW3c;
  decided = false;
  if (std::string_view tp = header(headers, "traceparent"); !tp.empty()) {
    TraceContext w3c;
    if (parse_traceparent(tp, w3c)) {
      ctx = w3c;
      ctx.valid = decided = true;
    }
  }
  if (std::string_view b3 = header(headers, "b3"); !b3.empty()) {
    TraceContext single;
    bool d = false;
    if (!ctx.valid && parse_b3_single(b3, single, d)) {
      ctx = single;
      ctx.valid = true;
      decided = d;
    }
    formats |= kTraceB3Single;
  }
  if (!header(headers, "x-b3-traceid").empty()) {
    TraceContext multi;
    bool d = false;
    if (!ctx.valid && parse_b3_multi(headers, multi, d)) {
      ctx = multi;
      ctx.valid = true;
      decided = d;
    }
    formats |= kTraceB3Multi;
  }
  ctx.formats = formats;
  return ctx;
}

void hex_into(const uint8_t* bytes, size_t n, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 15];
  }
}

std::string_view format_traceparent(const TraceId& trace, const SpanId& span, bool sampled,
                                    std::array<char, 55>& out) {
  char* p = out.data();
  *p++ = '0';
  *p++ = '0';
  *p++ = '-';
  hex_into(trace.data(), 16, p);
  p += 32;
  *p++ = '-';
  hex_into(span.data(), 8, p);
  p += 16;
  *p++ = '-';
  *p++ = '0';
  *p++ = sampled ? '1' : '0';
  return {out.data(), out.size()};
}

std::string_view format_b3(const TraceId& trace, const SpanId& span, bool sampled, const SpanId* parent,
                           std::array<char, 68>& out) {
  char* p = out.data();
  hex_into(trace.data(), 16, p);
  p += 32;
  *p++ = '-';
  hex_into(span.data(), 8, p);
  p += 16;
  *p++ = '-';
  *p++ = sampled ? '1' : '0';
  if (parent != nullptr) {
    *p++ = '-';
    hex_into(parent->data(), 8, p);
    p += 16;
  }
  return {out.data(), static_cast<size_t>(p - out.data())};
}

}  // namespace trellis::proxy
