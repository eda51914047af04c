// The control plane's tokens: who may call the JSON API (admin: everything;
// read-only: GET only) and who may join the mesh (join: bound to a namespace
// and a service account, for a new sidecar's first connection; nothing on
// the API). A token reads "trellis-<id>-<secret>": the id ("tok-" and 8 hex
// digits) is public and finds the row; the secret is 32 random bytes in
// base64url, and the store keeps only its SHA-256, compared in constant time.
// The secret leaves this unit once, in create()'s answer; no error or log
// line carries it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "control/registry.h"
#include "control/resource.h"
#include "control/store.h"

namespace trellis::control {

enum class TokenKind { kAdmin, kReadOnly, kJoin };
// "admin", "read-only", "join".
std::string_view token_kind_name(TokenKind kind);
std::optional<TokenKind> parse_token_kind(std::string_view name);

enum class TokenState { kActive, kExpired, kRevoked };
TokenState token_state(const TokenRecord& token, int64_t now_ms);
// "active", "expired", "revoked".
std::string_view token_state_name(TokenState state);

// Wall-clock milliseconds as RFC 3339 UTC: "2025-01-31T12:00:00Z".
std::string format_utc(int64_t ms);

// Where secrets come from. A seam at randomness like the others; unlike
// them it must be unpredictable, so production reads the OS CSPRNG through
// OpenSSL and nothing else.
class SecretSource {
 public:
  virtual ~SecretSource() = default;
  // Fills `out`; false when the source failed (then nothing may be issued).
  virtual bool fill(std::span<uint8_t> out) = 0;
};

class OpenSslSecretSource final : public SecretSource {
 public:
  bool fill(std::span<uint8_t> out) override;
};

// What to issue. Field names in errors are the API's: kind, namespace,
// serviceAccount, ttl, description.
struct TokenSpec {
  TokenKind kind = TokenKind::kReadOnly;
  std::string namespace_;       // join only, required there
  std::string service_account;  // join only, required there
  std::string description;
  int64_t ttl_ms = 0;      // 0: never expires (not allowed for join)
  bool bootstrap = false;  // the admin token of <data-dir>/admin-token
};

struct IssuedToken {
  TokenRecord record;
  std::string secret;  // the whole "trellis-..." token: shown once, never stored or logged
};

// Who a join token lets in.
struct JoinIdentity {
  std::string token_id;
  std::string namespace_;
  std::string service_account;
};

// Not thread-safe, like the Store under it: the caller serializes.
class Tokens {
 public:
  static constexpr size_t kSecretBytes = 32;
  static constexpr int64_t kMaxTtlMs = int64_t{365} * 24 * 3600 * 1000;
  static constexpr size_t kMaxDescription = 256;

  Tokens(Store& store, const WallClock& clock, SecretSource& secrets);

  // Every problem with `spec`, by API field name; empty when valid.
  static std::vector<FieldError> validate(const TokenSpec& spec);

  // Validates, stores the record and returns it with the secret. Errors
  // start with "invalid:" (see validate) or carry the store's message.
  Result<IssuedToken> create(const TokenSpec& spec);

  // The record of an active token whose secret this is. The error says why
  // not, without the secret: "no token", "malformed token", "invalid token"
  // (unknown id or wrong secret: the same answer for both), "token <id> was
  // revoked", "token <id> expired at <time>".
  Result<TokenRecord> authenticate(std::string_view secret);

  // For the proxies' stream: authenticate() for join tokens only, giving the
  // identity the token was bound to. Another kind: "token <id> is not a join
  // token".
  Result<JoinIdentity> verify_join(std::string_view secret);

  // Every token ever issued, revoked and expired ones included, by id.
  std::vector<TokenRecord> list();
  // False when the id is unknown; revoking twice keeps the first time.
  Result<bool> revoke(const std::string& id);
  // Whether some admin token is in force (neither revoked nor expired).
  bool admin_in_force();

  int64_t now_ms() const { return clock_.now_ms(); }

 private:
  Result<std::string> random_id();

  Store& store_;
  const WallClock& clock_;
  SecretSource& secrets_;
};

// The file trellis-control writes the bootstrap admin token to, in its data
// directory: created anew with O_CREAT|O_EXCL and mode 0600, then renamed
// into place, so no one else can read it at any moment.
inline constexpr const char* kAdminTokenFile = "admin-token";

// On start: when no admin token is in force (the first start, or every one
// was revoked or has expired), issues one and writes it to
// <data_dir>/admin-token. Returns the file's path when it did, "" when an
// admin token was in force (the file is then left as it is, even missing).
Result<std::string> bootstrap_admin_token(Tokens& tokens, const std::string& data_dir);

// Issues a new bootstrap admin token, writes it to <data_dir>/admin-token
// (replacing the file) and revokes every earlier bootstrap token. Returns
// the path. Other admin tokens stay in force.
Result<std::string> rotate_admin_token(Tokens& tokens, const std::string& data_dir);

}  // namespace trellis::control
