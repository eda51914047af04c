// Test material for the mesh CA: keys of several kinds, certificate signing
// requests with chosen names (or a broken signature), an organisation's PKI
// for the operator-intermediate mode, and files written with a given mode.
#pragma once

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "control/ca/certificate_builder.h"
#include "control/ca/x509.h"

namespace trellis::control::testing {

enum class KeyKind { kP256, kP384, kRsa2048, kEd25519 };

inline UniquePkey make_key(KeyKind kind) {
  EVP_PKEY* key = nullptr;
  switch (kind) {
    case KeyKind::kP256:
      key = EVP_EC_gen("P-256");
      break;
    case KeyKind::kP384:
      key = EVP_EC_gen("P-384");
      break;
    case KeyKind::kRsa2048:
      key = EVP_RSA_gen(2048);
      break;
    case KeyKind::kEd25519:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
  }
  if (key == nullptr) throw std::runtime_error("key generation failed");
  return UniquePkey(key);
}

// One subject alternative name for a CSR: a GEN_* type and its text.
struct San {
  int type;
  std::string value;
};
inline San uri_san(std::string value) { return {GEN_URI, std::move(value)}; }
inline San dns_san(std::string value) { return {GEN_DNS, std::move(value)}; }
inline San email_san(std::string value) { return {GEN_EMAIL, std::move(value)}; }

inline std::string make_csr(const EVP_PKEY* key, const std::vector<San>& sans, std::string common_name = "") {
  X509_REQ* request = X509_REQ_new();
  X509_REQ_set_version(request, X509_REQ_VERSION_1);
  if (!common_name.empty()) {
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(request), "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  }
  X509_REQ_set_pubkey(request, const_cast<EVP_PKEY*>(key));
  if (!sans.empty()) {
    GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
    for (const San& san : sans) {
      ASN1_IA5STRING* text = ASN1_IA5STRING_new();
      ASN1_STRING_set(text, san.value.data(), static_cast<int>(san.value.size()));
      GENERAL_NAME* name = GENERAL_NAME_new();
      GENERAL_NAME_set0_value(name, san.type, text);
      sk_GENERAL_NAME_push(names, name);
    }
    STACK_OF(X509_EXTENSION)* extensions = sk_X509_EXTENSION_new_null();
    sk_X509_EXTENSION_push(extensions, X509V3_EXT_i2d(NID_subject_alt_name, 0, names));
    X509_REQ_add_extensions(request, extensions);
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
    GENERAL_NAMES_free(names);
  }
  // EdDSA signs the message itself: no separate digest.
  const EVP_MD* digest = EVP_PKEY_is_a(key, "ED25519") == 1 ? nullptr : EVP_sha256();
  if (X509_REQ_sign(request, const_cast<EVP_PKEY*>(key), digest) <= 0) {
    X509_REQ_free(request);
    throw std::runtime_error("CSR signing failed");
  }
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(bio, request);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(size));
  BIO_free(bio);
  X509_REQ_free(request);
  return out;
}

// The same request with the last byte of its signature flipped: it still
// parses, but its self-signature no longer verifies.
inline std::string tamper_with_signature(const std::string& csr_pem) {
  BIO* in = BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size()));
  X509_REQ* request = PEM_read_bio_X509_REQ(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  unsigned char* der = nullptr;
  int length = i2d_X509_REQ(request, &der);
  X509_REQ_free(request);
  der[length - 1] ^= 0x01;
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio(out, "CERTIFICATE REQUEST", "", der, length);
  OPENSSL_free(der);
  char* data = nullptr;
  long size = BIO_get_mem_data(out, &data);
  std::string pem(data, static_cast<size_t>(size));
  BIO_free(out);
  return pem;
}

struct TestCa {
  UniqueX509 certificate;
  UniquePkey key;
};

// A CA certificate (or, with ca = false, an end-entity one) named `name`,
// signed by `issuer` or self-signed when it is null, valid over [from, to).
inline TestCa make_test_certificate(const std::string& name, const TestCa* issuer, SystemTime from,
                                    SystemTime to, bool ca = true, KeyKind kind = KeyKind::kP256) {
  TestCa out;
  out.key = make_key(kind);
  CertificateTemplate spec;
  spec.public_key = out.key.get();
  spec.subject = {{"O", "Example Org"}, {"CN", name}};
  spec.not_before = from;
  spec.not_after = to;
  spec.ca = ca;
  Result<UniqueX509> built = build_certificate(spec, issuer != nullptr ? issuer->certificate.get() : nullptr,
                                               issuer != nullptr ? issuer->key.get() : out.key.get());
  if (!built) throw std::runtime_error(built.error().message);
  out.certificate = std::move(*built);
  return out;
}

inline void write_test_file(const std::string& path, const std::string& content, mode_t mode) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  if (::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    ::close(fd);
    throw std::runtime_error("cannot write " + path);
  }
  ::close(fd);
  ::chmod(path.c_str(), mode);
}

inline mode_t file_mode(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return 0;
  return info.st_mode & 07777;
}

}  // namespace trellis::control::testing
