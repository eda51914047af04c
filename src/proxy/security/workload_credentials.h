// The sidecar's own identity credentials: a private key made in this
// process, which never leaves it (no log, dump, file or error holds it), a
// certificate signing request for the mesh CA, and the certificates the CA
// returns, each checked before the TLS contexts are rebuilt from it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/spiffe.h"
#include "net/tls_context.h"
#include "net/tls_handles.h"
#include "proxy/security/tls_credentials.h"

namespace trellis::proxy {

// Used on the main thread only. Workers never see this object: they get
// current()'s immutable contexts through the owner's config snapshot.
class WorkloadCredentials {
 public:
  // Makes a fresh ECDSA P-256 key and a CSR for `identity`. Fails only when
  // OpenSSL cannot make a key or sign.
  static Result<WorkloadCredentials> create(const SpiffeId& identity, TlsProfile profile = {});

  WorkloadCredentials(WorkloadCredentials&&) = default;
  WorkloadCredentials& operator=(WorkloadCredentials&&) = default;
  WorkloadCredentials(const WorkloadCredentials&) = delete;
  WorkloadCredentials& operator=(const WorkloadCredentials&) = delete;

  // "spiffe://<trust domain>/ns/<namespace>/sa/<service account>".
  const std::string& identity() const { return identity_; }
  // PEM "CERTIFICATE REQUEST": empty subject, the identity as its only
  // subject alternative name (a URI), signed with this key and SHA-256.
  // The same for the life of the object.
  const std::string& csr_pem() const { return csr_pem_; }

  // Installs a certificate the CA issued for csr_pem(): `certificate_pem`
  // holds the leaf (any certificates after it count as intermediates),
  // `chain_pem` the intermediates (may be empty), `trust_bundle_pem` every
  // root to trust. Checked: the leaf is for this key, its only URI SAN is
  // identity(), it is valid at `now` and it chains to the bundle. Then new
  // contexts replace current() and generation() goes up by one. On refusal
  // nothing changes: the last good credentials stay in force, and the error
  // says what was wrong.
  Result<bool> install(std::string_view certificate_pem, std::string_view chain_pem,
                       std::string_view trust_bundle_pem, SystemTime now);

  // The same certificate with a new trust bundle (roots rotate in steps:
  // the CA adds a root before it issues from it). Checked as install() does;
  // an error when nothing is installed yet.
  Result<bool> update_trust_bundle(std::string_view trust_bundle_pem, SystemTime now);

  // The installed credentials; null before the first install.
  const std::shared_ptr<const TlsCredentials>& current() const { return current_; }
  // Its contexts, or null before the first install.
  std::shared_ptr<const net::TlsContext> server_context() const;
  std::shared_ptr<const net::TlsContext> client_context() const;
  // The installed certificate's notAfter; none before the first install.
  std::optional<SystemTime> not_after() const;
  // 0 before the first install; one more after each successful one.
  uint64_t generation() const { return generation_; }

 private:
  WorkloadCredentials() = default;

  std::string identity_;
  net::UniquePkey key_;
  std::string csr_pem_;
  TlsProfile profile_;
  std::shared_ptr<const TlsCredentials> current_;
  // current_'s certificate and chain (public), for update_trust_bundle().
  std::string certificate_pem_;
  std::string chain_pem_;
  uint64_t generation_ = 0;
};

}  // namespace trellis::proxy
