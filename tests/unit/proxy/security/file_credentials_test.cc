#include "proxy/security/file_credentials.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <openssl/pem.h>

#include "proxy/security/credentials_test_support.h"
#include "support/test_pki.h"

namespace trellis::proxy {
namespace {

using std::chrono::hours;
using ::testing::HasSubstr;
using testing::kIdentity;
using testing::kOtherIdentity;
using ::testing::Not;
using trellis::testing::LeafSpec;
using trellis::testing::TestCa;
using trellis::testing::TestCredentials;

SystemTime now() { return std::chrono::system_clock::now(); }

// A directory of its own for each test, removed afterwards.
class FileCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "trellis-file-credentials-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    files_.certificate_chain = dir_ + "/cert.pem";
    files_.private_key = dir_ + "/key.pem";
    files_.trust_bundle = dir_ + "/bundle.pem";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Replaces `path` as renewal tools do: a new file renamed over the old.
  void replace(const std::string& path, const std::string& content, mode_t mode = 0644) {
    std::string temporary = path + ".new";
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    ::close(fd);
    ASSERT_EQ(::chmod(temporary.c_str(), mode), 0);
    ASSERT_EQ(::rename(temporary.c_str(), path.c_str()), 0);
  }

  void write_all(const TestCredentials& credentials, const std::string& bundle, mode_t key_mode = 0600) {
    replace(files_.certificate_chain, credentials.certificate_chain_pem);
    replace(files_.private_key, credentials.private_key_pem, key_mode);
    replace(files_.trust_bundle, bundle);
  }

  FileCredentials load_good() {
    write_all(ca_.issue_spiffe(kIdentity), ca_.certificate_pem());
    auto loaded = FileCredentials::load(files_, now());
    EXPECT_TRUE(loaded) << loaded.error().message;
    return std::move(*loaded);
  }

  // Refused, naming `file`, with `expected` in the message and no key text.
  static void expect_refused(const Result<bool>& result, const std::string& file,
                             const std::string& expected) {
    ASSERT_FALSE(result);
    EXPECT_THAT(result.error().message, HasSubstr(file));
    EXPECT_THAT(result.error().message, HasSubstr(expected));
    EXPECT_THAT(result.error().message, Not(HasSubstr("PRIVATE KEY")));
  }

  // A reload that must be refused while the old credentials stay.
  void expect_reload_refused(FileCredentials& credentials, const std::string& file,
                             const std::string& expected) {
    auto before = credentials.current();
    uint64_t generation = credentials.generation();
    expect_refused(credentials.reload_if_changed(now()), file, expected);
    EXPECT_EQ(credentials.current(), before);
    EXPECT_EQ(credentials.generation(), generation);
    // The same bad files are not tried again until they change.
    auto again = credentials.reload_if_changed(now());
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_FALSE(*again);
  }

  Result<bool> load_error() {
    auto loaded = FileCredentials::load(files_, now());
    if (loaded) return true;
    return loaded.error();
  }

  std::string dir_;
  CredentialFiles files_;
  TestCa ca_{"files"};
};

TEST_F(FileCredentialsTest, LoadsTheThreeFiles) {
  TestCa root("root");
  TestCa intermediate = root.intermediate("issuing");
  write_all(intermediate.issue_spiffe(kIdentity), root.certificate_pem());

  auto loaded = FileCredentials::load(files_, now());
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->generation(), 1u);
  ASSERT_NE(loaded->current(), nullptr);
  EXPECT_EQ(loaded->current()->identity, kIdentity);
  EXPECT_EQ(loaded->stats().renewals_ok, 1u);
  EXPECT_EQ(loaded->stats().not_after, loaded->current()->not_after);

  testing::HandshakeResult result =
      testing::handshake(*loaded->current()->server, *loaded->current()->client);
  ASSERT_TRUE(result.ok);
  EXPECT_EQ(result.tls_version, TLS1_3_VERSION);
  EXPECT_EQ(result.client_identity, kIdentity);
  EXPECT_EQ(result.alpn, "");  // a sidecar offers none: the preface tells the protocol
}

TEST_F(FileCredentialsTest, AGatewayCertificateWithoutIdentityLoads) {
  LeafSpec spec;
  spec.dns_names = {"gateway.example.com"};
  write_all(ca_.issue(spec), ca_.certificate_pem());
  TlsProfile profile;
  profile.client_certificate = net::ClientCertificate::kNone;
  auto loaded = FileCredentials::load(files_, now(), profile);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->current()->identity, "");
}

TEST_F(FileCredentialsTest, AnExpectedIdentityIsChecked) {
  write_all(ca_.issue_spiffe(kOtherIdentity), ca_.certificate_pem());
  auto loaded = FileCredentials::load(files_, now(), {}, kIdentity);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("certificate file " + files_.certificate_chain +
                                                " is for \"" + std::string(kOtherIdentity) + "\""));
}

TEST_F(FileCredentialsTest, AKeyOthersCanReadIsRefused) {
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602}) {
    write_all(ca_.issue_spiffe(kIdentity), ca_.certificate_pem(), mode);
    Result<bool> result = load_error();
    expect_refused(result, "key file " + files_.private_key, "chmod 600 " + files_.private_key);
    EXPECT_THAT(result.error().message, HasSubstr("group or others"));
  }
  write_all(ca_.issue_spiffe(kIdentity), ca_.certificate_pem(), 0400);
  EXPECT_TRUE(load_error());
}

TEST_F(FileCredentialsTest, MissingFilesAreNamed) {
  write_all(ca_.issue_spiffe(kIdentity), ca_.certificate_pem());
  ASSERT_EQ(::unlink(files_.trust_bundle.c_str()), 0);
  expect_refused(load_error(), "trust bundle file " + files_.trust_bundle, "cannot open it");
}

TEST_F(FileCredentialsTest, BadFilesAreRefusedNamingTheFile) {
  TestCredentials good = ca_.issue_spiffe(kIdentity);

  // Certificate and key swapped.
  write_all(good, ca_.certificate_pem());
  replace(files_.certificate_chain, good.private_key_pem);
  replace(files_.private_key, good.certificate_chain_pem, 0600);
  expect_refused(load_error(), "certificate file " + files_.certificate_chain, "holds a private key");

  // A key that is not the certificate's.
  write_all(good, ca_.certificate_pem());
  replace(files_.private_key, ca_.issue_spiffe(kIdentity).private_key_pem, 0600);
  expect_refused(load_error(), "key file " + files_.private_key,
                 "certificate file " + files_.certificate_chain + " does not match key file");

  // Not a key at all.
  replace(files_.private_key, "hello\n", 0600);
  expect_refused(load_error(), "key file " + files_.private_key, "unencrypted PEM private key");

  // An encrypted key.
  {
    net::UniquePkey key = trellis::testing::pki_detail::new_key();
    net::UniqueBio bio(BIO_new(BIO_s_mem()));
    static const char kPassphrase[] = "secret";
    ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), EVP_aes_256_cbc(), kPassphrase,
                                            sizeof(kPassphrase) - 1, nullptr, nullptr),
              1);
    replace(files_.private_key, trellis::testing::pki_detail::bio_text(bio.get()), 0600);
    expect_refused(load_error(), "key file " + files_.private_key, "unencrypted PEM private key");
  }

  // An expired certificate.
  LeafSpec expired;
  expired.uris = {kIdentity};
  expired.not_before = hours(-3);
  expired.not_after = hours(-1);
  write_all(ca_.issue(expired), ca_.certificate_pem());
  expect_refused(load_error(), "certificate file " + files_.certificate_chain, "expired at");

  // A bundle the certificate does not verify against.
  TestCa stranger("stranger");
  write_all(good, stranger.certificate_pem());
  expect_refused(load_error(), "trust bundle file " + files_.trust_bundle, "does not verify against");

  // Not PEM.
  write_all(good, "garbage");
  expect_refused(load_error(), "trust bundle file " + files_.trust_bundle, "no PEM certificate");

  // A directory.
  write_all(good, ca_.certificate_pem());
  ASSERT_EQ(::unlink(files_.certificate_chain.c_str()), 0);
  ASSERT_EQ(::mkdir(files_.certificate_chain.c_str(), 0755), 0);
  expect_refused(load_error(), "certificate file " + files_.certificate_chain, "not a regular file");
}

TEST_F(FileCredentialsTest, ReloadDoesNothingWhenNothingChanged) {
  FileCredentials credentials = load_good();
  auto before = credentials.current();
  for (int i = 0; i < 3; ++i) {
    auto reloaded = credentials.reload_if_changed(now());
    ASSERT_TRUE(reloaded) << reloaded.error().message;
    EXPECT_FALSE(*reloaded);
  }
  EXPECT_EQ(credentials.current(), before);
  EXPECT_EQ(credentials.generation(), 1u);
}

TEST_F(FileCredentialsTest, ReloadPicksUpRenewedFiles) {
  FileCredentials credentials = load_good();
  auto before = credentials.current();

  LeafSpec longer;
  longer.uris = {kIdentity};
  longer.not_after = hours(48);
  write_all(ca_.issue(longer), ca_.certificate_pem());
  auto reloaded = credentials.reload_if_changed(now());
  ASSERT_TRUE(reloaded) << reloaded.error().message;
  EXPECT_TRUE(*reloaded);
  EXPECT_EQ(credentials.generation(), 2u);
  EXPECT_NE(credentials.current(), before);
  EXPECT_GT(credentials.current()->not_after, before->not_after);
  EXPECT_EQ(credentials.stats().renewals_ok, 2u);
  // The old contexts still serve the connections made with them.
  EXPECT_TRUE(testing::handshake(*before->server, *credentials.current()->client).ok);
}

TEST_F(FileCredentialsTest, ReloadNoticesAFileRewrittenInPlace) {
  FileCredentials credentials = load_good();
  // A new trust bundle with one more root, written into the same inode.
  TestCa next("next");
  std::string bundle = ca_.certificate_pem() + next.certificate_pem();
  int fd = ::open(files_.trust_bundle.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, bundle.data(), bundle.size()), static_cast<ssize_t>(bundle.size()));
  ::close(fd);
  auto reloaded = credentials.reload_if_changed(now());
  ASSERT_TRUE(reloaded) << reloaded.error().message;
  EXPECT_TRUE(*reloaded);
  EXPECT_EQ(credentials.generation(), 2u);
}

TEST_F(FileCredentialsTest, BadNewFilesKeepTheOldCredentials) {
  FileCredentials credentials = load_good();

  // Half-way through a renewal: the new certificate, the old key.
  replace(files_.certificate_chain, ca_.issue_spiffe(kIdentity).certificate_chain_pem);
  expect_reload_refused(credentials, "key file " + files_.private_key, "does not match");

  // Then the key goes world-readable.
  TestCredentials renewed = ca_.issue_spiffe(kIdentity);
  replace(files_.certificate_chain, renewed.certificate_chain_pem);
  replace(files_.private_key, renewed.private_key_pem, 0644);
  expect_reload_refused(credentials, "key file " + files_.private_key, "chmod 600");

  // The operator fixes the mode: that is a change, and the files are good.
  ASSERT_EQ(::chmod(files_.private_key.c_str(), 0600), 0);
  auto fixed = credentials.reload_if_changed(now());
  ASSERT_TRUE(fixed) << fixed.error().message;
  EXPECT_TRUE(*fixed);
  EXPECT_EQ(credentials.generation(), 2u);

  // A bundle that no longer holds our root.
  TestCa stranger("stranger");
  replace(files_.trust_bundle, stranger.certificate_pem());
  expect_reload_refused(credentials, "trust bundle file " + files_.trust_bundle, "does not verify against");

  // A file that disappears.
  ASSERT_EQ(::unlink(files_.certificate_chain.c_str()), 0);
  expect_reload_refused(credentials, "certificate file " + files_.certificate_chain, "cannot open it");

  EXPECT_EQ(credentials.stats().renewals_failed, 4u);
  EXPECT_EQ(credentials.stats().renewals_ok, 2u);
}

}  // namespace
}  // namespace trellis::proxy
