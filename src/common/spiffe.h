// Workload identities: SPIFFE IDs of the one shape the mesh issues,
// "spiffe://<trust domain>/ns/<namespace>/sa/<service account>". Pure string
// code, so every layer can parse and print an identity the same way.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace trellis {

// The control plane's identity in every trust domain. The namespace is
// reserved: no join token is bound to it and no workload certificate is
// issued in it, so no sidecar can pass for trellis-control.
inline constexpr std::string_view kControlNamespace = "trellis-system";
inline constexpr std::string_view kControlServiceAccount = "trellis-control";

struct SpiffeId {
  std::string trust_domain;
  std::string namespace_;
  std::string service_account;

  // Strict: exactly "spiffe://<trust domain>/ns/<namespace>/sa/<service
  // account>", all in lower case, with no port, userinfo, query, fragment,
  // percent-encoding, empty segment or trailing slash. Anything looser would
  // let two strings name one workload, and authorization compares strings.
  // The error says what is wrong, e.g. `invalid SPIFFE ID "...": ...`.
  static Result<SpiffeId> parse(std::string_view uri);
  // The same checks on the parts, for an identity built from a join token's
  // namespace and service account.
  static Result<SpiffeId> make(std::string_view trust_domain, std::string_view namespace_,
                               std::string_view service_account);

  // What is wrong with each part, or nothing when it is valid.
  // Trust domain: 1-255 of lower-case letters, digits, '.', '-', '_', without
  // an empty dot-separated label (as MeshConfig's trustDomain).
  static std::optional<std::string> check_trust_domain(std::string_view trust_domain);
  // A DNS label: 1-63 of lower-case letters, digits and '-', starting and
  // ending with a letter or digit (as a Kubernetes namespace).
  static std::optional<std::string> check_namespace(std::string_view namespace_);
  // A DNS subdomain: 1-253 characters, dot-separated DNS labels (as a
  // Kubernetes service account).
  static std::optional<std::string> check_service_account(std::string_view service_account);

  // "spiffe://<trust domain>/ns/<namespace>/sa/<service account>".
  std::string to_string() const;

  bool operator==(const SpiffeId&) const = default;
};

}  // namespace trellis
