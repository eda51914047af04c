#include "proxy/security/workload_credentials.h"

#include <climits>
#include <utility>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace trellis::proxy {
namespace {

struct RequestFree {
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
struct ExtensionsFree {
  void operator()(STACK_OF(X509_EXTENSION) * p) const { sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free); }
};

Error openssl_failure(const std::string& what) {
  ERR_clear_error();
  return make_error("cannot " + what + " (OpenSSL failed)");
}

// A CSR the mesh CA accepts: its key, no subject (the CA names the
// certificate from what the workload is entitled to, never from the
// request), and exactly one subject alternative name, the URI `identity`.
// Marked critical, as the certificate's must be with an empty subject.
Result<std::string> make_csr(EVP_PKEY* key, const std::string& identity) {
  std::unique_ptr<X509_REQ, RequestFree> request(X509_REQ_new());
  if (!request || X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_pubkey(request.get(), key) != 1) {
    return openssl_failure("make a certificate signing request");
  }

  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(GENERAL_NAMES_new());
  GENERAL_NAME* name = GENERAL_NAME_new();
  ASN1_IA5STRING* uri = ASN1_IA5STRING_new();
  if (!names || name == nullptr || uri == nullptr || identity.size() > INT_MAX ||
      ASN1_STRING_set(uri, identity.data(), static_cast<int>(identity.size())) != 1) {
    GENERAL_NAME_free(name);
    ASN1_IA5STRING_free(uri);
    return openssl_failure("make a certificate signing request");
  }
  GENERAL_NAME_set0_value(name, GEN_URI, uri);  // `name` owns `uri` now
  if (sk_GENERAL_NAME_push(names.get(), name) <= 0) {
    GENERAL_NAME_free(name);
    return openssl_failure("make a certificate signing request");
  }
  std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionsFree> extensions(sk_X509_EXTENSION_new_null());
  X509_EXTENSION* san = X509V3_EXT_i2d(NID_subject_alt_name, 1, names.get());
  if (!extensions || san == nullptr || sk_X509_EXTENSION_push(extensions.get(), san) <= 0) {
    X509_EXTENSION_free(san);
    return openssl_failure("make a certificate signing request");
  }
  if (X509_REQ_add_extensions(request.get(), extensions.get()) != 1) {
    return openssl_failure("make a certificate signing request");
  }
  if (X509_REQ_sign(request.get(), key, EVP_sha256()) <= 0) {
    return openssl_failure("sign the certificate signing request");
  }

  net::UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), request.get()) != 1) {
    return openssl_failure("encode the certificate signing request");
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

}  // namespace

Result<WorkloadCredentials> WorkloadCredentials::create(const SpiffeId& identity, TlsProfile profile) {
  WorkloadCredentials credentials;
  credentials.identity_ = identity.to_string();
  credentials.profile_ = std::move(profile);
  credentials.key_.reset(EVP_EC_gen("P-256"));
  if (!credentials.key_) return openssl_failure("make an ECDSA P-256 key");
  Result<std::string> csr = make_csr(credentials.key_.get(), credentials.identity_);
  if (!csr) return csr.error();
  credentials.csr_pem_ = std::move(*csr);
  return credentials;
}

Result<bool> WorkloadCredentials::install(std::string_view certificate_pem, std::string_view chain_pem,
                                          std::string_view trust_bundle_pem, SystemTime now) {
  CredentialParts parts;
  parts.certificate_name = "certificate";
  parts.key_name = "this sidecar's private key";
  parts.bundle_name = "the trust bundle";
  parts.expected_identity = identity_;
  parts.key = key_.get();

  auto leaf = parse_certificates(certificate_pem, "certificate");
  if (!leaf) return leaf.error();
  parts.chain = std::move(*leaf);
  if (!chain_pem.empty()) {
    auto intermediates = parse_certificates(chain_pem, "certificate chain");
    if (!intermediates) return intermediates.error();
    for (net::UniqueX509& intermediate : *intermediates) parts.chain.push_back(std::move(intermediate));
  }
  auto roots = parse_certificates(trust_bundle_pem, "trust bundle");
  if (!roots) return roots.error();
  parts.roots = std::move(*roots);

  auto built = build_tls_credentials(parts, profile_, now, generation_ + 1);
  if (!built) return built.error();
  current_ = std::move(*built);
  certificate_pem_.assign(certificate_pem);
  chain_pem_.assign(chain_pem);
  ++generation_;
  return true;
}

Result<bool> WorkloadCredentials::update_trust_bundle(std::string_view trust_bundle_pem, SystemTime now) {
  if (!current_) return make_error("no certificate is installed yet to use the trust bundle with");
  // Copies: install() replaces the members it reads from.
  std::string certificate = certificate_pem_;
  std::string chain = chain_pem_;
  return install(certificate, chain, trust_bundle_pem, now);
}

std::shared_ptr<const net::TlsContext> WorkloadCredentials::server_context() const {
  return current_ ? current_->server : nullptr;
}

std::shared_ptr<const net::TlsContext> WorkloadCredentials::client_context() const {
  return current_ ? current_->client : nullptr;
}

std::optional<SystemTime> WorkloadCredentials::not_after() const {
  if (!current_) return std::nullopt;
  return current_->not_after;
}

}  // namespace trellis::proxy
