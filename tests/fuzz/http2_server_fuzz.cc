// The HTTP/2 server codec and the translation of its streams to HTTP/1.1: the
// input is what a client sends after the connection preface, fed in a few
// data-dependent reads to a worker on simulated time whose one upstream
// answers every request. Besides "no crash, no sanitizer report":
// - what reaches the upstream is a run of HTTP/1.1 requests that the proxy's
//   own parser accepts whole (nothing malformed is forwarded), each with a
//   Host and without HTTP/2's pseudo-header fields or the mesh's own field;
// - the worker ends the input with no connection left open once the client
//   is gone (every stream and router freed).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "fuzz_worker.h"
#include "http/http1/parser.h"

using namespace trellis;

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const std::string kAnswer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

// Every request the upstream got, parsed as the proxy's own HTTP/1.1 parser
// would; `wire` holds whole requests only when it returns.
void check_forwarded(std::string& wire, size_t& answers_due) {
  for (;;) {
    if (wire.empty()) return;
    http::http1::RequestHead head;
    http::http1::ParseResult r = http::http1::parse_request(wire, head);
    if (r.status == http::http1::ParseStatus::kNeedMore) return;  // the rest comes later
    if (r.status != http::http1::ParseStatus::kDone)
      std::fprintf(stderr, "forwarded, and refused by the parser (%s):\n%.*s\n", r.error,
                   static_cast<int>(std::min<size_t>(wire.size(), 400)), wire.data());
    CHECK(r.status == http::http1::ParseStatus::kDone);
    CHECK(head.version_minor == 1);
    CHECK(!head.host.empty());
    for (const auto& h : head.headers) {
      CHECK(!h.name.empty() && h.name[0] != ':');
      CHECK(h.name != "trellis-original-protocol");
    }
    size_t body = 0;
    if (head.info.body == http::http1::BodyKind::kContentLength) {
      if (wire.size() - r.consumed < head.info.content_length) return;  // body still coming
      body = head.info.content_length;
    } else if (head.info.body == http::http1::BodyKind::kChunked) {
      // Framed by the proxy: its chunks must decode, up to the last one.
      std::optional<size_t> length = fuzz_worker::chunked_length(std::string_view(wire).substr(r.consumed));
      if (!length) return;  // body still coming
      body = *length;
    }
    wire.erase(0, r.consumed + body);
    ++answers_due;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);

  static fuzz_worker::World world("http1");
  testing::FakeNetwork* network = world.network.get();
  testing::FakePeer client(nullptr);
  std::unique_ptr<proxy::Worker> fresh = world.fresh_worker(client);
  proxy::Worker& worker = *fresh;
  client.send(kPreface);

  // Each upstream connection, with what it received and not yet parsed.
  struct Upstream {
    testing::FakePeer peer;
    std::string wire;
    size_t answers_due = 0;
  };
  std::vector<Upstream> upstreams;
  auto serve = [&] {
    for (int round = 0; round < 8; ++round) {
      worker.loop().run_until_idle();
      while (network->has_pending(fuzz_worker::kUpstream)) {
        testing::FakePeer p = network->next(fuzz_worker::kUpstream);
        if (!p.connected()) p.accept();
        upstreams.push_back({p, {}, 0});
      }
      bool more = false;
      for (Upstream& u : upstreams) {
        std::string got = u.peer.take();
        if (got.empty()) continue;
        u.wire += got;
        more = true;
        check_forwarded(u.wire, u.answers_due);
        for (; u.answers_due > 0; --u.answers_due) u.peer.send(kAnswer);
      }
      client.take();  // the client reads all it is sent
      if (!more) break;
    }
  };

  // A few reads, split where the input says.
  size_t at = 0;
  for (int read = 0; at < input.size() && read < 4; ++read) {
    size_t n = read == 3 ? input.size() - at : std::min<size_t>(input.size() - at, 1 + data[at] * 64);
    client.send(input.substr(at, n));
    at += n;
    serve();
  }
  if (at < input.size()) client.send(input.substr(at));
  serve();

  // The client leaves: nothing may stay open.
  client.shutdown();
  serve();
  world.clock.advance(std::chrono::seconds(30));
  worker.loop().run_until_idle();
  for (Upstream& u : upstreams) u.peer.shutdown();
  fuzz_worker::check_nothing_left(world, worker);
  return 0;
}
