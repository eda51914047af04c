#include "net/detecting_transport.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <utility>

#include "net/socket.h"
#include "net/tls_detect.h"

namespace trellis::net {
namespace {

// Every TLS connection starts with a handshake record: any other first byte
// is plain text without waiting for more.
constexpr char kHandshakeRecord = 0x16;

constexpr uint32_t kReadableEvents = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;

}  // namespace

void DetectionCounts::add(Detection detection) {
  switch (detection) {
    case Detection::kTls:
      tls.fetch_add(1, std::memory_order_relaxed);
      break;
    case Detection::kPlaintext:
      plaintext.fetch_add(1, std::memory_order_relaxed);
      break;
    case Detection::kTimedOut:
      timed_out.fetch_add(1, std::memory_order_relaxed);
      break;
    case Detection::kNoData:
      no_data.fetch_add(1, std::memory_order_relaxed);
      break;
    case Detection::kPending:
      break;
  }
}

DetectingTransport::DetectingTransport(EventLoop& loop, int fd, TransportCallbacks* callbacks,
                                       std::shared_ptr<TransportFactory> tls, Duration timeout,
                                       std::shared_ptr<DetectionCounts> counts)
    : loop_(loop),
      fd_(fd),
      callbacks_(callbacks),
      tls_(std::move(tls)),
      counts_(std::move(counts)),
      timer_(loop, [this] { on_timeout(); }) {
  assert(tls_ != nullptr);
  // The first bytes are often there by the time the connection is
  // accepted: then the chosen transport is made at once, in the state of a
  // freshly accepted one (its registration reports what is queued), and
  // this one never touches the loop.
  Detection first = peek();
  if (first != Detection::kPending && error_ == 0) {
    hand_over(first, /*signal=*/false);
    return;
  }
  registered_ = loop_.add(fd_, this);
  if (error_ != 0) {
    // Reported from the registration's first event: no callback from here.
    detection_ = Detection::kNoData;
    if (counts_) counts_->add(detection_);
    fail();
    return;
  }
  timer_.arm(timeout);
}

DetectingTransport::~DetectingTransport() { close(); }

Detection DetectingTransport::peek() {
  char first[kTlsClientHelloBytes];
  for (;;) {
    ssize_t n = ::recv(fd_, first, sizeof(first), MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      peeked_ = static_cast<size_t>(n);
      std::string_view bytes(first, peeked_);
      if (bytes[0] != kHandshakeRecord) return Detection::kPlaintext;
      if (bytes.size() < kTlsDetectBytes) return Detection::kPending;
      return looks_like_tls(bytes) ? Detection::kTls : Detection::kPlaintext;
    }
    if (n == 0) return Detection::kNoData;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Detection::kPending;
    // The peek took the socket's error (a reset): keep it, or the socket
    // would read as a clean end from now on.
    error_ = errno;
    return Detection::kNoData;
  }
}

void DetectingTransport::on_io(uint32_t events) {
  if (state_ == State::kFailed) {
    if (registered_) report_failure();
    return;
  }
  if (state_ != State::kDetecting || !(events & kReadableEvents)) return;
  Detection detection = peek();
  if (error_ != 0) {
    detection_ = Detection::kNoData;
    if (counts_) counts_->add(detection_);
    fail();
    report_failure();
    return;
  }
  // A client that ended its side after a TLS-like prefix shorter than a
  // record header sends nothing more to wait for.
  if (detection == Detection::kPending && (events & (EPOLLRDHUP | EPOLLHUP))) {
    detection = Detection::kPlaintext;
  }
  if (detection == Detection::kPending) return;
  hand_over(detection, /*signal=*/true);
}

void DetectingTransport::on_timeout() {
  if (state_ != State::kDetecting) return;
  hand_over(Detection::kTimedOut, /*signal=*/true);
}

void DetectingTransport::hand_over(Detection detection, bool signal) {
  timer_.cancel();
  if (registered_) {
    loop_.remove(fd_);
    registered_ = false;
  }
  detection_ = detection;
  if (counts_) counts_->add(detection);
  int fd = std::exchange(fd_, -1);
  // The owner's callbacks go straight to the chosen transport: its events
  // reach the owner as they would from a transport the listener made.
  if (detection == Detection::kTls) {
    inner_ = tls_->accepted(loop_, fd, callbacks_);
  } else {
    inner_ = std::make_unique<Socket>(loop_, fd, callbacks_);
  }
  assert(inner_ != nullptr && "a server factory's accepted() takes the socket");
  tls_.reset();
  state_ = State::kHandedOver;

  bool had_output = !early_output_.empty();
  bool written = !had_output || inner_->write(early_output_);
  early_output_.release();
  if (early_shutdown_ && written) inner_->shutdown_write();
  if (!signal) return;  // from the constructor: nothing was written yet
  if (!written) {
    callbacks_->on_transport_error(inner_->error());
    return;
  }
  // Nothing queued is stranded: registering a socket, edge-triggered or
  // not, polls it and reports at once what it holds, as every freshly
  // accepted transport counts on (a TLS server starts its handshake on that
  // first event, and tells the owner the rest itself). For a Socket, telling
  // the owner now saves the pass of the loop that event takes; by then the
  // owner has read what was there (epoll reports the state at the time of
  // the wait), so the event brings nothing new, or repeats an end of
  // stream as a Socket does on any later edge.
  if (detection == Detection::kTls) return;
  if (had_output && inner_->pending_output() == 0) {
    callbacks_->on_writable();
    if (!inner_->open() || inner_->failed()) return;
  }
  // The first bytes, or the end of the stream: either is there to read.
  if (peeked_ > 0 || detection == Detection::kNoData) callbacks_->on_readable();
}

void DetectingTransport::fail() {
  timer_.cancel();
  state_ = State::kFailed;
  early_output_.release();
}

// Once: the failed socket leaves the loop, so no event follows.
void DetectingTransport::report_failure() {
  loop_.remove(fd_);
  registered_ = false;
  callbacks_->on_transport_error(error_);
}

ReadResult DetectingTransport::read(Buffer& into, size_t max, size_t* n_read) {
  if (inner_) return inner_->read(into, max, n_read);
  if (n_read) *n_read = 0;
  return state_ == State::kDetecting ? ReadResult::kAgain : ReadResult::kError;
}

bool DetectingTransport::write(std::string_view data) {
  if (inner_) return inner_->write(data);
  if (state_ != State::kDetecting) return false;
  early_output_.append(data);
  return true;
}

bool DetectingTransport::write(Buffer& data) {
  if (inner_) return inner_->write(data);
  bool ok = write(data.view());
  data.clear();
  return ok;
}

void DetectingTransport::shutdown_write() {
  if (inner_) {
    inner_->shutdown_write();
  } else if (state_ == State::kDetecting) {
    early_shutdown_ = true;
  }
}

void DetectingTransport::close() {
  if (inner_) {
    inner_->close();
    return;
  }
  if (fd_ < 0) return;
  timer_.cancel();
  if (registered_) loop_.remove(fd_);
  registered_ = false;
  ::close(fd_);
  fd_ = -1;
  state_ = State::kClosed;
  early_output_.release();
}

bool DetectingTransport::open() const { return inner_ ? inner_->open() : fd_ >= 0; }

bool DetectingTransport::failed() const { return inner_ ? inner_->failed() : state_ == State::kFailed; }

DetectingTransportFactory::DetectingTransportFactory(std::shared_ptr<TransportFactory> tls, Duration timeout,
                                                     std::shared_ptr<DetectionCounts> counts)
    : tls_(std::move(tls)), timeout_(timeout), counts_(std::move(counts)) {
  assert(tls_ != nullptr && timeout_ > Duration::zero());
}

std::unique_ptr<Transport> DetectingTransportFactory::accepted(EventLoop& loop, int fd,
                                                               TransportCallbacks* callbacks) {
  return std::make_unique<DetectingTransport>(loop, fd, callbacks, tls_, timeout_, counts_);
}

std::unique_ptr<Transport> DetectingTransportFactory::connect(EventLoop&, const SocketAddress&,
                                                              TransportCallbacks*, int& error) {
  error = EINVAL;
  return nullptr;
}

}  // namespace trellis::net
