#include "control/metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace trellis::control {
namespace {

TEST(ScrapeTarget, AProxyIsScrapedAtItsOwnAddressOnly) {
  EXPECT_EQ(scrape_target("10.0.0.5:9901", "ipv4:10.0.0.5:40000"), "10.0.0.5:9901");
  EXPECT_EQ(scrape_target("127.0.0.1:9901", "ipv4:127.0.0.1:40000"), "127.0.0.1:9901");
  EXPECT_EQ(scrape_target("[::1]:9901", "ipv6:[::1]:40000"), "[::1]:9901");
  // An unspecified address: where the proxy connected from.
  EXPECT_EQ(scrape_target("0.0.0.0:9901", "ipv4:10.0.0.5:40000"), "10.0.0.5:9901");
  EXPECT_EQ(scrape_target("[::]:9901", "ipv6:[fd00::5]:40000"), "[fd00::5]:9901");
  // Another host's address, or this host's loopback from a remote proxy:
  // never listed.
  EXPECT_EQ(scrape_target("10.0.0.9:9901", "ipv4:10.0.0.5:40000"), std::nullopt);
  EXPECT_EQ(scrape_target("127.0.0.1:9901", "ipv4:10.0.0.5:40000"), std::nullopt);
  EXPECT_EQ(scrape_target("", "ipv4:10.0.0.5:40000"), std::nullopt);
  EXPECT_EQ(scrape_target("not an address", "ipv4:10.0.0.5:40000"), std::nullopt);
  EXPECT_EQ(scrape_target("10.0.0.5:9901", "unix:/tmp/x"), std::nullopt);
}

TEST(ControlMetrics, CountsAndGaugesAreRendered) {
  ControlMetrics m;
  m.config_sent();
  m.config_sent();
  m.config_answered(true, std::chrono::milliseconds(3));
  m.config_answered(false, std::chrono::milliseconds(40));
  m.certificate_issued();
  m.store_call(StoreCall::kPut, std::chrono::microseconds(300));
  ControlMetrics::Gauges g;
  g.proxies_connected = 2;
  g.proxies_in_sync = 1;
  g.instances = 3;
  g.resources = {{"HTTPRoute", 4}};
  std::string out = m.render(g);
  for (const char* line :
       {"trellis_control_proxies_connected 2\n", "trellis_control_proxies_in_sync 1\n",
        "trellis_control_registry_instances 3\n", "trellis_control_resources{kind=\"HTTPRoute\"} 4\n",
        "trellis_control_config_pushes_total 2\n", "trellis_control_config_answers_total{answer=\"ack\"} 1\n",
        "trellis_control_config_answers_total{answer=\"nack\"} 1\n",
        "trellis_control_push_duration_seconds_bucket{le=\"0.005\"} 1\n",
        "trellis_control_push_duration_seconds_bucket{le=\"+Inf\"} 2\n",
        "trellis_control_push_duration_seconds_count 2\n", "trellis_control_certificates_issued_total 1\n",
        "trellis_control_store_call_duration_seconds_bucket{call=\"put\",le=\"0.0005\"} 1\n",
        "trellis_control_store_call_duration_seconds_count{call=\"get\"} 0\n"})
    EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
}

}  // namespace
}  // namespace trellis::control
