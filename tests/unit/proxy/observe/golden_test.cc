#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "proxy/observe/golden.h"

namespace trellis::proxy {
namespace {

GoldenLabels outbound(std::string_view destination, std::string_view route = "") {
  return {Direction::kOutbound, true, "productpage", "default", destination, "default", route};
}

size_t count(const std::string& text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(Golden, TheCallersServiceAndNamespaceComeFromItsIdentity) {
  EXPECT_EQ(service_of_identity("spiffe://cluster.local/ns/shop/sa/cart"),
            std::pair(std::string_view("cart"), std::string_view("shop")));
  for (std::string_view bad : {"", "cart", "spiffe://td/ns//sa/x", "spiffe://td/ns/a/sa/", "spiffe://td/sa/x",
                               "https://td/ns/a/sa/b", "spiffe://td/ns/a/sa/b/c"})
    EXPECT_EQ(service_of_identity(bad), std::pair(std::string_view(), std::string_view())) << bad;
}

TEST(Golden, OneEntryPerLabelSetWhateverViewsNameIt) {
  GoldenTable table;
  std::string a = "details", b = "details";
  GoldenEntry& first = table.entry(outbound(a));
  EXPECT_EQ(&table.entry(outbound(b)), &first);
  EXPECT_NE(&table.entry(outbound("reviews")), &first);
  EXPECT_NE(&table.entry(outbound("details", "default/r")), &first);
  a = "changed";  // the entry keeps its own copy of the labels
  EXPECT_EQ(first.labels().destination_service, "details");
}

TEST(Golden, StatusesAndClassificationsAreCountedAndRendered) {
  std::vector<std::unique_ptr<GoldenTable>> tables;
  for (int w = 0; w < 2; ++w) tables.push_back(std::make_unique<GoldenTable>());
  using std::chrono::milliseconds;
  for (int w = 0; w < 2; ++w) {
    GoldenEntry& e = tables[w]->entry(outbound("details"));
    e.record_request(200, -1, milliseconds(3), 100, 200);
    e.record_request(503, -1, milliseconds(40), 100, 20);
    e.record_request(200, 14, milliseconds(2), 50, 10);  // a gRPC error on HTTP 200
  }
  std::string out;
  render_golden(tables, out);
  const std::string labels =
      "direction=\"outbound\",source_service=\"productpage\",source_namespace=\"default\","
      "destination_service=\"details\",destination_namespace=\"default\",route=\"\",tls=\"true\"";
  EXPECT_NE(out.find("trellis_requests_total{" + labels +
                     ",status_code=\"200\",grpc_status=\"\",classification=\"success\"} 2\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("status_code=\"503\",grpc_status=\"\",classification=\"failure\"} 2\n"),
            std::string::npos);
  EXPECT_NE(out.find("status_code=\"200\",grpc_status=\"14\",classification=\"failure\"} 2\n"),
            std::string::npos);
  EXPECT_NE(out.find("trellis_request_duration_seconds_count{" + labels + ",classification=\"failure\"} 4\n"),
            std::string::npos);
  EXPECT_NE(out.find("trellis_request_duration_seconds_bucket{" + labels +
                     ",classification=\"success\",le=\"0.0025\"} 0\n"),
            std::string::npos);
  EXPECT_NE(out.find("trellis_request_duration_seconds_bucket{" + labels +
                     ",classification=\"success\",le=\"0.005\"} 2\n"),
            std::string::npos);
  EXPECT_NE(out.find("trellis_request_bytes_total{" + labels + "} 500\n"), std::string::npos);
  EXPECT_NE(out.find("trellis_response_bytes_total{" + labels + "} 460\n"), std::string::npos);
  EXPECT_EQ(count(out, "trellis_tcp_connections_opened_total{"), 0u);  // no TCP series for HTTP traffic
}

TEST(Golden, StatusesPastTheSlotsAreCountedAsOther) {
  std::vector<std::unique_ptr<GoldenTable>> tables;
  tables.push_back(std::make_unique<GoldenTable>());
  GoldenEntry& e = tables[0]->entry(outbound("details"));
  for (int status = 200; status < 200 + static_cast<int>(GoldenEntry::kSlots) + 4; ++status)
    e.record_request(status, -1, std::chrono::milliseconds(1), 0, 0);
  std::string out;
  render_golden(tables, out);
  EXPECT_EQ(count(out, "trellis_requests_total{"), GoldenEntry::kSlots + 1);
  EXPECT_NE(out.find("status_code=\"other\",grpc_status=\"\",classification=\"\"} 4\n"), std::string::npos);
}

TEST(Golden, LabelSetsPastTheCapShareOneOverflowEntry) {
  GoldenTable table;
  std::vector<std::string> names;
  for (size_t i = 0; i < GoldenTable::kMaxEntries + 5; ++i) names.push_back("svc-" + std::to_string(i));
  for (size_t i = 0; i < GoldenTable::kMaxEntries; ++i) table.entry(outbound(names[i]));
  GoldenEntry& over = table.entry(outbound(names[GoldenTable::kMaxEntries]));
  EXPECT_EQ(over.labels().destination_service, "overflow");
  EXPECT_EQ(&table.entry(outbound(names[GoldenTable::kMaxEntries + 4])), &over);
  EXPECT_NE(&table.entry(outbound(names[3])), &over);  // known ones keep theirs
  size_t entries = 0;
  table.for_each([&](const GoldenEntry&) { ++entries; });
  EXPECT_EQ(entries, GoldenTable::kMaxEntries + 1);
}

TEST(Golden, TcpConnectionsAreCounted) {
  std::vector<std::unique_ptr<GoldenTable>> tables;
  tables.push_back(std::make_unique<GoldenTable>());
  GoldenEntry& e = tables[0]->entry({Direction::kInbound, false, "", "", "db", "data", ""});
  e.record_tcp_open();
  e.record_tcp_open();
  e.record_tcp_close(10, 20);
  std::string out;
  render_golden(tables, out);
  const std::string labels =
      "direction=\"inbound\",source_service=\"unknown\",source_namespace=\"unknown\",destination_service="
      "\"db\","
      "destination_namespace=\"data\",route=\"\",tls=\"false\"";
  EXPECT_NE(out.find("trellis_tcp_connections_opened_total{" + labels + "} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("trellis_tcp_connections_closed_total{" + labels + "} 1\n"), std::string::npos);
  EXPECT_NE(out.find("trellis_tcp_received_bytes_total{" + labels + "} 10\n"), std::string::npos);
  EXPECT_NE(out.find("trellis_tcp_sent_bytes_total{" + labels + "} 20\n"), std::string::npos);
  EXPECT_EQ(count(out, "trellis_requests_total{"), 0u);
}

}  // namespace
}  // namespace trellis::proxy
