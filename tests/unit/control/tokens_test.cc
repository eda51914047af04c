#include "control/tokens.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>

#include "control/sqlite_store.h"

namespace trellis::control {
namespace {

class FakeWallClock final : public WallClock {
 public:
  int64_t now_ms() const override { return now_; }
  int64_t now_ = 1'700'000'000'000;
};

// Hands out scripted bytes first, then the real thing: lets a test force an
// id clash.
class ScriptedSecrets final : public SecretSource {
 public:
  bool fill(std::span<uint8_t> out) override {
    // Scripted entries are ids (4 bytes); secrets always come from OpenSSL.
    if (!script_.empty() && script_.front().size() == out.size()) {
      std::copy(script_.front().begin(), script_.front().end(), out.begin());
      script_.pop_front();
      return true;
    }
    return real_.fill(out);
  }
  std::deque<std::vector<uint8_t>> script_;
  OpenSslSecretSource real_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class TokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/trellis-tokens-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    auto opened = SqliteStore::open(dir_);
    ASSERT_TRUE(opened) << opened.error().message;
    store_ = std::move(*opened);
    tokens_ = std::make_unique<Tokens>(*store_, clock_, secrets_);
  }
  void TearDown() override {
    tokens_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  IssuedToken issue(TokenKind kind, int64_t ttl_ms = 0, std::string ns = "", std::string sa = "") {
    TokenSpec spec;
    spec.kind = kind;
    spec.ttl_ms = ttl_ms;
    spec.namespace_ = std::move(ns);
    spec.service_account = std::move(sa);
    auto issued = tokens_->create(spec);
    EXPECT_TRUE(issued) << issued.error().message;
    return issued ? *issued : IssuedToken{};
  }

  // The error of authenticate(), checked never to quote the secret.
  std::string refusal(const std::string& secret) {
    auto r = tokens_->authenticate(secret);
    EXPECT_FALSE(r) << "accepted";
    if (r) return "";
    if (secret.size() > 30) {
      EXPECT_EQ(r.error().message.find(secret.substr(21)), std::string::npos) << r.error().message;
    }
    return r.error().message;
  }

  std::string dir_;
  FakeWallClock clock_;
  ScriptedSecrets secrets_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Tokens> tokens_;
};

TEST_F(TokensTest, IssuedTokenHasTheDocumentedShapeAndAuthenticates) {
  IssuedToken t = issue(TokenKind::kAdmin);
  EXPECT_TRUE(std::regex_match(t.secret, std::regex("trellis-tok-[0-9a-f]{8}-[A-Za-z0-9_-]{43}")))
      << t.secret;
  EXPECT_EQ(t.secret.substr(8, 12), t.record.id);
  EXPECT_EQ(t.record.secret_sha256.size(), 32u);
  auto who = tokens_->authenticate(t.secret);
  ASSERT_TRUE(who) << who.error().message;
  EXPECT_EQ(who->id, t.record.id);
  EXPECT_EQ(who->kind, "admin");
  EXPECT_EQ(who->expires_ms, 0);
  EXPECT_NE(issue(TokenKind::kAdmin).secret, t.secret);
}

TEST_F(TokensTest, OnlyTheHashIsStored) {
  IssuedToken t = issue(TokenKind::kReadOnly);
  std::string secret_part = t.secret.substr(21);
  for (const TokenRecord& r : tokens_->list()) {
    for (const std::string* field : {&r.id, &r.kind, &r.description, &r.secret_sha256}) {
      EXPECT_EQ(field->find(secret_part), std::string::npos);
    }
  }
  store_.reset();  // everything on disk
  tokens_.reset();
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(read_file(entry.path()).find(secret_part), std::string::npos) << entry.path();
  }
}

TEST_F(TokensTest, WrongUnknownAndMalformedSecretsAreRefusedAlike) {
  IssuedToken t = issue(TokenKind::kAdmin);
  std::string wrong = t.secret;
  wrong[30] = wrong[30] == 'A' ? 'B' : 'A';
  EXPECT_EQ(refusal(wrong), "invalid token");
  std::string unknown = t.secret;
  unknown[12] = unknown[12] == '0' ? '1' : '0';  // another id, the same secret
  EXPECT_EQ(refusal(unknown), "invalid token");
  EXPECT_EQ(refusal(""), "no token");
  for (const std::string& bad : {std::string("Bearer ") + t.secret, t.secret + "x", t.secret.substr(1),
                                 std::string("trellis-TOK-") + t.secret.substr(12), std::string("hunter2")}) {
    EXPECT_EQ(refusal(bad).rfind("malformed token", 0), 0u) << bad;
  }
}

TEST_F(TokensTest, OnlyTheCanonicalSpellingOfTheSecretIsAccepted) {
  IssuedToken t = issue(TokenKind::kAdmin);
  // The last of 43 base64url characters carries 4 bits and 2 unused ones:
  // setting an unused bit spells the same bytes another way.
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string other = t.secret;
  size_t index = kAlphabet.find(other.back());
  ASSERT_EQ(index % 4, 0u);
  other.back() = kAlphabet[index + 1];
  EXPECT_EQ(refusal(other).rfind("malformed token", 0), 0u);
}

TEST_F(TokensTest, ExpiredAndRevokedTokensAreRefused) {
  IssuedToken hour = issue(TokenKind::kReadOnly, 3600'000);
  IssuedToken forever = issue(TokenKind::kAdmin);
  EXPECT_EQ(hour.record.expires_ms, clock_.now_ + 3600'000);
  clock_.now_ += 3599'999;
  EXPECT_TRUE(tokens_->authenticate(hour.secret));
  clock_.now_ += 1;
  EXPECT_EQ(refusal(hour.secret).rfind("token " + hour.record.id + " expired at ", 0), 0u);
  EXPECT_TRUE(tokens_->authenticate(forever.secret));

  auto revoked = tokens_->revoke(forever.record.id);
  ASSERT_TRUE(revoked);
  EXPECT_TRUE(*revoked);
  EXPECT_EQ(refusal(forever.secret), "token " + forever.record.id + " was revoked");
  int64_t first = store_->get_token(forever.record.id)->revoked_ms;
  clock_.now_ += 5000;
  EXPECT_TRUE(*tokens_->revoke(forever.record.id));
  EXPECT_EQ(store_->get_token(forever.record.id)->revoked_ms, first) << "the first revocation time stays";
  EXPECT_FALSE(*tokens_->revoke("tok-00000000"));

  std::map<std::string, TokenState> states;
  for (const TokenRecord& r : tokens_->list()) states[r.id] = token_state(r, clock_.now_);
  EXPECT_EQ(states[hour.record.id], TokenState::kExpired);
  EXPECT_EQ(states[forever.record.id], TokenState::kRevoked);
}

TEST_F(TokensTest, JoinTokensGiveTheirIdentityAndNothingElseDoes) {
  IssuedToken join = issue(TokenKind::kJoin, 600'000, "bookinfo", "reviews");
  auto identity = tokens_->verify_join(join.secret);
  ASSERT_TRUE(identity) << identity.error().message;
  EXPECT_EQ(identity->token_id, join.record.id);
  EXPECT_EQ(identity->namespace_, "bookinfo");
  EXPECT_EQ(identity->service_account, "reviews");

  IssuedToken admin = issue(TokenKind::kAdmin);
  auto refused = tokens_->verify_join(admin.secret);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message, "token " + admin.record.id + " is not a join token");

  clock_.now_ += 600'000;
  refused = tokens_->verify_join(join.secret);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("expired"), std::string::npos);
  EXPECT_EQ(refused.error().message.find(join.secret.substr(21)), std::string::npos);
  EXPECT_FALSE(tokens_->verify_join("trellis-tok-00000000-" + join.secret.substr(21)));
}

TEST_F(TokensTest, SpecsAreValidatedWithFieldPaths) {
  auto paths = [](const TokenSpec& spec) {
    std::string out;
    for (const FieldError& e : Tokens::validate(spec)) out += e.path + ";";
    return out;
  };
  TokenSpec join;
  join.kind = TokenKind::kJoin;
  EXPECT_EQ(paths(join), "namespace;serviceAccount;ttl;");
  join.namespace_ = "Book_Info";
  join.service_account = "reviews.v1";
  join.ttl_ms = 3600'000;
  EXPECT_EQ(paths(join), "namespace;");
  join.namespace_ = "bookinfo";
  EXPECT_EQ(paths(join), "");
  join.namespace_ = "trellis-system";  // the control plane's own
  EXPECT_EQ(paths(join), "namespace;");

  TokenSpec admin;
  admin.kind = TokenKind::kAdmin;
  EXPECT_EQ(paths(admin), "");
  admin.namespace_ = "bookinfo";
  admin.service_account = "x";
  EXPECT_EQ(paths(admin), "namespace;serviceAccount;");
  admin = {};
  admin.kind = TokenKind::kAdmin;
  admin.ttl_ms = Tokens::kMaxTtlMs + 1;
  admin.description = std::string("line\nbreak");
  EXPECT_EQ(paths(admin), "ttl;description;");
  admin.ttl_ms = 500;
  admin.description = std::string(Tokens::kMaxDescription + 1, 'x');
  EXPECT_EQ(paths(admin), "ttl;description;");

  auto refused = tokens_->create(TokenSpec{TokenKind::kJoin, "", "", "", 0, false});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message.rfind("invalid:", 0), 0u);
  EXPECT_TRUE(tokens_->list().empty()) << "nothing is stored for a refused spec";
}

TEST_F(TokensTest, AnIdClashIsRetried) {
  secrets_.script_ = {{0xab, 0xcd, 0xef, 0x01}};
  IssuedToken first = issue(TokenKind::kAdmin);
  EXPECT_EQ(first.record.id, "tok-abcdef01");
  secrets_.script_ = {{0xab, 0xcd, 0xef, 0x01}, {0x01, 0x02, 0x03, 0x04}};
  IssuedToken second = issue(TokenKind::kAdmin);
  EXPECT_EQ(second.record.id, "tok-01020304");
  EXPECT_TRUE(tokens_->authenticate(first.secret));
  EXPECT_TRUE(tokens_->authenticate(second.secret));
}

TEST_F(TokensTest, FailingRandomnessIssuesNothing) {
  class Broken final : public SecretSource {
    bool fill(std::span<uint8_t>) override { return false; }
  } broken;
  Tokens tokens(*store_, clock_, broken);
  EXPECT_FALSE(tokens.create(TokenSpec{TokenKind::kAdmin, "", "", "", 0, false}));
  EXPECT_TRUE(tokens.list().empty());
}

TEST_F(TokensTest, BootstrapWritesAPrivateFileOnce) {
  auto path = bootstrap_admin_token(*tokens_, dir_);
  ASSERT_TRUE(path) << path.error().message;
  EXPECT_EQ(*path, dir_ + "/admin-token");
  struct stat st {};
  ASSERT_EQ(::stat(path->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string content = read_file(*path);
  ASSERT_FALSE(content.empty());
  EXPECT_EQ(content.back(), '\n');
  std::string secret = content.substr(0, content.size() - 1);
  auto who = tokens_->authenticate(secret);
  ASSERT_TRUE(who) << who.error().message;
  EXPECT_EQ(who->kind, "admin");
  EXPECT_TRUE(who->bootstrap);

  // Later starts leave it alone, even when the file is gone.
  std::filesystem::remove(*path);
  auto again = bootstrap_admin_token(*tokens_, dir_);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, "");
  EXPECT_FALSE(std::filesystem::exists(*path));
  EXPECT_EQ(tokens_->list().size(), 1u);

  // With no admin token in force any more, the next start writes a new one.
  ASSERT_TRUE(tokens_->revoke(who->id));
  auto fresh = bootstrap_admin_token(*tokens_, dir_);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(*fresh, dir_ + "/admin-token");
  EXPECT_EQ(tokens_->list().size(), 2u);
}

TEST_F(TokensTest, RotationReplacesTheFileAndRevokesOnlyEarlierBootstrapTokens) {
  ASSERT_TRUE(bootstrap_admin_token(*tokens_, dir_));
  std::string old_secret = read_file(dir_ + "/admin-token");
  old_secret.pop_back();
  IssuedToken other_admin = issue(TokenKind::kAdmin);

  auto path = rotate_admin_token(*tokens_, dir_);
  ASSERT_TRUE(path) << path.error().message;
  std::string secret = read_file(*path);
  secret.pop_back();
  EXPECT_NE(secret, old_secret);
  EXPECT_TRUE(tokens_->authenticate(secret));
  EXPECT_NE(refusal(old_secret).find("was revoked"), std::string::npos);
  EXPECT_TRUE(tokens_->authenticate(other_admin.secret)) << "only tokens written to the file are revoked";
  struct stat st {};
  ASSERT_EQ(::stat(path->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().filename().string().find(".new-"), std::string::npos) << "temporary file left";
  }
}

TEST_F(TokensTest, AFileThatCannotBeWrittenLeavesNoTokenInForce) {
  std::string missing = dir_ + "/no/such/dir";
  auto path = bootstrap_admin_token(*tokens_, missing);
  ASSERT_FALSE(path);
  EXPECT_EQ(path.error().message.find("trellis-tok-"), std::string::npos) << path.error().message;
  for (const TokenRecord& r : tokens_->list()) EXPECT_NE(r.revoked_ms, 0) << r.id;
  auto retried = bootstrap_admin_token(*tokens_, dir_);
  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_EQ(*retried, dir_ + "/admin-token") << "a start that failed to write the file is tried again";
}

}  // namespace
}  // namespace trellis::control
