// A worker on simulated time: adopting snapshots and draining.
#include "proxy/runtime/worker.h"

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

std::string config(std::string path = "/") {
  return testing::OneRoute{std::move(path), "", "", "[{address: 10.1.0.1:80}]"}.yaml();
}

TEST(WorkerTest, DrainClosesIdleConnectionsAndFinishesRequestsInFlight) {
  ProxyHarness h(config());
  FakePeer idle = h.connect();
  FakePeer busy = h.connect();
  busy.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  FakePeer up = h.upstream(kA);
  up.take();
  EXPECT_EQ(h.worker().connections(), 2);

  h.worker().drain();
  h.run();
  EXPECT_TRUE(idle.closed_by_proxy());
  EXPECT_FALSE(busy.closed_by_proxy());

  up.send(ok_response());
  h.run();
  std::string answer = busy.take();
  EXPECT_EQ(status_of(answer), 200);
  EXPECT_NE(answer.find("connection: close"), std::string::npos);
  EXPECT_TRUE(busy.fin_from_proxy());
}

TEST(WorkerTest, AReloadKeepsTheClustersPooledConnections) {
  ProxyHarness h(config("/"));
  FakePeer client = h.connect();
  client.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  FakePeer up = h.upstream(kA);
  up.take();
  up.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);

  h.reload(config("/a"));  // another route, the same cluster
  client.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();
  EXPECT_NE(up.take().find("GET /a"), std::string::npos);
  EXPECT_EQ(h.network().connects(kA), 1);
  up.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);

  // The new route table is in force on the same client connection.
  client.send("GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();
  EXPECT_EQ(status_of(client.take()), 404);
}

}  // namespace
}  // namespace trellis::proxy
