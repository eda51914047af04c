// The transport of a permissive listener, which takes mTLS from sidecars and
// plain text from workloads not yet in the mesh on one port: it watches the
// first bytes the client sends (peeked, not consumed), then hands the
// connection to a TLS server transport or to a plain net::Socket and
// delegates every call to it from then on.
//
// Server-speaks-first protocols (SMTP, MySQL, ...) pay the detection timeout:
// their clients send nothing until greeted, so only the timeout decides that
// they speak plain text, and the server's greeting waits until then. Give
// such ports a plain listener.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "common/time.h"
#include "net/buffer.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::net {

// Which way a connection went, for the listener's counters.
enum class Detection : uint8_t {
  kPending,    // not decided yet
  kTls,        // a TLS record header came first: TLS server
  kPlaintext,  // a first byte that cannot start TLS (or the client ended its side with a
               // shorter TLS-like prefix): plain
  kTimedOut,   // nothing, or a TLS-like prefix too short to tell, within the timeout: plain
  kNoData,     // the client ended its side (plain, whose read() says kEof) or reset the
               // connection (failed) before sending a byte
};

// How connections to a detecting listener turned out, counted as each one is
// decided (any thread: relaxed atomics, one increment per connection).
struct DetectionCounts {
  std::atomic<uint64_t> tls{0};
  std::atomic<uint64_t> plaintext{0};
  std::atomic<uint64_t> timed_out{0};
  std::atomic<uint64_t> no_data{0};
  void add(Detection detection);
};

class DetectingTransport final : public Transport, public IoHandler {
 public:
  // Takes `fd`, an accepted non-blocking socket. `tls` makes the TLS server
  // side (its accepted()); `timeout` bounds the wait for the first bytes.
  // Makes no callback from inside the constructor.
  DetectingTransport(EventLoop& loop, int fd, TransportCallbacks* callbacks,
                     std::shared_ptr<TransportFactory> tls, Duration timeout,
                     std::shared_ptr<DetectionCounts> counts = nullptr);
  ~DetectingTransport() override;
  DetectingTransport(const DetectingTransport&) = delete;
  DetectingTransport& operator=(const DetectingTransport&) = delete;

  // Settled before the owner's first callback (which may be
  // on_transport_error() with kNoData when the client reset first).
  Detection detection() const { return detection_; }
  bool is_tls() const { return detection_ == Detection::kTls; }
  // The transport it handed the connection to (a TlsTransport when
  // is_tls(), else a Socket), for what only that one tells (a TLS failure
  // reason); null until decided, or when it failed or closed before.
  const Transport* inner() const { return inner_.get(); }

  // Transport. Until decided: read() says kAgain, read_ready() is false,
  // writes and shutdown_write() are kept and replayed to the chosen
  // transport (so a server may greet first: the greeting leaves once the
  // timeout decided), byte counts are 0 and close() closes the socket.
  ReadResult read(Buffer& into, size_t max = Buffer::kBlockSize, size_t* n_read = nullptr) override;
  bool read_ready() const override { return inner_ != nullptr && inner_->read_ready(); }
  bool write(std::string_view data) override;
  bool write(Buffer& data) override;
  size_t pending_output() const override { return inner_ ? inner_->pending_output() : early_output_.size(); }
  void shutdown_write() override;
  void close() override;
  bool open() const override;
  bool failed() const override;
  int error() const override { return inner_ ? inner_->error() : error_; }
  uint64_t bytes_read() const override { return inner_ ? inner_->bytes_read() : 0; }
  uint64_t bytes_written() const override { return inner_ ? inner_->bytes_written() : 0; }
  std::string_view peer_identity() const override {
    return inner_ ? inner_->peer_identity() : std::string_view();
  }
  std::string_view alpn() const override { return inner_ ? inner_->alpn() : std::string_view(); }
  void set_callbacks(TransportCallbacks* callbacks) override {
    callbacks_ = callbacks;
    if (inner_) inner_->set_callbacks(callbacks);
  }

  // IoHandler (while detecting only: the chosen transport registers itself).
  void on_io(uint32_t events) override;

 private:
  enum class State : uint8_t { kDetecting, kHandedOver, kFailed, kClosed };

  // What the bytes peeked so far allow: kPending to wait for more; kNoData
  // with error_ set when the socket failed.
  Detection peek();
  void on_timeout();
  // Gives the socket to the transport `detection` calls for, replays what
  // was written meanwhile and, when `signal`, tells the owner what is
  // already there to read or already sent.
  void hand_over(Detection detection, bool signal);
  void fail();
  void report_failure();

  EventLoop& loop_;
  int fd_;  // -1 once handed over or closed
  TransportCallbacks* callbacks_;
  std::shared_ptr<TransportFactory> tls_;  // dropped once decided
  std::shared_ptr<DetectionCounts> counts_;
  Timer timer_;
  std::unique_ptr<Transport> inner_;
  Buffer early_output_;  // written before the decision
  State state_ = State::kDetecting;
  Detection detection_ = Detection::kPending;
  bool registered_ = false;      // on the loop (as this handler)
  bool early_shutdown_ = false;  // shutdown_write() before the decision
  size_t peeked_ = 0;            // bytes the last peek saw
  int error_ = 0;
};

// A permissive listener's factory: every accepted connection is a
// DetectingTransport (the listener's owner may static_cast to read its
// detection()). Shared by every worker: it holds nothing mutable.
class DetectingTransportFactory final : public TransportFactory {
 public:
  // Long enough for a client across a slow link to get its first segment in;
  // short enough that a server-speaks-first protocol still greets within a
  // second.
  static constexpr Duration kDefaultTimeout = std::chrono::seconds(1);

  // `tls` makes the TLS server side (TlsTransportFactory::server); `timeout`
  // (positive) is how long a client that sent too little to tell may wait
  // before it is served as plain text.
  // `counts` (may be null) hears how each connection was decided.
  explicit DetectingTransportFactory(std::shared_ptr<TransportFactory> tls,
                                     Duration timeout = kDefaultTimeout,
                                     std::shared_ptr<DetectionCounts> counts = nullptr);

  std::unique_ptr<Transport> accepted(EventLoop& loop, int fd, TransportCallbacks* callbacks) override;
  // Server side only: answers EINVAL.
  std::unique_ptr<Transport> connect(EventLoop& loop, const SocketAddress& address,
                                     TransportCallbacks* callbacks, int& error) override;

  Duration timeout() const { return timeout_; }

 private:
  std::shared_ptr<TransportFactory> tls_;
  Duration timeout_;
  std::shared_ptr<DetectionCounts> counts_;
};

}  // namespace trellis::net
