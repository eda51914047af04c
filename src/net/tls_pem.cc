#include "net/tls_pem.h"

#include <climits>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

namespace trellis::net {
namespace {

bool pem_input_ended() {
  unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

}  // namespace

int no_passphrase(char*, int, int, void*) { return -1; }

std::string last_openssl_reason() {
  unsigned long e = ERR_peek_last_error();
  const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
  ERR_clear_error();
  return reason != nullptr ? reason : "unrecognized content";
}

UniqueBio read_only_bio(std::string_view pem) {
  return UniqueBio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

Result<std::vector<UniqueX509>> read_pem_certificates(std::string_view pem) {
  if (pem.size() > INT_MAX) return make_error("too large");
  UniqueBio bio = read_only_bio(pem);
  std::vector<UniqueX509> certificates;
  ERR_clear_error();
  for (;;) {
    X509* certificate = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
    if (certificate != nullptr) {
      certificates.emplace_back(certificate);
      continue;
    }
    if (pem_input_ended()) {
      ERR_clear_error();
      return certificates;
    }
    return make_error("cannot read certificate " + std::to_string(certificates.size() + 1) + " (" +
                      last_openssl_reason() + ")");
  }
}

std::string sha256_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace trellis::net
