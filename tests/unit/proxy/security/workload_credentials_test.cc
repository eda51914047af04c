#include "proxy/security/workload_credentials.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proxy/security/credentials_test_support.h"

namespace trellis::proxy {
namespace {

using std::chrono::hours;
using testing::CsrSigner;
using ::testing::HasSubstr;
using testing::kIdentity;
using testing::kOtherIdentity;
using testing::leaf_for;
using ::testing::Not;

SpiffeId api_identity() { return *SpiffeId::make("trellis.test", "shop", "api"); }

WorkloadCredentials make_credentials(TlsProfile profile = {}) {
  auto credentials = WorkloadCredentials::create(api_identity(), std::move(profile));
  EXPECT_TRUE(credentials) << credentials.error().message;
  return std::move(*credentials);
}

SystemTime now() { return std::chrono::system_clock::now(); }

struct ReqFree {
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
};
using UniqueReq = std::unique_ptr<X509_REQ, ReqFree>;

UniqueReq parse_csr(const std::string& pem) {
  net::UniqueBio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return UniqueReq(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
}

TEST(WorkloadCredentialsTest, CsrAsksForTheIdentityAloneWithAP256Key) {
  WorkloadCredentials credentials = make_credentials();
  EXPECT_EQ(credentials.identity(), kIdentity);
  const std::string& pem = credentials.csr_pem();
  EXPECT_THAT(pem, HasSubstr("-----BEGIN CERTIFICATE REQUEST-----"));
  EXPECT_THAT(pem, Not(HasSubstr("PRIVATE KEY")));

  UniqueReq request = parse_csr(pem);
  ASSERT_TRUE(request);
  net::UniquePkey key(X509_REQ_get_pubkey(request.get()));
  ASSERT_TRUE(key);
  // Signed by the key it carries, with ECDSA and SHA-256.
  EXPECT_EQ(X509_REQ_verify(request.get(), key.get()), 1);
  EXPECT_EQ(X509_REQ_get_signature_nid(request.get()), NID_ecdsa_with_SHA256);
  EXPECT_EQ(EVP_PKEY_is_a(key.get(), "EC"), 1);
  char curve[64] = {};
  size_t curve_length = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(key.get(), curve, sizeof(curve), &curve_length), 1);
  EXPECT_STREQ(curve, "prime256v1");
  // No subject: the CA names the certificate.
  EXPECT_EQ(X509_NAME_entry_count(X509_REQ_get_subject_name(request.get())), 0);

  // One extension, the SAN, holding one name: the identity, as a URI.
  STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(request.get());
  ASSERT_NE(extensions, nullptr);
  ASSERT_EQ(sk_X509_EXTENSION_num(extensions), 1);
  X509_EXTENSION* extension = sk_X509_EXTENSION_value(extensions, 0);
  EXPECT_EQ(OBJ_obj2nid(X509_EXTENSION_get_object(extension)), NID_subject_alt_name);
  auto* names = static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(extension));
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(names), 1);
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, 0);
  ASSERT_EQ(name->type, GEN_URI);
  const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                        static_cast<size_t>(ASN1_STRING_length(uri))),
            kIdentity);
  GENERAL_NAMES_free(names);
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
}

TEST(WorkloadCredentialsTest, EachSidecarMakesItsOwnKey) {
  WorkloadCredentials a = make_credentials();
  WorkloadCredentials b = make_credentials();
  UniqueReq ra = parse_csr(a.csr_pem());
  UniqueReq rb = parse_csr(b.csr_pem());
  ASSERT_TRUE(ra && rb);
  net::UniquePkey ka(X509_REQ_get_pubkey(ra.get()));
  net::UniquePkey kb(X509_REQ_get_pubkey(rb.get()));
  EXPECT_NE(EVP_PKEY_eq(ka.get(), kb.get()), 1);
}

TEST(WorkloadCredentialsTest, NothingIsInstalledBeforeTheFirstCertificate) {
  WorkloadCredentials credentials = make_credentials();
  EXPECT_EQ(credentials.current(), nullptr);
  EXPECT_EQ(credentials.server_context(), nullptr);
  EXPECT_EQ(credentials.client_context(), nullptr);
  EXPECT_FALSE(credentials.not_after().has_value());
  EXPECT_EQ(credentials.generation(), 0u);
}

TEST(WorkloadCredentialsTest, InstallsACertificateIssuedForItsCsr) {
  CsrSigner ca("mesh");
  WorkloadCredentials credentials = make_credentials();
  std::string certificate = ca.sign(credentials.csr_pem(), leaf_for(kIdentity));

  auto installed = credentials.install(certificate, "", ca.root_pem(), now());
  ASSERT_TRUE(installed) << installed.error().message;
  EXPECT_EQ(credentials.generation(), 1u);
  ASSERT_NE(credentials.current(), nullptr);
  EXPECT_EQ(credentials.current()->identity, kIdentity);
  EXPECT_EQ(credentials.current()->generation, 1u);
  ASSERT_TRUE(credentials.not_after().has_value());
  auto lifetime = *credentials.not_after() - credentials.current()->not_before;
  EXPECT_NEAR(std::chrono::duration_cast<std::chrono::seconds>(lifetime).count(), 25 * 3600, 2);
  EXPECT_LT(*credentials.not_after() - now(), hours(24) + std::chrono::seconds(2));
  ASSERT_NE(credentials.server_context(), nullptr);
  ASSERT_NE(credentials.client_context(), nullptr);
  EXPECT_EQ(credentials.server_context()->role(), net::TlsRole::kServer);
  EXPECT_EQ(credentials.client_context()->role(), net::TlsRole::kClient);
}

TEST(WorkloadCredentialsTest, InstallsACertificateFromAnIntermediate) {
  CsrSigner ca("mesh", /*with_intermediate=*/true);
  WorkloadCredentials credentials = make_credentials();
  std::string certificate = ca.sign(credentials.csr_pem(), leaf_for(kIdentity));

  // Without the intermediate the leaf does not reach the root.
  auto missing = credentials.install(certificate, "", ca.root_pem(), now());
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("does not verify against the trust bundle"));

  auto installed = credentials.install(certificate, ca.chain_pem(), ca.root_pem(), now());
  ASSERT_TRUE(installed) << installed.error().message;
  // Leaf and intermediate in one text also do.
  auto together = credentials.install(certificate + ca.chain_pem(), "", ca.root_pem(), now());
  ASSERT_TRUE(together) << together.error().message;
  EXPECT_EQ(credentials.generation(), 2u);
}

// A sidecar with good credentials, then an answer from the CA it must refuse.
class RefusedCertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto installed = credentials_.install(ca_.sign(credentials_.csr_pem(), leaf_for(kIdentity)), "",
                                          ca_.root_pem(), now());
    ASSERT_TRUE(installed) << installed.error().message;
    before_ = credentials_.current();
  }

  // Refused with a message holding `expected`, and nothing changed.
  void expect_refused(const Result<bool>& result, const std::string& expected) {
    ASSERT_FALSE(result);
    EXPECT_THAT(result.error().message, HasSubstr(expected));
    EXPECT_THAT(result.error().message, Not(HasSubstr("PRIVATE KEY")));
    EXPECT_THAT(result.error().message, Not(HasSubstr("BEGIN")));
    EXPECT_EQ(credentials_.generation(), 1u);
    EXPECT_EQ(credentials_.current(), before_);
    EXPECT_EQ(credentials_.current()->generation, 1u);
  }

  CsrSigner ca_{"mesh"};
  WorkloadCredentials credentials_ = make_credentials();
  std::shared_ptr<const TlsCredentials> before_;
};

TEST_F(RefusedCertificateTest, ForAnotherIdentity) {
  std::string certificate = ca_.sign(credentials_.csr_pem(), leaf_for(kOtherIdentity));
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now()),
                 "certificate is for \"spiffe://trellis.test/ns/shop/sa/web\", not for "
                 "\"spiffe://trellis.test/ns/shop/sa/api\"");
}

TEST_F(RefusedCertificateTest, WithMoreNamesThanTheIdentity) {
  testing::LeafSpec spec = leaf_for(kIdentity);
  spec.uris.push_back(kOtherIdentity);
  std::string certificate = ca_.sign(credentials_.csr_pem(), spec);
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now()), "names 2 URIs");
}

TEST_F(RefusedCertificateTest, WithoutAUri) {
  testing::LeafSpec spec;
  spec.dns_names = {"api.shop.svc"};
  std::string certificate = ca_.sign(credentials_.csr_pem(), spec);
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now()), "names no URI");
}

TEST_F(RefusedCertificateTest, ForAnotherKey) {
  std::string certificate = ca_.sign_other_key(leaf_for(kIdentity));
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now()),
                 "certificate does not match this sidecar's private key");
}

TEST_F(RefusedCertificateTest, Expired) {
  std::string certificate = ca_.sign(credentials_.csr_pem(), leaf_for(kIdentity, hours(-3), hours(-1)));
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now()), "certificate expired at ");
}

TEST_F(RefusedCertificateTest, ExpiredByTheTimeItArrives) {
  std::string certificate = ca_.sign(credentials_.csr_pem(), leaf_for(kIdentity));
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now() + hours(25)),
                 "certificate expired at ");
}

TEST_F(RefusedCertificateTest, NotValidYet) {
  std::string certificate = ca_.sign(credentials_.csr_pem(), leaf_for(kIdentity));
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now() - hours(2)),
                 "certificate is not valid before ");
}

TEST_F(RefusedCertificateTest, NotChainedToTheBundle) {
  CsrSigner stranger("stranger");
  std::string certificate = stranger.sign(credentials_.csr_pem(), leaf_for(kIdentity));
  expect_refused(
      credentials_.install(certificate, "", ca_.root_pem(), now()),
      "certificate does not verify against the trust bundle: unable to get local issuer certificate");
}

TEST_F(RefusedCertificateTest, ThatPeersWouldRefuseAsAClient) {
  // A sidecar both serves and connects with its certificate.
  std::string certificate = ca_.sign_server_only(credentials_.csr_pem(), leaf_for(kIdentity));
  expect_refused(credentials_.install(certificate, "", ca_.root_pem(), now()),
                 "unsuitable certificate purpose (at the certificate itself, verifying it as a TLS client)");
}

TEST_F(RefusedCertificateTest, WhenTheCertificateIsNotPem) {
  expect_refused(credentials_.install("not a certificate", "", ca_.root_pem(), now()),
                 "certificate: no PEM certificate in it");
  expect_refused(credentials_.install("", "", ca_.root_pem(), now()), "certificate: no PEM certificate");
}

TEST_F(RefusedCertificateTest, WhenTheBundleIsEmpty) {
  std::string certificate = ca_.sign(credentials_.csr_pem(), leaf_for(kIdentity));
  expect_refused(credentials_.install(certificate, "", "", now()), "trust bundle: no PEM certificate");
}

TEST_F(RefusedCertificateTest, WhenAKeyCameAlong) {
  // A key sent along with certificates would have been seen by others:
  // refused, and the message does not repeat it.
  trellis::testing::TestCa other("other");
  trellis::testing::TestCredentials leaked = other.issue_spiffe(kIdentity);
  std::string certificate = ca_.sign(credentials_.csr_pem(), leaf_for(kIdentity));
  expect_refused(credentials_.install(certificate, "", ca_.root_pem() + leaked.private_key_pem, now()),
                 "trust bundle holds a private key");
  expect_refused(credentials_.install(certificate + leaked.private_key_pem, "", ca_.root_pem(), now()),
                 "certificate holds a private key");
}

TEST_F(RefusedCertificateTest, AndAGoodOneAfterwardsIsInstalled) {
  ASSERT_FALSE(credentials_.install(ca_.sign_other_key(leaf_for(kIdentity)), "", ca_.root_pem(), now()));
  auto installed =
      credentials_.install(ca_.sign(credentials_.csr_pem(), leaf_for(kIdentity)), "", ca_.root_pem(), now());
  ASSERT_TRUE(installed) << installed.error().message;
  EXPECT_EQ(credentials_.generation(), 2u);
  EXPECT_NE(credentials_.current(), before_);
}

TEST(WorkloadCredentialsTest, ContextsHandshakeWithMutualTls13) {
  CsrSigner ca("mesh");
  WorkloadCredentials credentials = make_credentials();
  ASSERT_TRUE(
      credentials.install(ca.sign(credentials.csr_pem(), leaf_for(kIdentity)), "", ca.root_pem(), now()));

  testing::HandshakeResult result =
      testing::handshake(*credentials.server_context(), *credentials.client_context());
  ASSERT_TRUE(result.ok);
  EXPECT_EQ(result.tls_version, TLS1_3_VERSION);
  EXPECT_EQ(result.alpn, "");  // a sidecar offers none: the preface tells the protocol
  EXPECT_EQ(result.server_identity, kIdentity);
  EXPECT_EQ(result.client_identity, kIdentity);
}

TEST(WorkloadCredentialsTest, ServerRequiresAClientCertificate) {
  CsrSigner ca("mesh");
  WorkloadCredentials credentials = make_credentials();
  ASSERT_TRUE(
      credentials.install(ca.sign(credentials.csr_pem(), leaf_for(kIdentity)), "", ca.root_pem(), now()));
  net::TlsContextOptions anonymous;
  anonymous.role = net::TlsRole::kClient;
  anonymous.trust_bundle_pem = ca.root_pem();
  auto client = net::TlsContext::create(anonymous);
  ASSERT_TRUE(client) << client.error().message;
  EXPECT_FALSE(testing::handshake(*credentials.server_context(), **client).ok);
}

TEST(WorkloadCredentialsTest, TheClientOffersNoAlpnWhateverTheServerDoes) {
  // The profile's ALPN is what the server side accepts; a sidecar calling
  // another offers nothing, whatever it speaks (HTTP/2, or HTTP/1.1 for an
  // upgrade), and the other tells them apart by the preface.
  CsrSigner ca("mesh");
  TlsProfile profile;
  profile.alpn = {"h2", "http/1.1"};
  WorkloadCredentials credentials = make_credentials(profile);
  ASSERT_TRUE(
      credentials.install(ca.sign(credentials.csr_pem(), leaf_for(kIdentity)), "", ca.root_pem(), now()));
  EXPECT_EQ(testing::handshake(*credentials.server_context(), *credentials.client_context()).alpn, "");
}

TEST(WorkloadCredentialsTest, RenewalSwapsContextsAndLeavesTheOldOnesWorking) {
  CsrSigner ca("mesh");
  WorkloadCredentials credentials = make_credentials();
  ASSERT_TRUE(
      credentials.install(ca.sign(credentials.csr_pem(), leaf_for(kIdentity)), "", ca.root_pem(), now()));
  std::shared_ptr<const TlsCredentials> old = credentials.current();

  ASSERT_TRUE(credentials.install(ca.sign(credentials.csr_pem(), leaf_for(kIdentity, hours(0), hours(48))),
                                  "", ca.root_pem(), now()));
  std::shared_ptr<const TlsCredentials> renewed = credentials.current();
  EXPECT_EQ(credentials.generation(), 2u);
  EXPECT_EQ(renewed->generation, 2u);
  EXPECT_NE(renewed->server, old->server);
  EXPECT_NE(renewed->client, old->client);
  EXPECT_GT(renewed->not_after, old->not_after);
  // Connections made before the renewal keep their contexts, and old and
  // new sidecars still talk to each other.
  EXPECT_EQ(old->generation, 1u);
  EXPECT_TRUE(testing::handshake(*old->server, *old->client).ok);
  EXPECT_TRUE(testing::handshake(*renewed->server, *old->client).ok);
  EXPECT_TRUE(testing::handshake(*old->server, *renewed->client).ok);
}

TEST(WorkloadCredentialsTest, TrustBundleUpdatesKeepTheCertificate) {
  CsrSigner ca("mesh");
  CsrSigner next_root("mesh-next");
  WorkloadCredentials credentials = make_credentials();
  auto early = credentials.update_trust_bundle(ca.root_pem(), now());
  ASSERT_FALSE(early);
  EXPECT_THAT(early.error().message, HasSubstr("no certificate is installed yet"));

  ASSERT_TRUE(
      credentials.install(ca.sign(credentials.csr_pem(), leaf_for(kIdentity)), "", ca.root_pem(), now()));
  SystemTime not_after = *credentials.not_after();

  // Root rotation, first step: both roots trusted.
  auto both = credentials.update_trust_bundle(ca.root_pem() + next_root.root_pem(), now());
  ASSERT_TRUE(both) << both.error().message;
  EXPECT_EQ(credentials.generation(), 2u);
  EXPECT_EQ(*credentials.not_after(), not_after);

  // A peer already issued from the new root is accepted now.
  WorkloadCredentials peer = make_credentials();
  ASSERT_TRUE(peer.install(next_root.sign(peer.csr_pem(), leaf_for(kIdentity)), "",
                           ca.root_pem() + next_root.root_pem(), now()));
  EXPECT_TRUE(testing::handshake(*credentials.server_context(), *peer.client_context()).ok);

  // A bundle without the root of our own certificate is refused.
  auto without_ours = credentials.update_trust_bundle(next_root.root_pem(), now());
  ASSERT_FALSE(without_ours);
  EXPECT_THAT(without_ours.error().message, HasSubstr("does not verify against the trust bundle"));
  EXPECT_EQ(credentials.generation(), 2u);
}

}  // namespace
}  // namespace trellis::proxy
