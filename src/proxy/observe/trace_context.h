// Trace context as requests carry it between services: W3C `traceparent`
// (with `tracestate`, passed on untouched) and B3, in its multi-header
// (`x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags`) and
// single-header (`b3`) forms. Pure functions over header lists.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/header.h"

namespace trellis::proxy {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

// The formats a request's context came in, so the next hop gets it in the
// same ones (and always in W3C's).
enum TraceFormat : uint8_t { kTraceW3c = 1, kTraceB3Multi = 2, kTraceB3Single = 4 };

struct TraceContext {
  bool valid = false;  // a well-formed parent came in
  TraceId trace_id{};
  SpanId span_id{};  // the parent's span
  bool sampled = false;
  uint8_t formats = 0;  // TraceFormat bits seen
};

// The parent context of a request: W3C first, then single-header B3, then
// multi-header B3. Malformed values are ignored (a new trace starts), as
// are all-zero ids. A B3 context without a sampling decision is taken as
// sampled only with `x-b3-flags: 1` (debug), else left to the sampler:
// TraceContext::sampled is false and `decided` says so.
TraceContext extract_trace_context(const http::HeaderList& headers, bool& decided);

// Lower-case hex of `n` bytes into `out` (2 * n characters).
void hex_into(const uint8_t* bytes, size_t n, char* out);
template <size_t N>
std::string to_hex(const std::array<uint8_t, N>& id) {
  std::string out(2 * N, '0');
  hex_into(id.data(), N, out.data());
  return out;
}

// "00-<trace id>-<span id>-<01|00>", in `out`: no allocation.
std::string_view format_traceparent(const TraceId& trace, const SpanId& span, bool sampled,
                                    std::array<char, 55>& out);
// "<trace id>-<span id>-<1|0>[-<parent span id>]", in `out`.
std::string_view format_b3(const TraceId& trace, const SpanId& span, bool sampled, const SpanId* parent,
                           std::array<char, 68>& out);

}  // namespace trellis::proxy
