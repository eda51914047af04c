#include "proxy/observe/access_log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace trellis::proxy {
namespace {

AccessEntry request() {
  AccessEntry e;
  e.listener = "web";
  e.client = "127.0.0.1:5000";
  e.method = "GET";
  e.path = "/a b\"\n";
  e.host = "shop";
  e.protocol = "HTTP/1.1";
  e.status = 503;
  e.bytes_received = 80;
  e.bytes_sent = 120;
  e.duration = std::chrono::microseconds(1500);
  e.cluster = "payments";
  e.request_id = "r-1";
  e.response_flags = kFlagNoHealthyUpstream | kFlagRateLimited;
  return e;
}

TEST(LogTemplate, FieldsLiteralsAndDollars) {
  Result<LogFormat> f = parse_log_template("$method ${path}$$x ${status}");
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->pieces.size(), 3u);
  EXPECT_EQ(f->pieces[0].literal, "");
  EXPECT_EQ(f->pieces[0].field, LogField::kMethod);
  EXPECT_EQ(f->pieces[1].literal, " ");
  EXPECT_EQ(f->pieces[1].field, LogField::kPath);
  EXPECT_EQ(f->pieces[2].literal, "$x ");
  EXPECT_EQ(f->pieces[2].field, LogField::kStatus);
  EXPECT_EQ(format_log_template(*f), "${method} ${path}$$x ${status}");
  EXPECT_EQ(parse_log_template(format_log_template(*f))->pieces, f->pieces);

  EXPECT_EQ(parse_log_template("$nope").error().message.substr(0, 22), "unknown field \"nope\" (");
  EXPECT_EQ(parse_log_template("cost: $").error().message,
            "a \"$\" names no field (write \"$$\" for a \"$\")");
  EXPECT_EQ(parse_log_template("${path").error().message, "unclosed \"${\" at offset 0");
  EXPECT_FALSE(parse_log_template("$path\n$status").ok());
}

TEST(AccessLine, TextEscapesWhatARequestCarriesAndMarksWhatIsMissing) {
  std::string line;
  format_access_line(
      *parse_log_template("$method $path $status $grpc_status $response_flags $upstream $duration_ms"),
      request(), line);
  EXPECT_EQ(line, "GET /a b\\x22\\x0a 503 - UH,RL - 1.500");
}

TEST(AccessLine, DefaultJsonLeavesOutWhatHasNoValue) {
  std::string line;
  format_access_line(LogFormat{}, request(), line);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["path"], "/a b\"\n");
  EXPECT_EQ(j["status"], 503);
  EXPECT_EQ(j["response_flags"], "UH,RL");
  EXPECT_EQ(j["upstream"], "");  // always said
  EXPECT_FALSE(j.contains("retries"));
  EXPECT_FALSE(j.contains("grpc_status"));
  EXPECT_FALSE(j.contains("trace_id"));
  AccessEntry tcp;
  tcp.http = false;
  tcp.listener = "db";
  format_access_line(LogFormat{}, tcp, line);
  j = nlohmann::json::parse(line);
  EXPECT_EQ(j["protocol"], "tcp");
  EXPECT_FALSE(j.contains("status"));
  EXPECT_FALSE(j.contains("method"));
}

TEST(AccessLine, ChosenJsonFieldsAreExactlyThoseInOrder) {
  LogFormat format;
  format.fields = {LogField::kStatus, LogField::kGrpcStatus, LogField::kRetries, LogField::kTraceId};
  std::string line;
  format_access_line(format, request(), line);
  EXPECT_EQ(line, "{\"status\":503,\"grpc_status\":null,\"retries\":0,\"trace_id\":\"\"}");
}

}  // namespace
}  // namespace trellis::proxy
