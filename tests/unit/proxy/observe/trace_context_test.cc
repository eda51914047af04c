#include "proxy/observe/trace_context.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "proxy/observe/tracer.h"

namespace trellis::proxy {
namespace {

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kSpan = "00f067aa0ba902b7";

TraceContext extract(const http::HeaderList& headers, bool& decided) {
  return extract_trace_context(headers, decided);
}

TEST(TraceContext, W3cTraceparentIsReadWithItsSampledFlag) {
  bool decided = false;
  TraceContext ctx = extract({{"traceparent", "00-" + kTrace + "-" + kSpan + "-01"}}, decided);
  ASSERT_TRUE(ctx.valid);
  EXPECT_TRUE(decided);
  EXPECT_TRUE(ctx.sampled);
  EXPECT_EQ(to_hex(ctx.trace_id), kTrace);
  EXPECT_EQ(to_hex(ctx.span_id), kSpan);
  EXPECT_EQ(ctx.formats, kTraceW3c);
  ctx = extract({{"Traceparent", "00-" + kTrace + "-" + kSpan + "-00"}}, decided);
  EXPECT_TRUE(ctx.valid && decided && !ctx.sampled);
  // A later version may carry more fields after the flags.
  ctx = extract({{"traceparent", "01-" + kTrace + "-" + kSpan + "-01-extra"}}, decided);
  EXPECT_TRUE(ctx.valid && ctx.sampled);
}

TEST(TraceContext, MalformedTraceparentsStartANewTrace) {
  for (const std::string& bad : std::vector<std::string>{
           "", "00-" + kTrace + "-" + kSpan, "00-" + kTrace + "-" + kSpan + "-1",
           "00-" + kTrace + "-" + kSpan + "-01-x", "ff-" + kTrace + "-" + kSpan + "-01",
           "00-00000000000000000000000000000000-" + kSpan + "-01", "00-" + kTrace + "-0000000000000000-01",
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + kSpan + "-01", "00-" + kTrace + "-" + kSpan + "-0g",
           "00_" + kTrace + "-" + kSpan + "-01"}) {
    bool decided = true;
    TraceContext ctx = extract({{"traceparent", bad}}, decided);
    EXPECT_FALSE(ctx.valid) << bad;
    EXPECT_FALSE(decided) << bad;
  }
}

TEST(TraceContext, B3SingleAndMultiHeaderForms) {
  bool decided = false;
  TraceContext ctx = extract({{"b3", kTrace + "-" + kSpan + "-1-" + "0000000000000001"}}, decided);
  ASSERT_TRUE(ctx.valid);
  EXPECT_TRUE(decided && ctx.sampled);
  EXPECT_EQ(ctx.formats, kTraceW3c | kTraceB3Single);
  // 64-bit trace ids are padded; no decision leaves it to the sampler.
  ctx = extract({{"b3", "a3ce929d0e0e4736-" + kSpan}}, decided);
  ASSERT_TRUE(ctx.valid);
  EXPECT_FALSE(decided);
  EXPECT_EQ(to_hex(ctx.trace_id), "0000000000000000a3ce929d0e0e4736");
  ctx = extract({{"X-B3-TraceId", kTrace}, {"X-B3-SpanId", kSpan}, {"X-B3-Sampled", "0"}}, decided);
  ASSERT_TRUE(ctx.valid);
  EXPECT_TRUE(decided && !ctx.sampled);
  EXPECT_EQ(ctx.formats, kTraceW3c | kTraceB3Multi);
  ctx = extract({{"x-b3-traceid", kTrace}, {"x-b3-spanid", kSpan}, {"x-b3-flags", "1"}}, decided);
  EXPECT_TRUE(ctx.valid && decided && ctx.sampled);
  ctx = extract({{"x-b3-traceid", kTrace}, {"x-b3-spanid", "xyz"}}, decided);
  EXPECT_FALSE(ctx.valid);
  EXPECT_EQ(ctx.formats, kTraceW3c | kTraceB3Multi);  // rewritten for the next hop all the same
}

TEST(TraceContext, W3cWinsOverB3) {
  bool decided = false;
  TraceContext ctx = extract(
      {{"b3", "a3ce929d0e0e4736-00f067aa0ba90200-0"}, {"traceparent", "00-" + kTrace + "-" + kSpan + "-01"}},
      decided);
  EXPECT_EQ(to_hex(ctx.trace_id), kTrace);
  EXPECT_TRUE(ctx.sampled);
  EXPECT_EQ(ctx.formats, kTraceW3c | kTraceB3Single);
}

TEST(TraceContext, FormatsAreWhatTheNextHopReads) {
  bool decided = false;
  TraceContext in = extract({{"traceparent", "00-" + kTrace + "-" + kSpan + "-01"}}, decided);
  std::array<char, 55> tp;
  EXPECT_EQ(format_traceparent(in.trace_id, in.span_id, true, tp), "00-" + kTrace + "-" + kSpan + "-01");
  std::array<char, 68> b3;
  EXPECT_EQ(format_b3(in.trace_id, in.span_id, false, nullptr, b3), kTrace + "-" + kSpan + "-0");
  EXPECT_EQ(format_b3(in.trace_id, in.span_id, true, &in.span_id, b3), kTrace + "-" + kSpan + "-1-" + kSpan);
}

TEST(Tracer, SpansAreEncodedAsOtlpJson) {
  bool decided = false;
  TraceContext ctx = extract({{"traceparent", "00-" + kTrace + "-" + kSpan + "-01"}}, decided);
  SpanRecord span;
  span.trace_id = ctx.trace_id;
  span.span_id = {1, 2, 3, 4, 5, 6, 7, 8};
  span.parent_id = ctx.span_id;
  span.has_parent = true;
  span.server = true;
  span.error = true;
  span.start_unix_ns = 1000;
  span.end_unix_ns = 2500;
  span.name = "GET";
  span.strings = {{"http.request.method", "GET"}};
  span.integers = {{"http.response.status_code", 503}};
  auto body = nlohmann::json::parse(Tracer::encode({span}, "details"));
  const auto& rs = body["resourceSpans"][0];
  EXPECT_EQ(rs["resource"]["attributes"][0]["key"], "service.name");
  EXPECT_EQ(rs["resource"]["attributes"][0]["value"]["stringValue"], "details");
  const auto& s = rs["scopeSpans"][0]["spans"][0];
  EXPECT_EQ(s["traceId"], kTrace);
  EXPECT_EQ(s["spanId"], "0102030405060708");
  EXPECT_EQ(s["parentSpanId"], kSpan);
  EXPECT_EQ(s["kind"], 2);
  EXPECT_EQ(s["startTimeUnixNano"], "1000");
  EXPECT_EQ(s["endTimeUnixNano"], "2500");
  EXPECT_EQ(s["status"]["code"], 2);
  EXPECT_EQ(s["attributes"][1]["key"], "http.response.status_code");
  EXPECT_EQ(s["attributes"][1]["value"]["intValue"], "503");
}

}  // namespace
}  // namespace trellis::proxy
