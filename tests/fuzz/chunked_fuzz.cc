// ChunkedDecoder on arbitrary bytes, fed the way the proxy feeds it: whatever a
// read returned, appended to what the decoder kept. The decoded body, the
// trailers and where the body ends must not depend on where the reads split
// the stream; otherwise the proxy and the peer could disagree on where the
// next message starts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/http1/parser.h"
#include "http/http1/wire.h"
#include "http1_invariants.h"
#include "net/buffer.h"

using trellis::http::http1::ChunkedDecoder;
using trellis::http::http1::Header;
using trellis::http::http1::HeaderList;
using trellis::http::http1::is_hop_by_hop;
using trellis::http::http1::serialize_chunk;
using trellis::http::http1::serialize_last_chunk;
using trellis::net::Buffer;
using Kind = ChunkedDecoder::Kind;

namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Outcome {
  Kind kind = Kind::kNeedMore;  // kNeedMore: the input ended first
  std::string body;
  Fields trailers;
  size_t used = 0;  // bytes of the stream taken by the body (kDone) or before the error (kError)
  std::string error;
};

bool operator==(const Outcome& a, const Outcome& b) {
  return a.kind == b.kind && a.body == b.body && a.trailers == b.trailers && a.used == b.used &&
         a.error == b.error;
}

// Decodes `in` delivered in pieces ending at each of `cuts` (ascending), then
// the rest, keeping unconsumed bytes between reads like the server does.
Outcome decode(std::string_view in, const std::vector<size_t>& cuts) {
  ChunkedDecoder decoder;
  Outcome out;
  std::string pending;  // bytes received and not yet consumed
  size_t delivered = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(in.size());
  for (size_t end : ends) {
    if (end < delivered) continue;
    pending.append(in.substr(delivered, end - delivered));
    delivered = end;
    for (;;) {
      const ChunkedDecoder::Step step = decoder.next(pending);
      CHECK(step.consumed <= pending.size());
      CHECK(step.error != nullptr);
      const std::string_view view(pending);
      switch (step.kind) {
        case Kind::kData:
          // Data ends exactly at `consumed`, so dropping `consumed` bytes
          // drops the framing and the data together.
          CHECK(!step.data.empty());
          CHECK(view_inside(step.data, view));
          CHECK(step.data.data() + step.data.size() == view.data() + step.consumed);
          out.body.append(step.data);
          out.used += step.consumed;
          pending.erase(0, step.consumed);
          continue;
        case Kind::kNeedMore:
          CHECK(step.data.empty());
          out.used += step.consumed;
          pending.erase(0, step.consumed);
          break;
        case Kind::kDone: {
          CHECK(decoder.done());
          for (const Header& h : decoder.trailers()) {
            CHECK(view_inside(h.name, view));
            CHECK(view_inside(h.value, view));
            fuzz_http1::check_field(h, view);
            out.trailers.emplace_back(h.name, h.value);
          }
          out.used += step.consumed;
          out.kind = Kind::kDone;
          // The trailer section ends with its empty line.
          CHECK(step.consumed >= 2 && view.substr(step.consumed - 2, 2) == "\r\n");
          // Finished stays finished and takes nothing more.
          const ChunkedDecoder::Step after = decoder.next(view.substr(step.consumed));
          CHECK(after.kind == Kind::kDone && after.consumed == 0);
          return out;
        }
        case Kind::kError: {
          CHECK(step.error[0] != '\0');
          CHECK(!decoder.done());
          out.kind = Kind::kError;
          out.error = step.error;
          out.used += step.consumed;
          const ChunkedDecoder::Step after = decoder.next(view.substr(step.consumed));
          CHECK(after.kind == Kind::kError && out.error == after.error);
          return out;
        }
        default:
          CHECK(false && "unknown ChunkedDecoder::Kind");
      }
      break;  // kNeedMore: wait for the next read
    }
  }
  CHECK(out.used <= in.size());
  return out;
}

// The decoded body re-encoded the way the proxy forwards it (chunk sizes of its
// own choosing, trailers filtered) must decode to the same body and the
// forwardable trailers, and end exactly where the encoding ends.
void check_reencoding(const Outcome& decoded, size_t hash) {
  trellis::net::Buffer wire;
  const std::string& body = decoded.body;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t n = std::min(body.size() - pos, 1 + hash % 97);
    hash = hash * 6364136223846793005ull + 1442695040888963407ull;
    serialize_chunk(std::string_view(body).substr(pos, n), wire);
    pos += n;
  }
  const size_t before = wire.size();
  serialize_chunk({}, wire);  // an empty chunk would end the body: nothing is written
  CHECK(wire.size() == before);

  HeaderList trailers;
  for (const auto& [name, value] : decoded.trailers) trailers.push_back({name, value});
  const size_t body_end = wire.size();
  serialize_last_chunk(trailers, wire);
  // "name: value" may be longer than the field was on input; past the decoder's
  // limit the comparison below would only restate that limit.
  if (wire.size() - body_end > trellis::http::http1::kMaxHeadBytes) return;

  Fields forwardable;
  for (const auto& [name, value] : decoded.trailers) {
    if (is_hop_by_hop(name) || fuzz_http1::iequal(name, "content-length") ||
        fuzz_http1::iequal(name, "host")) {
      continue;
    }
    forwardable.emplace_back(name, value);
  }

  const std::string encoded(wire.view());
  const Outcome again = decode(encoded, {});
  CHECK(again.kind == Kind::kDone);
  CHECK(again.body == body);
  CHECK(again.trailers == forwardable);
  CHECK(again.used == encoded.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t hash = input_hash(in);

  const Outcome whole = decode(in, {});
  if (whole.kind == Kind::kDone) CHECK(whole.used <= size);

  // One split anywhere: every point for small inputs, a few for larger ones.
  if (size <= 128) {
    for (size_t cut = 0; cut <= size; ++cut) CHECK(decode(in, {cut}) == whole);
  } else {
    for (size_t cut : {size_t{1}, size / 2, hash % (size + 1), size - 1}) CHECK(decode(in, {cut}) == whole);
  }

  // One byte per read: the worst case for state kept between calls.
  if (size <= 4096) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < size; ++i) cuts.push_back(i);
    CHECK(decode(in, cuts) == whole);
  }

  // A few data-dependent splits at once.
  std::vector<size_t> cuts;
  size_t h = hash;
  for (size_t pos = 0; size > 0 && cuts.size() < 8;) {
    pos += 1 + h % 23;
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    if (pos >= size) break;
    cuts.push_back(pos);
  }
  CHECK(decode(in, cuts) == whole);

  if (whole.kind == Kind::kDone) check_reencoding(whole, hash);
  return 0;
}
