// The plain TCP transport: a non-blocking stream socket on an event loop,
// readiness tracking for edge-triggered epoll, reads into a Buffer, and
// write-through sends that only buffer what the kernel did not take.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "net/buffer.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::net {

class Socket final : public Transport, public IoHandler {
 public:
  Socket(EventLoop& loop, int fd, TransportCallbacks* callbacks, bool connecting = false);
  ~Socket() override;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }

  // Transport
  ReadResult read(Buffer& into, size_t max = Buffer::kBlockSize, size_t* n_read = nullptr) override;
  bool read_ready() const override { return read_ready_; }
  bool write(std::string_view data) override;
  bool write(Buffer& data) override;
  size_t pending_output() const override { return out_.size(); }
  void shutdown_write() override;
  void close() override;
  bool open() const override { return fd_ >= 0; }
  void set_callbacks(TransportCallbacks* callbacks) override { callbacks_ = callbacks; }
  bool failed() const override { return failed_; }
  int error() const override { return error_; }
  uint64_t bytes_read() const override { return bytes_read_; }
  uint64_t bytes_written() const override { return bytes_written_; }

  // IoHandler
  void on_io(uint32_t events) override;

 private:
  void flush();
  void fail(int error);

  EventLoop& loop_;
  int fd_;
  TransportCallbacks* callbacks_;
  Buffer out_;
  bool read_ready_ = false;
  bool write_ready_ = false;
  bool peer_closed_ = false;  // RDHUP seen: keep reading until EOF
  bool connecting_ = false;
  bool shut_wr_pending_ = false;
  bool shut_wr_done_ = false;
  bool failed_ = false;
  int error_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
};

}  // namespace trellis::net
