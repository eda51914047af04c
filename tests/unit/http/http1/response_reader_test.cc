#include "http/http1/response_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace trellis::http::http1 {
namespace {

using Status = ResponseReader::Status;

Status feed(ResponseReader& r, net::Buffer& in, std::string_view bytes) {
  in.append(bytes);
  return r.on_data(in);
}

TEST(ResponseReader, ContentLengthResponseArrivingInPieces) {
  ResponseReader r;
  net::Buffer in;
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nContent-Le"), Status::kNeedMore);
  EXPECT_EQ(feed(r, in, "ngth: 12\r\n\r\nhello"), Status::kNeedMore);
  EXPECT_EQ(feed(r, in, " world\n"), Status::kComplete);
  EXPECT_EQ(r.status(), 200);
  EXPECT_TRUE(r.keep_alive());
  EXPECT_TRUE(in.empty());

  // The connection goes on with the next response.
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), Status::kComplete);
  EXPECT_EQ(r.status(), 404);
}

TEST(ResponseReader, ChunkedWithTrailers) {
  ResponseReader r;
  net::Buffer in;
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), Status::kNeedMore);
  EXPECT_EQ(feed(r, in, "lo\r\n0\r\nX-Sum: 1\r\n"), Status::kNeedMore);
  EXPECT_EQ(feed(r, in, "\r\n"), Status::kComplete);
  EXPECT_EQ(r.status(), 200);
}

TEST(ResponseReader, InterimResponsesAreSkipped) {
  ResponseReader r;
  net::Buffer in;
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
            Status::kComplete);
  EXPECT_EQ(r.status(), 201);
}

TEST(ResponseReader, HeadResponseHasNoBody) {
  ResponseReader r;
  net::Buffer in;
  r.start(true);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), Status::kComplete);
}

TEST(ResponseReader, BodyUntilCloseEndsAtEof) {
  ResponseReader r;
  net::Buffer in;
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\n\r\nsome body"), Status::kNeedMore);
  EXPECT_FALSE(r.keep_alive());
  EXPECT_EQ(r.on_eof(), Status::kComplete);
}

TEST(ResponseReader, ConnectionCloseIsNoticed) {
  ResponseReader r;
  net::Buffer in;
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            Status::kComplete);
  EXPECT_FALSE(r.keep_alive());
}

TEST(ResponseReader, MalformedAndTruncatedResponsesAreErrors) {
  ResponseReader r;
  net::Buffer in;
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), Status::kError);
  EXPECT_STRNE(r.error(), "");

  in.clear();
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), Status::kError);

  in.clear();
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"), Status::kError);

  in.clear();
  r.start(false);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"), Status::kNeedMore);
  EXPECT_EQ(r.on_eof(), Status::kError);
}

TEST(ResponseReader, KeepsTheBodyUpToItsLimit) {
  ResponseReader r;
  net::Buffer in;
  r.start(false, /*keep_body_up_to=*/16);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            Status::kNeedMore);
  EXPECT_EQ(feed(r, in, "6\r\n world\r\n0\r\n\r\n"), Status::kComplete);
  EXPECT_EQ(r.body(), "hello world");

  in.clear();
  r.start(false, 16);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'x')),
            Status::kError);

  in.clear();
  r.start(false, 16);
  EXPECT_EQ(feed(r, in, "HTTP/1.1 200 OK\r\n\r\nuntil close"), Status::kNeedMore);
  EXPECT_EQ(r.on_eof(), Status::kComplete);
  EXPECT_EQ(r.body(), "until close");
}

}  // namespace
}  // namespace trellis::http::http1
