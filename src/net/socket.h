// A non-blocking stream socket on an event loop: readiness tracking for
// edge-triggered epoll, reads into a Buffer, and write-through sends that only
// buffer what the kernel did not take.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "net/buffer.h"
#include "net/event_loop.h"

namespace trellis::net {

class SocketCallbacks {
 public:
  // Data or EOF may be read (call Socket::read until it says kAgain).
  virtual void on_readable() = 0;
  // Buffered output drained completely (also: a pending connect finished).
  virtual void on_writable() = 0;
  // The socket failed (reset, connect error); `error` is an errno value.
  virtual void on_socket_error(int error) = 0;

 protected:
  ~SocketCallbacks() = default;
};

enum class ReadResult : uint8_t { kData, kAgain, kEof, kError };

class Socket final : public IoHandler {
 public:
  Socket(EventLoop& loop, int fd, SocketCallbacks* callbacks, bool connecting = false);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  bool connecting() const { return connecting_; }
  void set_callbacks(SocketCallbacks* callbacks) { callbacks_ = callbacks; }

  // Appends what the kernel has (up to `max` bytes) to `into`. kAgain: nothing
  // more until the next readiness edge.
  ReadResult read(Buffer& into, size_t max = Buffer::kBlockSize, size_t* n_read = nullptr);
  bool read_ready() const { return read_ready_; }

  // Sends now what the kernel takes and buffers the rest. Returns false after a
  // fatal error; the caller then closes (no callback is made from inside write).
  bool write(std::string_view data);
  bool write(Buffer& data);  // consumes `data`
  size_t pending_output() const { return out_.size(); }
  // Closes the write side once buffered output is sent.
  void shutdown_write();
  bool failed() const { return failed_; }
  int error() const { return error_; }

  // Closes the descriptor now; pending output is dropped.
  void close();

  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }

  void on_io(uint32_t events) override;

 private:
  void flush();
  void fail(int error);

  EventLoop& loop_;
  int fd_;
  SocketCallbacks* callbacks_;
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
