// A workload's TLS credentials as the data plane uses them: one checked
// certificate, its key and the trust bundle, built into a server context
// (listeners) and a client context (clusters). Built whole and never
// changed: a renewal builds a new TlsCredentials, and connections made with
// an older one keep it alive for as long as they last.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <openssl/evp.h>

#include "common/result.h"
#include "net/tls_context.h"
#include "net/tls_handles.h"
#include "proxy/security/certificate_checks.h"

namespace trellis::proxy {

// How the contexts speak: mesh contexts are TLS 1.3 with the peer's
// certificate required on both sides.
struct TlsProfile {
  // ALPN protocol ids, in preference order: the client offers them, the
  // server picks from them.
  std::vector<std::string> alpn = {"http/1.1"};
  // Whether the server context asks clients for a certificate. kRequired
  // between sidecars; a gateway facing clients outside the mesh may lower it.
  net::ClientCertificate client_certificate = net::ClientCertificate::kRequired;
  // When set: also a client context offering these ALPN ids, for the
  // proxy's stream to trellis-control (gRPC: "h2") with the same certificate.
  std::vector<std::string> control_alpn;
};

struct TlsCredentials {
  // The SPIFFE ID in the certificate's URI SAN; empty only for a
  // certificate loaded from files that carries none (a gateway's).
  std::string identity;
  SystemTime not_before;
  SystemTime not_after;
  // 1 for the first credentials a holder installed, one more for each after:
  // the owner rebuilds its config snapshot when it changes.
  uint64_t generation = 0;
  std::shared_ptr<const net::TlsContext> server;
  std::shared_ptr<const net::TlsContext> client;
  // Null unless the profile asked for it (TlsProfile::control_alpn).
  std::shared_ptr<const net::TlsContext> control;
};

// What build_tls_credentials() checks, and the names its errors give each
// part ("certificate", "key file /etc/trellis/key.pem").
struct CredentialParts {
  std::vector<net::UniqueX509> chain;  // the leaf first, then its intermediates
  std::vector<net::UniqueX509> roots;  // the trust bundle
  const EVP_PKEY* key = nullptr;
  std::string certificate_name = "certificate";
  std::string key_name = "private key";
  std::string bundle_name = "trust bundle";
  // The one URI SAN the leaf must carry. Empty: any, and the leaf's SPIFFE
  // ID, if it has one, becomes the identity.
  std::string expected_identity;
};

// Checks that the key is the leaf's, the leaf names the expected identity,
// is valid at `now` and chains to the roots (as a TLS server and client);
// then builds both contexts. Errors start with the name of the part at
// fault and never hold key material.
Result<std::shared_ptr<const TlsCredentials>> build_tls_credentials(const CredentialParts& parts,
                                                                    const TlsProfile& profile, SystemTime now,
                                                                    uint64_t generation);

}  // namespace trellis::proxy
