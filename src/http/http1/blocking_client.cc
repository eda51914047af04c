#include "http/http1/blocking_client.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "http/http1/response_reader.h"
#include "net/buffer.h"

namespace trellis::http::http1 {

Result<BlockingResponse> blocking_exchange(const net::SocketAddress& to, std::string_view request,
                                           std::chrono::milliseconds timeout, size_t max_body) {
  UniqueFd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Error{std::string("cannot open a socket: ") + std::strerror(errno)};
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect() too
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd.get(), to.sa(), to.length) != 0)
    return Error{"cannot connect to " + to.text + ": " + std::strerror(errno)};
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return Error{"cannot send to " + to.text + ": " + std::strerror(errno)};
    sent += static_cast<size_t>(n);
  }
  ResponseReader reader;
  reader.start(request.starts_with("HEAD "), max_body);
  net::Buffer in;
  for (;;) {
    ssize_t n = ::recv(fd.get(), in.prepare(16384), 16384, 0);
    ResponseReader::Status status;
    if (n > 0) {
      in.commit(static_cast<size_t>(n));
      status = reader.on_data(in);
    } else if (n == 0) {
      status = reader.on_eof();
      if (status == ResponseReader::Status::kError)
        return Error{to.text + " closed before its answer was whole"};
    } else {
      return Error{"no answer from " + to.text + ": " + std::strerror(errno)};
    }
    if (status == ResponseReader::Status::kError)
      return Error{to.text + " sent a malformed answer: " + reader.error()};
    if (status == ResponseReader::Status::kComplete) return BlockingResponse{reader.status(), reader.body()};
  }
}

}  // namespace trellis::http::http1
