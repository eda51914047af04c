// The TLS transport: TLS (OpenSSL) over a non-blocking socket on an event
// loop, behind net::Transport with net::Socket's contracts (readiness for
// edge-triggered epoll, write-through sends that buffer only what the peer
// did not take, application byte counts); and its factory, which makes the
// server side for listeners and the client side, with server identity checks
// and session resumption, for clusters.
//
// The handshake has no timeout of its own: on the client side the caller's
// connect timeout covers connect and handshake (on_writable() comes after
// both), on the server side the downstream connection's idle timeout does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

#include "common/result.h"
#include "net/buffer.h"
#include "net/event_loop.h"
#include "net/tls_context.h"
#include "net/transport.h"

namespace trellis::net {

struct TlsClientPolicy;
struct TlsSessionOwner;

class TlsTransport final : public Transport, public IoHandler, public TlsConnectionHooks {
 public:
  // Made by TlsTransportFactory. Takes `fd`. `client` is null for the server
  // side; `destination` ("ip:port") keys the client's resumable session.
  TlsTransport(EventLoop& loop, int fd, TransportCallbacks* callbacks,
               std::shared_ptr<const TlsContext> context, std::shared_ptr<const TlsClientPolicy> client,
               std::string destination, bool connecting);
  ~TlsTransport() override;
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  int fd() const { return fd_; }
  // Whether the handshake is done (until then reads say kAgain and writes
  // are buffered).
  bool established() const { return phase_ == Phase::kEstablished; }
  // Whether the handshake resumed an earlier session (no certificates
  // exchanged, no full key exchange).
  bool resumed() const { return resumed_; }
  // Why the transport failed, for logs ("server identity spiffe://... is not
  // one of the destination's identities"); empty when it has not.
  std::string_view failure_reason() const { return failure_reason_; }

  // Transport. Failures of the handshake reach on_transport_error() with
  // EACCES when this side refused the peer's certificate or identity, EPROTO
  // for other TLS failures, and the socket's errno for socket failures.
  ReadResult read(Buffer& into, size_t max = Buffer::kBlockSize, size_t* n_read = nullptr) override;
  bool read_ready() const override { return phase_ == Phase::kEstablished && read_ready_; }
  bool write(std::string_view data) override;
  bool write(Buffer& data) override;
  size_t pending_output() const override { return out_.size(); }
  // Sends close_notify, then FIN, once buffered output is sent.
  void shutdown_write() override;
  void close() override;
  bool open() const override { return fd_ >= 0; }
  void set_callbacks(TransportCallbacks* callbacks) override { callbacks_ = callbacks; }
  bool failed() const override { return phase_ == Phase::kFailed; }
  int error() const override { return error_; }
  uint64_t bytes_read() const override { return bytes_read_; }
  uint64_t bytes_written() const override { return bytes_written_; }
  std::string_view peer_identity() const override { return peer_identity_; }
  std::string_view alpn() const override { return alpn_; }

  // IoHandler
  void on_io(uint32_t events) override;

  // TlsConnectionHooks
  void chain_rejected(int x509_error, int depth) override;
  bool accept_peer(X509* leaf) override;
  bool keep_session(SSL_SESSION* session) override;

 private:
  friend struct SocketBio;
  // What the socket under OpenSSL saw last; written by the BIO.
  struct SocketState {
    int fd = -1;
    int error = 0;         // errno of the last failed send or recv
    bool drained = false;  // the last recv was short: nothing more until an edge
    bool eof = false;      // recv saw the peer's FIN
  };
  enum class Phase : uint8_t { kConnecting, kHandshaking, kEstablished, kFailed };
  enum class Shutdown : uint8_t { kNone, kPending, kSending, kDone };

  void handshake();
  void finish_handshake();
  bool check_server_identity(std::string_view identity);
  std::shared_ptr<const TlsSessionOwner> session_owner() const;
  // Encrypts and sends from `data` until the socket pushes back; the
  // application bytes sent.
  size_t send_some(const char* data, size_t size);
  void flush();
  void send_close_notify();
  // Never calls back: from write() and read() the caller learns it from the
  // return value; from on_io() the error is reported right after.
  void fail(int error, std::string reason);
  void fail_ssl(int ssl_error, std::string_view during);
  void report_failure();

  EventLoop& loop_;
  int fd_;
  TransportCallbacks* callbacks_;
  std::shared_ptr<const TlsContext> context_;      // the SSL's callbacks use it
  std::shared_ptr<const TlsClientPolicy> client_;  // null on the server side
  std::string destination_;
  SSL* ssl_ = nullptr;
  SocketState socket_;
  Buffer out_;  // plaintext not yet taken by SSL_write
  Phase phase_;
  Shutdown shutdown_ = Shutdown::kNone;
  bool read_ready_ = false;   // SSL_read may return data (or EOF) without waiting
  bool write_ready_ = false;  // the socket takes data
  bool peer_closed_ = false;  // RDHUP seen: keep reading until EOF
  // OpenSSL sometimes needs the other direction: a read that must first
  // send (a key update answer), a write that must first receive.
  bool read_wants_write_ = false;
  bool write_wants_read_ = false;
  bool peer_refused_ = false;  // this side refused the peer's certificate or identity
  bool resumed_ = false;
  int error_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  std::string peer_identity_;
  std::string alpn_;
  std::string failure_reason_;
};

// How a client verifies the servers it connects to.
struct TlsClientOptions {
  // The SPIFFE IDs the destination service runs as: a server whose verified
  // identity is not one of them is refused. Empty: any server whose chain
  // ends at the trust bundle (only where no identity is known).
  std::vector<std::string> accepted_identities;
  // Sent as SNI; empty: none (or verify_name, when that is a DNS name).
  std::string server_name;
  // Verify a DNS name or IP address in the server's certificate instead of a
  // SPIFFE identity (a CLI talking to an API server by name).
  std::string verify_name;
};

class TlsTransportFactory final : public TransportFactory {
 public:
  // A listener's factory: accepted connections are TLS servers with
  // `context` (a server context).
  static Result<std::shared_ptr<TlsTransportFactory>> server(std::shared_ptr<const TlsContext> context);
  // A cluster's factory: connections are TLS clients with `context` (a
  // client context), verifying servers as `options` say. Shared by every
  // worker: it holds nothing mutable (resumable sessions are per thread,
  // see tls_session_cache.h).
  static Result<std::shared_ptr<TlsTransportFactory>> client(std::shared_ptr<const TlsContext> context,
                                                             TlsClientOptions options);

  // Server factories only.
  std::unique_ptr<Transport> accepted(EventLoop& loop, int fd, TransportCallbacks* callbacks) override;
  // Client factories only (a server factory answers EINVAL). Offers the
  // session this thread last got from `address`, if any.
  std::unique_ptr<Transport> connect(EventLoop& loop, const SocketAddress& address,
                                     TransportCallbacks* callbacks, int& error) override;

 private:
  TlsTransportFactory(std::shared_ptr<const TlsContext> context,
                      std::shared_ptr<const TlsClientPolicy> client);

  std::shared_ptr<const TlsContext> context_;
  std::shared_ptr<const TlsClientPolicy> client_;  // null for a server factory
};

}  // namespace trellis::net
