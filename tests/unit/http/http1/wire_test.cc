#include "http/http1/wire.h"

#include <gtest/gtest.h>

#include <string>

namespace trellis::http::http1 {
namespace {

http::RequestHeaders neutral_request(std::string_view raw, RequestHead& head) {
  ParseResult pr = parse_request(raw, head);
  EXPECT_EQ(pr.status, ParseStatus::kDone) << pr.error;
  http::RequestHeaders req;
  to_neutral(head, req);
  return req;
}

TEST(Wire, RequestDropsHopByHopAndFramingFields) {
  RequestHead head;
  std::string raw =
      "POST /a?b=1 HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
      "X-Secret: s\r\nTE: trailers\r\nProxy-Connection: x\r\nContent-Length: 3\r\n"
      "Expect: 100-continue\r\nX-Keep: k\r\n\r\nabc";
  http::RequestHeaders req = neutral_request(raw, head);
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.authority, "svc");
  EXPECT_EQ(req.path, "/a?b=1");
  EXPECT_TRUE(req.has_body);
  EXPECT_EQ(req.content_length, 3);
  EXPECT_TRUE(req.expect_continue);
  ASSERT_EQ(req.headers.size(), 1u);
  EXPECT_EQ(req.headers[0].name, "X-Keep");
}

TEST(Wire, AbsoluteFormBecomesOriginForm) {
  RequestHead head;
  http::RequestHeaders req =
      neutral_request("GET http://other.example:8080/p/q?x HTTP/1.1\r\nHost: ignored\r\n\r\n", head);
  EXPECT_EQ(req.authority, "other.example:8080");
  EXPECT_EQ(req.path, "/p/q?x");
}

TEST(Wire, SerializedRequestHasCanonicalFraming) {
  RequestHead head;
  http::RequestHeaders req =
      neutral_request("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", head);
  net::Buffer out;
  serialize_request(req, "", out);
  EXPECT_EQ(out.view(), "POST /up HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n");
}

TEST(Wire, SerializedRequestReparsesToTheSameRequest) {
  RequestHead head;
  http::RequestHeaders req =
      neutral_request("PUT /x HTTP/1.1\r\nHost: h:81\r\nContent-Length: 10\r\nA:  b \r\n\r\n", head);
  net::Buffer out;
  serialize_request(req, "", out);
  RequestHead again;
  ParseResult pr = parse_request(out.view(), again);
  ASSERT_EQ(pr.status, ParseStatus::kDone) << pr.error;
  EXPECT_EQ(again.method, "PUT");
  EXPECT_EQ(again.path, "/x");
  EXPECT_EQ(again.host, "h:81");
  EXPECT_EQ(again.info.body, BodyKind::kContentLength);
  EXPECT_EQ(again.info.content_length, 10u);
  EXPECT_NE(out.view().find("\r\nA: b\r\n"), std::string_view::npos);
}

TEST(Wire, UpgradeIsCarriedExplicitly) {
  RequestHead head;
  http::RequestHeaders req = neutral_request(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", head);
  EXPECT_EQ(req.upgrade, "websocket");
  net::Buffer out;
  serialize_request(req, "", out);
  EXPECT_NE(out.view().find("upgrade: websocket\r\nconnection: upgrade\r\n"), std::string_view::npos);
}

http::ResponseHeaders neutral_response(std::string_view raw, bool head_request, ResponseHead& head) {
  ParseResult pr = parse_response(raw, head_request, head);
  EXPECT_EQ(pr.status, ParseStatus::kDone) << pr.error;
  http::ResponseHeaders resp;
  to_neutral(head, head_request, resp);
  return resp;
}

TEST(Wire, ResponseFramingForClients) {
  ResponseHead head;
  auto until_close = neutral_response("HTTP/1.1 200 OK\r\n\r\n", false, head);
  EXPECT_TRUE(until_close.has_body);
  EXPECT_EQ(response_framing(until_close, 1), ResponseFraming::kChunked)
      << "an until-close body is chunked for HTTP/1.1 clients";
  EXPECT_EQ(response_framing(until_close, 0), ResponseFraming::kClose);

  auto sized = neutral_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, head);
  EXPECT_EQ(response_framing(sized, 1), ResponseFraming::kContentLength);

  auto empty = neutral_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, head);
  net::Buffer out;
  serialize_response(empty, response_framing(empty, 1), false, 1, out);
  EXPECT_NE(out.view().find("content-length: 0\r\n"), std::string_view::npos)
      << "an empty body still says so: " << out.view();
}

TEST(Wire, HeadResponseKeepsDeclaredLength) {
  ResponseHead head;
  auto resp = neutral_response("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true, head);
  EXPECT_FALSE(resp.has_body);
  net::Buffer out;
  serialize_response(resp, response_framing(resp, 1), false, 1, out);
  EXPECT_NE(out.view().find("content-length: 1234\r\n"), std::string_view::npos) << out.view();
}

TEST(Wire, ConnectionHeaderReflectsTheDecision) {
  ResponseHead head;
  auto resp = neutral_response("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", false, head);
  net::Buffer keep, close, old;
  serialize_response(resp, response_framing(resp, 1), false, 1, keep);
  serialize_response(resp, response_framing(resp, 1), true, 1, close);
  serialize_response(resp, response_framing(resp, 0), false, 0, old);
  EXPECT_EQ(keep.view(), "HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_EQ(close.view(), "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
  EXPECT_EQ(old.view(), "HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n");
}

TEST(Wire, TrailersNeverCarryFraming) {
  HeaderList trailers = {{"X-Checksum", "abc"}, {"Content-Length", "5"}, {"Transfer-Encoding", "x"}};
  net::Buffer out;
  serialize_last_chunk(trailers, out);
  EXPECT_EQ(out.view(), "0\r\nX-Checksum: abc\r\n\r\n");
}

}  // namespace
}  // namespace trellis::http::http1
