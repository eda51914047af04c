// A small PKI for tests, made with the OpenSSL API: ECDSA P-256 roots and
// intermediates, and leaf certificates with SPIFFE URI SANs, DNS names and
// IP addresses and any lifetime (already expired too), as the PEM text
// net::TlsContextOptions takes. Keys are made fresh for each CA and leaf.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "net/tls_handles.h"

namespace trellis::testing {

struct TestCredentials {
  std::string certificate_chain_pem;  // the leaf, then the intermediates above it
  std::string private_key_pem;
};

struct LeafSpec {
  std::vector<std::string> uris;  // URI SANs, e.g. "spiffe://trellis.test/ns/shop/sa/api"
  std::vector<std::string> dns_names;
  std::vector<std::string> ips;
  // Validity, relative to now. Both in the past: an expired certificate.
  std::chrono::seconds not_before = std::chrono::hours(-1);
  std::chrono::seconds not_after = std::chrono::hours(24);
};

namespace pki_detail {

// Test set-up that cannot fail unless OpenSSL is broken: stop loudly.
inline void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "test PKI: %s failed\n", what);
  std::abort();
}

inline std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

inline std::string certificate_pem(X509* certificate) {
  net::UniqueBio bio(BIO_new(BIO_s_mem()));
  require(PEM_write_bio_X509(bio.get(), certificate) == 1, "PEM_write_bio_X509");
  return bio_text(bio.get());
}

inline std::string private_key_pem(EVP_PKEY* key) {
  net::UniqueBio bio(BIO_new(BIO_s_mem()));
  require(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
          "PEM_write_bio_PrivateKey");
  return bio_text(bio.get());
}

inline net::UniquePkey new_key() {
  net::UniquePkey key(EVP_EC_gen("P-256"));
  require(key != nullptr, "EVP_EC_gen");
  return key;
}

inline void add_extension(X509* certificate, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  require(extension != nullptr, "X509V3_EXT_conf_nid");
  require(X509_add_ext(certificate, extension, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(extension);
}

inline std::string join_names(const LeafSpec& spec) {
  std::string out;
  auto add = [&](const char* kind, const std::vector<std::string>& names) {
    for (const std::string& name : names) {
      if (!out.empty()) out += ',';
      out += kind;
      out += name;
    }
  };
  add("URI:", spec.uris);
  add("DNS:", spec.dns_names);
  add("IP:", spec.ips);
  return out;
}

// A certificate for `subject_key`, signed by `issuer` (null: self-signed).
inline net::UniqueX509 make_certificate(EVP_PKEY* subject_key, const std::string& common_name, X509* issuer,
                                        EVP_PKEY* issuer_key, bool ca, const LeafSpec& spec) {
  static std::atomic<long> serial{1};
  net::UniqueX509 certificate(X509_new());
  X509* x = certificate.get();
  require(X509_set_version(x, X509_VERSION_3) == 1, "X509_set_version");
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial.fetch_add(1));
  X509_gmtime_adj(X509_getm_notBefore(x), static_cast<long>(spec.not_before.count()));
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(spec.not_after.count()));
  require(X509_set_pubkey(x, subject_key) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name);

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x, x, nullptr, nullptr, 0);
  add_extension(x, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_extension(x, &ctx, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_extension(x, &ctx, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_extension(x, &ctx, NID_authority_key_identifier, "keyid:always");
  if (!ca) {
    add_extension(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
    std::string names = join_names(spec);
    if (!names.empty()) add_extension(x, &ctx, NID_subject_alt_name, names);
  }
  require(X509_sign(x, issuer_key != nullptr ? issuer_key : subject_key, EVP_sha256()) > 0, "X509_sign");
  return certificate;
}

}  // namespace pki_detail

// A certificate authority: a root, or an intermediate under another.
class TestCa {
 public:
  // A self-signed root, valid from an hour ago for ten years.
  explicit TestCa(const std::string& name) : key_(pki_detail::new_key()) {
    certificate_ = pki_detail::make_certificate(key_.get(), name, nullptr, nullptr, true, ca_lifetime());
    certificate_pem_ = pki_detail::certificate_pem(certificate_.get());
  }
  TestCa(TestCa&&) = default;
  TestCa& operator=(TestCa&&) = default;

  // An intermediate CA signed by this one.
  TestCa intermediate(const std::string& name) const {
    TestCa child;
    child.key_ = pki_detail::new_key();
    child.certificate_ = pki_detail::make_certificate(child.key_.get(), name, certificate_.get(), key_.get(),
                                                      true, ca_lifetime());
    child.certificate_pem_ = pki_detail::certificate_pem(child.certificate_.get());
    child.chain_pem_ = child.certificate_pem_ + chain_pem_;
    return child;
  }

  // This CA's certificate: a trust bundle entry, for a root.
  const std::string& certificate_pem() const { return certificate_pem_; }

  // A leaf certificate and its key; the chain holds the intermediates
  // between the leaf and the root.
  TestCredentials issue(const LeafSpec& spec) const {
    net::UniquePkey key = pki_detail::new_key();
    std::string common_name = !spec.uris.empty()        ? spec.uris.front()
                              : !spec.dns_names.empty() ? spec.dns_names.front()
                                                        : "leaf";
    net::UniqueX509 leaf =
        pki_detail::make_certificate(key.get(), common_name, certificate_.get(), key_.get(), false, spec);
    return {pki_detail::certificate_pem(leaf.get()) + chain_pem_, pki_detail::private_key_pem(key.get())};
  }

  // A leaf with one SPIFFE identity, valid from an hour ago for a day.
  TestCredentials issue_spiffe(const std::string& id) const {
    LeafSpec spec;
    spec.uris = {id};
    return issue(spec);
  }

 private:
  TestCa() = default;
  static LeafSpec ca_lifetime() {
    LeafSpec spec;
    spec.not_after = std::chrono::hours(24 * 3650);
    return spec;
  }

  net::UniquePkey key_;
  net::UniqueX509 certificate_;
  std::string certificate_pem_;
  std::string chain_pem_;  // intermediates from this CA up, root excluded
};

// The first certificate in `pem`, for tests that look into one.
inline net::UniqueX509 parse_certificate(std::string_view pem) {
  net::UniqueBio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return net::UniqueX509(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

}  // namespace trellis::testing
