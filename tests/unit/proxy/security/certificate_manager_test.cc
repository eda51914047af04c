#include "proxy/security/certificate_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "proxy/security/certificate_metrics.h"
#include "proxy/security/credentials_test_support.h"

namespace trellis::proxy {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using testing::CsrSigner;
using ::testing::HasSubstr;
using testing::kIdentity;
using testing::leaf_for;
using ::testing::Not;

// Always the middle of any range: no jitter.
class MiddleRandom final : public Random {
 public:
  uint64_t next() override { return uint64_t{1} << 63; }
};

class CertificateManagerTest : public ::testing::Test {
 protected:
  CertificateManager make_manager() {
    auto manager = CertificateManager::create(*SpiffeId::make("trellis.test", "shop", "api"), random_);
    EXPECT_TRUE(manager) << manager.error().message;
    return std::move(*manager);
  }

  MiddleRandom random_;
  CsrSigner ca_{"mesh"};
  SystemTime now_ = std::chrono::system_clock::now();
};

TEST_F(CertificateManagerTest, AsksAtOnceThenAtHalfLife) {
  CertificateManager manager = make_manager();
  EXPECT_EQ(manager.identity(), kIdentity);
  EXPECT_EQ(manager.current(), nullptr);
  EXPECT_EQ(manager.next_renewal(now_), now_);

  auto installed =
      manager.install(ca_.sign(manager.csr_pem(), leaf_for(kIdentity)), "", ca_.root_pem(), now_);
  ASSERT_TRUE(installed) << installed.error().message;
  ASSERT_NE(manager.current(), nullptr);
  EXPECT_EQ(manager.generation(), 1u);
  const TlsCredentials& current = *manager.current();
  // Half of what is left of it from when it arrived (it was dated back an hour).
  auto off = manager.next_renewal(now_) - (now_ + (current.not_after - now_) / 2);
  EXPECT_LT(std::chrono::abs(off), std::chrono::milliseconds(1));
}

// The mesh CA dates certificates back a minute for clock skew: a one-minute
// certificate is renewed half a minute after it arrives, not at once (its
// half-life counted from notBefore is the moment it was issued).
TEST_F(CertificateManagerTest, AShortLivedCertificateDatedBackIsRenewedAtHalfOfWhatIsLeft) {
  CertificateManager manager = make_manager();
  ASSERT_TRUE(manager.install(ca_.sign(manager.csr_pem(), leaf_for(kIdentity, seconds(-60), seconds(60))), "",
                              ca_.root_pem(), now_));
  SystemTime at = manager.next_renewal(now_);
  EXPECT_GE(at, now_ + seconds(29));
  EXPECT_LE(at, now_ + seconds(31));
}

TEST_F(CertificateManagerTest, FailuresBackOffAndAreCounted) {
  CertificateManager manager = make_manager();
  manager.renewal_failed(now_);
  EXPECT_EQ(manager.consecutive_failures(), 1u);
  SystemTime retry = manager.next_renewal(now_);
  EXPECT_GE(retry - now_, std::chrono::milliseconds(500));
  EXPECT_LE(retry - now_, seconds(1));

  // The CA answers with a certificate for someone else: refused, counted,
  // retried later; nothing is installed.
  auto refused = manager.install(ca_.sign_other_key(leaf_for(kIdentity)), "", ca_.root_pem(), retry);
  ASSERT_FALSE(refused);
  EXPECT_EQ(manager.consecutive_failures(), 2u);
  EXPECT_EQ(manager.current(), nullptr);
  EXPECT_EQ(manager.generation(), 0u);
  EXPECT_GE(manager.next_renewal(retry) - retry, seconds(1));

  ASSERT_TRUE(manager.install(ca_.sign(manager.csr_pem(), leaf_for(kIdentity)), "", ca_.root_pem(), now_));
  EXPECT_EQ(manager.consecutive_failures(), 0u);
  CertificateStats stats = manager.stats();
  EXPECT_EQ(stats.renewals_ok, 1u);
  EXPECT_EQ(stats.renewals_failed, 2u);
  ASSERT_TRUE(stats.not_after.has_value());
  EXPECT_EQ(*stats.not_after, manager.current()->not_after);
}

TEST_F(CertificateManagerTest, ARefusedRenewalKeepsTheCertificateInForce) {
  CertificateManager manager = make_manager();
  ASSERT_TRUE(manager.install(ca_.sign(manager.csr_pem(), leaf_for(kIdentity)), "", ca_.root_pem(), now_));
  auto before = manager.current();
  CsrSigner stranger("stranger");
  ASSERT_FALSE(
      manager.install(stranger.sign(manager.csr_pem(), leaf_for(kIdentity)), "", ca_.root_pem(), now_));
  EXPECT_EQ(manager.current(), before);
  EXPECT_EQ(manager.generation(), 1u);
  EXPECT_EQ(manager.stats().renewals_failed, 1u);
}

TEST_F(CertificateManagerTest, ATrustBundleUpdateIsNotARenewal) {
  CertificateManager manager = make_manager();
  ASSERT_TRUE(manager.install(ca_.sign(manager.csr_pem(), leaf_for(kIdentity)), "", ca_.root_pem(), now_));
  SystemTime next = manager.next_renewal(now_);
  CsrSigner next_root("next");
  ASSERT_TRUE(manager.update_trust_bundle(ca_.root_pem() + next_root.root_pem(), now_));
  EXPECT_EQ(manager.generation(), 2u);
  EXPECT_EQ(manager.next_renewal(now_), next);
  EXPECT_EQ(manager.stats().renewals_ok, 1u);
}

TEST(CertificateMetricsTest, RendersExpiryAndRenewals) {
  const SystemTime now = SystemTime{} + hours(24 * 365 * 55);
  CertificateStats stats;
  stats.renewals_ok = 3;
  stats.renewals_failed = 1;

  // No certificate yet: no expiry sample.
  EXPECT_FALSE(seconds_to_expiry(stats, now).has_value());
  std::string text = render_certificate_metrics(stats, now);
  EXPECT_THAT(text, Not(HasSubstr("trellis_certificate_expiry_seconds ")));
  EXPECT_THAT(text, HasSubstr("# TYPE trellis_certificate_renewals_total counter\n"));
  EXPECT_THAT(text, HasSubstr("trellis_certificate_renewals_total{result=\"ok\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("trellis_certificate_renewals_total{result=\"failed\"} 1\n"));

  stats.not_after = now + hours(12) + std::chrono::milliseconds(700);
  EXPECT_EQ(seconds_to_expiry(stats, now), 12 * 3600);
  text = render_certificate_metrics(stats, now);
  EXPECT_THAT(text, HasSubstr("# TYPE trellis_certificate_expiry_seconds gauge\n"));
  EXPECT_THAT(text, HasSubstr("\ntrellis_certificate_expiry_seconds 43200\n"));

  stats.not_after = now - std::chrono::milliseconds(500);
  EXPECT_EQ(seconds_to_expiry(stats, now), -1);
  EXPECT_THAT(render_certificate_metrics(stats, now), HasSubstr("\ntrellis_certificate_expiry_seconds -1\n"));
}

}  // namespace
}  // namespace trellis::proxy
