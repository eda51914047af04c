#include "proxy/http2/session_io.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/time.h"
#include "net/event_loop.h"
#include "support/fake_network.h"

namespace trellis::proxy::http2 {
namespace {

std::vector<std::string> names_of(FieldBlock& block) {
  std::vector<std::string> names;
  for (const nghttp2_nv& nv : block.nv())
    names.emplace_back(reinterpret_cast<const char*>(nv.name), nv.namelen);
  return names;
}

TEST(FieldBlock, LeavesOutConnectionSpecificFieldsAndLowerCasesNames) {
  http::HeaderList fields = {
      {"X-Custom", "1"},  {"Connection", "close"}, {"keep-alive", "5"},     {"TE", "trailers"},
      {"Upgrade", "h2c"}, {":path", "/"},          {"Content-Length", "6"}, {"Host", "a"}};
  FieldBlock block;
  block.add_fields(fields);
  EXPECT_EQ(names_of(block), (std::vector<std::string>{"x-custom", "content-length", "host"}));
}

TEST(FieldBlock, ATrailerSectionHasNoFramingOrRoutingFieldsAndKeepsItsValues) {
  // As an HTTP/1.1 client's chunked trailers may carry them.
  http::HeaderList fields = {{"x-checksum", "abc"},
                             {"Content-Length", "6"},
                             {"host", "a"},
                             {"Transfer-Encoding", "chunked"},
                             {"grpc-status", "0"}};
  FieldBlock block;
  block.add_fields(fields, /*trailers=*/true);
  fields.clear();  // the values were copied
  const std::vector<nghttp2_nv>& nv = block.nv();
  ASSERT_EQ(nv.size(), 2u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(nv[0].value), nv[0].valuelen), "abc");
  EXPECT_EQ(names_of(block), (std::vector<std::string>{"x-checksum", "grpc-status"}));
}

// A client session with `requests` requests queued, each a HEADERS frame of
// about 5 KB (a field too large for HPACK's table, so never indexed).
nghttp2_session* queued_requests(int requests) {
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  nghttp2_session* session = open_session(/*server=*/false, nullptr, settings, 1 << 20,
                                          [](nghttp2_session_callbacks*, nghttp2_option*) {});
  for (int i = 0; i < requests; ++i) {
    std::string filler(8000, static_cast<char>('a' + i % 26));
    FieldBlock block;
    block.add(":method", "GET", false);
    block.add(":scheme", "http", false);
    block.add(":authority", "a", false);
    block.add(":path", "/", false);
    block.add("x-filler", filler, false);
    EXPECT_GT(
        nghttp2_submit_request(session, nullptr, block.nv().data(), block.nv().size(), nullptr, nullptr), 0);
  }
  return session;
}

TEST(SendFrames, GoesOnPastTheWatermarkWhileTheSocketTakesEverything) {
  // Cut at the watermark with nothing left unsent, the rest would wait for a
  // writable event that never comes: a stalled response.
  SimulatedClock clock;
  net::EventLoop loop(clock);
  auto link = std::make_shared<testing::FakeLink>(loop);
  testing::FakeTransport transport(link, nullptr);
  nghttp2_session* session = queued_requests(40);
  net::Buffer output;
  int64_t sent = send_frames(session, transport, output, 16 * 1024);
  EXPECT_GT(sent, 150 * 1024);
  EXPECT_EQ(static_cast<size_t>(sent), link->to_peer.size());
  EXPECT_EQ(nghttp2_session_want_write(session), 0);
  nghttp2_session_del(session);
}

TEST(SendFrames, StopsAtTheWatermarkBehindAFullSocket) {
  SimulatedClock clock;
  net::EventLoop loop(clock);
  auto link = std::make_shared<testing::FakeLink>(loop);
  link->peer_window = 4096;
  testing::FakeTransport transport(link, nullptr);
  nghttp2_session* session = queued_requests(40);
  net::Buffer output;
  int64_t sent = send_frames(session, transport, output, 16 * 1024);
  // One round: what the socket took, the rest of it buffered until writable.
  EXPECT_GE(sent, 16 * 1024);
  EXPECT_LT(sent, 32 * 1024);
  EXPECT_EQ(link->to_peer.size(), 4096u);
  EXPECT_GT(transport.pending_output(), 0u);
  EXPECT_NE(nghttp2_session_want_write(session), 0);
  nghttp2_session_del(session);
}

}  // namespace
}  // namespace trellis::proxy::http2
