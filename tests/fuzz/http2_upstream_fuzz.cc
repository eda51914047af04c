// The HTTP/2 upstream codec and the translation between HTTP/1.1 clients and
// HTTP/2 upstreams, both ways. The input has two parts: what an HTTP/1.1
// client sends (its first two bytes give the length), then what the HTTP/2
// upstream answers after the proxy's connection preface, fed in a few
// data-dependent reads to a worker on simulated time. Besides "no crash, no
// sanitizer report":
// - what reaches the upstream is HTTP/2 that nghttp2's own server accepts:
//   every request's header block decodes and passes its field checks (no
//   connection-specific field, the pseudo-header fields a request needs), and
//   DATA agrees with any content-length; the proxy never sends PUSH_PROMISE;
// - what reaches the client is a run of HTTP/1.1 responses that the proxy's
//   own parser accepts, framed so the client can find where each one ends,
//   without HTTP/2's pseudo-header fields;
// - the worker ends the input with no connection left open once both peers
//   are gone (every stream, router and upstream session freed).
#include <nghttp2/nghttp2.h>

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

// The upstream's view of one connection: nghttp2's server session, fed the
// proxy's bytes frame by frame. Only the frames that carry requests reach it
// (HEADERS, CONTINUATION, DATA, RST_STREAM) after the proxy's first SETTINGS:
// the connection-level ones answer what the fuzzed upstream sent and would
// look out of place to a session that never sent it.
class UpstreamView {
 public:
  UpstreamView() {
    nghttp2_session_callbacks* callbacks = nullptr;
    CHECK(nghttp2_session_callbacks_new(&callbacks) == 0);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(
        callbacks, [](nghttp2_session*, const nghttp2_frame* frame, int error, void*) {
          std::fprintf(stderr, "the proxy sent an invalid frame (type %d, stream %d): %s\n", frame->hd.type,
                       frame->hd.stream_id, nghttp2_strerror(error));
          CHECK(false);
          return 0;
        });
    nghttp2_session_callbacks_set_on_header_callback(
        callbacks, [](nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t namelen,
                      const uint8_t*, size_t, uint8_t, void*) {
          std::string_view n(reinterpret_cast<const char*>(name), namelen);
          CHECK(n != "trellis-original-protocol");  // the mesh's mark is for mesh clusters only
          return 0;
        });
    CHECK(nghttp2_session_server_new(&session_, callbacks, this) == 0);
    nghttp2_session_callbacks_del(callbacks);
  }
  ~UpstreamView() { nghttp2_session_del(session_); }
  UpstreamView(const UpstreamView&) = delete;
  UpstreamView& operator=(const UpstreamView&) = delete;

  void feed(std::string_view bytes) {
    pending_ += bytes;
    if (!preface_seen_) {
      if (pending_.size() < kPreface.size()) return;
      CHECK(std::string_view(pending_).substr(0, kPreface.size()) == kPreface);
      deliver(kPreface);
      pending_.erase(0, kPreface.size());
      preface_seen_ = true;
    }
    while (pending_.size() >= 9) {
      const auto* h = reinterpret_cast<const uint8_t*>(pending_.data());
      const size_t length = (size_t{h[0]} << 16) | (size_t{h[1]} << 8) | h[2];
      const uint8_t type = h[3];
      const uint32_t stream =
          ((uint32_t{h[5]} << 24) | (uint32_t{h[6]} << 16) | (uint32_t{h[7]} << 8) | h[8]) & 0x7fffffffu;
      if (pending_.size() < 9 + length) return;
      CHECK(type <= NGHTTP2_CONTINUATION && type != NGHTTP2_PUSH_PROMISE);
      const bool first = !settings_seen_;
      if (first) CHECK(type == NGHTTP2_SETTINGS);  // the preface ends with SETTINGS
      settings_seen_ = true;
      if (type == NGHTTP2_HEADERS) opened_ = std::max(opened_, stream);
      // A reset of a stream the proxy never opened answers the upstream
      // (a refused PUSH_PROMISE's promised stream, say): not a request's.
      const bool own_reset = type == NGHTTP2_RST_STREAM && stream % 2 == 1 && stream <= opened_;
      if (first || type == NGHTTP2_HEADERS || type == NGHTTP2_CONTINUATION || type == NGHTTP2_DATA ||
          own_reset)
        deliver(std::string_view(pending_).substr(0, 9 + length));
      pending_.erase(0, 9 + length);
    }
  }

 private:
  void deliver(std::string_view frame) {
    ssize_t used =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
    if (used < 0) std::fprintf(stderr, "the proxy's HTTP/2 was refused: %s\n", nghttp2_strerror(int(used)));
    CHECK(used == ssize_t(frame.size()));
  }

  nghttp2_session* session_ = nullptr;
  std::string pending_;
  bool preface_seen_ = false;
  bool settings_seen_ = false;
  uint32_t opened_ = 0;  // the highest stream the proxy opened
};

// The methods of the requests the proxy took from the client, in order, as
// its own parser reads them: a response to HEAD has no body.
std::vector<bool> client_heads(std::string_view wire) {
  std::vector<bool> heads;
  while (!wire.empty()) {
    http::http1::RequestHead head;
    http::http1::ParseResult r = http::http1::parse_request(wire, head);
    if (r.status != http::http1::ParseStatus::kDone) break;
    heads.push_back(head.method == "HEAD");
    wire.remove_prefix(r.consumed);
    if (head.info.body == http::http1::BodyKind::kContentLength) {
      if (wire.size() < head.info.content_length) break;
      wire.remove_prefix(head.info.content_length);
    } else if (head.info.body == http::http1::BodyKind::kChunked) {
      http::http1::ChunkedDecoder decoder;
      for (;;) {
        http::http1::ChunkedDecoder::Step step = decoder.next(wire);
        wire.remove_prefix(step.consumed);
        if (step.kind == http::http1::ChunkedDecoder::Kind::kDone) break;
        if (step.kind != http::http1::ChunkedDecoder::Kind::kData) return heads;
      }
    }
  }
  return heads;
}

// Every response the client got, parsed as the proxy's own HTTP/1.1 parser
// would; `wire` holds whole responses only when it returns. `until_close` is
// set by a response whose body runs to the end of the connection.
struct ClientView {
  std::vector<bool> heads;  // per request: was it HEAD
  size_t answered = 0;
  std::string wire;
  bool until_close = false;

  void feed(std::string_view bytes) {
    if (until_close) return;  // the rest is that response's body
    wire += bytes;
    while (!wire.empty()) {
      const bool head_request = answered < heads.size() && heads[answered];
      http::http1::ResponseHead head;
      http::http1::ParseResult r = http::http1::parse_response(wire, head_request, head);
      if (r.status == http::http1::ParseStatus::kNeedMore) return;
      if (r.status != http::http1::ParseStatus::kDone)
        std::fprintf(stderr, "sent to the client, and refused by the parser (%s):\n%.*s\n", r.error,
                     static_cast<int>(std::min<size_t>(wire.size(), 400)), wire.data());
      CHECK(r.status == http::http1::ParseStatus::kDone);
      for (const auto& h : head.headers) CHECK(!h.name.empty() && h.name[0] != ':');
      size_t body = 0;
      if (head.info.body == http::http1::BodyKind::kContentLength) {
        if (wire.size() - r.consumed < head.info.content_length) return;
        body = head.info.content_length;
      } else if (head.info.body == http::http1::BodyKind::kChunked) {
        std::optional<size_t> length = fuzz_worker::chunked_length(std::string_view(wire).substr(r.consumed));
        if (!length) return;
        body = *length;
      } else if (head.info.body == http::http1::BodyKind::kUntilClose) {
        until_close = true;
        wire.clear();
        return;
      }
      wire.erase(0, r.consumed + body);
      if (head.status >= 200) ++answered;  // 1xx precede the final response
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Below the upstream view's 64 KiB windows, so the proxy's DATA always fits.
  if (size < 2 || size > 60 * 1024) return 0;
  const size_t client_size = std::min<size_t>(size - 2, size_t{data[0]} | (size_t{data[1]} << 8));
  std::string_view client_part(reinterpret_cast<const char*>(data) + 2, client_size);
  std::string_view upstream_part(reinterpret_cast<const char*>(data) + 2 + client_size,
                                 size - 2 - client_size);

  static fuzz_worker::World world("http2");
  testing::FakeNetwork* network = world.network.get();
  testing::FakePeer client(nullptr);
  std::unique_ptr<proxy::Worker> fresh = world.fresh_worker(client);
  proxy::Worker& worker = *fresh;
  ClientView client_view;
  client_view.heads = client_heads(client_part);

  // Each upstream connection with its view; the fuzzed bytes go to the newest.
  struct Upstream {
    testing::FakePeer peer;
    std::unique_ptr<UpstreamView> view;
  };
  std::vector<Upstream> upstreams;
  auto serve = [&] {
    for (int round = 0; round < 8; ++round) {
      worker.loop().run_until_idle();
      while (network->has_pending(fuzz_worker::kUpstream)) {
        testing::FakePeer p = network->next(fuzz_worker::kUpstream);
        if (!p.connected()) p.accept();
        upstreams.push_back({p, std::make_unique<UpstreamView>()});
      }
      bool more = false;
      for (Upstream& u : upstreams) {
        std::string got = u.peer.take();
        if (got.empty()) continue;
        more = true;
        u.view->feed(got);
      }
      std::string answer = client.take();
      if (!answer.empty()) {
        more = true;
        client_view.feed(answer);
      }
      if (!more) break;
    }
  };

  client.send(client_part);
  serve();
  // A few reads, split where the input says.
  size_t at = 0;
  for (int read = 0; at < upstream_part.size() && !upstreams.empty(); ++read) {
    const auto first = static_cast<unsigned char>(upstream_part[at]);
    size_t n =
        read >= 3 ? upstream_part.size() - at : std::min<size_t>(upstream_part.size() - at, 1 + first * 64);
    upstreams.back().peer.send(upstream_part.substr(at, n));
    at += n;
    serve();
  }

  // Timeouts answer whatever is still waiting; then both peers leave, and
  // nothing may stay open.
  world.clock.advance(std::chrono::seconds(30));
  serve();
  client.shutdown();
  serve();
  for (Upstream& u : upstreams) u.peer.shutdown();
  serve();
  fuzz_worker::check_nothing_left(world, worker);
  return 0;
}
