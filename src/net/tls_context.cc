#include "net/tls_context.h"

#include <strings.h>

#include <climits>
#include <cstring>
#include <utility>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/text.h"
#include "net/tls_handles.h"
#include "net/tls_pem.h"

namespace trellis::net {
namespace {

// TLS 1.2, for gateways only: forward secrecy and AEAD, nothing else. TLS
// 1.3 suites are all AEAD with (EC)DHE already; OpenSSL's defaults stand.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Resumed sessions must come from a context with the same verification
// rules; each server context has its own random ticket keys, so the value
// itself only has to be set (OpenSSL refuses resumption with client
// verification and no id context).
constexpr unsigned char kSessionIdContext[] = "trellis";

// Every certificate in `pem`, in order. `what` names the input in errors.
Result<std::vector<UniqueX509>> read_certificates(std::string_view pem, const std::string& what) {
  auto certificates = read_pem_certificates(pem);
  if (!certificates) return make_error(what + ": " + certificates.error().message);
  if (certificates->empty()) return make_error(what + ": no certificate");
  return certificates;
}

Result<UniquePkey> read_private_key(std::string_view pem, const std::string& what) {
  if (pem.empty()) return make_error(what + ": missing");
  if (pem.size() > INT_MAX) return make_error(what + ": too large");
  UniqueBio bio = read_only_bio(pem);
  ERR_clear_error();
  UniquePkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    return make_error(what + ": cannot read it (" + last_openssl_reason() +
                      "); it must be an unencrypted PEM private key");
  }
  return key;
}

struct Credential {
  UniqueX509 leaf;
  UniquePkey key;
  UniqueX509Stack chain;  // intermediates, leaf excluded
};

// `prefix` starts error messages ("" or "server name \"x\": ").
Result<Credential> read_credential(std::string_view chain_pem, std::string_view key_pem,
                                   const std::string& prefix) {
  auto certificates = read_certificates(chain_pem, prefix + "certificate chain");
  if (!certificates) return certificates.error();
  auto key = read_private_key(key_pem, prefix + "private key");
  if (!key) return key.error();
  Credential credential;
  credential.leaf = std::move(certificates->front());
  credential.key = std::move(*key);
  if (X509_check_private_key(credential.leaf.get(), credential.key.get()) != 1) {
    ERR_clear_error();
    return make_error(prefix + "private key does not match the certificate");
  }
  credential.chain.reset(sk_X509_new_null());
  for (size_t i = 1; i < certificates->size(); ++i) {
    if (sk_X509_push(credential.chain.get(), (*certificates)[i].get()) <= 0) {
      return make_error(prefix + "certificate chain: out of memory");
    }
    (*certificates)[i].release();
  }
  return credential;
}

// Runs in place of X509_verify_cert when OpenSSL verifies a peer's chain:
// the chain first, then what the connection demands of the verified peer,
// so that a refusal fails the handshake with an alert to the peer.
int verify_peer(X509_STORE_CTX* store, void*) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* hooks = ssl != nullptr ? static_cast<TlsConnectionHooks*>(SSL_get_app_data(ssl)) : nullptr;
  if (X509_verify_cert(store) != 1) {
    if (hooks != nullptr) {
      hooks->chain_rejected(X509_STORE_CTX_get_error(store), X509_STORE_CTX_get_error_depth(store));
    }
    return 0;
  }
  if (hooks != nullptr && !hooks->accept_peer(X509_STORE_CTX_get0_cert(store))) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  return 1;
}

int keep_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* hooks = static_cast<TlsConnectionHooks*>(SSL_get_app_data(ssl));
  return hooks != nullptr && hooks->keep_session(session) ? 1 : 0;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

struct TlsContext::NamedCredential {
  std::string name;  // lower case; for a wildcard, the part after '*' (".example.com")
  bool wildcard = false;
  Credential credential;
};

TlsContext::TlsContext() = default;

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::shared_ptr<const TlsContext>> TlsContext::create(const TlsContextOptions& options) {
  bool server = options.role == TlsRole::kServer;
  if (!server && !options.server_names.empty()) {
    return make_error("server names: only a server chooses its certificate by name");
  }
  // Built in place: the callbacks below keep its address.
  std::shared_ptr<TlsContext> context(new TlsContext());
  context->role_ = options.role;
  ERR_clear_error();
  UniqueSslCtx ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) return make_error("cannot create a TLS context: " + last_openssl_reason());

  SSL_CTX_set_min_proto_version(ctx.get(), options.allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  if (options.allow_tls12 && SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers) != 1) {
    return make_error("cannot set the TLS 1.2 cipher suites: " + last_openssl_reason());
  }
  // A peer that closes without close_notify reads as end of stream, as on a
  // plain socket: the protocols on top frame their messages and see a
  // truncation themselves, and many peers skip close_notify.
  uint64_t flags = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF;
  if (server) flags |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  SSL_CTX_set_options(ctx.get(), flags);
  // Idle connections hand their 16 KiB+ record buffers back; writes report
  // each record sent (the transport counts exactly what went out, and keeps
  // only plaintext it could not send, from a buffer that may move).
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Reads take what the socket has, not one record header at a time: fewer
  // recv calls, and a short recv tells the transport the socket is drained.
  SSL_CTX_set_read_ahead(ctx.get(), 1);

  if (!options.certificate_chain_pem.empty() || !options.private_key_pem.empty()) {
    auto credential = read_credential(options.certificate_chain_pem, options.private_key_pem, "");
    if (!credential) return credential.error();
    if (SSL_CTX_use_certificate(ctx.get(), credential->leaf.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), credential->key.get()) != 1 ||
        SSL_CTX_set1_chain(ctx.get(), credential->chain.get()) != 1) {
      return make_error("certificate chain: not usable (" + last_openssl_reason() + ")");
    }
  } else if (server) {
    return make_error("certificate chain: a server needs a certificate");
  }

  bool verifies_peers = !server || options.client_certificate != ClientCertificate::kNone;
  if (verifies_peers || !options.trust_bundle_pem.empty()) {
    auto roots = read_certificates(options.trust_bundle_pem, "trust bundle");
    if (!roots) return roots.error();
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    for (const UniqueX509& root : *roots) {
      if (X509_STORE_add_cert(store, root.get()) != 1) {
        // The same root twice is harmless.
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
          return make_error("trust bundle: " + last_openssl_reason());
        }
        ERR_clear_error();
      }
    }
  }
  int verify_mode = SSL_VERIFY_PEER;
  if (server && options.client_certificate == ClientCertificate::kRequired) {
    verify_mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  }
  if (server && options.client_certificate == ClientCertificate::kNone) verify_mode = SSL_VERIFY_NONE;
  SSL_CTX_set_verify(ctx.get(), verify_mode, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx.get(), verify_peer, nullptr);

  if (server) {
    // Resumption by stateless tickets only (TLS 1.3 and 1.2). The server's
    // session cache is a table every worker would lock on each handshake
    // and each close, and tickets make it unnecessary.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx.get(), kSessionIdContext, sizeof(kSessionIdContext) - 1);
    // A client keeps one session per destination: one ticket is enough.
    SSL_CTX_set_num_tickets(ctx.get(), 1);
  } else {
    // Client sessions are kept by the transport factory, per thread; OpenSSL
    // only hands them over.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx.get(), keep_new_session);
  }

  for (const std::string& protocol : options.alpn) {
    if (protocol.empty() || protocol.size() > 255) {
      return make_error("alpn: " + in_quotes(protocol) + " must be 1 to 255 bytes long");
    }
    context->alpn_wire_ += static_cast<char>(protocol.size());
    context->alpn_wire_ += protocol;
  }
  if (!context->alpn_wire_.empty()) {
    if (server) {
      SSL_CTX_set_alpn_select_cb(ctx.get(), select_alpn, context.get());
    } else if (SSL_CTX_set_alpn_protos(ctx.get(),
                                       reinterpret_cast<const unsigned char*>(context->alpn_wire_.data()),
                                       static_cast<unsigned>(context->alpn_wire_.size())) != 0) {
      return make_error("alpn: " + last_openssl_reason());
    }
  }

  for (const TlsServerNameCertificate& named : options.server_names) {
    std::string prefix = "server name " + in_quotes(named.server_name) + ": ";
    NamedCredential entry;
    entry.name = ascii_lower(named.server_name);
    if (entry.name.starts_with("*.")) {
      entry.wildcard = true;
      entry.name.erase(0, 1);
    }
    if (entry.name.empty() || entry.name == "." || entry.name.find('*') != std::string::npos) {
      return make_error(prefix + "must be a host name, or \"*.\" and a domain");
    }
    auto credential = read_credential(named.certificate_chain_pem, named.private_key_pem, prefix);
    if (!credential) return credential.error();
    entry.credential = std::move(*credential);
    context->named_.push_back(std::move(entry));
  }
  if (!context->named_.empty()) SSL_CTX_set_cert_cb(ctx.get(), select_certificate, context.get());

  context->ctx_ = ctx.release();
  return std::shared_ptr<const TlsContext>(std::move(context));
}

const TlsContext::NamedCredential* TlsContext::credential_for(std::string_view server_name) const {
  for (const NamedCredential& n : named_) {
    if (!n.wildcard && equal_ignoring_case(n.name, server_name)) return &n;
  }
  // "*.example.com" covers exactly one label in front of "example.com".
  size_t dot = server_name.find('.');
  if (dot == 0 || dot == std::string_view::npos) return nullptr;
  std::string_view parent = server_name.substr(dot);
  for (const NamedCredential& n : named_) {
    if (n.wildcard && equal_ignoring_case(n.name, parent)) return &n;
  }
  return nullptr;
}

// Before the server picks its certificate: the one named for the SNI the
// client sent, else the context's default pair.
int TlsContext::select_certificate(SSL* ssl, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return 1;
  const NamedCredential* named = static_cast<const TlsContext*>(arg)->credential_for(name);
  if (named == nullptr) return 1;
  const Credential& c = named->credential;
  return SSL_use_cert_and_key(ssl, c.leaf.get(), c.key.get(), c.chain.get(), 1) == 1 ? 1 : 0;
}

// The server's most preferred protocol among those the client offers.
// Hand-written rather than SSL_select_next_proto, whose answer when nothing
// matches is the client's first protocol, which we would not speak.
int TlsContext::select_alpn(SSL*, const unsigned char** out, unsigned char* out_length,
                            const unsigned char* in, unsigned in_length, void* arg) {
  const std::string& ours = static_cast<const TlsContext*>(arg)->alpn_wire_;
  for (size_t i = 0; i < ours.size(); i += 1 + static_cast<unsigned char>(ours[i])) {
    size_t length = static_cast<unsigned char>(ours[i]);
    const char* mine = ours.data() + i + 1;
    for (unsigned j = 0; j < in_length; j += 1 + in[j]) {
      size_t theirs = in[j];
      if (j + 1 + theirs > in_length) break;  // malformed list: OpenSSL checked it, but be safe
      if (theirs == length && std::memcmp(in + j + 1, mine, length) == 0) {
        *out = reinterpret_cast<const unsigned char*>(mine);
        *out_length = static_cast<unsigned char>(length);
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace trellis::net
