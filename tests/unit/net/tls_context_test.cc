#include "net/tls_context.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "support/test_pki.h"

namespace trellis::net {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using trellis::testing::TestCa;
using trellis::testing::TestCredentials;

constexpr char kServerId[] = "spiffe://trellis.test/ns/shop/sa/api";

// No line of the key's base64 body (nor the PEM armour) in `message`.
void expect_no_key_material(const std::string& message, const std::string& key_pem) {
  EXPECT_THAT(message, ::testing::Not(HasSubstr("PRIVATE KEY")));
  std::istringstream lines(key_pem);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.starts_with("-----")) continue;
    EXPECT_THAT(message, ::testing::Not(HasSubstr(line.substr(0, 16)))) << "the message quotes the key";
  }
}

class TlsContextTest : public ::testing::Test {
 protected:
  TlsContextOptions server_options(const TestCredentials& credentials) const {
    TlsContextOptions o;
    o.role = TlsRole::kServer;
    o.certificate_chain_pem = credentials.certificate_chain_pem;
    o.private_key_pem = credentials.private_key_pem;
    o.trust_bundle_pem = root_.certificate_pem();
    return o;
  }

  std::string error_of(const TlsContextOptions& o) {
    auto context = TlsContext::create(o);
    EXPECT_FALSE(context.ok());
    return context.ok() ? std::string() : context.error().message;
  }

  TestCa root_{"Context Test Root"};
  TestCredentials server_ = root_.issue_spiffe(kServerId);
};

TEST_F(TlsContextTest, ValidCredentialsMakeServerAndClientContexts) {
  auto server = TlsContext::create(server_options(server_));
  ASSERT_TRUE(server.ok()) << server.error().message;
  EXPECT_EQ((*server)->role(), TlsRole::kServer);
  TlsContextOptions client;
  client.trust_bundle_pem = root_.certificate_pem();
  client.alpn = {"h2", "http/1.1"};
  auto made = TlsContext::create(client);
  ASSERT_TRUE(made.ok()) << made.error().message;
  EXPECT_EQ((*made)->role(), TlsRole::kClient);
}

TEST_F(TlsContextTest, AKeyOfAnotherCertificateIsRefusedWithoutQuotingIt) {
  TestCredentials other = root_.issue_spiffe("spiffe://trellis.test/ns/shop/sa/other");
  TlsContextOptions o = server_options(server_);
  o.private_key_pem = other.private_key_pem;
  std::string message = error_of(o);
  EXPECT_EQ(message, "private key does not match the certificate");
  expect_no_key_material(message, other.private_key_pem);
}

TEST_F(TlsContextTest, GarbageCertificateChainIsNamed) {
  TlsContextOptions o = server_options(server_);
  o.certificate_chain_pem = "-----BEGIN CERTIFICATE-----\nnot*base64*at*all\n-----END CERTIFICATE-----\n";
  EXPECT_THAT(error_of(o), StartsWith("certificate chain: cannot read certificate 1"));
  o.certificate_chain_pem = "just some text";
  EXPECT_EQ(error_of(o), "certificate chain: no certificate");
}

TEST_F(TlsContextTest, AKeyPastedAsTheCertificateIsNotQuoted) {
  TlsContextOptions o = server_options(server_);
  o.certificate_chain_pem = server_.private_key_pem;
  std::string message = error_of(o);
  EXPECT_EQ(message, "certificate chain: no certificate");
  expect_no_key_material(message, server_.private_key_pem);
}

TEST_F(TlsContextTest, GarbageOrMissingPrivateKeyIsNamed) {
  TlsContextOptions o = server_options(server_);
  // A real key with its body damaged: still nothing of it in the message.
  std::string damaged = server_.private_key_pem;
  damaged[damaged.find('\n') + 5] = '*';
  o.private_key_pem = damaged;
  std::string message = error_of(o);
  EXPECT_THAT(message, StartsWith("private key: cannot read it"));
  expect_no_key_material(message, damaged);
  o.private_key_pem.clear();
  EXPECT_EQ(error_of(o), "private key: missing");
}

TEST_F(TlsContextTest, TrustBundleWithoutCertificateIsNamed) {
  TlsContextOptions o = server_options(server_);
  o.trust_bundle_pem = "";
  EXPECT_EQ(error_of(o), "trust bundle: no certificate");
  o.trust_bundle_pem = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
  EXPECT_THAT(error_of(o), StartsWith("trust bundle: cannot read certificate 1"));
  // A server that asks for no client certificate needs no bundle.
  o.trust_bundle_pem = "";
  o.client_certificate = ClientCertificate::kNone;
  EXPECT_TRUE(TlsContext::create(o).ok());
}

TEST_F(TlsContextTest, ServerNeedsACertificate) {
  TlsContextOptions o;
  o.role = TlsRole::kServer;
  o.trust_bundle_pem = root_.certificate_pem();
  EXPECT_EQ(error_of(o), "certificate chain: a server needs a certificate");
}

TEST_F(TlsContextTest, BadOptionsAreNamed) {
  TlsContextOptions o = server_options(server_);
  o.alpn = {"h2", ""};
  EXPECT_THAT(error_of(o), StartsWith("alpn: \"\""));
  o = server_options(server_);
  o.server_names = {{"*", server_.certificate_chain_pem, server_.private_key_pem}};
  EXPECT_THAT(error_of(o), StartsWith("server name \"*\": must be a host name"));
  TestCredentials other = root_.issue_spiffe("spiffe://trellis.test/ns/shop/sa/other");
  o.server_names = {{"api.example.com", server_.certificate_chain_pem, other.private_key_pem}};
  EXPECT_EQ(error_of(o), "server name \"api.example.com\": private key does not match the certificate");
  TlsContextOptions client;
  client.trust_bundle_pem = root_.certificate_pem();
  client.server_names = {{"api.example.com", server_.certificate_chain_pem, server_.private_key_pem}};
  EXPECT_THAT(error_of(client), StartsWith("server names: only a server"));
}

}  // namespace
}  // namespace trellis::net
