#include "proxy/security/tls_credentials.h"

#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "net/tls_identity.h"

namespace trellis::proxy {
namespace {

// Wipes a string that held a private key when the scope ends, on every path.
class WipeOnExit {
 public:
  explicit WipeOnExit(std::string& text) : text_(text) {}
  ~WipeOnExit() { OPENSSL_cleanse(text_.data(), text_.size()); }
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;

 private:
  std::string& text_;
};

// The key as unencrypted PKCS#8 PEM, since TlsContext takes PEM text. The
// caller wipes the result; OpenSSL's own buffer is wiped here.
bool key_pem(const EVP_PKEY* key, std::string& out) {
  net::UniqueBio bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ERR_clear_error();
    return false;
  }
  BUF_MEM* buffer = nullptr;
  BIO_get_mem_ptr(bio.get(), &buffer);
  if (buffer == nullptr) return false;
  out.assign(buffer->data, buffer->length);
  OPENSSL_cleanse(buffer->data, buffer->length);
  return true;
}

bool certificates_pem(const std::vector<net::UniqueX509>& certificates, std::string& out) {
  net::UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio) return false;
  for (const net::UniqueX509& certificate : certificates) {
    if (PEM_write_bio_X509(bio.get(), certificate.get()) != 1) {
      ERR_clear_error();
      return false;
    }
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  out.assign(data, static_cast<size_t>(size));
  return true;
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out += ", ";
    out += "\"" + printable(name) + "\"";
  }
  return out;
}

// The identity the leaf names, checked against the expected one if any.
Result<std::string> leaf_identity(X509* leaf, const CredentialParts& parts) {
  if (parts.expected_identity.empty()) return net::spiffe_identity(leaf);
  Result<std::vector<std::string>> uris = certificate_uris(leaf);
  if (!uris) return make_error(parts.certificate_name + ": " + uris.error().message);
  const std::string wanted = "\"" + printable(parts.expected_identity) + "\"";
  if (uris->empty()) {
    return make_error(parts.certificate_name + " names no URI; it must name exactly " + wanted);
  }
  if (uris->size() > 1) {
    return make_error(parts.certificate_name + " names " + std::to_string(uris->size()) + " URIs (" +
                      quoted_list(*uris) + "); it must name exactly " + wanted);
  }
  if (uris->front() != parts.expected_identity) {
    return make_error(parts.certificate_name + " is for " + quoted_list(*uris) + ", not for " + wanted);
  }
  return uris->front();
}

}  // namespace

Result<std::shared_ptr<const TlsCredentials>> build_tls_credentials(const CredentialParts& parts,
                                                                    const TlsProfile& profile, SystemTime now,
                                                                    uint64_t generation) {
  if (parts.chain.empty()) return make_error(parts.certificate_name + ": no certificate");
  if (parts.key == nullptr) return make_error(parts.key_name + ": missing");
  X509* leaf = parts.chain.front().get();

  if (X509_check_private_key(leaf, parts.key) != 1) {
    ERR_clear_error();
    return make_error(parts.certificate_name + " does not match " + parts.key_name +
                      " (it was issued for another key)");
  }
  Result<std::string> identity = leaf_identity(leaf, parts);
  if (!identity) return identity.error();
  if (Result<bool> valid = check_valid_at(leaf, now); !valid) {
    return make_error(parts.certificate_name + " " + valid.error().message);
  }
  std::vector<net::UniqueX509> intermediates;
  for (size_t i = 1; i < parts.chain.size(); ++i) {
    intermediates.emplace_back(X509_dup(parts.chain[i].get()));
    if (!intermediates.back()) return make_error(parts.certificate_name + ": out of memory");
  }
  if (Result<bool> chained = verify_chain(leaf, intermediates, parts.roots, now); !chained) {
    return make_error(parts.certificate_name + " does not verify against " + parts.bundle_name + ": " +
                      chained.error().message);
  }

  net::TlsContextOptions options;
  WipeOnExit wipe(options.private_key_pem);
  if (!certificates_pem(parts.chain, options.certificate_chain_pem) ||
      !certificates_pem(parts.roots, options.trust_bundle_pem)) {
    return make_error(parts.certificate_name + ": cannot encode it as PEM");
  }
  if (!key_pem(parts.key, options.private_key_pem)) return make_error(parts.key_name + ": cannot encode it");
  options.alpn = profile.alpn;
  options.allow_tls12 = false;

  auto credentials = std::make_shared<TlsCredentials>();
  credentials->identity = std::move(*identity);
  credentials->not_before = certificate_not_before(leaf);
  credentials->not_after = certificate_not_after(leaf);
  credentials->generation = generation;

  options.role = net::TlsRole::kServer;
  options.client_certificate = profile.client_certificate;
  auto server = net::TlsContext::create(options);
  if (!server) return make_error("cannot build the server TLS context: " + server.error().message);
  credentials->server = std::move(*server);

  options.role = net::TlsRole::kClient;
  // A sidecar offers no ALPN to another: the one it calls tells HTTP/2 (the
  // sidecars' own protocol) from HTTP/1.1 (upgrades) by the preface.
  options.alpn.clear();
  auto client = net::TlsContext::create(options);
  if (!client) return make_error("cannot build the client TLS context: " + client.error().message);
  credentials->client = std::move(*client);

  if (!profile.control_alpn.empty()) {
    options.alpn = profile.control_alpn;
    auto control = net::TlsContext::create(options);
    if (!control) return make_error("cannot build the control-plane TLS context: " + control.error().message);
    credentials->control = std::move(*control);
  }
  return std::shared_ptr<const TlsCredentials>(std::move(credentials));
}

}  // namespace trellis::proxy
