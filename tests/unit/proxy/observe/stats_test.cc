#include "proxy/observe/stats.h"

#include <gtest/gtest.h>

namespace trellis::proxy {
namespace {

TEST(Stats, PerWorkerCopiesAreSummed) {
  StatsRegistry registry(2);
  const auto& web = registry.listener("web");
  ASSERT_EQ(web.size(), 2u);
  web[0]->count_status(200);
  web[1]->count_status(204);
  web[1]->count_status(503);
  web[0]->request_duration.record(std::chrono::microseconds(300));
  web[1]->request_duration.record(std::chrono::milliseconds(2));
  std::string text = registry.render_prometheus();
  EXPECT_NE(text.find("trellis_http_requests_total{listener=\"web\",code_class=\"2xx\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("trellis_http_requests_total{listener=\"web\",code_class=\"5xx\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("trellis_http_request_duration_seconds_bucket{listener=\"web\",le=\"0.0005\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("trellis_http_request_duration_seconds_bucket{listener=\"web\",le=\"+Inf\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("trellis_http_request_duration_seconds_count{listener=\"web\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("trellis_http_request_duration_seconds_sum{listener=\"web\"} 0.0023\n"),
            std::string::npos)
      << text;
}

TEST(Stats, BlocksSurviveAsLongAsTheRegistry) {
  StatsRegistry registry(1);
  ClusterStats* first = registry.cluster("c")[0];
  first->connects.inc(3);
  EXPECT_EQ(registry.cluster("c")[0], first) << "same name, same block: counters survive reloads";
  EXPECT_NE(registry.render_prometheus().find("trellis_upstream_connects_total{cluster=\"c\"} 3\n"),
            std::string::npos);
}

}  // namespace
}  // namespace trellis::proxy
