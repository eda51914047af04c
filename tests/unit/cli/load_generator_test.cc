#include "cli/load_generator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace trellis::cli {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

const MonoTime kT0 = MonoTime(seconds(1000));

// ------------------------------------------------------------------ pacing

TEST(Pacer, ClosedLoopRequestsAreMeantForWhenTheyAreSent) {
  Pacer p;
  EXPECT_FALSE(p.open_loop());
  MonoTime now = kT0 + milliseconds(7);
  EXPECT_EQ(p.take(now), now);
}

TEST(Pacer, IntendedTimesFollowTheRateAndStaggerConnections) {
  // 1000 req/s over 4 connections: each connection every 4 ms, connection k
  // offset by k ms, so together they fill every millisecond once.
  std::vector<MonoTime> all;
  for (uint32_t k = 0; k < 4; ++k) {
    Pacer p(1000, 4, k);
    p.start(kT0);
    EXPECT_EQ(p.intended(0), kT0 + milliseconds(k));
    EXPECT_EQ(p.intended(1) - p.intended(0), milliseconds(4));
    for (uint64_t i = 0; i < 250; ++i) all.push_back(p.intended(i));
  }
  std::sort(all.begin(), all.end());
  for (size_t n = 0; n < all.size(); ++n) ASSERT_EQ(all[n], kT0 + milliseconds(n)) << n;
}

TEST(Pacer, TakeWalksTheScheduleEvenWhenLate) {
  Pacer p(100, 1, 0);
  p.start(kT0);
  MonoTime late = kT0 + seconds(1);
  // A second late, the connection still owes its requests in order, each
  // with its own intended time.
  EXPECT_EQ(p.take(late), kT0);
  EXPECT_EQ(p.take(late), kT0 + milliseconds(10));
  EXPECT_EQ(p.take(late), kT0 + milliseconds(20));
  EXPECT_EQ(p.next_index(), 3u);
}

TEST(Pacer, DueBeforeCountsRequestsOfTheWindow) {
  // Total over the connections: exactly rate * duration, also for rates
  // whose period is not a whole number of nanoseconds.
  for (double rate : {1000.0, 3.0, 7.0, 333.0, 12345.0}) {
    for (uint32_t conns : {1u, 3u, 10u}) {
      uint64_t total = 0;
      for (uint32_t k = 0; k < conns; ++k) {
        Pacer p(rate, conns, k);
        p.start(kT0);
        total += p.due_before(kT0 + seconds(10));
        EXPECT_EQ(p.due_before(kT0), 0u);
      }
      EXPECT_EQ(total, static_cast<uint64_t>(rate * 10)) << rate << " req/s, " << conns << " connections";
    }
  }
}

TEST(Pacer, DueBeforeIsConsistentWithIntended) {
  Pacer p(777, 5, 3);
  p.start(kT0);
  for (uint64_t i = 0; i < 2000; ++i) {
    MonoTime at = p.intended(i);
    ASSERT_EQ(p.due_before(at), i);
    ASSERT_EQ(p.due_before(at + std::chrono::nanoseconds(1)), i + 1);
  }
}

TEST(Pacer, ScheduleDoesNotDriftOverLongRuns) {
  Pacer p(3, 1, 0);  // a period of 333333333.33 ns
  p.start(kT0);
  EXPECT_EQ(p.intended(3'000'000), kT0 + seconds(1'000'000));
}

// ------------------------------------------------------ coordinated omission

// One connection at 100 req/s whose first response takes 500 ms and every
// other one 1 ms. Requests queue up behind the slow one; each is sent when
// the connection frees up, but charged from its intended time.
TEST(ChargedLatency, StallIsChargedToEveryRequestItHeldBack) {
  Pacer p(100, 1, 0);
  p.start(kT0);
  std::vector<Duration> charged;
  std::vector<Duration> from_send;
  MonoTime free_at = kT0;
  for (int i = 0; i < 100; ++i) {
    MonoTime send = std::max(free_at, p.next_intended());
    MonoTime intended = p.take(send);
    MonoTime done = send + (i == 0 ? milliseconds(500) : milliseconds(1));
    charged.push_back(charged_latency(intended, done));
    from_send.push_back(done - send);
    free_at = done;
  }
  EXPECT_EQ(charged[0], milliseconds(500));
  // Request k (meant for 10k ms) went out at 500 + (k-1) ms: charged 500 - 9k ms.
  EXPECT_EQ(charged[1], milliseconds(491));
  EXPECT_EQ(charged[50], milliseconds(50));
  EXPECT_EQ(charged[60], milliseconds(1));  // caught up
  auto slow = [](const std::vector<Duration>& v) {
    return std::count_if(v.begin(), v.end(), [](Duration d) { return d > milliseconds(100); });
  };
  EXPECT_EQ(slow(charged), 45);   // what the server's stall really cost
  EXPECT_EQ(slow(from_send), 1);  // what measuring from the send would claim
}

TEST(ChargedLatency, MicrosecondsRoundToNearest) {
  EXPECT_EQ(to_micros(std::chrono::nanoseconds(1499)), 1u);
  EXPECT_EQ(to_micros(std::chrono::nanoseconds(1500)), 2u);
  EXPECT_EQ(to_micros(-milliseconds(1)), 0u);
  EXPECT_EQ(to_micros(seconds(2)), 2'000'000u);
}

// ------------------------------------------------------------------ target

TEST(ParseTarget, AcceptsNumericHostsAndLocalhost) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("http://localhost:8080/hello?x=1", t, error)) << error;
  EXPECT_EQ(t.address.text, "127.0.0.1:8080");
  EXPECT_EQ(t.authority, "localhost:8080");
  EXPECT_EQ(t.path, "/hello?x=1");

  ASSERT_TRUE(parse_target("http://10.1.2.3", t, error)) << error;
  EXPECT_EQ(t.address.text, "10.1.2.3:80");
  EXPECT_EQ(t.path, "/");

  ASSERT_TRUE(parse_target("HTTP://[::1]:9000/a#frag", t, error)) << error;
  EXPECT_EQ(t.address.text, "[::1]:9000");
  EXPECT_EQ(t.authority, "[::1]:9000");
  EXPECT_EQ(t.path, "/a");

  ASSERT_TRUE(parse_target("http://127.0.0.1:81?q", t, error)) << error;
  EXPECT_EQ(t.path, "/?q");
  EXPECT_FALSE(t.tls);
}

TEST(ParseTarget, HttpsIsTlsOnPort443ByDefaultCheckedAgainstTheHostAsWritten) {
  Target t;
  std::string error;
  ASSERT_TRUE(parse_target("https://localhost/x", t, error)) << error;
  EXPECT_TRUE(t.tls);
  EXPECT_EQ(t.address.text, "127.0.0.1:443");
  EXPECT_EQ(t.host, "localhost");
  EXPECT_EQ(t.path, "/x");
  ASSERT_TRUE(parse_target("HTTPS://[::1]:8443", t, error)) << error;
  EXPECT_EQ(t.address.text, "[::1]:8443");
  EXPECT_EQ(t.host, "::1");
}

TEST(ParseTarget, RefusesWhatItCannotReach) {
  Target t;
  std::string error;
  EXPECT_FALSE(parse_target("ftp://127.0.0.1/", t, error));
  EXPECT_NE(error.find("https://"), std::string::npos) << error;
  EXPECT_FALSE(parse_target("h2c://127.0.0.1:80/", t, error));
  EXPECT_NE(error.find("HTTP/2"), std::string::npos) << error;
  EXPECT_FALSE(parse_target("127.0.0.1:80/", t, error));
  EXPECT_FALSE(parse_target("http://example.com/", t, error));
  EXPECT_NE(error.find("not resolved"), std::string::npos) << error;
  EXPECT_FALSE(parse_target("http://127.0.0.1:70000/", t, error));
  EXPECT_FALSE(parse_target("http:///path", t, error));
  EXPECT_FALSE(parse_target("http://user@127.0.0.1/", t, error));
  EXPECT_FALSE(parse_target("http://127.0.0.1/a b", t, error));
}

// ----------------------------------------------------------------- request

LoadOptions options_for(const std::string& url) {
  LoadOptions o;
  std::string error;
  EXPECT_TRUE(parse_target(url, o.target, error)) << error;
  return o;
}

TEST(BuildRequest, GetHasHostAndNoFraming) {
  LoadOptions o = options_for("http://127.0.0.1:8080/hello");
  EXPECT_EQ(build_http1_request(o),
            "GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: trellis-load\r\n\r\n");
}

TEST(BuildRequest, BodyAndHeaders) {
  LoadOptions o = options_for("http://127.0.0.1:8080/up");
  o.method = "POST";
  o.body_size = 5;
  o.headers = {{"host", "example.test"}, {"X-Trace", "1"}};
  EXPECT_EQ(build_http1_request(o),
            "POST /up HTTP/1.1\r\nhost: example.test\r\nX-Trace: 1\r\nUser-Agent: trellis-load\r\n"
            "Content-Length: 5\r\n\r\nxxxxx");
  o.body_size = 0;
  EXPECT_NE(build_http1_request(o).find("Content-Length: 0\r\n"), std::string::npos);
}

TEST(BuildRequest, Http2FieldsAreLowerCaseWithoutHost) {
  LoadOptions o = options_for("http://127.0.0.1:8080/up");
  using Fields = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(build_http2_fields(o), (Fields{{"user-agent", "trellis-load"}}));
  o.method = "PUT";
  o.body_size = 5;
  o.headers = {{"Host", "example.test"}, {"X-Trace", "1"}, {"User-Agent", "me"}};
  EXPECT_EQ(build_http2_fields(o), (Fields{{"x-trace", "1"}, {"user-agent", "me"}, {"content-length", "5"}}));
}

// ------------------------------------------------------------------- stats

TEST(LoadStats, MergeSumsEverything) {
  LoadStats a, b;
  a.sent = 3;
  a.completed = 2;
  a.error(ErrorKind::kTimeout) = 1;
  a.status[200] = 2;
  a.latency_us.record(100);
  b.sent = 5;
  b.completed = 5;
  b.missed = 4;
  b.error(ErrorKind::kConnect) = 2;
  b.status[200] = 4;
  b.status[503] = 1;
  b.latency_us.record(300);
  a.merge(b);
  EXPECT_EQ(a.sent, 8u);
  EXPECT_EQ(a.completed, 7u);
  EXPECT_EQ(a.missed, 4u);
  EXPECT_EQ(a.error_count(), 3u);
  EXPECT_EQ(a.status[200], 6u);
  EXPECT_EQ(a.status[503], 1u);
  EXPECT_EQ(a.latency_us.count(), 2u);
  EXPECT_EQ(a.latency_us.max(), 300u);
}

}  // namespace
}  // namespace trellis::cli
