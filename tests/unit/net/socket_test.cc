#include "net/socket.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace trellis::net {
namespace {

// A Socket on one end of a socketpair (a real kernel socket, no network),
// on a loop driven by run_until_idle(): nothing waits on time.
class SocketTest : public ::testing::Test, public TransportCallbacks {
 protected:
  void SetUp() override {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_), 0);
    socket_ = std::make_unique<Socket>(loop_, fds_[0], this);
  }
  void TearDown() override {
    socket_.reset();
    if (fds_[1] >= 0) ::close(fds_[1]);
  }

  void on_readable() override { ++readable_; }
  void on_writable() override { ++writable_; }
  void on_transport_error(int error) override { error_ = error; }

  std::string read_peer() {
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fds_[1], buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  SimulatedClock clock_;
  EventLoop loop_{clock_};
  int fds_[2] = {-1, -1};
  std::unique_ptr<Socket> socket_;
  int readable_ = 0;
  int writable_ = 0;
  int error_ = 0;
};

TEST_F(SocketTest, WritesGoStraightToTheKernel) {
  ASSERT_TRUE(socket_->write("hello"));
  EXPECT_EQ(socket_->pending_output(), 0u);
  EXPECT_EQ(read_peer(), "hello");
  EXPECT_EQ(socket_->bytes_written(), 5u);
}

TEST_F(SocketTest, ReadsWhatThePeerSentThenSaysAgain) {
  ASSERT_EQ(::write(fds_[1], "abc", 3), 3);
  loop_.run_until_idle();
  EXPECT_GE(readable_, 1);
  Buffer in;
  size_t n = 0;
  EXPECT_EQ(socket_->read(in, Buffer::kBlockSize, &n), ReadResult::kData);
  EXPECT_EQ(in.view(), "abc");
  EXPECT_EQ(n, 3u);
  // A short read marked the socket drained: no recv until the next edge.
  EXPECT_FALSE(socket_->read_ready());
  EXPECT_EQ(socket_->read(in), ReadResult::kAgain);
}

TEST_F(SocketTest, PeerShutdownReadsAsEof) {
  ::shutdown(fds_[1], SHUT_WR);
  loop_.run_until_idle();
  Buffer in;
  EXPECT_EQ(socket_->read(in), ReadResult::kEof);
}

TEST_F(SocketTest, WhatTheKernelRefusesIsBufferedAndSentWhenThePeerReads) {
  int small = 4096;
  ::setsockopt(fds_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  std::string big(1 << 20, 'x');
  ASSERT_TRUE(socket_->write(big));
  size_t pending = socket_->pending_output();
  EXPECT_GT(pending, 0u);
  std::string got;
  for (int i = 0; i < 1000 && got.size() < big.size(); ++i) {
    got += read_peer();
    loop_.run_until_idle();
  }
  EXPECT_EQ(got.size(), big.size());
  EXPECT_EQ(socket_->pending_output(), 0u);
  // Told once the buffered output drained completely.
  EXPECT_GE(writable_, 1);
}

TEST_F(SocketTest, ShutdownWriteWaitsForBufferedOutput) {
  int small = 4096;
  ::setsockopt(fds_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  std::string big(256 * 1024, 'y');
  ASSERT_TRUE(socket_->write(big));
  socket_->shutdown_write();
  std::string got;
  for (int i = 0; i < 1000; ++i) {
    char buf[65536];
    ssize_t n = ::read(fds_[1], buf, sizeof(buf));
    if (n == 0) break;  // the FIN, after every byte
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    loop_.run_until_idle();
  }
  EXPECT_EQ(got.size(), big.size());
}

TEST_F(SocketTest, WritesAfterThePeerIsGoneFail) {
  ::close(fds_[1]);
  fds_[1] = -1;
  // The first send may still be accepted; one of the next ones sees EPIPE.
  bool ok = true;
  for (int i = 0; i < 8 && ok; ++i) ok = socket_->write(std::string(65536, 'z'));
  EXPECT_FALSE(ok);
  EXPECT_TRUE(socket_->failed());
  EXPECT_EQ(socket_->error(), EPIPE);
}

TEST_F(SocketTest, CloseIsFinalAndSilent) {
  socket_->close();
  EXPECT_FALSE(socket_->open());
  EXPECT_FALSE(socket_->write("x"));
  Buffer in;
  EXPECT_EQ(socket_->read(in), ReadResult::kError);
  loop_.run_until_idle();
  EXPECT_EQ(readable_ + writable_, 0);
  EXPECT_EQ(error_, 0);
}

}  // namespace
}  // namespace trellis::net
