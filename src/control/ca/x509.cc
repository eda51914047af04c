#include "control/ca/x509.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <time.h>

#include <cstdio>

namespace trellis::control {
namespace {

struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
using UniqueBio = std::unique_ptr<BIO, BioDeleter>;

// Frees the stack, not the certificates it points to.
struct StackOnlyDeleter {
  void operator()(STACK_OF(X509) * p) const { sk_X509_free(p); }
};

UniqueBio read_bio(std::string_view text) {
  return UniqueBio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string drain(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
}

// Never asks for a passphrase: without this OpenSSL would prompt on the
// terminal for an encrypted key. An encrypted key then fails to load.
int no_passphrase(char*, int, int, void*) { return -1; }

bool at_end_of_pem(unsigned long error) {
  return ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
}

std::string hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0xf];
  }
  return out;
}

SystemTime to_system_time(const ASN1_TIME* time) {
  std::tm tm{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1) return SystemTime{};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string group_name(const EVP_PKEY* key) {
  char name[64] = {};
  size_t length = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof name, &length) != 1) {
    ERR_clear_error();
    return "";
  }
  return std::string(name, length);
}

}  // namespace

std::string openssl_reason(std::string_view fallback) {
  unsigned long error = ERR_peek_last_error();
  const char* reason = error != 0 ? ERR_reason_error_string(error) : nullptr;
  ERR_clear_error();
  return reason != nullptr ? std::string(reason) : std::string(fallback);
}

Result<std::vector<UniqueX509>> parse_pem_certificates(std::string_view pem) {
  UniqueBio bio = read_bio(pem);
  if (!bio) return make_error("out of memory");
  std::vector<UniqueX509> out;
  ERR_clear_error();
  while (true) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long length = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &length) != 1) {
      unsigned long error = ERR_peek_last_error();
      if (at_end_of_pem(error)) {
        ERR_clear_error();
        break;
      }
      return make_error("malformed PEM after certificate " + std::to_string(out.size()) + ": " +
                        openssl_reason());
    }
    std::string block = name;
    X509* certificate = nullptr;
    if (block == "CERTIFICATE") {
      const unsigned char* p = data;
      certificate = d2i_X509(nullptr, &p, length);
      if (certificate != nullptr && p != data + length) {
        X509_free(certificate);
        certificate = nullptr;
      }
    }
    // The block may be a key; its bytes are wiped either way.
    OPENSSL_clear_free(data, static_cast<size_t>(length));
    OPENSSL_free(name);
    OPENSSL_free(header);
    if (block != "CERTIFICATE") {
      bool key = block.find("KEY") != std::string::npos;
      return make_error(key ? "holds a key where only certificates belong"
                            : "holds a \"" + block + "\" block where only certificates belong");
    }
    if (certificate == nullptr) {
      return make_error("certificate " + std::to_string(out.size() + 1) +
                        " does not parse: " + openssl_reason());
    }
    out.emplace_back(certificate);
  }
  if (out.empty()) return make_error("holds no PEM certificate");
  return out;
}

Result<UniquePkey> parse_pem_private_key(std::string_view pem) {
  UniqueBio bio = read_bio(pem);
  if (!bio) return make_error("out of memory");
  ERR_clear_error();
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr);
  // OpenSSL's reason here says only what kind of failure it was.
  if (key == nullptr) {
    return make_error("holds no unencrypted PEM private key (" + openssl_reason("unreadable") + ")");
  }
  return UniquePkey(key);
}

Result<UniqueX509Req> parse_pem_csr(std::string_view pem) {
  UniqueBio bio = read_bio(pem);
  if (!bio) return make_error("out of memory");
  ERR_clear_error();
  X509_REQ* request = PEM_read_bio_X509_REQ(bio.get(), nullptr, no_passphrase, nullptr);
  if (request == nullptr) {
    return make_error("not a PEM certificate signing request (" + openssl_reason("unreadable") + ")");
  }
  return UniqueX509Req(request);
}

std::string certificate_pem(const X509* certificate) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), certificate) != 1) return "";
  return drain(bio.get());
}

std::string certificates_pem(const std::vector<const X509*>& certificates) {
  std::string out;
  for (const X509* c : certificates) out += certificate_pem(c);
  return out;
}

std::string private_key_pem(const EVP_PKEY* key) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) return "";
  std::string out = drain(bio.get());
  BUF_MEM* memory = nullptr;
  BIO_get_mem_ptr(bio.get(), &memory);
  if (memory != nullptr && memory->data != nullptr) OPENSSL_cleanse(memory->data, memory->length);
  return out;
}

Result<UniquePkey> generate_p256_key() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return make_error("cannot generate an ECDSA P-256 key: " + openssl_reason());
  return UniquePkey(key);
}

bool key_matches_certificate(const EVP_PKEY* key, const X509* certificate) {
  const EVP_PKEY* public_key = X509_get0_pubkey(certificate);
  bool match = public_key != nullptr && EVP_PKEY_eq(public_key, key) == 1;
  ERR_clear_error();
  return match;
}

bool is_ecdsa_p256(const EVP_PKEY* key) {
  return EVP_PKEY_is_a(key, "EC") == 1 && group_name(key) == SN_X9_62_prime256v1;
}

std::string describe_key(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC") == 1) {
    std::string group = group_name(key);
    if (group.empty()) return "ECDSA with explicit curve parameters";
    const char* nist = EC_curve_nid2nist(OBJ_sn2nid(group.c_str()));
    return "ECDSA " + std::string(nist != nullptr ? nist : group);
  }
  if (EVP_PKEY_is_a(key, "RSA") == 1 || EVP_PKEY_is_a(key, "RSA-PSS") == 1) {
    return "RSA " + std::to_string(EVP_PKEY_get_bits(key)) + "-bit";
  }
  if (EVP_PKEY_is_a(key, "ED25519") == 1) return "Ed25519";
  if (EVP_PKEY_is_a(key, "ED448") == 1) return "Ed448";
  const char* name = EVP_PKEY_get0_type_name(key);
  return name != nullptr ? std::string(name) : "an unknown key type";
}

std::string sha256_fingerprint(const X509* certificate) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(certificate, EVP_sha256(), digest, &length) != 1) return "";
  return hex(digest, length);
}

std::string serial_hex(const X509* certificate) {
  BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr);
  if (number == nullptr) return "";
  char* text = BN_bn2hex(number);
  BN_free(number);
  if (text == nullptr) return "";
  std::string out = text;
  OPENSSL_free(text);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  return out;
}

std::string subject_line(const X509* certificate) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253) < 0) {
    return "";
  }
  return drain(bio.get());
}

SystemTime not_before(const X509* certificate) { return to_system_time(X509_get0_notBefore(certificate)); }
SystemTime not_after(const X509* certificate) { return to_system_time(X509_get0_notAfter(certificate)); }

bool is_self_signed(const X509* certificate) {
  // OpenSSL's signature is not const-correct; the call only reads.
  bool self_signed = X509_self_signed(const_cast<X509*>(certificate), 1) == 1;
  ERR_clear_error();
  return self_signed;
}

Result<bool> check_can_sign_certificates(const X509* certificate) {
  X509* c = const_cast<X509*>(certificate);  // caches its extensions, logically const
  uint32_t flags = X509_get_extension_flags(c);
  if (flags & EXFLAG_INVALID) return make_error("has invalid or duplicate extensions");
  if (!(flags & EXFLAG_BCONS) || !(flags & EXFLAG_CA)) {
    return make_error("is not a CA certificate (basicConstraints CA:TRUE is missing)");
  }
  if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(c) & KU_KEY_CERT_SIGN)) {
    return make_error("may not sign certificates (keyUsage keyCertSign is missing)");
  }
  return true;
}

std::vector<std::string> uri_sans(const X509* certificate) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  UniqueGeneralNames owned(names);
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                     static_cast<size_t>(ASN1_STRING_length(uri)));
  }
  return out;
}

Result<bool> verify_chain(const X509* leaf, const std::vector<const X509*>& untrusted,
                          const std::vector<const X509*>& roots, SystemTime at) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> context(X509_STORE_CTX_new(),
                                                                          X509_STORE_CTX_free);
  std::unique_ptr<STACK_OF(X509), StackOnlyDeleter> chain(sk_X509_new_null());
  if (!store || !context || !chain) return make_error("out of memory");
  // The store and stack take no ownership we rely on: X509_STORE_add_cert
  // counts its own reference, the stack is freed without its elements.
  for (const X509* root : roots) X509_STORE_add_cert(store.get(), const_cast<X509*>(root));
  for (const X509* c : untrusted) sk_X509_push(chain.get(), const_cast<X509*>(c));
  if (X509_STORE_CTX_init(context.get(), store.get(), const_cast<X509*>(leaf), chain.get()) != 1) {
    return make_error("cannot set up verification: " + openssl_reason());
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(context.get()),
                             std::chrono::system_clock::to_time_t(at));
  if (X509_verify_cert(context.get()) == 1) return true;
  int error = X509_STORE_CTX_get_error(context.get());
  int depth = X509_STORE_CTX_get_error_depth(context.get());
  X509* failed = X509_STORE_CTX_get_current_cert(context.get());
  ERR_clear_error();
  std::string where = depth == 0 ? "the certificate" : "chain certificate " + std::to_string(depth);
  if (failed != nullptr) {
    std::string subject = subject_line(failed);
    if (!subject.empty()) where += " (" + subject + ")";
  }
  return make_error(where + ": " + X509_verify_cert_error_string(error));
}

}  // namespace trellis::control
