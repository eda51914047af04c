// Active health checks on simulated time: when checks run, what each verdict
// takes, and what the workers do with it.
#include "proxy/upstream/health_checker.h"

#include <gtest/gtest.h>

#include <string>

#include "proxy/harness.h"

namespace trellis::proxy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakePeer;
using testing::ok_response;
using testing::ProxyHarness;
using testing::status_of;

constexpr const char* kA = "10.1.0.1:80";
constexpr const char* kB = "10.1.0.2:80";
constexpr const char* kC = "10.1.0.3:80";

std::string config(std::string_view check,
                   std::string endpoints = "[{address: 10.1.0.1:80}, {address: 10.1.0.2:80}]") {
  return testing::OneRoute{"/", "",
                           "    lb_policy: round_robin\n    health_check: " + std::string(check) + "\n",
                           std::move(endpoints)}
      .yaml();
}

const char* kHttpCheck =
    "{ http: { path: /healthz }, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, "
    "jitter_percent: 0 }";

// Plays an endpoint that answers its health checks with a status.
struct Endpoint {
  Endpoint(ProxyHarness& harness, std::string at) : h(harness), address(std::move(at)) {}
  ProxyHarness& h;
  std::string address;
  int status = 200;
  bool silent = false;  // accepts and never answers
  int checks = 0;
  std::vector<FakePeer> open;

  // Answers every check made so far.
  void serve() {
    h.run();
    while (h.network().has_pending(address)) {
      FakePeer p = h.network().next(address);
      // A check whose connect was not accepted in time gave up meanwhile.
      if (p.closed_by_proxy()) continue;
      p.accept();
      h.run();
      std::string request = p.take();
      EXPECT_NE(request.find("GET /healthz HTTP/1.1\r\n"), std::string::npos) << request;
      EXPECT_NE(request.find("User-Agent: trellis-health-check\r\n"), std::string::npos);
      ++checks;
      if (!silent) p.send("HTTP/1.1 " + std::to_string(status) + " X\r\ncontent-length: 0\r\n\r\n");
      open.push_back(p);
      h.run();
    }
  }
};

// Advances time in small steps, answering checks as they come.
void run_for(ProxyHarness& h, Duration d, std::initializer_list<Endpoint*> endpoints) {
  for (Duration step = std::min<Duration>(milliseconds(50), d); d > Duration::zero(); d -= step) {
    h.advance(std::min(step, d));
    for (Endpoint* e : endpoints) e->serve();
  }
}

// Where ten requests from one client went: connections opened per endpoint.
std::pair<int, int> spread(ProxyHarness& h, int requests = 10) {
  int before_a = h.network().connects(kA), before_b = h.network().connects(kB);
  for (int i = 0; i < requests; ++i) {
    FakePeer client = h.connect();
    client.send("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    h.run();
    for (const char* a : {kA, kB, kC}) {
      while (h.network().has_pending(a)) {
        FakePeer up = h.upstream(a);
        up.take();
        up.send(ok_response("ok", "connection: close\r\n"));  // one connection per request
        h.run();
      }
    }
    EXPECT_EQ(status_of(client.take()), 200);
  }
  return {h.network().connects(kA) - before_a, h.network().connects(kB) - before_b};
}

TEST(HealthCheckerTest, ChecksEachEndpointOncePerInterval) {
  ProxyHarness h(config(kHttpCheck, "[{address: 10.1.0.1:80}]"));
  h.health();
  Endpoint a{h, kA};
  run_for(h, seconds(1), {&a});  // the first check comes somewhere in the first interval
  EXPECT_EQ(a.checks, 1);
  run_for(h, seconds(10), {&a});
  EXPECT_EQ(a.checks, 11);
}

TEST(HealthCheckerTest, JitterLengthensIntervalsWithinItsShare) {
  ProxyHarness h(config("{ http: { path: /healthz }, interval: 1s, timeout: 500ms, jitter_percent: 50 }",
                        "[{address: 10.1.0.1:80}]"));
  h.health();
  Endpoint a{h, kA};
  run_for(h, seconds(1), {&a});
  ASSERT_EQ(a.checks, 1);
  run_for(h, seconds(30), {&a});
  // Each interval is 1 s to 1.5 s long, 1.25 s on average: about 24 in 30 s
  // (without jitter there would be 30).
  EXPECT_GE(a.checks, 1 + 20);
  EXPECT_LE(a.checks, 1 + 27);
}

TEST(HealthCheckerTest, AFailingEndpointLeavesTheRotationAndComesBack) {
  ProxyHarness h(config(kHttpCheck));
  h.health();
  Endpoint a{h, kA}, b{h, kB};
  run_for(h, seconds(1), {&a, &b});
  EXPECT_EQ(spread(h), std::make_pair(5, 5));

  b.status = 503;
  run_for(h, seconds(1), {&a, &b});  // one failed check: not yet
  EXPECT_EQ(spread(h), std::make_pair(5, 5));
  run_for(h, seconds(1), {&a, &b});  // two in a row: out
  EXPECT_EQ(spread(h), std::make_pair(10, 0));

  b.status = 200;
  run_for(h, seconds(1), {&a, &b});
  EXPECT_EQ(spread(h), std::make_pair(10, 0));
  run_for(h, seconds(1), {&a, &b});  // two passes: back
  EXPECT_EQ(spread(h), std::make_pair(5, 5));
}

TEST(HealthCheckerTest, ACheckNotAnsweredWithinItsTimeoutFails) {
  ProxyHarness h(config(kHttpCheck));
  h.health();
  Endpoint a{h, kA}, b{h, kB};
  b.silent = true;
  for (int i = 0; i < 1000 && b.checks == 0; ++i) run_for(h, milliseconds(1), {&a, &b});
  ASSERT_EQ(b.checks, 1);
  FakePeer first = b.open.back();
  // It started within the last millisecond; its timeout is 500 ms.
  h.advance(milliseconds(498));
  EXPECT_FALSE(first.closed_by_proxy());
  h.advance(milliseconds(2));
  EXPECT_TRUE(first.closed_by_proxy());
  run_for(h, seconds(2), {&a, &b});
  EXPECT_EQ(spread(h), std::make_pair(10, 0));
}

TEST(HealthCheckerTest, TcpCheckPassesOnConnectAndFailsOnRefusal) {
  ProxyHarness h(
      config("{ tcp: {}, interval: 1s, timeout: 500ms, unhealthy_threshold: 1, jitter_percent: 0 }"));
  h.network().auto_accept(kA);
  h.network().refuse(kB);
  h.health();
  h.advance(seconds(2));
  h.network().allow(kB);
  h.network().auto_accept(kB);  // requests reach it, checks do not
  // Checks connected to a and were refused by b; b is out.
  EXPECT_GE(h.network().connects(kA), 2);
  int b_connects = h.network().connects(kB);
  EXPECT_EQ(spread(h).first, 10);
  EXPECT_EQ(h.network().connects(kB), b_connects);
}

// With fewer than half the endpoints healthy, verdicts are more likely wrong
// than the endpoints: requests spread over all of them (panic).
TEST(HealthCheckerTest, WithTooFewHealthyEndpointsRequestsSpreadOverAll) {
  ProxyHarness h(config(kHttpCheck));
  h.health();
  Endpoint a{h, kA}, b{h, kB};
  a.status = b.status = 500;
  run_for(h, seconds(3), {&a, &b});
  EXPECT_EQ(spread(h), std::make_pair(5, 5));
}

TEST(HealthCheckerTest, AReloadKeepsTheVerdictOfAnEndpointThatStays) {
  ProxyHarness h(config(kHttpCheck));
  h.health();
  Endpoint a{h, kA}, b{h, kB};
  b.status = 503;
  run_for(h, seconds(3), {&a, &b});
  ASSERT_EQ(spread(h), std::make_pair(10, 0));
  h.reload(config(kHttpCheck, "[{address: 10.1.0.1:80}, {address: 10.1.0.2:80}, {address: 10.1.0.3:80}]"));
  // No check has passed since: b stays out, at once.
  int before = h.network().connects(kB);
  spread(h, 9);
  EXPECT_EQ(h.network().connects(kB), before);
}

}  // namespace
}  // namespace trellis::proxy
