// TLS contexts: the credentials, trust and options of one side of TLS,
// built once from PEM text into an OpenSSL SSL_CTX, then immutable and
// shared (std::shared_ptr<const TlsContext>) by every worker thread that
// makes connections with it. Nothing on the connection path locks or
// changes it; a certificate renewal builds a new context.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

#include "common/result.h"

namespace trellis::net {

enum class TlsRole : uint8_t { kServer, kClient };

// Whether a server asks its clients for a certificate.
enum class ClientCertificate : uint8_t {
  kRequired,  // mutual TLS: a client without a certificate is refused
  kOptional,  // asked for, verified when shown; a client may show none
  kNone,      // not asked for (a gateway facing clients outside the mesh)
};

// An extra certificate of a server, chosen by the name the client asks for
// (SNI): "api.example.com" exactly, or "*.example.com" for any one label in
// front of "example.com". An exact name wins over a wildcard.
struct TlsServerNameCertificate {
  std::string server_name;
  std::string certificate_chain_pem;
  std::string private_key_pem;
};

struct TlsContextOptions {
  TlsRole role = TlsRole::kClient;
  // The leaf certificate first, then its intermediates. A server needs one;
  // a client without one shows no certificate.
  std::string certificate_chain_pem;
  // The leaf's key, unencrypted PEM (PKCS#8 or traditional).
  std::string private_key_pem;
  // The roots a peer's chain may end at: one or several certificates, since
  // roots rotate in steps and a peer chained to any of them is accepted.
  // Needed unless the context is a server that asks no client certificate.
  std::string trust_bundle_pem;
  // Mesh contexts speak TLS 1.3 only. Set for gateways facing clients
  // outside the mesh: TLS 1.2 is then allowed too, with ECDHE and AEAD
  // cipher suites only.
  bool allow_tls12 = false;
  // ALPN protocol ids ("h2", "http/1.1") in preference order: a client
  // offers them; a server picks its most preferred one the client offers,
  // and goes on without ALPN when there is none in common.
  std::vector<std::string> alpn;
  // Server only.
  ClientCertificate client_certificate = ClientCertificate::kRequired;
  std::vector<TlsServerNameCertificate> server_names;
};

// What a connection lets its context's OpenSSL callbacks tell it. A
// connection sets itself as its SSL's app data (SSL_set_app_data); the
// callbacks run on the connection's thread, inside its handshake or read.
class TlsConnectionHooks {
 public:
  // The peer's chain did not verify against the trust bundle.
  virtual void chain_rejected(int x509_error, int depth) = 0;
  // The peer's chain verified; whether the connection accepts the peer
  // `leaf` names (a client checks the server's identity here).
  virtual bool accept_peer(X509* leaf) = 0;
  // A session the server sent for resumption (client side). True: the
  // connection keeps the reference to `session`.
  virtual bool keep_session(SSL_SESSION* session) = 0;

 protected:
  ~TlsConnectionHooks() = default;
};

class TlsContext {
 public:
  // Builds a context. Errors say which part is wrong ("certificate chain:
  // ...", "private key does not match the certificate", "trust bundle: no
  // certificate") and never quote the PEM text, so no key material reaches a
  // log through them.
  static Result<std::shared_ptr<const TlsContext>> create(const TlsContextOptions& options);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  TlsRole role() const { return role_; }
  // For SSL_new, from any thread. Not to be changed: other threads use it.
  SSL_CTX* native() const { return ctx_; }

 private:
  struct NamedCredential;
  TlsContext();
  static int select_certificate(SSL* ssl, void* arg);
  static int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* out_length,
                         const unsigned char* in, unsigned in_length, void* arg);
  const NamedCredential* credential_for(std::string_view server_name) const;

  SSL_CTX* ctx_ = nullptr;
  TlsRole role_ = TlsRole::kClient;
  std::string alpn_wire_;  // length-prefixed ids, as ALPN sends them
  std::vector<NamedCredential> named_;
};

}  // namespace trellis::net
