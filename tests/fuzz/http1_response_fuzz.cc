// parse_response on arbitrary bytes, as the answer to a HEAD request and to
// any other. Upstream bytes are as untrusted as client bytes: a response the
// proxy frames differently from the upstream desynchronises the pooled
// connection it came on.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http1_invariants.h"

using namespace fuzz_http1;
using trellis::http::http1::kMaxHeaderFields;
using trellis::http::http1::parse_response;

namespace {

void check_response(const ResponseHead& resp, std::string_view head, bool head_request) {
  CHECK(resp.status >= 100 && resp.status <= 999);
  CHECK(resp.version_minor == 0 || resp.version_minor == 1);
  CHECK(view_inside(resp.reason, head));
  for (char c : resp.reason) CHECK(is_value_byte(c));

  CHECK(resp.headers.size() <= kMaxHeaderFields);
  for (const Header& h : resp.headers) check_field(h, head);

  const FramingFields f = count_framing(resp.headers);
  check_framing_rules(f, resp.version_minor);

  // RFC 9112 6.3, in its order.
  const MessageInfo& info = resp.info;
  const bool bodiless = head_request || resp.status < 200 || resp.status == 204 || resp.status == 304;
  uint64_t declared = 0;
  if (f.content_length == 1) {
    CHECK(decimal_value(f.content_length_value, declared));
    CHECK(info.content_length == declared);
  }
  if (bodiless) {
    CHECK(info.body == BodyKind::kNone);
  } else if (f.transfer_encoding == 1) {
    CHECK(info.body == BodyKind::kChunked);
  } else if (f.content_length == 1) {
    CHECK(info.body == (declared > 0 ? BodyKind::kContentLength : BodyKind::kNone));
  } else {
    CHECK(info.body == BodyKind::kUntilClose);
  }

  // A body that ends with the connection cannot leave it reusable.
  const bool close = list_has(resp.headers, "connection", "close");
  const bool keep_alive = list_has(resp.headers, "connection", "keep-alive");
  CHECK(info.keep_alive ==
        (info.body != BodyKind::kUntilClose && !close && (resp.version_minor == 1 || keep_alive)));
  CHECK(info.connection_upgrade == list_has(resp.headers, "connection", "upgrade"));
  CHECK(info.upgrade == f.upgrade_value);
  // Request-only facts stay unset.
  CHECK(!info.expect_continue);
  CHECK(!info.te_trailers);
}

void check_one(std::string_view in, bool head_request) {
  ResponseHead resp;
  const ParseResult r = parse_response(in, head_request, resp);
  check_result(r, in.size(), /*is_request=*/false);

  ResponseHead reused;
  parse_response(in.substr(0, in.size() / 2), !head_request, reused);
  const ParseResult again = parse_response(in, head_request, reused);
  CHECK(same_result(r, again));
  if (r.status == ParseStatus::kDone) CHECK(same_response(resp, reused));

  if (r.status != ParseStatus::kNeedMore) {
    const std::string longer = std::string(in) + std::string(in) + "\r\n\r\n";
    ResponseHead extended;
    const ParseResult re = parse_response(longer, head_request, extended);
    CHECK(same_result(r, re));
    if (r.status == ParseStatus::kDone) CHECK(same_response(resp, extended));
  }

  if (r.status != ParseStatus::kDone) return;

  const std::string_view head = in.substr(0, r.consumed);
  check_head_end(head);
  check_response(resp, head, head_request);

  ResponseHead alone;
  const ParseResult ra = parse_response(head, head_request, alone);
  CHECK(same_result(r, ra));
  CHECK(same_response(resp, alone));

  ResponseHead shorter;
  for_each_prefix(r.consumed, input_hash(in), [&](size_t k) {
    const ParseResult rp = parse_response(head.substr(0, k), head_request, shorter);
    CHECK(rp.status == ParseStatus::kNeedMore);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check_one(in, /*head_request=*/false);
  check_one(in, /*head_request=*/true);

  // Whether the request was HEAD changes only the body, never the verdict.
  ResponseHead get, head;
  const ParseResult rg = parse_response(in, false, get);
  const ParseResult rh = parse_response(in, true, head);
  CHECK(same_result(rg, rh));
  if (rg.status == ParseStatus::kDone) {
    CHECK(get.status == head.status && get.reason == head.reason);
    CHECK(same_headers(get.headers, head.headers));
  }
  return 0;
}
