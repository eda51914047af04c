// The control-plane stream client on simulated time, over in-memory
// connections: how it retries an unreachable or silent control plane, and
// that the proxy keeps its configuration meanwhile.
#include "proxy/discovery/discovery_client.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "support/fake_network.h"

namespace trellis::proxy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kControl = "10.9.0.1:15010";

std::shared_ptr<const ProxyConfig> bootstrap() {
  ConfigLoad load = load_config_text(
      "control_plane:\n"
      "  address: 10.9.0.1:15010\n"
      "  node: { id: web-1, service: web }\n"
      "  trust_bundle: /nonexistent/trust-bundle.pem\n"
      "  join_token_file: /nonexistent/join-token\n",
      "test.yaml");
  EXPECT_TRUE(load.ok()) << (load.errors.empty() ? "" : load.errors[0].to_string());
  return std::make_shared<const ProxyConfig>(std::move(load.config));
}

class DiscoveryClientTest : public ::testing::Test {
 protected:
  DiscoveryClientTest()
      : network_(std::make_shared<testing::FakeNetwork>()),
        certificates_(make_certificates(random_)),
        client_(
            loop_,
            [this](std::shared_ptr<const ProxyConfig>, std::string&) {
              ++applied_;
              return true;
            },
            certificates_, [] {}, network_) {}

  static CertificateManager make_certificates(Random& random) {
    auto made =
        CertificateManager::create(*SpiffeId::parse("spiffe://cluster.local/ns/default/sa/web"), random);
    EXPECT_TRUE(made.ok());
    return std::move(*made);
  }

  // Starts the client, then steps through `d`: the times at which it tried
  // to connect to the control plane.
  std::vector<Duration> start_and_watch(Duration d) {
    seen_ = 0;
    client_.start(bootstrap());
    return attempts_during(d);
  }
  std::vector<Duration> attempts_during(Duration d) {
    std::vector<Duration> at;
    int& seen = seen_;
    for (Duration t{}; t < d; t += milliseconds(10)) {
      loop_.advance(milliseconds(10));
      while (network_->has_pending(kControl)) pending_.push_back(network_->next(kControl));
      int now = network_->connects(kControl);
      for (; seen < now; ++seen) at.push_back(clock_.now() - start_);
    }
    return at;
  }

  SimulatedClock clock_;
  net::EventLoop loop_{clock_};
  MonoTime start_ = clock_.now();
  std::shared_ptr<testing::FakeNetwork> network_;
  FastRandom random_{42};
  CertificateManager certificates_;
  std::vector<testing::FakePeer> pending_;
  int applied_ = 0;
  int seen_ = 0;
  DiscoveryClient client_;
};

// Exponential backoff from 200 ms to 15 s, with jitter in the upper half of
// each step: a fleet that lost its control plane together does not come back
// together, and an outage costs a proxy a connect every 7.5 to 15 s.
TEST_F(DiscoveryClientTest, AnUnreachableControlPlaneIsRetriedWithExponentialBackoff) {
  network_->refuse(kControl);
  std::vector<Duration> at = start_and_watch(seconds(120));
  ASSERT_GE(at.size(), 10u);
  for (size_t i = 1; i < at.size(); ++i) {
    Duration gap = at[i] - at[i - 1];
    Duration step = std::min<Duration>(milliseconds(200) * (1 << std::min<size_t>(i - 1, 20)), seconds(15));
    EXPECT_GE(gap, step / 2 - milliseconds(10)) << "attempt " << i;
    EXPECT_LE(gap, step + milliseconds(10)) << "attempt " << i;
  }
  EXPECT_FALSE(client_.status().connected);
  EXPECT_EQ(applied_, 0);
}

// A control plane that accepts the connection and never speaks HTTP/2 is
// given up on after the connect timeout, then retried.
TEST_F(DiscoveryClientTest, ASilentControlPlaneTimesOutAndIsRetried) {
  network_->auto_accept(kControl);
  std::vector<Duration> at = start_and_watch(seconds(6));
  ASSERT_EQ(at.size(), 2u);
  EXPECT_GE(at[1] - at[0], seconds(5));  // the stream's connect timeout
  ASSERT_FALSE(pending_.empty());
  EXPECT_EQ(pending_.front().pending().substr(0, 24), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  EXPECT_TRUE(pending_.front().closed_by_proxy());
  EXPECT_FALSE(client_.status().connected);
}

TEST_F(DiscoveryClientTest, StopEndsTheRetries) {
  network_->refuse(kControl);
  start_and_watch(seconds(2));
  client_.stop();
  EXPECT_TRUE(attempts_during(seconds(60)).empty());
}

}  // namespace
}  // namespace trellis::proxy
