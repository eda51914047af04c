// The HTTP request path end to end on simulated time: HTTP/1.1 codecs, the
// router's stages, retries, timeouts and pools, over in-memory connections.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/harness.h"

namespace trellis::proxy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakePeer;
using testing::ok_response;
using testing::ProxyHarness;
using testing::response;
using testing::status_of;

constexpr const char* kA = "10.1.0.1:80";
constexpr const char* kB = "10.1.0.2:80";

std::string config(std::string route_extra = "", std::string cluster_extra = "",
                   std::string endpoints = "[{address: 10.1.0.1:80}]") {
  return testing::OneRoute{"/api", std::move(route_extra), "    lb_policy: round_robin\n" + cluster_extra,
                           std::move(endpoints)}
      .yaml();
}

constexpr std::string_view kGet = "GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n";

TEST(RouterTest, ForwardsRequestAndResponseAndKeepsBothConnections) {
  ProxyHarness h(config());
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  std::string request = up.take();
  EXPECT_EQ(request.substr(0, 21), "GET /api/x HTTP/1.1\r\n");
  EXPECT_NE(request.find("x-forwarded-for: 10.0.0.9\r\n"), std::string::npos);
  EXPECT_NE(request.find("x-request-id: "), std::string::npos);
  up.send(ok_response("hello"));
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 200);
  EXPECT_EQ(answer.substr(answer.size() - 5), "hello");

  // The second request reuses the pooled upstream connection.
  client.send(kGet);
  h.run();
  EXPECT_FALSE(h.network().has_pending(kA));
  EXPECT_NE(up.take().find("GET /api/x"), std::string::npos);
  up.send(ok_response("again"));
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
  EXPECT_EQ(h.network().connects(kA), 1);
  EXPECT_FALSE(client.closed_by_proxy());
}

TEST(RouterTest, NoRouteIs404) {
  ProxyHarness h(config());
  FakePeer client = h.connect();
  client.send("GET /other HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();
  EXPECT_EQ(status_of(client.take()), 404);
  EXPECT_EQ(h.network().connects(kA), 0);
}

TEST(RouterTest, RetriesA503OnTheNextEndpoint) {
  ProxyHarness h(config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n",
                        "[{address: 10.1.0.1:80}, {address: 10.1.0.2:80}]"));
  FakePeer client = h.connect();
  client.send(kGet);
  std::string first;
  FakePeer a = h.upstream_any({kA, kB}, &first);
  a.take();
  a.send(response(503));
  h.advance(milliseconds(25));  // at most the first backoff
  FakePeer b = h.upstream(first == kA ? kB : kA);
  EXPECT_NE(b.take().find("GET /api/x"), std::string::npos);
  b.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
}

TEST(RouterTest, PerTryTimeoutRetriesThenAnswers504) {
  ProxyHarness h(config("", "    retry: { attempts: 1, per_try_timeout: 100ms, retry_on: [gateway-error] }\n",
                        "[{address: 10.1.0.1:80}, {address: 10.1.0.2:80}]"));
  FakePeer client = h.connect();
  client.send(kGet);
  std::string first;
  FakePeer a = h.upstream_any({kA, kB}, &first);
  std::string second = first == kA ? kB : kA;
  h.advance(milliseconds(99));
  EXPECT_FALSE(h.network().has_pending(second));
  h.advance(milliseconds(1) + milliseconds(25));  // the timeout, then at most the backoff
  FakePeer b = h.upstream(second);
  EXPECT_NE(b.take().find("GET /api/x"), std::string::npos);
  EXPECT_TRUE(client.take().empty());
  h.advance(milliseconds(100));
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 504);
  EXPECT_NE(answer.find("upstream per-try timeout"), std::string::npos);
}

TEST(RouterTest, RequestTimeoutAnswers504AtTheRouteTimeout) {
  ProxyHarness h(config("            timeout: 2s\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  h.advance(milliseconds(1999));
  EXPECT_TRUE(client.take().empty());
  h.advance(milliseconds(1));
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 504);
  EXPECT_NE(answer.find("upstream request timeout"), std::string::npos);
  EXPECT_TRUE(up.closed_by_proxy());  // a connection that may still answer is not reused
}

TEST(RouterTest, ConnectFailureIsRetriedElsewhere) {
  ProxyHarness h(
      config("", "    retry: { attempts: 1 }\n", "[{address: 10.1.0.1:80}, {address: 10.1.0.2:80}]"));
  h.network().refuse(kA);
  FakePeer client = h.connect();
  client.send(kGet);
  h.advance(milliseconds(25));
  FakePeer b = h.upstream(kB);
  b.take();
  b.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
  EXPECT_EQ(h.network().connects(kA), 1) << "the refused endpoint was tried first";
}

TEST(RouterTest, ConnectFailureWithoutRetriesIs503) {
  ProxyHarness h(config());
  h.network().refuse(kA);
  FakePeer client = h.connect();
  client.send(kGet);
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 503);
  EXPECT_NE(answer.find("upstream connect error"), std::string::npos);
}

TEST(RouterTest, ConnectTimeoutIs504) {
  ProxyHarness h(config("", "    connect_timeout: 250ms\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  h.advance(milliseconds(249));
  EXPECT_TRUE(client.take().empty());
  h.advance(milliseconds(1));
  EXPECT_EQ(status_of(client.take()), 504);
}

TEST(RouterTest, FaultDelayHoldsTheRequestExactlyThatLong) {
  ProxyHarness h(config("            fault: { delay: { duration: 300ms, percent: 100 } }\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  h.advance(milliseconds(299));
  EXPECT_FALSE(h.network().has_pending(kA));
  h.advance(milliseconds(1));
  FakePeer up = h.upstream(kA);
  EXPECT_NE(up.take().find("GET /api/x"), std::string::npos);
}

TEST(RouterTest, FaultAbortAnswersTheConfiguredStatus) {
  ProxyHarness h(config("            fault: { abort: { status: 418, percent: 100 } }\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  h.run();
  EXPECT_EQ(status_of(client.take()), 418);
  EXPECT_EQ(h.network().connects(kA), 0);
}

// A backend's own rewrite replaces the route's hostname or path, its
// mirrors are sent besides the route's, and its fault replaces the route's;
// none of it touches requests sent to another backend.
std::string backend_actions_config(std::string first_backend, std::string second_backend) {
  return testing::one_listener_yaml(
      "          - match: { prefix: /api }\n"
      "            rewrite: { hostname: route.example, path: { prefix: /route } }\n"
      "            mirror: [{ cluster: copies }]\n"
      "            fault: { abort: { status: 500, percent: 100 } }\n"
      "            backends:\n"
      "              - " +
          first_backend +
          "\n"
          "              - " +
          second_backend + "\n",
      "  - name: app\n"
      "    endpoints: [{address: 10.1.0.1:80}]\n"
      "  - name: other\n"
      "    endpoints: [{address: 10.1.0.2:80}]\n"
      "  - name: copies\n"
      "    endpoints: [{address: 10.1.0.3:80}]\n"
      "  - name: audit\n"
      "    endpoints: [{address: 10.1.0.4:80}]\n");
}

TEST(RouterTest, ABackendsRewriteAndMirrorsApplyToItsRequestsOnly) {
  ProxyHarness h(backend_actions_config(
      "{ cluster: app, rewrite: { path: { prefix: /v2 } }, mirror: [{ cluster: audit }], "
      "fault: { delay: { duration: 10ms, percent: 100 } } }",
      "{ cluster: other, weight: 0, fault: { abort: { status: 418, percent: 100 } } }"));
  FakePeer client = h.connect();
  client.send(kGet);
  h.advance(milliseconds(9));
  EXPECT_FALSE(h.network().has_pending(kA)) << "the backend's delay, not the route's abort";
  h.advance(milliseconds(1));
  FakePeer up = h.upstream(kA);
  std::string request = up.take();
  EXPECT_EQ(request.substr(0, 20), "GET /v2/x HTTP/1.1\r\n") << "the backend's path, the route's hostname";
  EXPECT_NE(request.find("\r\nhost: route.example\r\n"), std::string::npos) << request;
  for (const char* mirror : {"10.1.0.3:80", "10.1.0.4:80"}) {
    FakePeer copy = h.upstream(mirror);
    EXPECT_EQ(copy.take().substr(0, 9), "GET /v2/x") << mirror << " gets a copy as the backend sees it";
  }
  EXPECT_FALSE(h.network().has_pending("10.1.0.2:80"));
  up.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
}

TEST(RouterTest, ABackendsRedirectAnswersItsShare) {
  ProxyHarness h(
      backend_actions_config("{ cluster: app, redirect: { hostname: new.example, path: { prefix: /v9 } } }",
                             "{ cluster: other, weight: 0 }"));
  FakePeer client = h.connect();
  client.send(kGet);
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 302);
  EXPECT_NE(answer.find("\r\nlocation: http://new.example/v9/x\r\n"), std::string::npos) << answer;
  EXPECT_EQ(h.network().connects(kA), 0);
  EXPECT_FALSE(h.network().has_pending("10.1.0.3:80")) << "a redirected request is not mirrored";
}

// Mirrors name their clusters by index in the config the request was
// routed with: a copy due after a reload (here the end of a fault's delay)
// is dropped rather than sent wherever that index now points.
TEST(RouterTest, CopiesDueAfterAReloadAreDropped) {
  ProxyHarness h(
      backend_actions_config("{ cluster: app, fault: { delay: { duration: 10ms, percent: 100 } } }",
                             "{ cluster: other, weight: 0 }"));
  FakePeer client = h.connect();
  client.send(kGet);
  h.run();
  // "other" leaves the config, so "audit" takes the index "copies" had.
  h.reload(
      testing::one_listener_yaml("          - match: { prefix: /api }\n            mirror: [{ cluster: "
                                 "copies }]\n            cluster: app\n",
                                 "  - name: app\n    endpoints: [{address: 10.1.0.1:80}]\n"
                                 "  - name: copies\n    endpoints: [{address: 10.1.0.3:80}]\n"
                                 "  - name: audit\n    endpoints: [{address: 10.1.0.4:80}]\n"));
  h.advance(milliseconds(10));
  FakePeer up = h.upstream(kA);
  EXPECT_EQ(up.take().substr(0, 14), "GET /route/x H") << "the request goes on as it was routed";
  EXPECT_FALSE(h.network().has_pending("10.1.0.4:80")) << "no copy to the cluster the index names now";
  EXPECT_FALSE(h.network().has_pending("10.1.0.3:80"));
}

TEST(RouterTest, ABackendsFaultReplacesTheRoutes) {
  ProxyHarness h(backend_actions_config("{ cluster: app, fault: { abort: { status: 418, percent: 100 } } }",
                                        "{ cluster: other, weight: 0 }"));
  FakePeer client = h.connect();
  client.send(kGet);
  h.run();
  EXPECT_EQ(status_of(client.take()), 418);
  EXPECT_EQ(h.network().connects(kA), 0);
  EXPECT_FALSE(h.network().has_pending("10.1.0.3:80")) << "an aborted request is not mirrored";
}

TEST(RouterTest, TokenBucketRefusesWith429AndRetryAfter) {
  ProxyHarness h(
      config("            rate_limits:\n"
             "              - token_bucket: { requests_per_unit: 1, unit: minute }\n",
             "    idle_timeout: 300s\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  up.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
  client.send(kGet);
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 429);
  EXPECT_NE(answer.find("retry-after: 60\r\n"), std::string::npos);
  h.advance(seconds(60));
  client.send(kGet);
  h.run();
  EXPECT_NE(up.take().find("GET /api/x"), std::string::npos);
}

// Leaky bucket at 10 per second: three requests at once go out 100 ms apart.
TEST(RouterTest, LeakyBucketHoldsEachRequestForItsTurn) {
  ProxyHarness h(
      config("            rate_limits:\n"
             "              - leaky_bucket: { rate_per_second: 10, queue_size: 5 }\n",
             "", "[{address: 10.1.0.1:80}]"));
  std::vector<FakePeer> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(h.connect());
    clients.back().send(kGet);
  }
  h.run();
  EXPECT_EQ(h.network().connects(kA), 1);
  h.advance(milliseconds(99));
  EXPECT_EQ(h.network().connects(kA), 1);
  h.advance(milliseconds(1));
  EXPECT_EQ(h.network().connects(kA), 2);
  h.advance(milliseconds(100));
  EXPECT_EQ(h.network().connects(kA), 3);
}

// The Gateway API's CORS filter: a preflight is answered by the proxy and
// never forwarded; an allowed origin's response says so; another origin's
// request goes through without the CORS headers.
TEST(RouterTest, CorsPreflightIsAnsweredAndAllowedOriginsAreNamed) {
  ProxyHarness h(
      config("            cors:\n"
             "              allow_origins: [\"https://*.example.com\"]\n"
             "              allow_credentials: true\n"
             "              allow_methods: [\"*\"]\n"
             "              allow_headers: [x-user, x-trace]\n"
             "              expose_headers: [x-total]\n"
             "              max_age: 600\n",
             "    idle_timeout: 300s\n"));
  FakePeer client = h.connect();
  client.send(
      "OPTIONS /api/x HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\n"
      "Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-user\r\n\r\n");
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 200);
  EXPECT_NE(answer.find("access-control-allow-origin: https://app.example.com\r\n"), std::string::npos)
      << answer;
  EXPECT_NE(answer.find("access-control-allow-credentials: true\r\n"), std::string::npos);
  EXPECT_NE(answer.find("access-control-allow-methods: PUT\r\n"), std::string::npos)
      << "\"*\" with credentials: the method asked for";
  EXPECT_NE(answer.find("access-control-allow-headers: x-user,x-trace\r\n"), std::string::npos);
  EXPECT_NE(answer.find("access-control-expose-headers: x-total\r\n"), std::string::npos)
      << "the preflight names the exposed headers too, as the Gateway API's CORS scenario wants";
  EXPECT_NE(answer.find("access-control-max-age: 600\r\n"), std::string::npos);
  EXPECT_EQ(h.network().connects(kA), 0) << "a preflight is not forwarded";

  // Another origin's preflight: 200 without the CORS headers.
  client.send(
      "OPTIONS /api/x HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example.org\r\n"
      "Access-Control-Request-Method: PUT\r\n\r\n");
  h.run();
  answer = client.take();
  EXPECT_EQ(status_of(answer), 200);
  EXPECT_EQ(answer.find("access-control-"), std::string::npos) << answer;

  // The request itself goes on; its response names the allowed origin.
  client.send("GET /api/x HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\n\r\n");
  FakePeer up = h.upstream(kA);
  std::string forwarded = up.take();
  EXPECT_NE(forwarded.find("rigin: https://app.example.com\r\n"), std::string::npos) << forwarded;
  up.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nAccess-Control-Allow-Origin: *\r\n\r\nok");
  h.run();
  answer = client.take();
  EXPECT_EQ(answer.find("Access-Control-Allow-Origin"), std::string::npos)
      << "the upstream's, in its casing, is gone";
  EXPECT_NE(answer.find("access-control-allow-origin: https://app.example.com\r\n"), std::string::npos)
      << answer;
  EXPECT_EQ(answer.find("access-control-allow-origin: *"), std::string::npos)
      << "the route's answer replaces the upstream's";
  EXPECT_NE(answer.find("access-control-expose-headers: x-total\r\n"), std::string::npos);
  EXPECT_NE(answer.find("vary: Origin\r\n"), std::string::npos);

  client.send("GET /api/x HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example.org\r\n\r\n");
  h.run();
  up.take();
  up.send(ok_response());
  h.run();
  EXPECT_EQ(client.take().find("access-control-allow-origin"), std::string::npos);
}

// Each completed response is a latency sample for the adaptive limit: once
// the baseline is measured (the limit pinned to min_limit meanwhile), the
// limit starts from initial_limit.
TEST(RouterTest, CompletedResponsesTeachTheAdaptiveLimit) {
  ProxyHarness h(config("", "    adaptive_concurrency: { initial_limit: 40, min_limit: 2 }\n"));
  const auto& limiter = h.snapshot().clusters[0].concurrency;
  ASSERT_NE(limiter, nullptr);
  EXPECT_EQ(limiter->limit(), 2u);  // measuring the baseline
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  for (int i = 0; i < 50; ++i) {
    if (i > 0) client.send(kGet);
    h.run();
    up.take();
    h.advance(milliseconds(10));
    up.send(ok_response());
    h.run();
    ASSERT_EQ(status_of(client.take()), 200) << i;
  }
  EXPECT_EQ(limiter->limit(), 40u) << "50 samples of 10 ms: the baseline is measured";
}

TEST(RouterTest, MaxRequestsOverflowIs503WithTheLimitNamed) {
  ProxyHarness h(config("", "    circuit_breakers: { max_requests: 1 }\n"));
  FakePeer first = h.connect();
  first.send(kGet);
  FakePeer up = h.upstream(kA);
  FakePeer second = h.connect();
  second.send(kGet);
  h.run();
  std::string answer = second.take();
  EXPECT_EQ(status_of(answer), 503);
  EXPECT_NE(answer.find("x-trellis-overflow: max_requests"), std::string::npos);
  up.take();
  up.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(first.take()), 200);
}

TEST(RouterTest, RequestIdleTimeoutIs504WhenNothingMoves) {
  ProxyHarness h(config("            timeout: 0s\n", "    request_idle_timeout: 1s\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  h.advance(milliseconds(999));
  EXPECT_TRUE(client.take().empty());
  h.advance(milliseconds(1));
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 504);
  EXPECT_NE(answer.find("upstream idle timeout"), std::string::npos);
}

TEST(RouterTest, RequestIdleTimeoutSparesASlowButSteadyResponse) {
  ProxyHarness h(config("            timeout: 10s\n", "    request_idle_timeout: 400ms\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  up.send("HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n");
  for (char c : std::string("trickled")) {  // a byte every 300 ms: 2.4 s in all
    h.advance(milliseconds(300));
    up.send(std::string(1, c));
  }
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 200);
  EXPECT_EQ(answer.substr(answer.size() - 8), "trickled");
}

TEST(RouterTest, AStalePooledConnectionIsReplacedOnceWithoutARetryPolicy) {
  ProxyHarness h(config());
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer first = h.upstream(kA);
  first.take();
  first.send(ok_response());
  h.run();
  client.take();
  // The upstream closed the idle connection just as the next request reuses it.
  client.send(kGet);
  h.run();
  first.reset(ECONNRESET);
  h.run();
  FakePeer second = h.upstream(kA);
  EXPECT_NE(second.take().find("GET /api/x"), std::string::npos);
  second.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
}

TEST(RouterTest, BodyIsReplayedOnRetry) {
  ProxyHarness h(config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n",
                        "[{address: 10.1.0.1:80}, {address: 10.1.0.2:80}]"));
  FakePeer client = h.connect();
  client.send("PUT /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
  std::string first;
  FakePeer a = h.upstream_any({kA, kB}, &first);
  EXPECT_NE(a.take().find("\r\n\r\nhello"), std::string::npos);
  a.send(response(502));
  h.advance(milliseconds(25));
  FakePeer b = h.upstream(first == kA ? kB : kA);
  EXPECT_NE(b.take().find("\r\n\r\nhello"), std::string::npos);
  b.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
}

TEST(RouterTest, PostIsNotRetriedAfterItMayHaveArrived) {
  ProxyHarness h(config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n",
                        "[{address: 10.1.0.1:80}, {address: 10.1.0.2:80}]"));
  FakePeer client = h.connect();
  client.send("POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
  FakePeer a = h.upstream_any({kA, kB});
  a.take();
  a.send(response(503));
  h.advance(seconds(1));
  EXPECT_FALSE(h.network().has_pending(kA) || h.network().has_pending(kB));
  EXPECT_EQ(status_of(client.take()), 503);
}

// A retry on a status reads the rest of the failed response and drops it, so
// the connection serves the retry instead of being closed.
TEST(RouterTest, RetryOnStatusDrainsTheResponseAndReusesItsConnection) {
  ProxyHarness h(config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  up.send("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\n\r\nbusy, ");
  h.run();
  up.send("sorry");  // the rest of the body arrives after the head
  h.advance(milliseconds(25));
  EXPECT_FALSE(up.closed_by_proxy());
  EXPECT_NE(up.take().find("GET /api/x"), std::string::npos);
  up.send(ok_response("fine"));
  h.run();
  std::string answer = client.take();
  EXPECT_EQ(status_of(answer), 200);
  EXPECT_EQ(answer.find("sorry"), std::string::npos);
  EXPECT_EQ(h.network().connects(kA), 1);
}

TEST(RouterTest, RetryOnStatusWithAChunkedBodyDrainsToTheLastChunk) {
  ProxyHarness h(config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  up.send("HTTP/1.1 502 Bad Gateway\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
  h.advance(milliseconds(30));
  // The retry cannot use the connection still draining: it opens another.
  FakePeer second = h.upstream(kA);
  up.send("0\r\n\r\n");
  h.run();
  EXPECT_FALSE(up.closed_by_proxy());
  second.take();
  second.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
  // Both connections are pooled now: the next two requests open none.
  client.send(kGet);
  h.run();
  EXPECT_EQ(h.network().connects(kA), 2);
}

TEST(RouterTest, RetryOnStatusClosesAConnectionWhoseBodyIsTooLongToDrain) {
  ProxyHarness h(config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  up.send("HTTP/1.1 503 X\r\ncontent-length: 1000000\r\n\r\n" + std::string(70000, 'x'));
  h.run();
  EXPECT_TRUE(up.closed_by_proxy());
  h.advance(milliseconds(25));
  FakePeer second = h.upstream(kA);
  second.take();
  second.send(ok_response());
  h.run();
  EXPECT_EQ(status_of(client.take()), 200);
}

TEST(RouterTest, ADrainThatStallsIsClosedAfterItsDeadline) {
  ProxyHarness h(config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n"));
  FakePeer client = h.connect();
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  up.send("HTTP/1.1 503 X\r\ncontent-length: 10\r\n\r\nabc");
  h.advance(milliseconds(999));
  EXPECT_FALSE(up.closed_by_proxy());
  h.advance(milliseconds(1));
  EXPECT_TRUE(up.closed_by_proxy());
}

// A client that does not read holds the response back: the proxy stops
// reading the upstream instead of buffering the body, and catches up as the
// client reads.
TEST(RouterTest, ASlowClientStopsTheProxyReadingTheUpstream) {
  constexpr size_t kBody = 4 << 20;
  ProxyHarness h(config());
  FakePeer client = h.connect();
  client.set_window(64 * 1024);
  client.send(kGet);
  FakePeer up = h.upstream(kA);
  up.take();
  up.send("HTTP/1.1 200 OK\r\ncontent-length: " + std::to_string(kBody) + "\r\n\r\n" +
          std::string(kBody, 'b'));
  h.run();
  // The client's window, the proxy's 256 KiB watermark and a read or two.
  EXPECT_GT(up.unread(), kBody - 512 * 1024);
  std::string received;
  for (int i = 0; i < 10000 && (up.unread() > 0 || !client.pending().empty()); ++i) {
    received += client.take();
    h.run();
  }
  EXPECT_EQ(up.unread(), 0u);
  EXPECT_EQ(status_of(received), 200);
  EXPECT_EQ(received.size() - received.find("\r\n\r\n") - 4, kBody);
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// One line per exchange, with what that exchange did, not the one before it.
TEST(RouterTest, AccessLogLinesDescribeTheirOwnExchange) {
  std::string log = ::testing::TempDir() + "router_test_access.log";
  std::remove(log.c_str());
  ProxyHarness h("access_log: { path: " + log + " }\n" +
                 config("", "    retry: { attempts: 1, retry_on: [gateway-error] }\n"));
  FakePeer client = h.connect();
  client.send("GET /api/x HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc\r\n\r\n");
  FakePeer up = h.upstream(kA);
  up.take();
  up.send(response(503));
  h.advance(milliseconds(25));
  up.take();
  up.send(ok_response());
  h.run();
  client.send("GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n");
  h.run();
  h.advance(milliseconds(100));  // the worker hands its lines over every 100 ms
  std::vector<std::string> lines = lines_of(log);
  // The log's writer thread writes them: on real time.
  for (int i = 0; i < 200 && lines.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    lines = lines_of(log);
  }
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("\"status\":200"), std::string::npos) << lines[0];
  EXPECT_NE(
      lines[0].find("\"upstream\":\"10.1.0.1:80\",\"cluster\":\"app\",\"request_id\":\"abc\",\"retries\":1}"),
      std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find("\"status\":404"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("\"upstream\":\"\",\"cluster\":\"\""), std::string::npos) << lines[1];
  EXPECT_EQ(lines[1].find("\"retries\""), std::string::npos) << lines[1];
  std::remove(log.c_str());
}

}  // namespace
}  // namespace trellis::proxy
