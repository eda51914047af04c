// The transport seam: the byte stream under every connection. Plain TCP today
// (net::Socket), TLS next; the codecs, the TCP proxy and the connection pools
// see only this interface, and which transport sits under a connection is
// chosen where the connection is made, by the TransportFactory of its
// listener or its cluster.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "net/buffer.h"
#include "net/event_loop.h"

namespace trellis::net {

struct SocketAddress;

enum class ReadResult : uint8_t { kData, kAgain, kEof, kError };

// Called by a transport on its loop's thread. A callback may close the
// transport; it must not destroy it (hand it to EventLoop::defer_delete).
class TransportCallbacks {
 public:
  // Data or EOF may be read (call Transport::read until it says kAgain).
  virtual void on_readable() = 0;
  // Buffered output drained completely; also: a connect (and, for TLS, its
  // handshake) finished.
  virtual void on_writable() = 0;
  // The connection failed (reset, connect error); `error` is an errno value.
  virtual void on_transport_error(int error) = 0;

 protected:
  ~TransportCallbacks() = default;
};

// A Deferred: one closed from inside its own callback is handed to
// EventLoop::defer_delete, since the loop may still hold its event.
class Transport : public Deferred {
 public:
  // Appends what is available (up to `max` bytes) to `into`. kAgain: nothing
  // more until the next on_readable().
  virtual ReadResult read(Buffer& into, size_t max = Buffer::kBlockSize, size_t* n_read = nullptr) = 0;
  // Whether a read() may find data now (false: wait for on_readable()).
  virtual bool read_ready() const = 0;
  // Sends what the peer takes now and buffers the rest. False after a fatal
  // error; the caller then closes (no callback is made from inside write).
  virtual bool write(std::string_view data) = 0;
  // Consumes `data`.
  virtual bool write(Buffer& data) = 0;
  virtual size_t pending_output() const = 0;
  // Ends the sending direction once buffered output is sent.
  virtual void shutdown_write() = 0;
  // Closes now; pending output is dropped. No callback follows.
  virtual void close() = 0;
  virtual bool open() const = 0;
  virtual bool failed() const = 0;
  // The errno value of the failure, when failed().
  virtual int error() const = 0;
  // Application bytes, as the connection's user read and wrote them.
  virtual uint64_t bytes_read() const = 0;
  virtual uint64_t bytes_written() const = 0;
  // The peer's verified identity (the SPIFFE ID of its certificate); empty
  // without one, as on plain TCP.
  virtual std::string_view peer_identity() const { return {}; }
  // The application protocol agreed by ALPN; empty when none.
  virtual std::string_view alpn() const { return {}; }
  // Hands the connection to another owner (a server codec giving it to the
  // codec of the protocol the client turned out to speak): later callbacks
  // go to `callbacks`. Call from outside this transport's callbacks.
  virtual void set_callbacks(TransportCallbacks* callbacks) = 0;
};

// Makes the transports of one kind (plain, or TLS with one context).
class TransportFactory {
 public:
  virtual ~TransportFactory() = default;
  // The server side of a connection a listener accepted (takes `fd`).
  virtual std::unique_ptr<Transport> accepted(EventLoop& loop, int fd, TransportCallbacks* callbacks) = 0;
  // Starts connecting to `address`; on_writable() says when it is up. Null
  // with `error` (an errno value) when not even the attempt can start.
  virtual std::unique_ptr<Transport> connect(EventLoop& loop, const SocketAddress& address,
                                             TransportCallbacks* callbacks, int& error) = 0;
};

// Plain TCP: net::Socket.
class PlainTransportFactory final : public TransportFactory {
 public:
  std::unique_ptr<Transport> accepted(EventLoop& loop, int fd, TransportCallbacks* callbacks) override;
  std::unique_ptr<Transport> connect(EventLoop& loop, const SocketAddress& address,
                                     TransportCallbacks* callbacks, int& error) override;
  // Stateless: one instance serves every listener and cluster.
  static const std::shared_ptr<TransportFactory>& shared();
};

}  // namespace trellis::net
