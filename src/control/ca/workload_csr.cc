#include "control/ca/workload_csr.h"

#include <openssl/err.h>

#include <string>

namespace trellis::control {
namespace {

struct ExtensionsDeleter {
  void operator()(STACK_OF(X509_EXTENSION) * p) const { sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free); }
};

// A requested name for an error message: cut short, and with bytes that
// could forge a log line shown as escapes.
std::string printable(std::string_view text) {
  constexpr size_t kMaxShown = 256;
  std::string out;
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kDigits[] = "0123456789abcdef";
      out += "\\x";
      out += kDigits[c >> 4];
      out += kDigits[c & 0xf];
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out;
}

std::string_view view(const ASN1_STRING* s) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<size_t>(ASN1_STRING_length(s))};
}

std::string describe_name(const GENERAL_NAME* name) {
  auto text = [](const ASN1_STRING* s) { return printable(view(s)); };
  switch (name->type) {
    case GEN_URI:
      return "URI \"" + text(name->d.uniformResourceIdentifier) + "\"";
    case GEN_DNS:
      return "DNS name \"" + text(name->d.dNSName) + "\"";
    case GEN_EMAIL:
      return "e-mail address \"" + text(name->d.rfc822Name) + "\"";
    case GEN_IPADD:
      return "an IP address";
    default:
      return "a name of another type";
  }
}

// The one name asked for, or why there is not exactly one URI.
Result<std::string> requested_uri(X509_REQ* request, const std::string& allowed) {
  std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionsDeleter> extensions(X509_REQ_get_extensions(request));
  ERR_clear_error();
  const std::string none =
      "the CSR asks for no subject alternative name; it must ask for exactly the URI \"" + allowed + "\"";
  if (!extensions) return make_error(none);
  int index = X509v3_get_ext_by_NID(extensions.get(), NID_subject_alt_name, -1);
  if (index < 0) return make_error(none);
  if (X509v3_get_ext_by_NID(extensions.get(), NID_subject_alt_name, index) >= 0) {
    return make_error("the CSR holds more than one subjectAltName extension");
  }
  auto* names = static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(X509v3_get_ext(extensions.get(), index)));
  if (names == nullptr) {
    ERR_clear_error();
    return make_error("the CSR's subjectAltName extension does not parse");
  }
  UniqueGeneralNames owned(names);
  int count = sk_GENERAL_NAME_num(names);
  if (count == 0) return make_error(none);
  if (count > 1) {
    std::string asked;
    for (int i = 0; i < count; ++i)
      asked += (i > 0 ? ", " : "") + describe_name(sk_GENERAL_NAME_value(names, i));
    return make_error("the CSR asks for " + std::to_string(count) + " subject alternative names (" + asked +
                      "); it must ask for exactly one, the URI \"" + allowed + "\"");
  }
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, 0);
  if (name->type != GEN_URI) {
    return make_error("the CSR asks for " + describe_name(name) + "; it must ask for exactly the URI \"" +
                      allowed + "\"");
  }
  return std::string(view(name->d.uniformResourceIdentifier));
}

}  // namespace

Result<UniquePkey> check_workload_csr(std::string_view csr_pem, const SpiffeId& entitled) {
  if (csr_pem.size() > kMaxCsrBytes) {
    return make_error("the CSR is larger than " + std::to_string(kMaxCsrBytes) + " bytes");
  }
  Result<UniqueX509Req> request = parse_pem_csr(csr_pem);
  if (!request) return make_error("the CSR is " + request.error().message);
  X509_REQ* r = request->get();

  EVP_PKEY* key = X509_REQ_get_pubkey(r);  // a new reference
  if (key == nullptr) return make_error("the CSR's public key does not parse: " + openssl_reason());
  UniquePkey public_key(key);
  // Proof of possession: only the holder of the private key can have made
  // this signature.
  if (X509_REQ_verify(r, key) != 1) {
    ERR_clear_error();
    return make_error("the CSR's signature does not verify with its own key (altered or corrupt request)");
  }
  if (!is_ecdsa_p256(key)) {
    return make_error("the CSR's key is " + describe_key(key) + "; an ECDSA P-256 key is required");
  }

  const std::string allowed = entitled.to_string();
  Result<std::string> uri = requested_uri(r, allowed);
  if (!uri) return uri.error();
  if (*uri != allowed) {
    return make_error("the CSR asks for the identity \"" + printable(*uri) +
                      "\" but the requester is entitled only to \"" + allowed + "\"");
  }
  return public_key;
}

}  // namespace trellis::control
