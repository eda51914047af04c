#include "http/http1/parser.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace trellis::http::http1 {
namespace {

using namespace std::string_literals;

ParseResult request(std::string_view in, RequestHead& head) { return parse_request(in, head); }

ParseResult request(std::string_view in) {
  RequestHead head;
  return parse_request(in, head);
}

ParseResult response(std::string_view in, bool head_request = false) {
  ResponseHead head;
  return parse_response(in, head_request, head);
}

// Keeps the input alive as long as the views parsed from it.
struct ParsedRequest {
  explicit ParsedRequest(std::string text) : in(std::move(text)), result(parse_request(in, head)) {}
  std::string in;
  RequestHead head;
  ParseResult result;
};

// A minimal valid HTTP/1.1 request with `fields` (each ending in CRLF) after Host.
std::string get_with(std::string_view fields) {
  return "GET / HTTP/1.1\r\nHost: a.example\r\n" + std::string(fields) + "\r\n";
}

void expect_request_error(std::string_view in, int status) {
  SCOPED_TRACE(testing::Message() << "input: " << testing::PrintToString(std::string(in)));
  const ParseResult r = request(in);
  EXPECT_EQ(r.status, ParseStatus::kError);
  EXPECT_EQ(r.error_status, status);
  EXPECT_STRNE(r.error, "");
}

void expect_response_error(std::string_view in) {
  SCOPED_TRACE(testing::Message() << "input: " << testing::PrintToString(std::string(in)));
  const ParseResult r = response(in);
  EXPECT_EQ(r.status, ParseStatus::kError);
  EXPECT_EQ(r.error_status, 502);
}

// ---- requests: well-formed ----------------------------------------------------

TEST(Http1Request, GetDerivesEveryField) {
  const std::string in =
      "GET /index.html?x=1&y=2 HTTP/1.1\r\nHost: www.example.com:8080\r\n"
      "User-Agent: test/1.0\r\nAccept:*/*\r\nX-Empty:\r\n\r\n";
  RequestHead h;
  const ParseResult r = request(in, h);
  ASSERT_EQ(r.status, ParseStatus::kDone) << r.error;
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/index.html?x=1&y=2");
  EXPECT_EQ(h.path, "/index.html");
  EXPECT_EQ(h.host, "www.example.com:8080");
  EXPECT_EQ(h.version_minor, 1);
  ASSERT_EQ(h.headers.size(), 4u);
  EXPECT_EQ(h.headers[1].name, "User-Agent");
  EXPECT_EQ(h.headers[1].value, "test/1.0");
  EXPECT_EQ(h.headers[2].value, "*/*");
  EXPECT_EQ(h.headers[3].value, "");
  EXPECT_EQ(h.info.body, BodyKind::kNone);
  EXPECT_TRUE(h.info.keep_alive);
  EXPECT_FALSE(h.info.connection_upgrade);
  EXPECT_FALSE(h.info.expect_continue);
  EXPECT_FALSE(h.info.te_trailers);
  // Zero-copy: views point into the input.
  EXPECT_EQ(h.method.data(), in.data());
}

TEST(Http1Request, PostFraming) {
  const std::string in = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
  RequestHead h;
  const ParseResult r = request(in, h);
  ASSERT_EQ(r.status, ParseStatus::kDone) << r.error;
  EXPECT_EQ(r.consumed, in.size() - 5);
  EXPECT_EQ(h.info.body, BodyKind::kContentLength);
  EXPECT_EQ(h.info.content_length, 5u);

  ASSERT_EQ(request("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\n\r\n", h).status, ParseStatus::kDone);
  EXPECT_EQ(h.info.body, BodyKind::kNone);
  EXPECT_EQ(h.info.content_length, 0u);

  ASSERT_EQ(request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n", h).status,
            ParseStatus::kDone);
  EXPECT_EQ(h.info.content_length, 999999999999999999u);

  for (const char* te : {"chunked", "Chunked", "\tCHUNKED  \t"}) {
    SCOPED_TRACE(te);
    ASSERT_EQ(request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "s + te + "\r\n\r\n", h).status,
              ParseStatus::kDone);
    EXPECT_EQ(h.info.body, BodyKind::kChunked);
  }
}

TEST(Http1Request, ValuesAreTrimmedAndMayCarryObsText) {
  const ParsedRequest p(get_with("X-A: \t inner  space \t\r\nX-B: caf\xC3\xA9\r\n"));
  ASSERT_EQ(p.result.status, ParseStatus::kDone);
  EXPECT_EQ(p.head.headers[1].value, "inner  space");
  EXPECT_EQ(p.head.headers[2].value, "caf\xC3\xA9");
}

TEST(Http1Request, ConnectionAndKeepAlive) {
  RequestHead h;
  ASSERT_EQ(request(get_with("Connection: foo, Close\r\n"), h).status, ParseStatus::kDone);
  EXPECT_FALSE(h.info.keep_alive);

  ASSERT_EQ(request("GET / HTTP/1.0\r\n\r\n", h).status, ParseStatus::kDone);
  EXPECT_EQ(h.version_minor, 0);
  EXPECT_FALSE(h.info.keep_alive);
  EXPECT_EQ(h.host, "");

  ASSERT_EQ(request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", h).status, ParseStatus::kDone);
  EXPECT_TRUE(h.info.keep_alive);

  ASSERT_EQ(request("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", h).status,
            ParseStatus::kDone);
  EXPECT_FALSE(h.info.keep_alive);

  const ParsedRequest p(get_with("Connection: keep-alive,,  Upgrade\r\nUpgrade: websocket\r\n"));
  ASSERT_EQ(p.result.status, ParseStatus::kDone);
  EXPECT_TRUE(p.head.info.keep_alive);
  EXPECT_TRUE(p.head.info.connection_upgrade);
  EXPECT_EQ(p.head.info.upgrade, "websocket");

  expect_request_error(get_with("Upgrade: websocket\r\nUpgrade: h2c\r\n"), 400);
}

TEST(Http1Request, ExpectAndTe) {
  RequestHead h;
  ASSERT_EQ(request(get_with("Expect: 100-Continue\r\nTE: gzip;q=0.5, Trailers\r\n"), h).status,
            ParseStatus::kDone);
  EXPECT_TRUE(h.info.expect_continue);
  EXPECT_TRUE(h.info.te_trailers);

  ASSERT_EQ(request(get_with("Expect: something-else\r\nTE: trailersx\r\n"), h).status, ParseStatus::kDone);
  EXPECT_FALSE(h.info.expect_continue);
  EXPECT_FALSE(h.info.te_trailers);

  // RFC 9110 10.1.1: ignored in HTTP/1.0.
  ASSERT_EQ(request("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", h).status, ParseStatus::kDone);
  EXPECT_FALSE(h.info.expect_continue);
}

TEST(Http1Request, TargetForms) {
  RequestHead h;
  ASSERT_EQ(request("GET http://Up.example:8080/a/b?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", h).status,
            ParseStatus::kDone);
  EXPECT_EQ(h.host, "Up.example:8080");
  EXPECT_EQ(h.path, "/a/b");
  EXPECT_EQ(h.target, "http://Up.example:8080/a/b?q=1");

  ASSERT_EQ(request("GET HTTPS://[::1] HTTP/1.1\r\nHost: x\r\n\r\n", h).status, ParseStatus::kDone);
  EXPECT_EQ(h.host, "[::1]");
  EXPECT_EQ(h.path, "/");
  ASSERT_EQ(request("GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n", h).status, ParseStatus::kDone);
  EXPECT_EQ(h.path, "/");

  ASSERT_EQ(request("CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n", h).status,
            ParseStatus::kDone);
  EXPECT_EQ(h.target, "db.example:5432");
  EXPECT_EQ(h.path, "");
  EXPECT_EQ(h.host, "db.example:5432");

  ASSERT_EQ(request("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", h).status, ParseStatus::kDone);
  EXPECT_EQ(h.target, "*");

  for (const char* bad :
       {"GET * HTTP/1.1", "GET a.example:443 HTTP/1.1", "CONNECT / HTTP/1.1", "CONNECT a.example HTTP/1.1",
        "CONNECT a@b:1 HTTP/1.1", "GET http://user@h/ HTTP/1.1", "GET http:///x HTTP/1.1",
        "GET ftp://h/ HTTP/1.1", "GET index.html HTTP/1.1"}) {
    expect_request_error(bad + "\r\nHost: a\r\n\r\n"s, 400);
  }
}

TEST(Http1Request, LeadingEmptyLinesAreSkippedButBounded) {
  RequestHead h;
  const std::string in = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const ParseResult r = request(in, h);
  ASSERT_EQ(r.status, ParseStatus::kDone) << r.error;
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(request("\r").status, ParseStatus::kNeedMore);
  EXPECT_EQ(request("\r\n").status, ParseStatus::kNeedMore);
  expect_request_error("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  expect_request_error("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

TEST(Http1Request, IncrementalFeedMatchesWholeParse) {
  const std::string in =
      "POST /p?q HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\n";
  RequestHead h;
  for (size_t n = 0; n < in.size(); ++n) {
    ASSERT_EQ(request(std::string_view(in).substr(0, n), h).status, ParseStatus::kNeedMore) << n;
  }
  const ParseResult r = request(in, h);
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(h.path, "/p");
  EXPECT_EQ(h.host, "a.example");
  EXPECT_EQ(h.headers.size(), 3u);
  EXPECT_EQ(h.info.body, BodyKind::kContentLength);
  EXPECT_EQ(h.info.content_length, 3u);
  EXPECT_FALSE(h.info.keep_alive);
}

TEST(Http1Request, PipelinedRequestsStopAtHeadEnd) {
  const std::string first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string second = "GET /2 HTTP/1.1\r\nHost: b\r\nX: y\r\n\r\n";
  const std::string in = first + second;
  RequestHead h;
  ParseResult r = request(in, h);
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(h.path, "/1");
  r = request(std::string_view(in).substr(r.consumed), h);
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.consumed, second.size());
  EXPECT_EQ(h.path, "/2");
  EXPECT_EQ(h.headers.size(), 2u);  // cleared between calls
}

// ---- requests: smuggling and syntax ---------------------------------------------

TEST(Http1Request, RejectsAmbiguousContentLength) {
  expect_request_error(get_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400);
  expect_request_error(get_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400);
  expect_request_error(get_with("Content-Length: 5\r\nContent-Length: 5\r\n"), 400);
  expect_request_error(get_with("Content-Length: 5\r\ncontent-length: 6\r\n"), 400);
  for (const char* cl : {"+5", "-5", "5 5", "5,5", "5, 5", "0x5", "5.0", "", "1e3", "1234567890123456789",
                         "99999999999999999999999"}) {
    SCOPED_TRACE(cl);
    expect_request_error(get_with("Content-Length: "s + cl + "\r\n"), 400);
  }
}

TEST(Http1Request, RejectsAnythingButExactlyChunked) {
  for (const char* te :
       {"chunked\v", "chunk ed", "xchunked", "chunkedx", "chunked, chunked", "gzip, chunked", "chunked, gzip",
        "chunked;x", "gzip", "identity", "", "\"chunked\"", "chunked\x01"}) {
    SCOPED_TRACE(te);
    expect_request_error(get_with("Transfer-Encoding: "s + te + "\r\n"), 400);
  }
  expect_request_error(get_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400);
  expect_request_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

TEST(Http1Request, RejectsBadFieldLines) {
  for (const std::string& field : {
           "X: a\0b\r\n"s, "X: a\rb\r\n"s, "X: a\x01\r\n"s, "X: a\x7f\r\n"s,  // controls, DEL
           "Host2 : x\r\n"s, "X\t: y\r\n"s,                                   // space before colon
           "X: a\r\n b\r\n"s, "X: a\r\n\tb\r\n"s,                             // obs-fold
           ": novalue\r\n"s, "X(y): z\r\n"s, "NoColon\r\n"s, "X\r: y\r\n"s,   // names
       }) {
    SCOPED_TRACE(testing::PrintToString(field));
    expect_request_error(get_with(field), 400);
  }
  // A line starting with whitespace straight after the request line is obs-fold too.
  expect_request_error("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
  EXPECT_STREQ(request(get_with("Host2 : x\r\n")).error, "whitespace before colon");
  EXPECT_STREQ(request(get_with("X: a\r\n b\r\n")).error, "obs-fold");
}

TEST(Http1Request, RejectsBareLfEvenBeforeTheHeadIsComplete) {
  expect_request_error("GET / HTTP/1.1\nHost: a\n\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nX: a\nb\r\nHost: a\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\n", 400);
}

TEST(Http1Request, RejectsBadRequestLines) {
  const std::string rest = "\r\nHost: a\r\n\r\n";
  for (const char* line : {"GE T / HTTP/1.1", "G(T / HTTP/1.1", " / HTTP/1.1", "GET\t/ HTTP/1.1", "GET",
                           "GET /", "GET / ", "GET  / HTTP/1.1", "GET / HTTP/1.1 ", "GET /  HTTP/1.1"}) {
    SCOPED_TRACE(line);
    expect_request_error(line + rest, 400);
  }
  for (const std::string& target : {"/a b"s, "/a\x01"s, "/a\x7f"s, "/caf\xC3\xA9"s, "/a#frag"s, "/a\tb"s}) {
    SCOPED_TRACE(testing::PrintToString(target));
    expect_request_error("GET " + target + " HTTP/1.1" + rest, 400);
  }
  for (const char* version :
       {"HTTP/1.1x", "http/1.1", "HTTP/11.1", "HTTP/1", "HTTP/1.", "HTTP/a.b", "HTTP 1.1"}) {
    SCOPED_TRACE(version);
    expect_request_error("GET / "s + version + rest, 400);
  }
  for (const char* version : {"HTTP/1.2", "HTTP/2.0", "HTTP/0.9"}) {
    SCOPED_TRACE(version);
    expect_request_error("GET / "s + version + rest, 505);
  }
}

TEST(Http1Request, HostRules) {
  expect_request_error("GET / HTTP/1.1\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400);
  expect_request_error("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  // Absolute-form still needs a valid Host in HTTP/1.1.
  expect_request_error("GET http://a/ HTTP/1.1\r\n\r\n", 400);
  expect_request_error("GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
  for (const char* host : {"a b", "user@a", "a:abc", "a:", "a:65536", "a:123456", "[::1", "[zz]", "[::1]x",
                           "", "a/b", "a%zz", "a:1:2", "\"a\""}) {
    SCOPED_TRACE(host);
    expect_request_error("GET / HTTP/1.1\r\nHost: "s + host + "\r\n\r\n", 400);
  }
  for (const char* host :
       {"a", "[::1]:8080", "10.0.0.1:65535", "xn--bcher-kva.example", "under_score.example", "a%20b"}) {
    SCOPED_TRACE(host);
    const ParsedRequest p("GET / HTTP/1.1\r\nHost: "s + host + "\r\n\r\n");
    ASSERT_EQ(p.result.status, ParseStatus::kDone);
    EXPECT_EQ(p.head.host, host);
  }
}

TEST(Http1Request, HeadSizeLimit) {
  const std::string prefix = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  const std::string suffix = "\r\n\r\n";
  const std::string exact = prefix + std::string(kMaxHeadBytes - prefix.size() - suffix.size(), 'v') + suffix;
  ASSERT_EQ(exact.size(), kMaxHeadBytes);
  const ParseResult ok = request(exact);
  EXPECT_EQ(ok.status, ParseStatus::kDone) << ok.error;
  EXPECT_EQ(ok.consumed, kMaxHeadBytes);

  const std::string over = prefix + "v" + exact.substr(prefix.size());
  expect_request_error(over, 431);

  // No terminator yet, but already too big to ever fit.
  const std::string endless = prefix + std::string(kMaxHeadBytes, 'v');
  expect_request_error(endless, 431);
  EXPECT_EQ(request(endless.substr(0, kMaxHeadBytes - 1)).status, ParseStatus::kNeedMore);
}

TEST(Http1Request, FieldCountLimit) {
  std::string fields;
  for (size_t i = 1; i < kMaxHeaderFields; ++i) fields += "X-" + std::to_string(i) + ": v\r\n";
  RequestHead h;
  ASSERT_EQ(request(get_with(fields), h).status, ParseStatus::kDone);  // Host + 99
  EXPECT_EQ(h.headers.size(), kMaxHeaderFields);
  expect_request_error(get_with(fields + "X-Last: v\r\n"), 431);
}

// ---- responses ----------------------------------------------------------------

TEST(Http1Response, StatusLineAndLengthBody) {
  ResponseHead h;
  const std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: up\r\n\r\nhello world!";
  const ParseResult r = parse_response(in, false, h);
  ASSERT_EQ(r.status, ParseStatus::kDone) << r.error;
  EXPECT_EQ(r.consumed, in.size() - 12);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.reason, "OK");
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_EQ(h.headers.size(), 2u);
  EXPECT_EQ(h.info.body, BodyKind::kContentLength);
  EXPECT_EQ(h.info.content_length, 12u);
  EXPECT_TRUE(h.info.keep_alive);

  ASSERT_EQ(
      parse_response("HTTP/1.1 404 Not \tFound \xE2\x9C\x97\r\nContent-Length: 0\r\n\r\n", false, h).status,
      ParseStatus::kDone);
  EXPECT_EQ(h.status, 404);
  EXPECT_EQ(h.reason, "Not \tFound \xE2\x9C\x97");
  EXPECT_EQ(h.info.body, BodyKind::kNone);

  for (const char* line : {"HTTP/1.1 204 \r\n\r\n", "HTTP/1.1 204\r\n\r\n"}) {
    ASSERT_EQ(parse_response(line, false, h).status, ParseStatus::kDone) << line;
    EXPECT_EQ(h.status, 204);
    EXPECT_EQ(h.reason, "");
  }
  EXPECT_EQ(response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n").status, ParseStatus::kNeedMore);
}

TEST(Http1Response, BodyKinds) {
  ResponseHead h;
  const std::string cl = "Content-Length: 10\r\n";
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\n" + cl + "\r\n", true, h).status, ParseStatus::kDone);
  EXPECT_EQ(h.info.body, BodyKind::kNone);  // answer to HEAD
  EXPECT_EQ(h.info.content_length, 10u);
  for (const char* status :
       {"100 Continue", "101 Switching Protocols", "204 No Content", "304 Not Modified"}) {
    ASSERT_EQ(parse_response("HTTP/1.1 "s + status + "\r\n" + cl + "\r\n", false, h).status,
              ParseStatus::kDone);
    EXPECT_EQ(h.info.body, BodyKind::kNone) << status;
  }
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, h).status,
            ParseStatus::kDone);
  EXPECT_EQ(h.info.body, BodyKind::kChunked);
  EXPECT_TRUE(h.info.keep_alive);

  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\n\r\n", false, h).status, ParseStatus::kDone);
  EXPECT_EQ(h.info.body, BodyKind::kUntilClose);
  EXPECT_FALSE(h.info.keep_alive);

  ASSERT_EQ(parse_response("HTTP/1.0 200 OK\r\n" + cl + "\r\n", false, h).status, ParseStatus::kDone);
  EXPECT_EQ(h.version_minor, 0);
  EXPECT_FALSE(h.info.keep_alive);
  ASSERT_EQ(parse_response("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n" + cl + "\r\n", false, h).status,
            ParseStatus::kDone);
  EXPECT_TRUE(h.info.keep_alive);
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nConnection: close\r\n" + cl + "\r\n", false, h).status,
            ParseStatus::kDone);
  EXPECT_FALSE(h.info.keep_alive);
}

TEST(Http1Response, Errors) {
  for (const std::string& bad : {
           "HTTP/1.1 20 OK\r\n\r\n"s,
           "HTTP/1.1 2000 OK\r\n\r\n"s,
           "HTTP/1.1 099 Low\r\n\r\n"s,
           "HTTP/1.1  200 OK\r\n\r\n"s,
           "HTTP/1.1 2x0 OK\r\n\r\n"s,
           "HTTP/2 200 OK\r\n\r\n"s,
           "HTTP/1.2 200 OK\r\n\r\n"s,
           "http/1.1 200 OK\r\n\r\n"s,
           "HTTP/1.1 200 O\x01K\r\n\r\n"s,
           "HTTP/1.1 200OK\r\n\r\n"s,
           "\r\nHTTP/1.1 200 OK\r\n\r\n"s,
           "HTTP/1.1 200 OK\n\n"s,
           "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"s,
           "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"s,
           "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"s,
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"s,
           "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"s,
           "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"s,
           "HTTP/1.1 200 OK\r\nX : a\r\n\r\n"s,
       }) {
    expect_response_error(bad);
  }
  expect_response_error("HTTP/1.1 200 OK\r\nX: " + std::string(kMaxHeadBytes, 'v'));
}

// ---- chunked decoder ----------------------------------------------------------

struct Decoded {
  ChunkedDecoder::Kind last = ChunkedDecoder::Kind::kNeedMore;
  std::string body;
  std::vector<std::pair<std::string, std::string>> trailers;
  std::string error;
  size_t leftover = 0;  // bytes after the message end
};

// Plays the caller: keeps unconsumed bytes, appends each piece, loops on next().
Decoded decode(ChunkedDecoder& d, const std::vector<std::string>& pieces) {
  Decoded out;
  std::string buf;
  for (const std::string& piece : pieces) {
    buf += piece;
    for (;;) {
      const ChunkedDecoder::Step s = d.next(buf);
      EXPECT_LE(s.consumed, buf.size());
      out.last = s.kind;
      if (s.kind == ChunkedDecoder::Kind::kData) {
        EXPECT_FALSE(s.data.empty());
        EXPECT_EQ(s.data.data() + s.data.size(), buf.data() + s.consumed);
        out.body.append(s.data);
        buf.erase(0, s.consumed);
        continue;
      }
      if (s.kind == ChunkedDecoder::Kind::kNeedMore) {
        buf.erase(0, s.consumed);
        break;
      }
      if (s.kind == ChunkedDecoder::Kind::kDone) {
        for (const Header& h : d.trailers()) out.trailers.emplace_back(h.name, h.value);
        out.leftover = buf.size() - s.consumed;
      } else {
        out.error = s.error;
      }
      return out;
    }
  }
  return out;
}

Decoded decode(std::string_view whole) {
  ChunkedDecoder d;
  return decode(d, {std::string(whole)});
}

TEST(ChunkedDecoder, DecodesChunksHexSizesAndExtensions) {
  Decoded r = decode("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(r.last, ChunkedDecoder::Kind::kDone) << r.error;
  EXPECT_EQ(r.body, "hello world");
  EXPECT_TRUE(r.trailers.empty());

  const std::string sixteen(16, 'x');
  const std::string thirty_one(31, 'y');
  r = decode("a\r\n0123456789\r\n10\r\n" + sixteen + "\r\n1F\r\n" + thirty_one + "\r\n1f\r\n" + thirty_one +
             "\r\n000\r\n\r\nNEXT");
  EXPECT_EQ(r.last, ChunkedDecoder::Kind::kDone) << r.error;
  EXPECT_EQ(r.body, "0123456789" + sixteen + thirty_one + thirty_one);
  EXPECT_EQ(r.leftover, 4u);

  r = decode(
      "3;name\r\nabc\r\n"
      "3;a=b;c=\"quoted \\\" ;=\\\\ text\"\r\ndef\r\n"
      "3 ; a = b\t;\tc\r\nghi\r\n"
      "0;last=1\r\n\r\n");
  EXPECT_EQ(r.last, ChunkedDecoder::Kind::kDone) << r.error;
  EXPECT_EQ(r.body, "abcdefghi");
}

TEST(ChunkedDecoder, RejectsBadSizeLines) {
  for (const char* line : {"",
                           "g",
                           "-1",
                           "+1",
                           "0x5",
                           " 5",
                           "\t5",
                           "5 ",
                           "5\t",
                           "5 5",
                           "11111111111111111",
                           "5\r",
                           "5;",
                           "5;=x",
                           "5;a=",
                           "5;a b",
                           "5; a ",
                           "5;a=\"x",
                           "5;a=b c",
                           "5;a=\"\x01\"",
                           "5;a,b",
                           "5,6"}) {
    SCOPED_TRACE(testing::PrintToString(std::string(line)));
    const Decoded r = decode(line + "\r\nhello\r\n0\r\n\r\n"s);
    EXPECT_EQ(r.last, ChunkedDecoder::Kind::kError);
  }
  EXPECT_EQ(decode("g\r\n").error, "bad chunk size");
  EXPECT_EQ(decode("5;a b\r\n").error, "bad chunk extension");
  // Sixteen hex digits are accepted; the data simply has not arrived.
  ChunkedDecoder d;
  const ChunkedDecoder::Step s = d.next("FFFFFFFFFFFFFFFF\r\n");
  EXPECT_EQ(s.kind, ChunkedDecoder::Kind::kNeedMore);
  EXPECT_EQ(s.consumed, 18u);
}

TEST(ChunkedDecoder, RejectsBadChunkTerminator) {
  for (const char* body : {"5\r\nhelloX\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n", "5\r\nhello\rX0\r\n\r\n",
                           "5\r\nhello0\r\n\r\n"}) {
    SCOPED_TRACE(testing::PrintToString(std::string(body)));
    const Decoded r = decode(body);
    EXPECT_EQ(r.last, ChunkedDecoder::Kind::kError);
    EXPECT_EQ(r.body, "hello");
    EXPECT_EQ(r.error, "bad chunk terminator");
  }
}

TEST(ChunkedDecoder, KeepsIncompleteFramingUnconsumed) {
  ChunkedDecoder d;
  for (const char* partial : {"5", "5\r", "5;ext", "5;ext=\"a", "5 ;"}) {
    const ChunkedDecoder::Step s = d.next(partial);
    EXPECT_EQ(s.kind, ChunkedDecoder::Kind::kNeedMore) << partial;
    EXPECT_EQ(s.consumed, 0u) << partial;
  }
  ChunkedDecoder::Step s = d.next("5\r\nhel");
  EXPECT_EQ(s.kind, ChunkedDecoder::Kind::kData);
  EXPECT_EQ(s.data, "hel");
  EXPECT_EQ(s.consumed, 6u);
  s = d.next("lo\r");
  EXPECT_EQ(s.kind, ChunkedDecoder::Kind::kData);
  EXPECT_EQ(s.consumed, 2u);
  s = d.next("\r");  // half of the CRLF after data is kept
  EXPECT_EQ(s.kind, ChunkedDecoder::Kind::kNeedMore);
  EXPECT_EQ(s.consumed, 0u);
  s = d.next("\r\n0\r\nX: y\r\n");  // trailer section not whole yet
  EXPECT_EQ(s.kind, ChunkedDecoder::Kind::kNeedMore);
  EXPECT_EQ(s.consumed, 5u);
  const std::string rest = "X: y\r\n\r\n";
  s = d.next(rest);
  ASSERT_EQ(s.kind, ChunkedDecoder::Kind::kDone);
  EXPECT_EQ(s.consumed, rest.size());
  ASSERT_EQ(d.trailers().size(), 1u);
  EXPECT_EQ(d.trailers()[0].value.data(), rest.data() + 3);  // a view into the kDone input
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.next("more").kind, ChunkedDecoder::Kind::kDone);

  ChunkedDecoder long_line;
  const std::string line = "5;" + std::string(5000, 'a');
  s = long_line.next(line);
  EXPECT_EQ(s.kind, ChunkedDecoder::Kind::kError);
  EXPECT_EQ(long_line.next("5\r\nhello\r\n").kind, ChunkedDecoder::Kind::kError);  // sticky
}

TEST(ChunkedDecoder, EverySplitPointGivesTheSameResult) {
  const std::string sample =
      "4;x=y\r\nWiki\r\nB\r\npedia in \r\n\r\n"
      "4\r\n\r\nch\r\n0\r\nExpires: never\r\nX-Sum:  ab12 \r\n\r\n";
  const std::string body = "Wikipedia in \r\n\r\nch";
  for (size_t i = 0; i <= sample.size(); ++i) {
    ChunkedDecoder d;
    const Decoded r = decode(d, {sample.substr(0, i), sample.substr(i)});
    ASSERT_EQ(r.last, ChunkedDecoder::Kind::kDone) << "split at " << i << ": " << r.error;
    EXPECT_EQ(r.body, body) << "split at " << i;
    ASSERT_EQ(r.trailers.size(), 2u);
    EXPECT_EQ(r.trailers[1].second, "ab12");
  }
  std::vector<std::string> bytes;
  for (char c : sample) bytes.emplace_back(1, c);
  ChunkedDecoder d;
  const Decoded r = decode(d, bytes);
  EXPECT_EQ(r.last, ChunkedDecoder::Kind::kDone);
  EXPECT_EQ(r.body, body);

  // reset() readies the decoder for the next message.
  d.reset();
  EXPECT_FALSE(d.done());
  EXPECT_TRUE(d.trailers().empty());
  EXPECT_EQ(decode(d, {"1\r\nz\r\n0\r\n\r\n"}).body, "z");
}

TEST(ChunkedDecoder, TrailerRules) {
  const Decoded r = decode("0\r\nA: 1\r\nb: two words\r\n\r\n");
  ASSERT_EQ(r.last, ChunkedDecoder::Kind::kDone);
  ASSERT_EQ(r.trailers.size(), 2u);
  EXPECT_EQ(r.trailers[0], std::make_pair("A"s, "1"s));
  EXPECT_EQ(r.trailers[1], std::make_pair("b"s, "two words"s));

  for (const std::string& bad :
       {"0\r\nA : 1\r\n\r\n"s, "0\r\nA: 1\r\n folded\r\n\r\n"s, "0\r\nA: \x01\r\n\r\n"s, "0\r\nA: 1\n\r\n"s,
        "0\r\n\n"s, "0\r\nNoColon\r\n\r\n"s}) {
    SCOPED_TRACE(testing::PrintToString(bad));
    EXPECT_EQ(decode(bad).last, ChunkedDecoder::Kind::kError);
  }
  EXPECT_EQ(decode("0\r\nX: " + std::string(kMaxHeadBytes, 'v')).last, ChunkedDecoder::Kind::kError);
}

// ---- forwarding helpers -------------------------------------------------------

TEST(Http1Helpers, HopByHop) {
  for (const char* name : {"Connection", "keep-alive", "PROXY-CONNECTION", "te", "Transfer-Encoding",
                           "upgrade", "Trailer", "proxy-authenticate", "Proxy-Authorization"}) {
    EXPECT_TRUE(is_hop_by_hop(name)) << name;
  }
  for (const char* name : {"content-length", "host", "trailers", "tee", "x-connection", ""}) {
    EXPECT_FALSE(is_hop_by_hop(name)) << name;
  }
}

TEST(Http1Helpers, ConnectionLists) {
  const HeaderList headers = {
      {"Connection", "keep-alive"}, {"X-Other", "x-private"}, {"connection", " ,X-Private ,  Upgrade"}};
  EXPECT_TRUE(connection_lists(headers, "x-private"));
  EXPECT_TRUE(connection_lists(headers, "X-PRIVATE"));
  EXPECT_TRUE(connection_lists(headers, "keep-alive"));
  EXPECT_TRUE(connection_lists(headers, "upgrade"));
  EXPECT_FALSE(connection_lists(headers, "x-other"));
  EXPECT_FALSE(connection_lists(headers, "x-priv"));
  EXPECT_FALSE(connection_lists({}, "close"));
}

}  // namespace
}  // namespace trellis::http::http1
