#include "net/tls_identity.h"

#include <gtest/gtest.h>

#include "support/test_pki.h"

namespace trellis::net {
namespace {

using testing::LeafSpec;
using testing::TestCa;

std::string identity_of(const TestCa& ca, const LeafSpec& spec) {
  auto leaf = testing::parse_certificate(ca.issue(spec).certificate_chain_pem);
  return spiffe_identity(leaf.get());
}

TEST(TlsIdentity, TheOneSpiffeUriIsTheIdentity) {
  TestCa ca("Identity Test Root");
  LeafSpec spec;
  spec.uris = {"spiffe://trellis.test/ns/shop/sa/api"};
  spec.dns_names = {"api.shop.svc"};
  EXPECT_EQ(identity_of(ca, spec), "spiffe://trellis.test/ns/shop/sa/api");
  // Other URIs are not identities and do not make it ambiguous.
  spec.uris.push_back("https://example.com/about");
  EXPECT_EQ(identity_of(ca, spec), "spiffe://trellis.test/ns/shop/sa/api");
}

TEST(TlsIdentity, NoneOrSeveralSpiffeUrisIsNoIdentity) {
  TestCa ca("Identity Test Root");
  LeafSpec dns_only;
  dns_only.dns_names = {"api.example.com"};
  EXPECT_EQ(identity_of(ca, dns_only), "");
  LeafSpec two;
  two.uris = {"spiffe://trellis.test/ns/shop/sa/api", "spiffe://trellis.test/ns/shop/sa/admin"};
  EXPECT_EQ(identity_of(ca, two), "");
  LeafSpec malformed;
  malformed.uris = {"spiffe://Trellis.Test/ns/shop"};  // upper-case trust domain
  EXPECT_EQ(identity_of(ca, malformed), "");
  EXPECT_EQ(spiffe_identity(nullptr), "");
}

TEST(TlsIdentity, SpiffeIdShape) {
  EXPECT_TRUE(is_spiffe_id("spiffe://trellis.test"));
  EXPECT_TRUE(is_spiffe_id("spiffe://trellis.test/ns/shop/sa/api-v2_x.y"));
  EXPECT_FALSE(is_spiffe_id("spiffe://"));
  EXPECT_FALSE(is_spiffe_id("spiffe:///ns/shop"));
  EXPECT_FALSE(is_spiffe_id("SPIFFE://trellis.test/ns/shop"));
  EXPECT_FALSE(is_spiffe_id("https://trellis.test/ns/shop"));
  EXPECT_FALSE(is_spiffe_id("spiffe://trellis.test/ns//shop"));
  EXPECT_FALSE(is_spiffe_id("spiffe://trellis.test/ns/shop/"));
  EXPECT_FALSE(is_spiffe_id("spiffe://trellis.test/ns/../sa"));
  EXPECT_FALSE(is_spiffe_id("spiffe://trellis.test/ns/sh op"));
  EXPECT_FALSE(is_spiffe_id(std::string_view("spiffe://trellis.test/ns/a\0b", 27)));
}

}  // namespace
}  // namespace trellis::net
