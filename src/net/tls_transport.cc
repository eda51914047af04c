#include "net/tls_transport.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/text.h"
#include "net/address.h"
#include "net/tls_identity.h"
#include "net/tls_session_cache.h"

namespace trellis::net {

// What a client factory's connections share: how they verify servers, and
// the owner of the sessions they resume.
struct TlsClientPolicy {
  std::vector<std::string> accepted_identities;  // a handful: a linear search beats hashing
  std::string server_name;                       // SNI; empty: none
  std::string verify_name;                       // DNS name or IP; empty: SPIFFE identities
  bool verify_ip = false;
  TlsSessionOwner sessions;
};

// The socket under OpenSSL: a BIO over the transport's descriptor, in place
// of OpenSSL's socket BIO, for what that one does not do: send with
// MSG_NOSIGNAL (no SIGPIPE, whoever embeds us), and note a short recv. A
// short recv means the socket is drained and new data brings a new epoll
// edge, so the transport stops reading without a recv that would only say
// EAGAIN, as net::Socket does.
struct SocketBio {
  static const BIO_METHOD* method() {
    static const BIO_METHOD* const made = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "trellis socket");
      if (m == nullptr) std::abort();  // at start-up, out of memory
      BIO_meth_set_create(m, create);
      BIO_meth_set_write_ex(m, write);
      BIO_meth_set_read_ex(m, read);
      BIO_meth_set_ctrl(m, control);
      return m;
    }();
    return made;
  }

  static TlsTransport::SocketState& state(BIO* bio) {
    return *static_cast<TlsTransport::SocketState*>(BIO_get_data(bio));
  }

  static int create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }

  static int write(BIO* bio, const char* data, size_t size, size_t* written) {
    TlsTransport::SocketState& s = state(bio);
    BIO_clear_retry_flags(bio);
    for (;;) {
      ssize_t n = ::send(s.fd, data, size, MSG_NOSIGNAL);
      if (n >= 0) {
        *written = static_cast<size_t>(n);
        return 1;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        BIO_set_retry_write(bio);
      } else {
        s.error = errno;
      }
      return 0;
    }
  }

  static int read(BIO* bio, char* data, size_t size, size_t* read) {
    TlsTransport::SocketState& s = state(bio);
    BIO_clear_retry_flags(bio);
    for (;;) {
      ssize_t n = ::recv(s.fd, data, size, 0);
      if (n > 0) {
        *read = static_cast<size_t>(n);
        s.drained = static_cast<size_t>(n) < size;
        return 1;
      }
      if (n == 0) {
        s.eof = true;
        s.drained = true;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s.drained = true;
        BIO_set_retry_read(bio);
      } else {
        s.error = errno;
      }
      return 0;
    }
  }

  static long control(BIO* bio, int command, long, void*) {
    switch (command) {
      case BIO_CTRL_FLUSH:
        return 1;  // nothing buffered here
      case BIO_CTRL_EOF:
        return state(bio).eof ? 1 : 0;  // how OpenSSL tells a FIN from an error
      default:
        return 0;
    }
  }
};

namespace {

int socket_error(int fd) {
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
  return error;
}

bool is_ip_address(const std::string& text) {
  unsigned char address[sizeof(in6_addr)];
  return inet_pton(AF_INET, text.c_str(), address) == 1 || inet_pton(AF_INET6, text.c_str(), address) == 1;
}

}  // namespace

TlsTransport::TlsTransport(EventLoop& loop, int fd, TransportCallbacks* callbacks,
                           std::shared_ptr<const TlsContext> context,
                           std::shared_ptr<const TlsClientPolicy> client, std::string destination,
                           bool connecting)
    : loop_(loop),
      fd_(fd),
      callbacks_(callbacks),
      context_(std::move(context)),
      client_(std::move(client)),
      destination_(std::move(destination)),
      phase_(connecting ? Phase::kConnecting : Phase::kHandshaking) {
  socket_.fd = fd_;
  ssl_ = SSL_new(context_->native());
  BIO* bio = ssl_ != nullptr ? BIO_new(SocketBio::method()) : nullptr;
  if (bio == nullptr) std::abort();  // out of memory: nothing sensible to do on the data path
  BIO_set_data(bio, &socket_);
  SSL_set_bio(ssl_, bio, bio);
  // The context's callbacks reach this connection through the app data, as
  // the hooks interface (not `this` as such: this class has several bases).
  SSL_set_app_data(ssl_, static_cast<TlsConnectionHooks*>(this));
  if (client_) {
    SSL_set_connect_state(ssl_);
    if (!client_->server_name.empty()) SSL_set_tlsext_host_name(ssl_, client_->server_name.c_str());
    if (!client_->verify_name.empty()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      if (client_->verify_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, client_->verify_name.c_str());
      } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, client_->verify_name.c_str(), 0);
      }
    }
    if (SSL_SESSION* session = TlsSessionCache::this_thread().find(session_owner(), destination_)) {
      SSL_set_session(ssl_, session);
    }
  } else {
    SSL_set_accept_state(ssl_);
    // An accepted socket may already hold the ClientHello.
    read_ready_ = write_ready_ = true;
  }
  // The registration's first edge (the socket is writable once connected)
  // starts the handshake.
  loop_.add(fd_, this);
}

TlsTransport::~TlsTransport() { close(); }

std::shared_ptr<const TlsSessionOwner> TlsTransport::session_owner() const {
  return std::shared_ptr<const TlsSessionOwner>(client_, &client_->sessions);
}

void TlsTransport::close() {
  if (fd_ < 0) return;
  loop_.remove(fd_);
  // SSL_free treats a session not ended by close_notify as bad: it marks it
  // not resumable and takes the context's lock, shared by every worker, to
  // drop it from the context's cache. Closing an established connection
  // without close_notify is how pools drop idle connections; its session is
  // good. A failed connection's session is dropped.
  if (phase_ == Phase::kEstablished) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);
  ssl_ = nullptr;
  ::close(fd_);
  fd_ = -1;
  socket_.fd = -1;
  read_ready_ = write_ready_ = false;
  out_.release();
}

ReadResult TlsTransport::read(Buffer& into, size_t max, size_t* n_read) {
  if (n_read) *n_read = 0;
  if (fd_ < 0 || phase_ == Phase::kFailed) return ReadResult::kError;
  if (phase_ != Phase::kEstablished || !read_ready_) return ReadResult::kAgain;
  char* p = into.prepare(max);
  size_t room = std::min(into.tail_room(), max);
  ERR_clear_error();
  size_t n = 0;
  if (SSL_read_ex(ssl_, p, room, &n) == 1) {
    into.commit(n);
    bytes_read_ += n;
    if (n_read) *n_read = n;
    // Socket's rule one layer up: after a short recv nothing more comes
    // until the next edge, unless OpenSSL still holds bytes it read ahead.
    read_ready_ = peer_closed_ || !socket_.drained || SSL_has_pending(ssl_) == 1;
    return ReadResult::kData;
  }
  // Also here: a TLS 1.3 session ticket or key update, taken in and
  // answered without data for the caller.
  int e = SSL_get_error(ssl_, 0);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      read_ready_ = false;
      return ReadResult::kAgain;
    case SSL_ERROR_WANT_WRITE:
      read_ready_ = write_ready_ = false;
      read_wants_write_ = true;
      return ReadResult::kAgain;
    case SSL_ERROR_ZERO_RETURN:
      read_ready_ = false;
      return ReadResult::kEof;
    default:
      fail_ssl(e, "TLS read");
      return ReadResult::kError;
  }
}

bool TlsTransport::write(std::string_view data) {
  if (fd_ < 0 || phase_ == Phase::kFailed || shutdown_ == Shutdown::kSending ||
      shutdown_ == Shutdown::kDone) {
    return false;
  }
  if (data.empty()) return true;
  if (phase_ == Phase::kEstablished && out_.empty() && write_ready_ && !write_wants_read_) {
    size_t n = send_some(data.data(), data.size());
    if (phase_ == Phase::kFailed) return false;
    data.remove_prefix(n);
    if (data.empty()) return true;
  }
  // When OpenSSL stopped inside a record it must be offered the same bytes
  // again: they are the front of what is kept here (from another address,
  // which SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows).
  out_.append(data);
  return true;
}

bool TlsTransport::write(Buffer& data) {
  bool ok = write(data.view());
  data.clear();
  return ok;
}

size_t TlsTransport::send_some(const char* data, size_t size) {
  size_t sent = 0;
  write_wants_read_ = false;
  while (sent < size) {
    ERR_clear_error();
    size_t n = 0;
    // With SSL_MODE_ENABLE_PARTIAL_WRITE each call sends one record.
    if (SSL_write_ex(ssl_, data + sent, size - sent, &n) == 1) {
      sent += n;
      continue;
    }
    int e = SSL_get_error(ssl_, 0);
    if (e == SSL_ERROR_WANT_WRITE) {
      write_ready_ = false;
    } else if (e == SSL_ERROR_WANT_READ) {
      write_wants_read_ = true;
    } else {
      fail_ssl(e, "TLS write");
    }
    break;
  }
  bytes_written_ += sent;
  return sent;
}

void TlsTransport::flush() {
  if (!out_.empty()) {
    out_.consume(send_some(out_.data(), out_.size()));
    if (phase_ == Phase::kFailed || !out_.empty()) return;
  }
  if (shutdown_ == Shutdown::kPending || shutdown_ == Shutdown::kSending) send_close_notify();
}

void TlsTransport::shutdown_write() {
  if (fd_ < 0 || phase_ == Phase::kFailed || shutdown_ != Shutdown::kNone) return;
  shutdown_ = Shutdown::kPending;
  if (phase_ == Phase::kEstablished && out_.empty() && write_ready_) send_close_notify();
}

void TlsTransport::send_close_notify() {
  shutdown_ = Shutdown::kSending;
  ERR_clear_error();
  // 0: sent, the peer's not seen yet; 1: both. We never wait for the peer's:
  // reading goes on until it comes.
  int result = SSL_shutdown(ssl_);
  if (result >= 0) {
    ::shutdown(fd_, SHUT_WR);
    shutdown_ = Shutdown::kDone;
    return;
  }
  int e = SSL_get_error(ssl_, result);
  if (e == SSL_ERROR_WANT_WRITE) {
    write_ready_ = false;
    return;
  }
  fail_ssl(e, "TLS close_notify");
}

void TlsTransport::fail(int error, std::string reason) {
  if (phase_ == Phase::kFailed) return;
  phase_ = Phase::kFailed;
  error_ = error;
  // A hook may have said why already, better than the generic reason.
  if (failure_reason_.empty()) failure_reason_ = std::move(reason);
  read_ready_ = write_ready_ = false;
}

void TlsTransport::fail_ssl(int ssl_error, std::string_view during) {
  unsigned long e = ERR_peek_last_error();
  int reason_code = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
  std::string reason(during);
  int code;
  if (peer_refused_) {
    code = EACCES;
  } else if (reason_code == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    code = EACCES;
    reason = "client presented no certificate, and one is required";
  } else if (ssl_error == SSL_ERROR_SYSCALL || reason_code == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    code = socket_.error != 0 ? socket_.error : ECONNRESET;
    reason += ": ";
    reason += socket_.error != 0 ? std::strerror(code) : "connection closed by the peer";
  } else {
    code = EPROTO;
    const char* text = e != 0 ? ERR_reason_error_string(e) : nullptr;
    reason += ": ";
    reason += text != nullptr ? text : "protocol error";
  }
  ERR_clear_error();
  fail(code, std::move(reason));
}

void TlsTransport::report_failure() { callbacks_->on_transport_error(error_); }

void TlsTransport::on_io(uint32_t events) {
  if (fd_ < 0 || phase_ == Phase::kFailed) return;
  if (phase_ == Phase::kConnecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = socket_error(fd_);
    if (err != 0 || (events & EPOLLERR)) {
      if (err == 0) err = ECONNREFUSED;
      fail(err, std::string("connect: ") + std::strerror(err));
      report_failure();
      return;
    }
    phase_ = Phase::kHandshaking;
    read_ready_ = write_ready_ = true;
  }
  if (events & (EPOLLERR | EPOLLHUP)) {
    int err = socket_error(fd_);
    if (err != 0) {
      fail(err, std::string("socket: ") + std::strerror(err));
      report_failure();
      return;
    }
    peer_closed_ = true;
  }
  if (events & EPOLLRDHUP) peer_closed_ = true;
  bool readable = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP);
  bool writable = events & EPOLLOUT;
  if (readable) {
    read_ready_ = true;
    socket_.drained = false;
  }
  if (writable) write_ready_ = true;

  if (phase_ == Phase::kHandshaking) {
    // Waiting on one direction (WANT_READ cleared read_ready_, WANT_WRITE
    // write_ready_): an edge of the other one cannot move it on.
    if (read_ready_ && write_ready_) handshake();
    return;
  }

  if (writable && read_wants_write_) {
    read_wants_write_ = false;
    read_ready_ = readable = true;
  }
  bool can_send = write_wants_read_ ? readable : writable;
  if (can_send && (!out_.empty() || shutdown_ == Shutdown::kPending || shutdown_ == Shutdown::kSending)) {
    flush();
    if (phase_ == Phase::kFailed) {
      report_failure();
      return;
    }
    if (out_.empty() && shutdown_ != Shutdown::kSending) {
      out_.release();
      callbacks_->on_writable();
      if (fd_ < 0 || phase_ == Phase::kFailed) return;
    }
  }
  if (readable) callbacks_->on_readable();
}

void TlsTransport::handshake() {
  ERR_clear_error();
  int result = SSL_do_handshake(ssl_);
  if (result == 1) {
    finish_handshake();
    return;
  }
  int e = SSL_get_error(ssl_, result);
  if (e == SSL_ERROR_WANT_READ) {
    read_ready_ = false;
    return;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    write_ready_ = false;
    return;
  }
  fail_ssl(e, "TLS handshake");
  report_failure();
}

void TlsTransport::finish_handshake() {
  phase_ = Phase::kEstablished;
  resumed_ = SSL_session_reused(ssl_) == 1;
  peer_identity_ = spiffe_identity(SSL_get0_peer_certificate(ssl_));
  const unsigned char* protocol = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(ssl_, &protocol, &length);
  if (protocol != nullptr) alpn_.assign(reinterpret_cast<const char*>(protocol), length);
  // A resumed session skips certificate verification. Its server was
  // verified when the session was made, by this factory's rules (sessions
  // are kept per factory); checked again all the same, so the rule holds for
  // every connection whatever a cache holds.
  if (client_ && resumed_ && !check_server_identity(peer_identity_)) {
    fail(EACCES, {});
    report_failure();
    return;
  }
  bool had_output = !out_.empty() || shutdown_ == Shutdown::kPending;
  if (had_output && write_ready_) {
    flush();
    if (phase_ == Phase::kFailed) {
      report_failure();
      return;
    }
  }
  read_ready_ = peer_closed_ || !socket_.drained || SSL_has_pending(ssl_) == 1;
  // As a plain connect: the client learns it is up. A server hears only
  // that output written during the handshake went out.
  if (client_ || (had_output && out_.empty())) {
    if (out_.empty()) out_.release();
    callbacks_->on_writable();
    if (fd_ < 0 || phase_ == Phase::kFailed) return;
  }
  if (read_ready_) callbacks_->on_readable();
}

bool TlsTransport::check_server_identity(std::string_view identity) {
  if (!client_->verify_name.empty() || client_->accepted_identities.empty()) return true;
  const auto& accepted = client_->accepted_identities;
  if (!identity.empty() && std::find(accepted.begin(), accepted.end(), identity) != accepted.end())
    return true;
  peer_refused_ = true;
  failure_reason_ =
      identity.empty()
          ? "server certificate has no SPIFFE identity (exactly one spiffe:// URI SAN expected)"
          : "server identity " + std::string(identity) + " is not one of the destination's identities";
  return false;
}

void TlsTransport::chain_rejected(int x509_error, int depth) {
  peer_refused_ = true;
  failure_reason_ = client_ ? "server" : "client";
  failure_reason_ += " certificate refused: ";
  failure_reason_ += X509_verify_cert_error_string(x509_error);
  if (depth > 0) failure_reason_ += " (certificate " + std::to_string(depth) + " of its chain)";
}

bool TlsTransport::accept_peer(X509* leaf) {
  // A server admits any client chained to the bundle: authorization policy
  // decides later, on peer_identity().
  if (!client_) return true;
  return check_server_identity(spiffe_identity(leaf));
}

bool TlsTransport::keep_session(SSL_SESSION* session) {
  if (!client_) return false;
  TlsSessionCache::this_thread().store(session_owner(), destination_, session);
  return true;
}

TlsTransportFactory::TlsTransportFactory(std::shared_ptr<const TlsContext> context,
                                         std::shared_ptr<const TlsClientPolicy> client)
    : context_(std::move(context)), client_(std::move(client)) {}

Result<std::shared_ptr<TlsTransportFactory>> TlsTransportFactory::server(
    std::shared_ptr<const TlsContext> context) {
  if (!context || context->role() != TlsRole::kServer) {
    return make_error("a TLS server transport needs a server context");
  }
  return std::shared_ptr<TlsTransportFactory>(new TlsTransportFactory(std::move(context), nullptr));
}

Result<std::shared_ptr<TlsTransportFactory>> TlsTransportFactory::client(
    std::shared_ptr<const TlsContext> context, TlsClientOptions options) {
  if (!context || context->role() != TlsRole::kClient) {
    return make_error("a TLS client transport needs a client context");
  }
  for (const std::string& id : options.accepted_identities) {
    if (!is_spiffe_id(id)) {
      return make_error("accepted identities: " + in_quotes(id) +
                        " is not a SPIFFE ID (spiffe://<trust domain>/<path>)");
    }
  }
  if (!options.verify_name.empty() && !options.accepted_identities.empty()) {
    return make_error("verify either a DNS name or IP (verify name) or SPIFFE identities, not both");
  }
  if (!options.server_name.empty() && is_ip_address(options.server_name)) {
    return make_error("server name: " + in_quotes(options.server_name) +
                      " is an IP address; SNI carries names");
  }
  auto policy = std::make_shared<TlsClientPolicy>();
  policy->accepted_identities = std::move(options.accepted_identities);
  policy->verify_name = std::move(options.verify_name);
  policy->verify_ip = !policy->verify_name.empty() && is_ip_address(policy->verify_name);
  policy->server_name = std::move(options.server_name);
  // A server verified by its DNS name usually picks its certificate by it.
  if (policy->server_name.empty() && !policy->verify_name.empty() && !policy->verify_ip) {
    policy->server_name = policy->verify_name;
  }
  return std::shared_ptr<TlsTransportFactory>(new TlsTransportFactory(std::move(context), std::move(policy)));
}

std::unique_ptr<Transport> TlsTransportFactory::accepted(EventLoop& loop, int fd,
                                                         TransportCallbacks* callbacks) {
  assert(client_ == nullptr && "a client factory accepts no connections");
  return std::make_unique<TlsTransport>(loop, fd, callbacks, context_, nullptr, std::string(), false);
}

std::unique_ptr<Transport> TlsTransportFactory::connect(EventLoop& loop, const SocketAddress& address,
                                                        TransportCallbacks* callbacks, int& error) {
  if (!client_) {
    error = EINVAL;
    return nullptr;
  }
  int fd = start_connect(address, error);
  if (fd < 0) return nullptr;
  return std::make_unique<TlsTransport>(loop, fd, callbacks, context_, client_, address.text, true);
}

}  // namespace trellis::net
