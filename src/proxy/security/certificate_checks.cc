#include "proxy/security/certificate_checks.h"

#include <climits>
#include <ctime>
#include <memory>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "net/tls_pem.h"

namespace trellis::proxy {
namespace {

using net::last_openssl_reason;
using net::no_passphrase;
using net::read_only_bio;

struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
// Borrows its certificates: frees the stack only.
struct BorrowedStackFree {
  void operator()(STACK_OF(X509) * p) const { sk_X509_free(p); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};

// Matches "-----BEGIN PRIVATE KEY-----" and its RSA, EC and ENCRYPTED forms.
bool holds_private_key(std::string_view pem) {
  return pem.find("PRIVATE KEY-----") != std::string_view::npos;
}

SystemTime from_asn1(const ASN1_TIME* t) {
  tm parts{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &parts) != 1) {
    ERR_clear_error();
    return SystemTime{};
  }
  return std::chrono::system_clock::from_time_t(timegm(&parts));
}

std::string where_in_chain(int depth) {
  if (depth <= 0) return "the certificate itself";
  return "certificate " + std::to_string(depth) + " above it in the chain";
}

}  // namespace

Result<std::vector<net::UniqueX509>> parse_certificates(std::string_view pem, const std::string& what) {
  if (holds_private_key(pem)) {
    return make_error(what +
                      " holds a private key; keep the key only in its own file, readable by its owner");
  }
  auto certificates = net::read_pem_certificates(pem);
  if (!certificates) return make_error(what + ": " + certificates.error().message);
  if (certificates->empty()) return make_error(what + ": no PEM certificate in it");
  return certificates;
}

Result<net::UniquePkey> parse_private_key(std::string_view pem, const std::string& what) {
  if (pem.empty()) return make_error(what + " is empty");
  if (pem.size() > INT_MAX) return make_error(what + ": too large");
  if (pem.find("-----BEGIN ") == std::string_view::npos) {
    return make_error(what + ": no PEM block in it; it must be an unencrypted PEM private key");
  }
  net::UniqueBio bio = read_only_bio(pem);
  ERR_clear_error();
  net::UniquePkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    return make_error(what + ": cannot read a key in it (" + last_openssl_reason() +
                      "); it must be an unencrypted PEM private key");
  }
  return key;
}

SystemTime certificate_not_before(const X509* certificate) {
  return from_asn1(X509_get0_notBefore(certificate));
}

SystemTime certificate_not_after(const X509* certificate) {
  return from_asn1(X509_get0_notAfter(certificate));
}

Result<std::vector<std::string>> certificate_uris(const X509* certificate) {
  int critical = 0;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, &critical, nullptr)));
  ERR_clear_error();
  std::vector<std::string> uris;
  if (!names) {
    // -1: no such extension; -2: several; otherwise it did not parse.
    if (critical == -1) return uris;
    if (critical == -2) return make_error("the certificate holds more than one subjectAltName extension");
    return make_error("the certificate's subjectAltName extension does not parse");
  }
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                      static_cast<size_t>(ASN1_STRING_length(uri)));
  }
  return uris;
}

Result<bool> check_valid_at(const X509* certificate, SystemTime at) {
  SystemTime not_before = certificate_not_before(certificate);
  SystemTime not_after = certificate_not_after(certificate);
  if (at < not_before) {
    return make_error("is not valid before " + format_utc(not_before) + " (now is " + format_utc(at) +
                      "; is this host's clock right?)");
  }
  if (at >= not_after) {
    return make_error("expired at " + format_utc(not_after) + " (now is " + format_utc(at) + ")");
  }
  return true;
}

Result<bool> verify_chain(X509* leaf, const std::vector<net::UniqueX509>& intermediates,
                          const std::vector<net::UniqueX509>& roots, SystemTime at) {
  ERR_clear_error();
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  std::unique_ptr<STACK_OF(X509), BorrowedStackFree> untrusted(sk_X509_new_null());
  if (!store || !untrusted) return make_error("cannot verify the chain: out of memory");
  for (const net::UniqueX509& root : roots) {
    if (X509_STORE_add_cert(store.get(), root.get()) != 1) {
      // The same root twice in a bundle is harmless.
      if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        return make_error("cannot use the trust bundle: " + last_openssl_reason());
      }
      ERR_clear_error();
    }
  }
  for (const net::UniqueX509& intermediate : intermediates) {
    if (sk_X509_push(untrusted.get(), intermediate.get()) <= 0) {
      return make_error("cannot verify the chain: out of memory");
    }
  }
  // A sidecar serves with its certificate and connects with it: peers check
  // it for both purposes, so it must pass both here.
  struct Purpose {
    int id;
    const char* role;
  };
  for (Purpose purpose :
       {Purpose{X509_PURPOSE_SSL_SERVER, "TLS server"}, Purpose{X509_PURPOSE_SSL_CLIENT, "TLS client"}}) {
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1 ||
        X509_STORE_CTX_set_purpose(ctx.get(), purpose.id) != 1) {
      return make_error("cannot verify the chain: " + last_openssl_reason());
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()),
                               std::chrono::system_clock::to_time_t(at));
    if (X509_verify_cert(ctx.get()) != 1) {
      int error = X509_STORE_CTX_get_error(ctx.get());
      int depth = X509_STORE_CTX_get_error_depth(ctx.get());
      ERR_clear_error();
      return make_error(std::string(X509_verify_cert_error_string(error)) + " (at " + where_in_chain(depth) +
                        ", verifying it as a " + purpose.role + ")");
    }
  }
  return true;
}

std::string format_utc(SystemTime t) {
  time_t seconds = std::chrono::system_clock::to_time_t(t);
  tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return std::string(text, n);
}

std::string printable(std::string_view text) {
  constexpr size_t kMaxShown = 256;
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kDigits[c >> 4];
      out += kDigits[c & 0xf];
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out;
}

}  // namespace trellis::proxy
