// Test material for the sidecar's credentials: a CA that signs the public
// key in a CSR (the sidecar's own key, which the test never sees), built
// from the test PKI helpers, and a TLS handshake between two contexts over
// an in-memory BIO pair, with no socket and no event loop.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "net/tls_context.h"
#include "net/tls_handles.h"
#include "net/tls_identity.h"
#include "support/test_pki.h"

namespace trellis::proxy::testing {

using trellis::testing::LeafSpec;

inline constexpr char kIdentity[] = "spiffe://trellis.test/ns/shop/sa/api";
inline constexpr char kOtherIdentity[] = "spiffe://trellis.test/ns/shop/sa/web";

inline LeafSpec leaf_for(std::string uri, std::chrono::seconds not_before = std::chrono::hours(-1),
                         std::chrono::seconds not_after = std::chrono::hours(24)) {
  LeafSpec spec;
  spec.uris = {std::move(uri)};
  spec.not_before = not_before;
  spec.not_after = not_after;
  return spec;
}

// A root CA, optionally with an intermediate that does the signing.
class CsrSigner {
 public:
  explicit CsrSigner(const std::string& name, bool with_intermediate = false)
      : root_key_(trellis::testing::pki_detail::new_key()) {
    using trellis::testing::pki_detail::make_certificate;
    LeafSpec ten_years;
    ten_years.not_after = std::chrono::hours(24 * 3650);
    root_ = make_certificate(root_key_.get(), name + " root", nullptr, nullptr, true, ten_years);
    root_pem_ = trellis::testing::pki_detail::certificate_pem(root_.get());
    if (with_intermediate) {
      intermediate_key_ = trellis::testing::pki_detail::new_key();
      intermediate_ = make_certificate(intermediate_key_.get(), name + " intermediate", root_.get(),
                                       root_key_.get(), true, ten_years);
      chain_pem_ = trellis::testing::pki_detail::certificate_pem(intermediate_.get());
    }
  }

  // The trust bundle entry.
  const std::string& root_pem() const { return root_pem_; }
  // The intermediate, or empty.
  const std::string& chain_pem() const { return chain_pem_; }

  // A leaf for `key` (public or private), as `spec` says.
  std::string sign_key(EVP_PKEY* key, const LeafSpec& spec) const {
    X509* issuer = intermediate_ ? intermediate_.get() : root_.get();
    EVP_PKEY* issuer_key = intermediate_ ? intermediate_key_.get() : root_key_.get();
    std::string common_name = spec.uris.empty() ? "leaf" : spec.uris.front();
    net::UniqueX509 leaf =
        trellis::testing::pki_detail::make_certificate(key, common_name, issuer, issuer_key, false, spec);
    return trellis::testing::pki_detail::certificate_pem(leaf.get());
  }

  // A leaf for the key in `csr_pem`, as `spec` says (the CSR's names are
  // ignored, as the mesh CA ignores them).
  std::string sign(std::string_view csr_pem, const LeafSpec& spec) const {
    net::UniqueBio bio(BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size())));
    X509_REQ* request = PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr);
    trellis::testing::pki_detail::require(request != nullptr, "PEM_read_bio_X509_REQ");
    net::UniquePkey key(X509_REQ_get_pubkey(request));
    X509_REQ_free(request);
    trellis::testing::pki_detail::require(key != nullptr, "X509_REQ_get_pubkey");
    return sign_key(key.get(), spec);
  }

  // A leaf for the key in `csr_pem` whose extended key usage allows serving
  // only: peers would refuse it as a client.
  std::string sign_server_only(std::string_view csr_pem, const LeafSpec& spec) const {
    net::UniqueX509 leaf = trellis::testing::parse_certificate(sign(csr_pem, spec));
    X509_EXTENSION* usage =
        X509_delete_ext(leaf.get(), X509_get_ext_by_NID(leaf.get(), NID_ext_key_usage, -1));
    X509_EXTENSION_free(usage);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, intermediate_ ? intermediate_.get() : root_.get(), leaf.get(), nullptr, nullptr, 0);
    trellis::testing::pki_detail::add_extension(leaf.get(), &ctx, NID_ext_key_usage, "serverAuth");
    EVP_PKEY* issuer_key = intermediate_ ? intermediate_key_.get() : root_key_.get();
    trellis::testing::pki_detail::require(X509_sign(leaf.get(), issuer_key, EVP_sha256()) > 0, "X509_sign");
    return trellis::testing::pki_detail::certificate_pem(leaf.get());
  }

  // A leaf for a key that is not the sidecar's.
  std::string sign_other_key(const LeafSpec& spec) const {
    net::UniquePkey key = trellis::testing::pki_detail::new_key();
    return sign_key(key.get(), spec);
  }

 private:
  net::UniquePkey root_key_;
  net::UniqueX509 root_;
  std::string root_pem_;
  net::UniquePkey intermediate_key_;
  net::UniqueX509 intermediate_;
  std::string chain_pem_;
};

struct HandshakeResult {
  bool ok = false;
  std::string alpn;
  std::string server_identity;  // as the client verified it
  std::string client_identity;  // as the server verified it
  int tls_version = 0;
};

// A full handshake between a server and a client context over a BIO pair.
inline HandshakeResult handshake(const net::TlsContext& server_context,
                                 const net::TlsContext& client_context) {
  struct SslFree {
    void operator()(SSL* p) const { SSL_free(p); }
  };
  std::unique_ptr<SSL, SslFree> server(SSL_new(server_context.native()));
  std::unique_ptr<SSL, SslFree> client(SSL_new(client_context.native()));
  BIO* server_end = nullptr;
  BIO* client_end = nullptr;
  BIO_new_bio_pair(&server_end, 0, &client_end, 0);
  SSL_set_bio(server.get(), server_end, server_end);
  SSL_set_bio(client.get(), client_end, client_end);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());

  HandshakeResult result;
  bool server_done = false;
  bool client_done = false;
  for (int round = 0; round < 20 && !(server_done && client_done); ++round) {
    if (!client_done) {
      int rc = SSL_do_handshake(client.get());
      if (rc == 1) {
        client_done = true;
      } else if (SSL_get_error(client.get(), rc) != SSL_ERROR_WANT_READ) {
        break;
      }
    }
    if (!server_done) {
      int rc = SSL_do_handshake(server.get());
      if (rc == 1) {
        server_done = true;
      } else if (SSL_get_error(server.get(), rc) != SSL_ERROR_WANT_READ) {
        break;
      }
    }
  }
  ERR_clear_error();
  result.ok = server_done && client_done;
  if (!result.ok) return result;
  const unsigned char* alpn = nullptr;
  unsigned alpn_length = 0;
  SSL_get0_alpn_selected(client.get(), &alpn, &alpn_length);
  if (alpn != nullptr) result.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_length);
  result.server_identity = net::spiffe_identity(SSL_get0_peer_certificate(client.get()));
  result.client_identity = net::spiffe_identity(SSL_get0_peer_certificate(server.get()));
  result.tls_version = SSL_version(client.get());
  return result;
}

}  // namespace trellis::proxy::testing
