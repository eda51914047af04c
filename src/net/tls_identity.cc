#include "net/tls_identity.h"

#include <openssl/x509v3.h>

namespace trellis::net {
namespace {

bool is_domain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool is_path_char(char c) { return is_domain_char(c) || (c >= 'A' && c <= 'Z'); }

}  // namespace

bool is_spiffe_id(std::string_view id) {
  if (!id.starts_with(kSpiffeScheme)) return false;
  std::string_view rest = id.substr(kSpiffeScheme.size());
  size_t slash = rest.find('/');
  std::string_view domain = rest.substr(0, slash);
  if (domain.empty()) return false;
  for (char c : domain) {
    if (!is_domain_char(c)) return false;
  }
  if (slash == std::string_view::npos) return true;
  std::string_view path = rest.substr(slash);
  while (!path.empty()) {
    path.remove_prefix(1);  // the '/'
    size_t end = path.find('/');
    std::string_view segment = path.substr(0, end);
    if (segment.empty() || segment == "." || segment == "..") return false;
    for (char c : segment) {
      if (!is_path_char(c)) return false;
    }
    path = end == std::string_view::npos ? std::string_view{} : path.substr(end);
  }
  return true;
}

std::string spiffe_identity(const X509* certificate) {
  if (certificate == nullptr) return {};
  int critical = 0;
  // Null also when the extension appears twice (`critical` is then -2).
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, &critical, nullptr));
  if (names == nullptr) return {};
  std::string found;
  int count = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                          static_cast<size_t>(ASN1_STRING_length(uri)));
    if (!text.starts_with(kSpiffeScheme)) continue;
    if (++count == 1) found.assign(text);
  }
  GENERAL_NAMES_free(names);
  if (count != 1 || !is_spiffe_id(found)) return {};
  return found;
}

}  // namespace trellis::net
