// The mesh certificate authority: signs workload certificates (SPIFFE
// X.509-SVIDs) and the control plane's own serving certificate, from its own
// root kept in a directory or from an operator's intermediate, and rotates
// its own root in steps so that no peer ever meets a certificate it cannot
// verify.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/spiffe.h"
#include "control/ca/x509.h"
#include "control/registry.h"

namespace trellis::control {

// Where the roots come from.
enum class CaMode {
  kOwnRoot,               // a root the CA made and keeps in its directory; it can rotate it
  kOperatorIntermediate,  // an operator's intermediate and its chain; they rotate it in their own PKI
};
// "own-root", "operator-intermediate".
std::string_view ca_mode_name(CaMode mode);

// Root rotation, one step at a time. Each step is stored before it takes
// effect for callers, so a restart continues from the last completed step.
//   kIdle:           one root, issuing from it.
//   kNewRootTrusted: bundle = old + new root, still issuing from the old one,
//                    while every peer learns to trust the new root.
//   kIssuingFromNew: bundle = old + new, issuing from the new root, while
//                    certificates from the old one expire and are renewed.
// finish_rotation() then drops the old root: back to kIdle.
enum class RotationPhase { kIdle, kNewRootTrusted, kIssuingFromNew };
// "idle", "new-root-trusted", "issuing-from-new".
std::string_view rotation_phase_name(RotationPhase phase);

// What the API and `trellis ca` show about a certificate.
struct CertificateSummary {
  std::string subject;             // RFC 2253, e.g. "CN=Trellis mesh root 1a2b3c4d,O=Trellis"
  std::string sha256_fingerprint;  // lower-case hex of the DER
  std::string serial;              // lower-case hex
  SystemTime not_before;
  SystemTime not_after;
};

struct CaStatus {
  CaMode mode = CaMode::kOwnRoot;
  RotationPhase phase = RotationPhase::kIdle;
  std::string trust_domain;
  // The trust bundle, oldest root first.
  std::vector<CertificateSummary> roots;
  // What signs workload certificates: a root from `roots`, or the
  // operator's intermediate.
  CertificateSummary issuer;
  // In kIssuingFromNew: until when a workload certificate signed by the old
  // root before the switch may still be valid (switch time plus the longest
  // workload lifetime). finish_rotation() waits for it unless forced.
  std::optional<SystemTime> old_root_leaves_valid_until;
};

struct IssuedCertificate {
  std::string certificate_pem;  // the leaf
  // Sent along with the leaf: the operator's intermediate and any
  // certificates between it and the root; empty when a root signs directly.
  // Never a root: peers take roots from the trust bundle only.
  std::string chain_pem;
  std::string trust_bundle_pem;  // every root a peer should trust now
  SystemTime not_before;
  SystemTime not_after;
  std::string serial;  // lower-case hex
};

struct ServerCredentials {
  // PKCS#8 PEM. Only for the caller that serves with it: never logged, never
  // stored by the CA.
  std::string private_key_pem;
  IssuedCertificate certificate;
};

// Errors are sentences for operators: they name the file and the reason and
// never contain key material.
//
// Not thread-safe for writes: sign_workload(), issue_server(), status() and
// trust_bundle_pem() only read and may run concurrently with each other; a
// rotation step must not run concurrently with anything (the caller
// serializes, as with the Registry).
class CertificateAuthority {
 public:
  // Certificates start this long before "now", for peers whose clocks lag.
  static constexpr std::chrono::seconds kClockSkew{60};
  static constexpr std::chrono::seconds kMinLifetime{60};
  // Workload certificates are short-lived and renewed at half-life; a week
  // bounds how long a stolen key stays useful and how long a proxy can live
  // without the control plane.
  static constexpr std::chrono::seconds kMaxWorkloadLifetime{7 * 24 * 3600};
  // The control plane renews its own serving certificate in-process.
  static constexpr std::chrono::seconds kMaxServerLifetime{90 * 24 * 3600};
  static constexpr std::chrono::seconds kRootLifetime{3650 * 24 * 3600};

  // Opens the CA kept in `directory` (e.g. <data-dir>/ca), or creates it
  // there with a new self-signed root (ECDSA P-256, 10 years) on first
  // start. Loading checks every root and key: the key must match its
  // certificate and its file must be mode 0600 or stricter. The directory
  // (mode 0700 when created here) holds:
  //   state.json        phase, roots in the bundle, issuing root: the commit
  //                     point of every step, written last
  //   root-<N>.key      root N's key, PKCS#8 PEM, mode 0600
  //   root-<N>.crt      root N's certificate, PEM
  //   trust-bundle.pem  the bundle, for other tools; rewritten from
  //                     state.json on every start
  // Files state.json does not name (a retired root, an interrupted step,
  // a half-written temporary) are removed on start.
  static Result<std::unique_ptr<CertificateAuthority>> open(const std::string& directory,
                                                            const std::string& trust_domain,
                                                            const WallClock& clock);
  // Issues from an operator's intermediate CA. `certificate_file` holds the
  // intermediate first, then the chain up to and including the
  // organisation's self-signed root; `key_file` the intermediate's key
  // (mode 0600). Checked: the key matches, the intermediate may sign
  // certificates, it is valid now, and the chain verifies to the root, which
  // becomes the trust bundle. Nothing is written.
  static Result<std::unique_ptr<CertificateAuthority>> with_intermediate(const std::string& certificate_file,
                                                                         const std::string& key_file,
                                                                         const std::string& trust_domain,
                                                                         const WallClock& clock);
  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  // Signs a workload's CSR for the identity it is entitled to (from its join
  // token or its verified mTLS identity, never from the CSR itself). The CSR
  // must pass check_workload_csr(); `entitled` must be in this CA's trust
  // domain; `lifetime` must be within [kMinLifetime, kMaxWorkloadLifetime]
  // and is cut so the certificate never outlives its issuer's chain.
  Result<IssuedCertificate> sign_workload(std::string_view csr_pem, const SpiffeId& entitled,
                                          std::chrono::seconds lifetime) const;

  // A serving certificate for the control plane itself, with a key made here:
  // SANs are the given DNS names and IP addresses (text, IPv4 or IPv6) and
  // spiffe://<trust domain>/ns/trellis-system/sa/trellis-control. `lifetime`
  // within [kMinLifetime, kMaxServerLifetime], cut like a workload's.
  Result<ServerCredentials> issue_server(const std::vector<std::string>& dns_names,
                                         const std::vector<std::string>& ip_addresses,
                                         std::chrono::seconds lifetime) const;

  // Whether the issuer in force signed `certificate_pem` (its first
  // certificate): a peer holding one from elsewhere, e.g. from the old root
  // during a rotation, should renew.
  bool issued_by_current(std::string_view certificate_pem) const;

  // Every root peers should trust, oldest first, as concatenated PEM.
  std::string trust_bundle_pem() const;
  CaStatus status() const;
  const std::string& trust_domain() const { return trust_domain_; }

  // The rotation steps (see RotationPhase). Each one refuses, saying which
  // step comes next, when called out of order, and refuses with an
  // operator's intermediate. On success the new state is on disk.
  //
  // The CA does not know which peers have seen the new bundle: the caller
  // switches once every proxy has acknowledged it, and after switching
  // reissues the control plane's own serving certificate. finish_rotation()
  // refuses while certificates signed by the old root may still be valid
  // (see CaStatus::old_root_leaves_valid_until) unless `force` is set, since
  // dropping the old root breaks every peer still holding one.
  Result<CaStatus> begin_rotation();
  Result<CaStatus> switch_issuer();
  Result<CaStatus> finish_rotation(bool force = false);

 private:
  struct Root;
  struct State;

  CertificateAuthority(CaMode mode, std::string trust_domain, const WallClock& clock);
  SystemTime now() const;
  const X509* issuer_certificate() const;
  const EVP_PKEY* issuer_key() const;
  // The earliest notAfter among the issuer and the certificates above it: a
  // leaf must not outlive any of them.
  SystemTime issuer_chain_not_after() const;
  Result<IssuedCertificate> issue(const EVP_PKEY* public_key, std::vector<std::string> uris,
                                  std::vector<std::string> dns_names,
                                  std::vector<std::vector<unsigned char>> ip_addresses,
                                  std::chrono::seconds lifetime, std::chrono::seconds max_lifetime) const;

  Result<bool> create_first_root();
  Result<bool> adopt_first_root();
  void remove_unused_files() const;
  void refresh_bundle();
  Result<bool> load_state();
  State current_state() const;
  Result<bool> save_state(const State& state) const;
  Result<bool> save_root(const Root& root) const;
  Result<bool> write_trust_bundle() const;
  Result<bool> check_can_rotate(RotationPhase expected, std::string_view step) const;
  Result<std::unique_ptr<Root>> make_root(int generation) const;
  Result<std::unique_ptr<Root>> load_root(int generation) const;
  std::string root_path(int generation, std::string_view extension) const;

  CaMode mode_;
  std::string trust_domain_;
  const WallClock& clock_;
  std::string directory_;  // own root only

  RotationPhase phase_ = RotationPhase::kIdle;
  int64_t switched_at_ms_ = 0;                // kIssuingFromNew only
  std::vector<std::unique_ptr<Root>> roots_;  // the trust bundle, oldest first
  size_t issuing_root_ = 0;                   // own root: index into roots_
  std::string bundle_pem_;                    // roots_ as PEM, kept in step by refresh_bundle()

  // Operator's intermediate: it, its key, and the certificates between it
  // and the root (sent along with every leaf).
  UniqueX509 intermediate_;
  UniquePkey intermediate_key_;
  std::vector<UniqueX509> intermediate_chain_;
  std::string chain_pem_;  // the intermediate and intermediate_chain_, or empty
};

}  // namespace trellis::control
