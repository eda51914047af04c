// A worker's clusters on simulated time: balancers over the endpoint pools,
// slow start as time passes, pooled connections, circuit breakers.
#include "proxy/upstream/cluster.h"

#include <gtest/gtest.h>

#include <string>

#include "proxy/harness.h"

namespace trellis::proxy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakePeer;
using testing::NamedUpstreams;
using testing::ok_response;
using testing::ProxyHarness;
using testing::status_of;

const std::vector<std::string> kFour = {"10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80"};

std::string config(size_t endpoints, std::string cluster_extra) {
  std::string list;
  for (size_t i = 0; i < endpoints; ++i) list += (i ? ", " : "") + std::string("{address: ") + kFour[i] + "}";
  return testing::OneRoute{"/", "", std::move(cluster_extra), "[" + list + "]"}.yaml();
}

TEST(ClusterTest, RoundRobinSpreadsEvenly) {
  ProxyHarness h(config(3, "    lb_policy: round_robin\n"));
  NamedUpstreams up(h, kFour);
  auto counts = up.spread(30);
  EXPECT_EQ(counts, (std::map<std::string, int>{{kFour[0], 10}, {kFour[1], 10}, {kFour[2], 10}}));
}

// An endpoint added by a reload starts with a tenth of its weight and grows to
// its full share over the window, as the balancer is rebuilt while it warms.
TEST(ClusterTest, SlowStartRampsUpAnEndpointAddedByReload) {
  ProxyHarness h(config(3, "    lb_policy: weighted_round_robin\n    slow_start: 6s\n"));
  NamedUpstreams up(h, kFour);
  h.advance(seconds(7));  // endpoints present at start are new too: let them warm
  EXPECT_EQ(up.spread(30).size(), 3u);

  h.reload(config(4, "    lb_policy: weighted_round_robin\n    slow_start: 6s\n"));
  auto at_start = up.spread(310);
  EXPECT_EQ(at_start[kFour[3]], 10) << "a tenth of a full weight, against three full ones";

  h.advance(seconds(3));  // half the window: about half a weight (50 of 350)
  auto halfway = up.spread(350);
  EXPECT_GE(halfway[kFour[3]], 45);
  EXPECT_LE(halfway[kFour[3]], 55);

  h.advance(seconds(4));  // past the window: a full share
  auto after = up.spread(120);
  for (const std::string& a : kFour) EXPECT_EQ(after[a], 30) << a;
}

TEST(ClusterTest, AnEndpointRemovedByReloadGetsNothingMore) {
  ProxyHarness h(config(3, "    lb_policy: round_robin\n"));
  NamedUpstreams up(h, kFour);
  up.spread(9);
  h.reload(config(2, "    lb_policy: round_robin\n"));
  auto counts = up.spread(10);
  EXPECT_EQ(counts, (std::map<std::string, int>{{kFour[0], 5}, {kFour[1], 5}}));
}

TEST(ClusterTest, IdlePooledConnectionsCloseAfterTheIdleTimeout) {
  ProxyHarness h(config(1, "    idle_timeout: 30s\n"));
  FakePeer client = h.connect();
  client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  FakePeer up = h.upstream(kFour[0]);
  up.take();
  up.send(ok_response());
  h.run();
  h.advance(seconds(29));
  EXPECT_FALSE(up.closed_by_proxy());
  h.advance(seconds(1));
  EXPECT_TRUE(up.closed_by_proxy());
}

TEST(ClusterTest, AnUpstreamClosingAnIdleConnectionTakesItOutOfThePool) {
  ProxyHarness h(config(1, ""));
  FakePeer client = h.connect();
  client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  FakePeer up = h.upstream(kFour[0]);
  up.take();
  up.send(ok_response());
  h.run();
  up.shutdown();  // the upstream closes its idle keep-alive connection
  h.run();
  EXPECT_TRUE(up.closed_by_proxy());
  client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  FakePeer again = h.upstream(kFour[0]);  // a new connection, no failed try
  again.take();
  again.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
}

TEST(ClusterTest, MaxConnectionsOverflowIs503) {
  ProxyHarness h(config(1, "    circuit_breakers: { max_connections: 1 }\n"));
  FakePeer first = h.connect();
  first.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  FakePeer up = h.upstream(kFour[0]);
  FakePeer second = h.connect();
  second.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();
  std::string answer = second.take();
  EXPECT_EQ(status_of(answer), 503);
  EXPECT_NE(answer.find("x-trellis-overflow: max_connections"), std::string::npos);
  // Once the first is done its connection serves the next.
  up.take();
  up.send(ok_response());
  h.run();
  second.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();
  EXPECT_NE(up.take().find("GET /"), std::string::npos);
}

TEST(ClusterTest, MaxPendingRequestsCountsConnectsInProgress) {
  ProxyHarness h(config(1, "    circuit_breakers: { max_pending_requests: 1 }\n"));
  FakePeer first = h.connect();
  first.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();  // connecting, not accepted
  FakePeer second = h.connect();
  second.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();
  std::string answer = second.take();
  EXPECT_EQ(status_of(answer), 503);
  EXPECT_NE(answer.find("x-trellis-overflow: max_pending_requests"), std::string::npos);
}

}  // namespace
}  // namespace trellis::proxy
