// parse_request on arbitrary bytes. Besides memory safety, checks that what it
// accepts obeys the rules the proxy relies on against request smuggling, and
// that the verdict does not depend on how the bytes arrived (the server calls
// it again on a growing buffer after every read).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http1_invariants.h"

using namespace fuzz_http1;
using trellis::http::http1::kMaxHeaderFields;
using trellis::http::http1::parse_request;

namespace {

// The authority of an absolute-form target ("http://a:1/x" -> "a:1").
std::string_view target_authority(std::string_view target) {
  const size_t scheme_end = target.find("://");
  std::string_view rest = target.substr(scheme_end + 3);
  return rest.substr(0, rest.find_first_of("/?"));
}

void check_request(const RequestHead& req, std::string_view head) {
  CHECK(view_inside(req.method, head));
  CHECK(view_inside(req.target, head));
  CHECK(view_inside(req.host, head));
  // The path is a view into the head, except the "/" given to absolute-form
  // targets without one.
  CHECK(req.path == "/" || view_inside(req.path, head));

  CHECK(is_token(req.method));
  CHECK(!req.target.empty());
  for (char c : req.target) CHECK(c > 0x20 && c < 0x7F && c != '#');
  CHECK(req.version_minor == 0 || req.version_minor == 1);

  CHECK(req.headers.size() <= kMaxHeaderFields);
  for (const Header& h : req.headers) check_field(h, head);

  const FramingFields f = count_framing(req.headers);
  check_framing_rules(f, req.version_minor);

  // Exactly one framing outcome, and the one the fields state.
  const MessageInfo& info = req.info;
  if (f.transfer_encoding == 1) {
    CHECK(info.body == BodyKind::kChunked);
  } else if (f.content_length == 1) {
    uint64_t n = 0;
    CHECK(decimal_value(f.content_length_value, n));
    CHECK(info.content_length == n);
    CHECK(info.body == (n > 0 ? BodyKind::kContentLength : BodyKind::kNone));
  } else {
    CHECK(info.body == BodyKind::kNone);
  }

  // Target forms: origin, authority (CONNECT only), asterisk (OPTIONS only), absolute.
  const bool connect = req.method == "CONNECT";
  if (req.target.front() == '/') {
    CHECK(!connect);
    CHECK(req.path == req.target.substr(0, req.target.find('?')));
  } else if (connect || req.target == "*") {
    CHECK(connect || req.method == "OPTIONS");
    CHECK(req.path.empty());
  } else {
    CHECK(starts_with_any_case(req.target, "http://") || starts_with_any_case(req.target, "https://"));
    CHECK(!req.path.empty() && req.path.front() == '/');
  }

  // Host: required and unique in HTTP/1.1; an absolute-form target overrides it.
  CHECK(f.host <= 1);
  if (req.version_minor == 1) CHECK(f.host == 1);
  const bool absolute = !connect && req.target.front() != '/' && req.target != "*";
  if (absolute) {
    CHECK(req.host == target_authority(req.target));
  } else {
    CHECK(req.host == f.host_value);
  }
  if (f.host == 1) CHECK(!f.host_value.empty());

  // Connection semantics.
  const bool close = list_has(req.headers, "connection", "close");
  const bool keep_alive = list_has(req.headers, "connection", "keep-alive");
  CHECK(info.keep_alive == (!close && (req.version_minor == 1 || keep_alive)));
  CHECK(info.connection_upgrade == list_has(req.headers, "connection", "upgrade"));
  CHECK(info.upgrade == f.upgrade_value);
  bool expects = false;
  for (const Header& h : req.headers) {
    if (iequal(h.name, "expect") && iequal(h.value, "100-continue")) expects = true;
  }
  CHECK(info.expect_continue == (expects && req.version_minor == 1));
  CHECK(info.te_trailers == list_has(req.headers, "te", "trailers"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  RequestHead req;
  const ParseResult r = parse_request(in, req);
  check_result(r, in.size(), /*is_request=*/true);

  // Stateless: the same bytes give the same answer, also into a head object
  // that held an earlier, different request.
  RequestHead reused;
  parse_request(in.substr(0, in.size() / 2), reused);
  const ParseResult again = parse_request(in, reused);
  CHECK(same_result(r, again));
  if (r.status == ParseStatus::kDone) CHECK(same_request(req, reused));

  // More bytes never change a verdict: the head is all that was judged.
  if (r.status != ParseStatus::kNeedMore) {
    const std::string longer = std::string(in) + std::string(in) + "\r\n\r\n";
    RequestHead extended;
    const ParseResult re = parse_request(longer, extended);
    CHECK(same_result(r, re));
    if (r.status == ParseStatus::kDone) CHECK(same_request(req, extended));
  }

  if (r.status != ParseStatus::kDone) return 0;

  const std::string_view head = in.substr(0, r.consumed);
  check_head_end(head);
  check_request(req, head);

  // The head alone is the same request...
  RequestHead alone;
  const ParseResult ra = parse_request(head, alone);
  CHECK(same_result(r, ra));
  CHECK(same_request(req, alone));

  // ...and nothing shorter is a request yet, or an error: whatever the reads
  // looked like, the server waits for this head and then accepts it.
  RequestHead shorter;
  for_each_prefix(r.consumed, input_hash(in), [&](size_t k) {
    const ParseResult rp = parse_request(head.substr(0, k), shorter);
    CHECK(rp.status == ParseStatus::kNeedMore);
  });
  return 0;
}
