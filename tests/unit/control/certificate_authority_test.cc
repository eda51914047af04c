#include "control/ca/certificate_authority.h"

#include <gtest/gtest.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "control/ca/verify_workload.h"
#include "support/ca_test_pki.h"

namespace trellis::control {
namespace {

using namespace std::chrono_literals;
using testing::KeyKind;
using testing::make_csr;
using testing::make_key;
using testing::uri_san;

constexpr const char* kTrustDomain = "cluster.local";
constexpr std::chrono::seconds kDay{86400};

class FakeWallClock final : public WallClock {
 public:
  int64_t now_ms() const override { return now_ms_; }
  SystemTime now() const { return SystemTime{} + std::chrono::milliseconds(now_ms_); }
  void advance(std::chrono::seconds d) { now_ms_ += d.count() * 1000; }
  int64_t now_ms_ = 1700000000000;
};

SpiffeId identity(std::string ns = "bookinfo", std::string sa = "reviews") {
  return *SpiffeId::make(kTrustDomain, ns, sa);
}

UniqueX509 one_certificate(const std::string& pem) {
  auto parsed = parse_pem_certificates(pem);
  EXPECT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->size(), 1u);
  return std::move(parsed->front());
}

// The index-th certificate of a PEM bundle, re-encoded on its own.
std::string certificate_at(const std::string& pem, size_t index) {
  auto parsed = parse_pem_certificates(pem);
  EXPECT_TRUE(parsed && parsed->size() > index);
  return parsed && parsed->size() > index ? certificate_pem((*parsed)[index].get()) : "";
}

size_t count_certificates(const std::string& pem) {
  auto parsed = parse_pem_certificates(pem);
  return parsed ? parsed->size() : 0;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Verifies with OpenSSL's strict RFC 5280 checks, to catch a malformed
// certificate that the default checks let through.
bool verifies_strictly(const X509* leaf, const std::string& chain_pem, const std::string& bundle_pem,
                       SystemTime at) {
  X509_STORE* store = X509_STORE_new();
  auto roots = parse_pem_certificates(bundle_pem);
  for (auto& root : *roots) X509_STORE_add_cert(store, root.get());
  STACK_OF(X509)* chain = sk_X509_new_null();
  std::vector<UniqueX509> intermediates;
  if (!chain_pem.empty()) intermediates = std::move(*parse_pem_certificates(chain_pem));
  for (auto& c : intermediates) sk_X509_push(chain, c.get());
  X509_STORE_CTX* context = X509_STORE_CTX_new();
  X509_STORE_CTX_init(context, store, const_cast<X509*>(leaf), chain);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(context);
  X509_VERIFY_PARAM_set_time(param, std::chrono::system_clock::to_time_t(at));
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_CLIENT);
  bool ok = X509_verify_cert(context) == 1;
  X509_STORE_CTX_free(context);
  sk_X509_free(chain);
  X509_STORE_free(store);
  return ok;
}

class CertificateAuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/trellis-ca-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    dir_ = root_ + "/ca";  // not there yet: open() creates it
  }
  void TearDown() override {
    ca_.reset();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  void open_ca() {
    ca_.reset();
    auto opened = CertificateAuthority::open(dir_, kTrustDomain, clock_);
    ASSERT_TRUE(opened) << opened.error().message;
    ca_ = std::move(*opened);
  }

  // Every refusal goes through here: it must give a reason and never show
  // key material.
  template <class T>
  void expect_refused(const Result<T>& result, const std::string& part) {
    ASSERT_FALSE(result) << "expected a refusal mentioning \"" << part << "\"";
    const std::string& message = result.error().message;
    EXPECT_NE(message.find(part), std::string::npos) << "expected \"" << part << "\" in: " << message;
    EXPECT_EQ(message.find("PRIVATE KEY"), std::string::npos) << message;
    EXPECT_EQ(message.find("-----BEGIN"), std::string::npos) << message;
  }

  Result<IssuedCertificate> sign(const std::string& csr, std::chrono::seconds lifetime = 24h) {
    return ca_->sign_workload(csr, identity(), lifetime);
  }
  std::string good_csr() { return make_csr(workload_key_.get(), {uri_san(identity().to_string())}); }

  std::string root_;
  std::string dir_;
  FakeWallClock clock_;
  std::unique_ptr<CertificateAuthority> ca_;
  UniquePkey workload_key_ = make_key(KeyKind::kP256);
};

// ---- the CA's own root -----------------------------------------------------

TEST_F(CertificateAuthorityTest, FirstStartCreatesAPrivateRootAndTheNextLoadsIt) {
  open_ca();
  EXPECT_EQ(testing::file_mode(dir_ + "/root-1.key"), 0600u);
  EXPECT_EQ(testing::file_mode(dir_) & 077, 0u);
  CaStatus status = ca_->status();
  EXPECT_EQ(status.mode, CaMode::kOwnRoot);
  EXPECT_EQ(status.phase, RotationPhase::kIdle);
  ASSERT_EQ(status.roots.size(), 1u);
  EXPECT_EQ(status.issuer.sha256_fingerprint, status.roots[0].sha256_fingerprint);
  EXPECT_EQ(read_text(dir_ + "/trust-bundle.pem"), ca_->trust_bundle_pem());
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << entry.path();
  }

  UniqueX509 root = one_certificate(ca_->trust_bundle_pem());
  EXPECT_TRUE(is_self_signed(root.get()));
  EXPECT_TRUE(check_can_sign_certificates(root.get()));
  EXPECT_EQ(X509_get_key_usage(root.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_TRUE(is_ecdsa_p256(X509_get0_pubkey(root.get())));
  std::string subject = subject_line(root.get());
  EXPECT_NE(subject.find("O=Trellis"), std::string::npos) << subject;
  EXPECT_NE(subject.find("CN=Trellis mesh root "), std::string::npos) << subject;
  EXPECT_EQ(not_after(root.get()), clock_.now() + CertificateAuthority::kRootLifetime);
  EXPECT_EQ(not_before(root.get()), clock_.now() - CertificateAuthority::kClockSkew);

  open_ca();
  EXPECT_EQ(ca_->status().roots[0].sha256_fingerprint, status.roots[0].sha256_fingerprint);
  auto issued = sign(good_csr());
  ASSERT_TRUE(issued) << issued.error().message;
  EXPECT_TRUE(
      verify_workload(issued->certificate_pem, "", read_text(dir_ + "/trust-bundle.pem"), clock_.now()));
}

TEST_F(CertificateAuthorityTest, AKeyFileOpenToGroupOrOthersIsRefused) {
  open_ca();
  ca_.reset();
  std::string key = dir_ + "/root-1.key";
  ASSERT_EQ(chmod(key.c_str(), 0640), 0);
  auto opened = CertificateAuthority::open(dir_, kTrustDomain, clock_);
  expect_refused(opened, "chmod 600 " + key);
  expect_refused(opened, "0640");
  ASSERT_EQ(chmod(key.c_str(), 0604), 0);
  expect_refused(CertificateAuthority::open(dir_, kTrustDomain, clock_), "chmod 600");
  ASSERT_EQ(chmod(key.c_str(), 0600), 0);
  open_ca();
}

TEST_F(CertificateAuthorityTest, AKeyThatDoesNotMatchItsRootIsRefused) {
  open_ca();
  ca_.reset();
  std::string other = private_key_pem(make_key(KeyKind::kP256).get());
  testing::write_test_file(dir_ + "/root-1.key", other, 0600);
  expect_refused(CertificateAuthority::open(dir_, kTrustDomain, clock_), "does not match");
}

TEST_F(CertificateAuthorityTest, AFirstStartCutShortIsCompletedWithItsRoot) {
  open_ca();
  const std::string root = ca_->trust_bundle_pem();
  ca_.reset();
  // Stopped after the root's files, before state.json and the bundle.
  std::filesystem::remove(dir_ + "/state.json");
  std::filesystem::remove(dir_ + "/trust-bundle.pem");
  testing::write_test_file(dir_ + "/root-1.key.tmp-99999", "half a key", 0600);
  open_ca();
  EXPECT_EQ(ca_->trust_bundle_pem(), root);
  EXPECT_EQ(read_text(dir_ + "/trust-bundle.pem"), root);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/state.json"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/root-1.key.tmp-99999"))
      << "a half-written file does not linger";
}

TEST_F(CertificateAuthorityTest, RootsWithoutStateAfterARotationAreNotReplaced) {
  open_ca();
  ASSERT_TRUE(ca_->begin_rotation());
  ca_.reset();
  std::filesystem::remove(dir_ + "/state.json");
  expect_refused(CertificateAuthority::open(dir_, kTrustDomain, clock_), "no state.json");
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/root-1.key"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/root-2.key"));
}

TEST_F(CertificateAuthorityTest, ABadTrustDomainIsRefused) {
  expect_refused(CertificateAuthority::open(dir_, "Cluster.Local", clock_), "trust domain");
}

// ---- workload certificates -------------------------------------------------

TEST_F(CertificateAuthorityTest, SignsAWorkloadCsrAsAnSvid) {
  open_ca();
  auto issued = sign(make_csr(workload_key_.get(), {uri_san(identity().to_string())}, "ignored-name"), 24h);
  ASSERT_TRUE(issued) << issued.error().message;
  UniqueX509 leaf = one_certificate(issued->certificate_pem);
  X509* c = leaf.get();

  EXPECT_EQ(X509_get_version(c), X509_VERSION_3);
  EXPECT_TRUE(key_matches_certificate(workload_key_.get(), c));
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(c)), 0) << "the identity is the SAN alone";
  EXPECT_EQ(uri_sans(c), std::vector<std::string>{"spiffe://cluster.local/ns/bookinfo/sa/reviews"});
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c, NID_subject_alt_name, nullptr, nullptr));
  ASSERT_NE(names, nullptr);
  EXPECT_EQ(sk_GENERAL_NAME_num(names), 1);
  GENERAL_NAMES_free(names);
  auto critical = [&](int nid) {
    return X509_EXTENSION_get_critical(X509_get_ext(c, X509_get_ext_by_NID(c, nid, -1)));
  };
  EXPECT_EQ(critical(NID_subject_alt_name), 1);
  EXPECT_EQ(critical(NID_basic_constraints), 1);
  EXPECT_EQ(critical(NID_key_usage), 1);

  uint32_t flags = X509_get_extension_flags(c);
  EXPECT_TRUE(flags & EXFLAG_BCONS);
  EXPECT_FALSE(flags & EXFLAG_CA);
  EXPECT_EQ(X509_get_key_usage(c), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(c), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  ASSERT_NE(X509_get0_subject_key_id(c), nullptr);
  UniqueX509 root = one_certificate(ca_->trust_bundle_pem());
  ASSERT_NE(X509_get0_authority_key_id(c), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(c), X509_get0_subject_key_id(root.get())), 0);
  EXPECT_EQ(X509_get_signature_nid(c), NID_ecdsa_with_SHA256);

  const ASN1_INTEGER* serial = X509_get0_serialNumber(c);
  EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER) << "positive";
  EXPECT_EQ(ASN1_STRING_length(serial), 16);
  EXPECT_EQ(issued->serial, serial_hex(c));
  EXPECT_EQ(issued->serial.size(), 32u);

  EXPECT_EQ(issued->not_before, clock_.now() - 60s);
  EXPECT_EQ(issued->not_after, clock_.now() + 24h);
  EXPECT_EQ(not_before(c), issued->not_before);
  EXPECT_EQ(not_after(c), issued->not_after);
  EXPECT_EQ(issued->chain_pem, "") << "a root signs directly; roots are never sent along";
  EXPECT_EQ(issued->trust_bundle_pem, ca_->trust_bundle_pem());

  auto verified =
      verify_workload(issued->certificate_pem, issued->chain_pem, issued->trust_bundle_pem, clock_.now());
  ASSERT_TRUE(verified) << verified.error().message;
  EXPECT_EQ(*verified, identity());
  EXPECT_TRUE(verifies_strictly(c, issued->chain_pem, issued->trust_bundle_pem, clock_.now()));
  // Outside its validity it does not verify.
  expect_refused(verify_workload(issued->certificate_pem, "", issued->trust_bundle_pem, clock_.now() + 25h),
                 "expired");

  auto again = sign(good_csr());
  ASSERT_TRUE(again);
  EXPECT_NE(again->serial, issued->serial);
}

TEST_F(CertificateAuthorityTest, ACsrForAnotherIdentityIsRefusedNamingBoth) {
  open_ca();
  auto result =
      sign(make_csr(workload_key_.get(), {uri_san("spiffe://cluster.local/ns/bookinfo/sa/ratings")}));
  expect_refused(result, "spiffe://cluster.local/ns/bookinfo/sa/ratings");
  expect_refused(result, "spiffe://cluster.local/ns/bookinfo/sa/reviews");
}

TEST_F(CertificateAuthorityTest, ACsrMustAskForExactlyTheOneUri) {
  open_ca();
  const std::string id = identity().to_string();
  expect_refused(sign(make_csr(workload_key_.get(), {uri_san(id), testing::dns_san("reviews.bookinfo")})),
                 "DNS name \"reviews.bookinfo\"");
  expect_refused(sign(make_csr(workload_key_.get(), {uri_san(id), uri_san(id)})), "exactly one");
  expect_refused(sign(make_csr(workload_key_.get(), {testing::dns_san("reviews")})), "DNS name");
  expect_refused(sign(make_csr(workload_key_.get(), {testing::email_san("a@example.com")})), "e-mail");
  expect_refused(sign(make_csr(workload_key_.get(), {}, "spiffe://cluster.local/ns/bookinfo/sa/reviews")),
                 "no subject alternative name");
  // A control byte in a requested name is shown escaped, not written raw.
  auto forged = sign(make_csr(workload_key_.get(), {uri_san(id + "\nlevel=error")}));
  expect_refused(forged, "\\x0a");
  EXPECT_EQ(forged.error().message.find('\n'), std::string::npos);
}

TEST_F(CertificateAuthorityTest, KeysOtherThanP256AreRefusedSayingWhatWasFound) {
  open_ca();
  const std::string id = identity().to_string();
  auto rsa = sign(make_csr(make_key(KeyKind::kRsa2048).get(), {uri_san(id)}));
  expect_refused(rsa, "RSA 2048-bit");
  expect_refused(rsa, "ECDSA P-256 key is required");
  expect_refused(sign(make_csr(make_key(KeyKind::kP384).get(), {uri_san(id)})), "ECDSA P-384");
  expect_refused(sign(make_csr(make_key(KeyKind::kEd25519).get(), {uri_san(id)})), "Ed25519");
}

TEST_F(CertificateAuthorityTest, ATamperedOrBrokenCsrIsRefused) {
  open_ca();
  expect_refused(sign(testing::tamper_with_signature(good_csr())), "signature does not verify");
  expect_refused(sign("not a CSR"), "not a PEM certificate signing request");
  expect_refused(sign(std::string(64 * 1024, 'A')), "larger than");
  // A key where a CSR belongs is refused without echoing it.
  expect_refused(sign(private_key_pem(workload_key_.get())), "not a PEM certificate signing request");
}

TEST_F(CertificateAuthorityTest, AnIdentityOutsideTheTrustDomainIsRefused) {
  open_ca();
  SpiffeId foreign = *SpiffeId::make("other.example", "bookinfo", "reviews");
  expect_refused(
      ca_->sign_workload(make_csr(workload_key_.get(), {uri_san(foreign.to_string())}), foreign, 1h),
      "not in this CA's trust domain");
}

TEST_F(CertificateAuthorityTest, NoWorkloadIsIssuedAnIdentityInTheControlPlanesNamespace) {
  open_ca();
  SpiffeId control = *SpiffeId::make(kTrustDomain, kControlNamespace, kControlServiceAccount);
  expect_refused(
      ca_->sign_workload(make_csr(workload_key_.get(), {uri_san(control.to_string())}), control, 1h),
      "reserved for the control plane");
}

TEST_F(CertificateAuthorityTest, LifetimesOutsideTheBoundsAreRefused) {
  open_ca();
  expect_refused(sign(good_csr(), CertificateAuthority::kMaxWorkloadLifetime + 1s),
                 "longer than the maximum 7 days");
  expect_refused(sign(good_csr(), 59s), "shorter than the minimum 1 minute");
  auto longest = sign(good_csr(), CertificateAuthority::kMaxWorkloadLifetime);
  ASSERT_TRUE(longest) << longest.error().message;
  EXPECT_EQ(longest->not_after, clock_.now() + CertificateAuthority::kMaxWorkloadLifetime);
}

TEST_F(CertificateAuthorityTest, ALifetimeIsCutAtTheCasExpiry) {
  open_ca();
  SystemTime root_end = ca_->status().issuer.not_after;
  clock_.advance(CertificateAuthority::kRootLifetime - kDay);
  auto issued = sign(good_csr(), 7 * kDay);
  ASSERT_TRUE(issued) << issued.error().message;
  EXPECT_EQ(issued->not_after, root_end);
  EXPECT_TRUE(verify_workload(issued->certificate_pem, "", issued->trust_bundle_pem, root_end - 1s));

  clock_.advance(kDay - 30s);
  expect_refused(sign(good_csr()), "rotate the CA");
}

// ---- the control plane's own certificate -----------------------------------

TEST_F(CertificateAuthorityTest, IssuesTheControlPlanesServingCertificate) {
  open_ca();
  auto issued = ca_->issue_server({"trellis-control", "trellis-control.trellis-system.svc"},
                                  {"127.0.0.1", "::1"}, 30 * kDay);
  ASSERT_TRUE(issued) << issued.error().message;
  auto key = parse_pem_private_key(issued->private_key_pem);
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_TRUE(is_ecdsa_p256(key->get()));
  UniqueX509 leaf = one_certificate(issued->certificate.certificate_pem);
  EXPECT_TRUE(key_matches_certificate(key->get(), leaf.get()));
  EXPECT_EQ(X509_check_host(leaf.get(), "trellis-control.trellis-system.svc", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_host(leaf.get(), "elsewhere", 0, 0, nullptr), 0);
  auto verified = verify_workload(issued->certificate.certificate_pem, issued->certificate.chain_pem,
                                  ca_->trust_bundle_pem(), clock_.now());
  ASSERT_TRUE(verified) << verified.error().message;
  EXPECT_EQ(verified->to_string(), "spiffe://cluster.local/ns/trellis-system/sa/trellis-control");
  EXPECT_TRUE(verifies_strictly(leaf.get(), "", ca_->trust_bundle_pem(), clock_.now()));

  expect_refused(ca_->issue_server({"bad name"}, {}, kDay), "DNS name \"bad name\"");
  expect_refused(ca_->issue_server({"*.example.com"}, {}, kDay), "DNS name");
  expect_refused(ca_->issue_server({}, {"10.0.0.256"}, kDay), "not an IPv4 or IPv6 address");
  expect_refused(ca_->issue_server({"a,URI:spiffe://x/ns/a/sa/b"}, {}, kDay), "DNS name");
  expect_refused(ca_->issue_server({"trellis-control"}, {}, CertificateAuthority::kMaxServerLifetime + 1s),
                 "longer than the maximum");
}

// ---- an operator's intermediate --------------------------------------------

class OperatorIntermediateTest : public CertificateAuthorityTest {
 protected:
  void SetUp() override {
    CertificateAuthorityTest::SetUp();
    std::filesystem::create_directories(dir_);
    SystemTime t = clock_.now();
    org_root_ = testing::make_test_certificate("Example Root", nullptr, t - 365 * kDay, t + 3650 * kDay);
    intermediate_ = testing::make_test_certificate("Example Mesh CA", &org_root_, t - kDay, t + 365 * kDay);
  }

  std::string cert_file() const { return dir_ + "/intermediate.pem"; }
  std::string key_file() const { return dir_ + "/intermediate.key"; }

  void write_files(const std::vector<const X509*>& chain, const EVP_PKEY* key, mode_t key_mode = 0600) {
    testing::write_test_file(cert_file(), certificates_pem(chain), 0644);
    testing::write_test_file(key_file(), private_key_pem(key), key_mode);
  }
  Result<std::unique_ptr<CertificateAuthority>> open_intermediate() {
    return CertificateAuthority::with_intermediate(cert_file(), key_file(), kTrustDomain, clock_);
  }

  testing::TestCa org_root_;
  testing::TestCa intermediate_;
};

TEST_F(OperatorIntermediateTest, IssuesFromTheIntermediateAndSendsItAlong) {
  write_files({intermediate_.certificate.get(), org_root_.certificate.get()}, intermediate_.key.get());
  auto opened = open_intermediate();
  ASSERT_TRUE(opened) << opened.error().message;
  ca_ = std::move(*opened);
  CaStatus status = ca_->status();
  EXPECT_EQ(status.mode, CaMode::kOperatorIntermediate);
  ASSERT_EQ(status.roots.size(), 1u);
  EXPECT_EQ(status.roots[0].sha256_fingerprint, sha256_fingerprint(org_root_.certificate.get()));
  EXPECT_EQ(status.issuer.sha256_fingerprint, sha256_fingerprint(intermediate_.certificate.get()));
  EXPECT_EQ(ca_->trust_bundle_pem(), certificate_pem(org_root_.certificate.get()));

  auto issued = sign(good_csr());
  ASSERT_TRUE(issued) << issued.error().message;
  EXPECT_EQ(issued->chain_pem, certificate_pem(intermediate_.certificate.get()));
  EXPECT_EQ(issued->trust_bundle_pem, certificate_pem(org_root_.certificate.get()));
  auto verified =
      verify_workload(issued->certificate_pem, issued->chain_pem, issued->trust_bundle_pem, clock_.now());
  ASSERT_TRUE(verified) << verified.error().message;
  EXPECT_EQ(*verified, identity());
  UniqueX509 leaf = one_certificate(issued->certificate_pem);
  EXPECT_TRUE(verifies_strictly(leaf.get(), issued->chain_pem, issued->trust_bundle_pem, clock_.now()));
  // Without the intermediate a peer cannot build the path.
  expect_refused(verify_workload(issued->certificate_pem, "", issued->trust_bundle_pem, clock_.now()),
                 "unable to get local issuer certificate");

  expect_refused(ca_->begin_rotation(), "operator's intermediate");
  expect_refused(ca_->switch_issuer(), "own PKI");
  expect_refused(ca_->finish_rotation(true), "own PKI");
}

TEST_F(OperatorIntermediateTest, ALongerChainIsSentAlongWithoutItsRootAndCutsTheLifetime) {
  SystemTime t = clock_.now();
  auto middle = testing::make_test_certificate("Example Policy CA", &org_root_, t - kDay, t + 2 * kDay);
  auto issuing = testing::make_test_certificate("Example Issuing CA", &middle, t - kDay, t + 300 * kDay);
  write_files({issuing.certificate.get(), middle.certificate.get(), org_root_.certificate.get()},
              issuing.key.get());
  auto opened = open_intermediate();
  ASSERT_TRUE(opened) << opened.error().message;
  ca_ = std::move(*opened);
  auto issued = sign(good_csr(), 7 * kDay);
  ASSERT_TRUE(issued) << issued.error().message;
  EXPECT_EQ(count_certificates(issued->chain_pem), 2u);
  EXPECT_EQ(issued->chain_pem, certificates_pem({issuing.certificate.get(), middle.certificate.get()}));
  EXPECT_EQ(issued->not_after, not_after(middle.certificate.get())) << "no leaf outlives any CA above it";
  EXPECT_TRUE(
      verify_workload(issued->certificate_pem, issued->chain_pem, issued->trust_bundle_pem, clock_.now()));
}

TEST_F(OperatorIntermediateTest, TheOrganisationsRootAloneIssuesWithNothingSentAlong) {
  write_files({org_root_.certificate.get()}, org_root_.key.get());
  auto opened = open_intermediate();
  ASSERT_TRUE(opened) << opened.error().message;
  ca_ = std::move(*opened);
  auto issued = sign(good_csr());
  ASSERT_TRUE(issued) << issued.error().message;
  EXPECT_EQ(issued->chain_pem, "");
  EXPECT_EQ(issued->trust_bundle_pem, certificate_pem(org_root_.certificate.get()));
  EXPECT_TRUE(verify_workload(issued->certificate_pem, "", issued->trust_bundle_pem, clock_.now()));
}

TEST_F(OperatorIntermediateTest, AnIntermediateWhoseKeyDoesNotMatchIsRefused) {
  write_files({intermediate_.certificate.get(), org_root_.certificate.get()}, make_key(KeyKind::kP256).get());
  auto opened = open_intermediate();
  expect_refused(opened, "does not match");
  expect_refused(opened, key_file());
}

TEST_F(OperatorIntermediateTest, BadIntermediatesAreRefusedNamingTheFileAndTheReason) {
  SystemTime t = clock_.now();
  // A group-readable key.
  write_files({intermediate_.certificate.get(), org_root_.certificate.get()}, intermediate_.key.get(), 0644);
  expect_refused(open_intermediate(), "chmod 600 " + key_file());

  // Not a CA.
  auto leaf = testing::make_test_certificate("not a CA", &org_root_, t - kDay, t + kDay, /*ca=*/false);
  write_files({leaf.certificate.get(), org_root_.certificate.get()}, leaf.key.get());
  expect_refused(open_intermediate(), "basicConstraints CA:TRUE");

  // Expired.
  auto expired = testing::make_test_certificate("expired", &org_root_, t - 10 * kDay, t - kDay);
  write_files({expired.certificate.get(), org_root_.certificate.get()}, expired.key.get());
  auto opened = open_intermediate();
  expect_refused(opened, cert_file());
  expect_refused(opened, "not now");

  // No root at the end of the file.
  write_files({intermediate_.certificate.get()}, intermediate_.key.get());
  expect_refused(open_intermediate(), "is not self-signed");

  // Signed by a root other than the one in the file.
  auto stranger = testing::make_test_certificate("Other Root", nullptr, t - kDay, t + 3650 * kDay);
  write_files({intermediate_.certificate.get(), stranger.certificate.get()}, intermediate_.key.get());
  expect_refused(open_intermediate(), "does not verify to its root");

  // An Ed25519 key cannot sign with SHA-256.
  auto edwards =
      testing::make_test_certificate("Edwards CA", &org_root_, t - kDay, t + kDay, true, KeyKind::kEd25519);
  write_files({edwards.certificate.get(), org_root_.certificate.get()}, edwards.key.get());
  expect_refused(open_intermediate(), "Ed25519");

  // A key in the certificate file.
  testing::write_test_file(cert_file(), private_key_pem(intermediate_.key.get()), 0600);
  expect_refused(open_intermediate(), "holds a key where only certificates belong");

  // Missing files.
  std::filesystem::remove(key_file());
  write_files({intermediate_.certificate.get(), org_root_.certificate.get()}, intermediate_.key.get());
  std::filesystem::remove(key_file());
  expect_refused(open_intermediate(), "cannot open " + key_file());
}

// ---- root rotation ---------------------------------------------------------

class RotationTest : public CertificateAuthorityTest {
 protected:
  std::string issue_now() {
    auto issued = sign(good_csr(), kDay);
    EXPECT_TRUE(issued) << issued.error().message;
    return issued ? issued->certificate_pem : "";
  }
  bool verifies(const std::string& leaf, const std::string& bundle) {
    return verify_workload(leaf, "", bundle, clock_.now()).ok();
  }
};

TEST_F(RotationTest, RotatesInStepsSoEveryCertificateKeepsVerifying) {
  open_ca();
  const std::string old_root = ca_->trust_bundle_pem();
  const std::string before = issue_now();

  EXPECT_TRUE(ca_->issued_by_current(before));
  auto begun = ca_->begin_rotation();
  ASSERT_TRUE(begun) << begun.error().message;
  EXPECT_EQ(begun->phase, RotationPhase::kNewRootTrusted);
  ASSERT_EQ(begun->roots.size(), 2u);
  EXPECT_EQ(count_certificates(ca_->trust_bundle_pem()), 2u);
  EXPECT_EQ(read_text(dir_ + "/trust-bundle.pem"), ca_->trust_bundle_pem());
  EXPECT_EQ(begun->issuer.sha256_fingerprint, begun->roots[0].sha256_fingerprint)
      << "still issuing from the old";
  EXPECT_EQ(testing::file_mode(dir_ + "/root-2.key"), 0600u);
  const std::string new_root = certificate_at(ca_->trust_bundle_pem(), 1);
  const std::string during = issue_now();
  EXPECT_TRUE(verifies(during, old_root)) << "peers that have not learned the new root yet accept it";

  auto switched = ca_->switch_issuer();
  ASSERT_TRUE(switched) << switched.error().message;
  EXPECT_EQ(switched->phase, RotationPhase::kIssuingFromNew);
  EXPECT_EQ(switched->issuer.sha256_fingerprint, switched->roots[1].sha256_fingerprint);
  ASSERT_TRUE(switched->old_root_leaves_valid_until);
  EXPECT_EQ(*switched->old_root_leaves_valid_until,
            clock_.now() + CertificateAuthority::kMaxWorkloadLifetime);
  const std::string after = issue_now();
  EXPECT_TRUE(verifies(after, new_root));
  EXPECT_FALSE(verifies(after, old_root));
  EXPECT_TRUE(ca_->issued_by_current(after));
  EXPECT_FALSE(ca_->issued_by_current(during)) << "from the old root: its holder should renew";
  EXPECT_FALSE(ca_->issued_by_current("not a certificate"));
  for (const std::string& leaf : {before, during, after})
    EXPECT_TRUE(verifies(leaf, ca_->trust_bundle_pem()));

  expect_refused(ca_->finish_rotation(), "may be valid until");
  clock_.advance(CertificateAuthority::kMaxWorkloadLifetime);
  auto finished = ca_->finish_rotation();
  ASSERT_TRUE(finished) << finished.error().message;
  EXPECT_EQ(finished->phase, RotationPhase::kIdle);
  ASSERT_EQ(finished->roots.size(), 1u);
  EXPECT_EQ(ca_->trust_bundle_pem(), new_root);
  EXPECT_EQ(read_text(dir_ + "/trust-bundle.pem"), new_root);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/root-1.key")) << "a retired root's key does not linger";
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/root-1.crt"));
  const std::string last = issue_now();
  EXPECT_TRUE(verifies(last, ca_->trust_bundle_pem()));
  EXPECT_FALSE(verifies(last, old_root));

  // And again: root numbers keep counting up.
  ASSERT_TRUE(ca_->begin_rotation());
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/root-3.key"));
}

TEST_F(RotationTest, StepsOutOfOrderAreRefusedNamingTheNextStep) {
  open_ca();
  expect_refused(ca_->switch_issuer(), "the rotation is at idle, the next step is begin");
  expect_refused(ca_->finish_rotation(true), "the next step is begin");
  ASSERT_TRUE(ca_->begin_rotation());
  expect_refused(ca_->begin_rotation(), "the rotation is at new-root-trusted, the next step is switch");
  expect_refused(ca_->finish_rotation(true), "the next step is switch");
  ASSERT_TRUE(ca_->switch_issuer());
  expect_refused(ca_->begin_rotation(), "the rotation is at issuing-from-new, the next step is finish");
  expect_refused(ca_->switch_issuer(), "the next step is finish");
  auto forced = ca_->finish_rotation(/*force=*/true);
  ASSERT_TRUE(forced) << forced.error().message;
  EXPECT_EQ(forced->phase, RotationPhase::kIdle);
}

TEST_F(RotationTest, EachStepSurvivesARestart) {
  open_ca();
  const std::string first = ca_->status().roots[0].sha256_fingerprint;

  ASSERT_TRUE(ca_->begin_rotation());
  open_ca();
  CaStatus status = ca_->status();
  EXPECT_EQ(status.phase, RotationPhase::kNewRootTrusted);
  ASSERT_EQ(status.roots.size(), 2u);
  EXPECT_EQ(status.roots[0].sha256_fingerprint, first);
  EXPECT_EQ(status.issuer.sha256_fingerprint, first);
  const std::string second = status.roots[1].sha256_fingerprint;
  expect_refused(ca_->begin_rotation(), "next step is switch");

  ASSERT_TRUE(ca_->switch_issuer());
  clock_.advance(kDay);
  open_ca();
  status = ca_->status();
  EXPECT_EQ(status.phase, RotationPhase::kIssuingFromNew);
  EXPECT_EQ(status.issuer.sha256_fingerprint, second);
  EXPECT_EQ(*status.old_root_leaves_valid_until,
            clock_.now() - kDay + CertificateAuthority::kMaxWorkloadLifetime);
  auto issued = sign(good_csr());
  ASSERT_TRUE(issued);
  UniqueX509 leaf = one_certificate(issued->certificate_pem);
  UniqueX509 second_root = one_certificate(certificate_at(ca_->trust_bundle_pem(), 1));
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf.get()),
                                  X509_get0_subject_key_id(second_root.get())),
            0);

  ASSERT_TRUE(ca_->finish_rotation(/*force=*/true));
  open_ca();
  status = ca_->status();
  EXPECT_EQ(status.phase, RotationPhase::kIdle);
  ASSERT_EQ(status.roots.size(), 1u);
  EXPECT_EQ(status.roots[0].sha256_fingerprint, second);
}

TEST_F(RotationTest, AnInterruptedBeginLeavesTheOldStateAndIsRepeatable) {
  open_ca();
  // Root 2's files were written, then the process died before state.json.
  ASSERT_TRUE(ca_->begin_rotation());
  std::string bundle_with_two = ca_->trust_bundle_pem();
  ca_.reset();
  testing::write_test_file(dir_ + "/state.json",
                           R"({"version": 1, "phase": "idle", "roots": [1], "issuing": 1})", 0644);
  open_ca();
  EXPECT_EQ(ca_->status().phase, RotationPhase::kIdle);
  EXPECT_EQ(count_certificates(ca_->trust_bundle_pem()), 1u);
  EXPECT_EQ(read_text(dir_ + "/trust-bundle.pem"), ca_->trust_bundle_pem()) << "the bundle follows the state";
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/root-2.key")) << "an unused key is removed";
  auto begun = ca_->begin_rotation();
  ASSERT_TRUE(begun) << begun.error().message;
  EXPECT_NE(ca_->trust_bundle_pem(), bundle_with_two) << "a fresh root, not the abandoned one";
}

TEST_F(RotationTest, AStateFileThatContradictsItselfIsRefused) {
  open_ca();
  ca_.reset();
  testing::write_test_file(dir_ + "/state.json",
                           R"({"version": 1, "phase": "new-root-trusted", "roots": [1], "issuing": 1})",
                           0644);
  expect_refused(CertificateAuthority::open(dir_, kTrustDomain, clock_), "state.json");
  testing::write_test_file(dir_ + "/state.json", "{", 0644);
  expect_refused(CertificateAuthority::open(dir_, kTrustDomain, clock_), "not a JSON object");
}

// ---- verification ----------------------------------------------------------

TEST_F(CertificateAuthorityTest, VerificationWantsExactlyOneSpiffeIdAndAKnownRoot) {
  open_ca();
  SystemTime t = clock_.now();
  auto org_root = testing::make_test_certificate("Example Root", nullptr, t - kDay, t + 3650 * kDay);
  // A stranger's certificate does not verify against our bundle.
  auto stranger = sign(good_csr());
  ASSERT_TRUE(stranger);
  expect_refused(
      verify_workload(stranger->certificate_pem, "", certificate_pem(org_root.certificate.get()), t),
      "does not verify");

  // Two SPIFFE IDs, or none, in a certificate from a trusted root.
  auto two = testing::make_test_certificate("two", &org_root, t - kDay, t + kDay, false);
  CertificateTemplate spec;
  spec.public_key = two.key.get();
  spec.not_before = t - kDay;
  spec.not_after = t + kDay;
  spec.uris = {"spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/c"};
  auto both = build_certificate(spec, org_root.certificate.get(), org_root.key.get());
  ASSERT_TRUE(both) << both.error().message;
  const std::string bundle = certificate_pem(org_root.certificate.get());
  expect_refused(verify_workload(certificate_pem(both->get()), "", bundle, t), "carries 2 SPIFFE IDs");
  spec.uris = {};
  spec.dns_names = {"a.example"};
  auto none = build_certificate(spec, org_root.certificate.get(), org_root.key.get());
  ASSERT_TRUE(none);
  expect_refused(verify_workload(certificate_pem(none->get()), "", bundle, t), "no SPIFFE ID");
  // A CA certificate is not a workload.
  expect_refused(verify_workload(bundle, "", bundle, t), "is a CA certificate");
}

}  // namespace
}  // namespace trellis::control
