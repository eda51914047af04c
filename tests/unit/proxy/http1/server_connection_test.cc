// The HTTP/1.1 server codec on simulated time: keep-alive, pipelining, and
// what happens to a client connection whose request is answered early.
#include <gtest/gtest.h>

#include <string>

#include "proxy/harness.h"

namespace trellis::proxy {
namespace {

using testing::FakePeer;
using testing::ok_response;
using testing::ProxyHarness;
using testing::status_of;

constexpr const char* kA = "10.1.0.1:80";

const char* kConfig =
    "listeners:\n"
    "  - name: web\n"
    "    address: 127.0.0.1:10000\n"
    "    virtual_hosts:\n"
    "      - name: all\n"
    "        domains: [\"*\"]\n"
    "        routes:\n"
    "          - match: { prefix: /api }\n"
    "            cluster: api\n"
    "          - match: { prefix: /limited }\n"
    "            cluster: api\n"
    "            rate_limits:\n"
    "              - token_bucket: { requests_per_unit: 1, unit: hour }\n"
    "clusters:\n"
    "  - name: api\n"
    "    endpoints: [{address: 10.1.0.1:80}]\n";

constexpr std::string_view kGet = "GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n";

// Serves the next request on `up` with 200 and checks the client got it.
void serve(ProxyHarness& h, FakePeer& up, FakePeer& client) {
  EXPECT_NE(up.take().find("GET /api/x"), std::string::npos);
  up.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
}

TEST(Http1ServerConnectionTest, PipelinedRequestsAreAnsweredInOrder) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  client.send(std::string(kGet) + std::string(kGet));
  FakePeer up = h.upstream(kA);
  std::string first = up.take();
  EXPECT_EQ(first.find("GET /api/x", 1), std::string::npos);  // one at a time
  up.send(ok_response("one"));
  h.run();
  EXPECT_NE(up.take().find("GET /api/x"), std::string::npos);
  up.send(ok_response("two"));
  h.run();
  std::string answers = client.take();
  EXPECT_LT(answers.find("one"), answers.find("two"));
}

// A request the proxy answers itself keeps its connection when the rest of
// its body can be read and dropped.
TEST(Http1ServerConnectionTest, A404KeepsTheConnectionAndDropsTheBody) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  client.send("POST /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234");
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 404);
  EXPECT_EQ(answer.find("connection: close"), std::string::npos);
  client.send(std::string("56789") + std::string(kGet));  // the rest of the body, then the next request
  FakePeer up = h.upstream(kA);
  serve(h, up, client);
  EXPECT_FALSE(client.closed_by_proxy());
  EXPECT_FALSE(client.fin_from_proxy());
}

TEST(Http1ServerConnectionTest, A429KeepsTheConnectionAndDropsAChunkedBody) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  client.send("GET /limited HTTP/1.1\r\nHost: h\r\n\r\n");  // takes the hour's one request
  FakePeer up = h.upstream(kA);
  up.take();
  up.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
  client.send("POST /limited HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n");
  h.run();
  EXPECT_EQ(status_of(client.take()), 429);
  client.send("3\r\nefg\r\n0\r\n\r\n");
  client.send(kGet);
  h.run();
  serve(h, up, client);
  EXPECT_FALSE(client.fin_from_proxy());
}

TEST(Http1ServerConnectionTest, AnEarlyAnswerWithTooLongABodyClosesTheConnection) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  client.send("POST /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\nxyz");
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 404);
  EXPECT_NE(answer.find("connection: close"), std::string::npos);
  EXPECT_TRUE(client.fin_from_proxy());
}

TEST(Http1ServerConnectionTest, AChunkedBodyPastTheDiscardLimitClosesTheConnection) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  client.send("POST /nowhere HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  h.run();
  EXPECT_EQ(status_of(client.take()), 404);
  std::string chunk = "4000\r\n" + std::string(0x4000, 'z') + "\r\n";
  for (int i = 0; i < 5; ++i) client.send(chunk);
  h.run();
  EXPECT_TRUE(client.fin_from_proxy());
}

// A client waiting for 100 Continue may never send its body: the rest of the
// stream cannot be parsed safely, so the connection ends.
TEST(Http1ServerConnectionTest, AnEarlyAnswerToAnExpectContinueRequestClosesTheConnection) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  client.send("POST /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 404);
  EXPECT_NE(answer.find("connection: close"), std::string::npos);
}

TEST(Http1ServerConnectionTest, AMalformedRequestClosesTheConnection) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  client.send("GET /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 400);
  EXPECT_TRUE(client.fin_from_proxy());
  EXPECT_EQ(h.network().connects(kA), 0);
}

TEST(Http1ServerConnectionTest, AnIdleConnectionClosesAfterTheListenersIdleTimeout) {
  ProxyHarness h(kConfig);
  FakePeer client = h.connect();
  h.advance(std::chrono::seconds(299));
  EXPECT_FALSE(client.closed_by_proxy());
  h.advance(std::chrono::seconds(1));
  EXPECT_TRUE(client.closed_by_proxy());
}

}  // namespace
}  // namespace trellis::proxy
