#include "net/socket.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "net/address.h"

namespace trellis::net {

Socket::Socket(EventLoop& loop, int fd, TransportCallbacks* callbacks, bool connecting)
    : loop_(loop), fd_(fd), callbacks_(callbacks), connecting_(connecting) {
  // A fresh accepted socket may already hold data; assume readable until a
  // short read says otherwise, so the first request does not wait for an edge
  // that may have come before registration.
  read_ready_ = !connecting;
  write_ready_ = !connecting;
  loop_.add(fd_, this);
}

Socket::~Socket() { close(); }

void Socket::close() {
  if (fd_ < 0) return;
  loop_.remove(fd_);
  ::close(fd_);
  fd_ = -1;
  read_ready_ = write_ready_ = false;
  out_.release();
}

ReadResult Socket::read(Buffer& into, size_t max, size_t* n_read) {
  if (n_read) *n_read = 0;
  if (fd_ < 0 || failed_) return ReadResult::kError;
  if (!read_ready_) return ReadResult::kAgain;
  char* p = into.prepare(max);
  size_t room = into.tail_room();
  if (room > max) room = max;
  ssize_t n = ::recv(fd_, p, room, 0);
  if (n > 0) {
    into.commit(static_cast<size_t>(n));
    bytes_read_ += static_cast<uint64_t>(n);
    if (n_read) *n_read = static_cast<size_t>(n);
    // A short read drained the socket: new data brings a new edge. Saves the
    // recv that would only say EAGAIN.
    if (static_cast<size_t>(n) < room && !peer_closed_) read_ready_ = false;
    return ReadResult::kData;
  }
  if (n == 0) {
    read_ready_ = false;
    return ReadResult::kEof;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    read_ready_ = false;
    return ReadResult::kAgain;
  }
  if (errno == EINTR) return ReadResult::kAgain;
  failed_ = true;
  return ReadResult::kError;
}

bool Socket::write(std::string_view data) {
  if (fd_ < 0 || failed_) return false;
  if (data.empty()) return true;
  if (out_.empty() && write_ready_ && !connecting_) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(errno);
        return false;
      }
      n = 0;
    }
    bytes_written_ += static_cast<uint64_t>(n);
    if (static_cast<size_t>(n) == data.size()) return true;
    write_ready_ = false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  out_.append(data);
  return true;
}

bool Socket::write(Buffer& data) {
  bool ok = write(data.view());
  data.clear();
  return ok;
}

void Socket::shutdown_write() {
  if (fd_ < 0 || shut_wr_done_) return;
  shut_wr_pending_ = true;
  if (out_.empty() && !connecting_) {
    ::shutdown(fd_, SHUT_WR);
    shut_wr_done_ = true;
  }
}

void Socket::flush() {
  while (!out_.empty()) {
    ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        write_ready_ = false;
        return;
      }
      fail(errno);
      return;
    }
    bytes_written_ += static_cast<uint64_t>(n);
    out_.consume(static_cast<size_t>(n));
  }
  out_.release();  // all sent: the block goes back to the thread's pool
  if (shut_wr_pending_ && !shut_wr_done_) {
    ::shutdown(fd_, SHUT_WR);
    shut_wr_done_ = true;
  }
}

// Never calls back: from write() the caller learns it from the return value;
// from on_io() the error is reported right after.
void Socket::fail(int error) {
  if (failed_) return;
  failed_ = true;
  error_ = error;
  read_ready_ = write_ready_ = false;
}

void Socket::on_io(uint32_t events) {
  if (fd_ < 0) return;
  if (connecting_ && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & EPOLLERR)) {
      failed_ = true;
      callbacks_->on_transport_error(err ? err : ECONNREFUSED);
      return;
    }
    connecting_ = false;
    write_ready_ = true;
    read_ready_ = true;
    flush();
    if (failed_) {
      callbacks_->on_transport_error(error_);
      return;
    }
    callbacks_->on_writable();
    if (fd_ < 0) return;
  }
  if (events & (EPOLLERR | EPOLLHUP)) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      failed_ = true;
      read_ready_ = write_ready_ = false;
      callbacks_->on_transport_error(err);
      return;
    }
    peer_closed_ = true;
    read_ready_ = true;
  }
  if (events & EPOLLRDHUP) peer_closed_ = true;
  if (events & EPOLLOUT) {
    write_ready_ = true;
    if (!out_.empty() || shut_wr_pending_) {
      flush();
      if (failed_) {
        callbacks_->on_transport_error(error_);
        return;
      }
      if (out_.empty()) {
        out_.release();
        callbacks_->on_writable();
        if (fd_ < 0) return;
      }
    }
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
    read_ready_ = true;
    callbacks_->on_readable();
  }
}

std::unique_ptr<Transport> PlainTransportFactory::accepted(EventLoop& loop, int fd,
                                                           TransportCallbacks* callbacks) {
  return std::make_unique<Socket>(loop, fd, callbacks);
}

std::unique_ptr<Transport> PlainTransportFactory::connect(EventLoop& loop, const SocketAddress& address,
                                                          TransportCallbacks* callbacks, int& error) {
  int fd = start_connect(address, error);
  if (fd < 0) return nullptr;
  return std::make_unique<Socket>(loop, fd, callbacks, /*connecting=*/true);
}

const std::shared_ptr<TransportFactory>& PlainTransportFactory::shared() {
  static const std::shared_ptr<TransportFactory> factory = std::make_shared<PlainTransportFactory>();
  return factory;
}

}  // namespace trellis::net
