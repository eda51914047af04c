#include "control/ca/verify_workload.h"

#include <algorithm>
#include <string>
#include <vector>

namespace trellis::control {
namespace {

bool blank(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

std::vector<const X509*> borrow(const std::vector<UniqueX509>& certificates) {
  std::vector<const X509*> out;
  for (const auto& c : certificates) out.push_back(c.get());
  return out;
}

bool has_spiffe_scheme(std::string_view uri) {
  constexpr std::string_view kScheme = "spiffe:";
  if (uri.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = uri[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  return true;
}

}  // namespace

Result<SpiffeId> verify_workload(std::string_view leaf_pem, std::string_view chain_pem,
                                 std::string_view bundle_pem, SystemTime at) {
  Result<std::vector<UniqueX509>> leaf = parse_pem_certificates(leaf_pem);
  if (!leaf) return make_error("leaf certificate: " + leaf.error().message);
  if (leaf->size() != 1)
    return make_error("leaf certificate: expected one certificate, found " + std::to_string(leaf->size()) +
                      " (pass the chain separately)");
  std::vector<UniqueX509> chain;
  if (!blank(chain_pem)) {
    Result<std::vector<UniqueX509>> parsed = parse_pem_certificates(chain_pem);
    if (!parsed) return make_error("chain: " + parsed.error().message);
    chain = std::move(*parsed);
  }
  Result<std::vector<UniqueX509>> roots = parse_pem_certificates(bundle_pem);
  if (!roots) return make_error("trust bundle: " + roots.error().message);

  const X509* certificate = leaf->front().get();
  if (auto verified = verify_chain(certificate, borrow(chain), borrow(*roots), at); !verified) {
    return make_error("does not verify against the trust bundle: " + verified.error().message);
  }
  if (X509_get_extension_flags(const_cast<X509*>(certificate)) & EXFLAG_CA) {
    return make_error("the leaf is a CA certificate, not a workload's");
  }
  // Any URI of the spiffe scheme counts, valid or not: a certificate naming
  // two workloads is mis-issued, and picking one would be a guess.
  std::vector<std::string> ids;
  for (std::string& uri : uri_sans(certificate)) {
    if (has_spiffe_scheme(uri)) ids.push_back(std::move(uri));
  }
  if (ids.empty()) return make_error("the certificate carries no SPIFFE ID (no spiffe:// URI SAN)");
  if (ids.size() > 1) {
    return make_error("the certificate carries " + std::to_string(ids.size()) +
                      " SPIFFE IDs; a workload certificate names exactly one");
  }
  return SpiffeId::parse(ids.front());
}

}  // namespace trellis::control
