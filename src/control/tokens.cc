#include "control/tokens.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "common/spiffe.h"
#include "control/validation.h"

namespace trellis::control {
namespace {

constexpr std::string_view kPrefix = "trellis-";
constexpr std::string_view kIdPrefix = "tok-";
constexpr size_t kIdHexDigits = 8;
constexpr size_t kIdLength = kIdPrefix.size() + kIdHexDigits;
// base64url of 32 bytes, without padding.
constexpr size_t kSecretTextLength = (Tokens::kSecretBytes * 4 + 2) / 3;
constexpr size_t kTokenLength = kPrefix.size() + kIdLength + 1 + kSecretTextLength;

std::string base64url(std::span<const uint8_t> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

// The secret's bytes, or nullopt unless `text` is the one base64url
// spelling of kSecretBytes bytes.
std::optional<std::array<uint8_t, Tokens::kSecretBytes>> decode_secret(std::string_view text) {
  if (text.size() != kSecretTextLength) return std::nullopt;
  std::string standard(text);
  for (char& c : standard) {
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (!plain) {
      return std::nullopt;
    }
  }
  while (standard.size() % 4 != 0) standard += '=';
  std::array<uint8_t, Tokens::kSecretBytes + 2> decoded{};
  if (EVP_DecodeBlock(decoded.data(), reinterpret_cast<const unsigned char*>(standard.data()),
                      static_cast<int>(standard.size())) < static_cast<int>(Tokens::kSecretBytes)) {
    return std::nullopt;
  }
  std::array<uint8_t, Tokens::kSecretBytes> out{};
  std::memcpy(out.data(), decoded.data(), out.size());
  // Unused low bits in the last character would give one secret many
  // spellings; only the canonical one is a token.
  if (base64url(out) != text) return std::nullopt;
  return out;
}

std::string sha256(std::span<const uint8_t> bytes) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), reinterpret_cast<unsigned char*>(out.data()), &n, EVP_sha256(),
                 nullptr) != 1) {
    return {};
  }
  out.resize(n);
  return out;
}

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

struct ParsedToken {
  std::string id;
  std::array<uint8_t, Tokens::kSecretBytes> secret{};
};

std::optional<ParsedToken> parse_token(std::string_view text) {
  if (text.size() != kTokenLength || text.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string_view id = text.substr(kPrefix.size(), kIdLength);
  if (id.substr(0, kIdPrefix.size()) != kIdPrefix || !is_lower_hex(id.substr(kIdPrefix.size())))
    return std::nullopt;
  if (text[kPrefix.size() + kIdLength] != '-') return std::nullopt;
  auto secret = decode_secret(text.substr(kPrefix.size() + kIdLength + 1));
  if (!secret) return std::nullopt;
  return ParsedToken{std::string(id), *secret};
}

// Writes `content` to `path` so that the file is its owner's alone from the
// moment it exists: a fresh name opened with O_EXCL and mode 0600, then
// renamed over any older file. The content is never in an error.
Result<bool> write_private_file(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::path temp = path;
  temp += ".new-" + std::to_string(::getpid());
  ::unlink(temp.c_str());  // left by a crash half way; ours, in our directory
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return make_error("cannot create " + temp.string() + ": " + std::strerror(errno));
  auto fail = [&](const std::string& what) -> Result<bool> {
    int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return make_error("cannot " + what + " " + temp.string() + ": " + std::strerror(err));
  };
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("sync");
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return make_error("cannot write " + path.string() + ": " + std::strerror(err));
  }
  return true;
}

// Issues a bootstrap admin token and writes its file; the token is revoked
// again when the file cannot be written, so none exists that nobody holds.
Result<IssuedToken> issue_admin_file(Tokens& tokens, const std::string& data_dir, std::string& path) {
  TokenSpec spec;
  spec.kind = TokenKind::kAdmin;
  spec.description = "bootstrap admin token (" + std::string(kAdminTokenFile) + " in the data directory)";
  spec.bootstrap = true;
  Result<IssuedToken> issued = tokens.create(spec);
  if (!issued) return issued.error();
  path = (std::filesystem::path(data_dir) / kAdminTokenFile).string();
  if (auto written = write_private_file(path, issued->secret + "\n"); !written) {
    (void)tokens.revoke(issued->record.id);
    return written.error();
  }
  return issued;
}

}  // namespace

std::string_view token_kind_name(TokenKind kind) {
  switch (kind) {
    case TokenKind::kAdmin:
      return "admin";
    case TokenKind::kReadOnly:
      return "read-only";
    case TokenKind::kJoin:
      return "join";
  }
  return "?";
}

std::optional<TokenKind> parse_token_kind(std::string_view name) {
  for (TokenKind k : {TokenKind::kAdmin, TokenKind::kReadOnly, TokenKind::kJoin}) {
    if (name == token_kind_name(k)) return k;
  }
  return std::nullopt;
}

TokenState token_state(const TokenRecord& token, int64_t now_ms) {
  if (token.revoked_ms != 0) return TokenState::kRevoked;
  if (token.expires_ms != 0 && now_ms >= token.expires_ms) return TokenState::kExpired;
  return TokenState::kActive;
}

std::string_view token_state_name(TokenState state) {
  switch (state) {
    case TokenState::kActive:
      return "active";
    case TokenState::kExpired:
      return "expired";
    case TokenState::kRevoked:
      return "revoked";
  }
  return "?";
}

std::string format_utc(int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char out[32];
  std::strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

bool OpenSslSecretSource::fill(std::span<uint8_t> out) {
  return RAND_bytes(out.data(), static_cast<int>(out.size())) == 1;
}

Tokens::Tokens(Store& store, const WallClock& clock, SecretSource& secrets)
    : store_(store), clock_(clock), secrets_(secrets) {}

std::vector<FieldError> Tokens::validate(const TokenSpec& spec) {
  std::vector<FieldError> errors;
  constexpr const char* kLabel = "must be a DNS-1123 label: lower-case letters, digits and '-', at most 63";
  if (spec.kind == TokenKind::kJoin) {
    if (spec.namespace_.empty()) {
      errors.push_back({"namespace", "required for a join token: the namespace the sidecar joins"});
    } else if (!is_dns1123_label(spec.namespace_)) {
      errors.push_back({"namespace", kLabel});
    } else if (spec.namespace_ == kControlNamespace) {
      errors.push_back({"namespace", std::string(kControlNamespace) + " is reserved for the control plane"});
    }
    if (spec.service_account.empty()) {
      errors.push_back({"serviceAccount", "required for a join token: the identity the sidecar gets"});
    } else if (!is_dns1123_subdomain(spec.service_account)) {
      errors.push_back(
          {"serviceAccount", "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'"});
    }
    if (spec.ttl_ms == 0) errors.push_back({"ttl", "required for a join token, e.g. \"1h\""});
  } else {
    const char* only = "only join tokens are bound to a namespace and a service account";
    if (!spec.namespace_.empty()) errors.push_back({"namespace", only});
    if (!spec.service_account.empty()) errors.push_back({"serviceAccount", only});
  }
  if (spec.ttl_ms < 0 || (spec.ttl_ms > 0 && spec.ttl_ms < 1000)) {
    errors.push_back({"ttl", "must be at least 1s"});
  } else if (spec.ttl_ms > kMaxTtlMs) {
    errors.push_back({"ttl", "must be at most 8760h (a year)"});
  }
  if (spec.description.size() > kMaxDescription) {
    errors.push_back({"description", "must be at most " + std::to_string(kMaxDescription) + " bytes"});
  }
  for (unsigned char c : spec.description) {
    if (c < 0x20 || c == 0x7f) {
      errors.push_back({"description", "must not hold control characters"});
      break;
    }
  }
  return errors;
}

Result<std::string> Tokens::random_id() {
  std::array<uint8_t, kIdHexDigits / 2> bytes{};
  if (!secrets_.fill(bytes)) return make_error("no random bytes for a token id");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(kIdPrefix);
  for (uint8_t b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 0xf];
  }
  return id;
}

Result<IssuedToken> Tokens::create(const TokenSpec& spec) {
  std::vector<FieldError> errors = validate(spec);
  if (!errors.empty()) {
    std::string message = "invalid:";
    for (const FieldError& e : errors) message += " " + e.to_string() + ";";
    message.pop_back();
    return make_error(message);
  }
  std::array<uint8_t, kSecretBytes> secret{};
  if (!secrets_.fill(secret)) return make_error("no random bytes for a token secret");
  IssuedToken out;
  TokenRecord& r = out.record;
  r.kind = std::string(token_kind_name(spec.kind));
  r.namespace_ = spec.namespace_;
  r.service_account = spec.service_account;
  r.description = spec.description;
  r.secret_sha256 = sha256(secret);
  if (r.secret_sha256.empty()) return make_error("cannot hash a token secret");
  r.created_ms = clock_.now_ms();
  r.expires_ms = spec.ttl_ms > 0 ? r.created_ms + spec.ttl_ms : 0;
  r.bootstrap = spec.bootstrap;
  // 32 bits of id: a clash is rare but possible, and costs only a retry.
  for (int attempt = 0;; ++attempt) {
    auto id = random_id();
    if (!id) return id.error();
    r.id = *id;
    auto inserted = store_.insert_token(r);
    if (inserted) break;
    if (attempt >= 8 || inserted.error().message.rfind("conflict", 0) != 0) return inserted.error();
  }
  out.secret = std::string(kPrefix) + r.id + "-" + base64url(secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  return out;
}

Result<TokenRecord> Tokens::authenticate(std::string_view secret) {
  if (secret.empty()) return make_error("no token");
  std::optional<ParsedToken> parsed = parse_token(secret);
  if (!parsed) return make_error("malformed token: expected trellis-tok-<8 hex digits>-<secret>");
  std::string hash = sha256(parsed->secret);
  OPENSSL_cleanse(parsed->secret.data(), parsed->secret.size());
  std::optional<TokenRecord> record = store_.get_token(parsed->id);
  // An unknown id and a wrong secret get the same answer: only the holder
  // of the secret learns more about the token.
  if (!record || hash.empty() || record->secret_sha256.size() != hash.size() ||
      CRYPTO_memcmp(record->secret_sha256.data(), hash.data(), hash.size()) != 0) {
    return make_error("invalid token");
  }
  switch (token_state(*record, clock_.now_ms())) {
    case TokenState::kRevoked:
      return make_error("token " + record->id + " was revoked");
    case TokenState::kExpired:
      return make_error("token " + record->id + " expired at " + format_utc(record->expires_ms));
    case TokenState::kActive:
      break;
  }
  return std::move(*record);
}

Result<JoinIdentity> Tokens::verify_join(std::string_view secret) {
  Result<TokenRecord> record = authenticate(secret);
  if (!record) return record.error();
  if (record->kind != token_kind_name(TokenKind::kJoin)) {
    return make_error("token " + record->id + " is not a join token");
  }
  return JoinIdentity{record->id, record->namespace_, record->service_account};
}

std::vector<TokenRecord> Tokens::list() { return store_.tokens(); }

Result<bool> Tokens::revoke(const std::string& id) { return store_.revoke_token(id, clock_.now_ms()); }

bool Tokens::admin_in_force() {
  int64_t now = clock_.now_ms();
  for (const TokenRecord& t : store_.tokens()) {
    if (t.kind == token_kind_name(TokenKind::kAdmin) && token_state(t, now) == TokenState::kActive)
      return true;
  }
  return false;
}

Result<std::string> bootstrap_admin_token(Tokens& tokens, const std::string& data_dir) {
  if (tokens.admin_in_force()) return std::string();
  std::string path;
  Result<IssuedToken> issued = issue_admin_file(tokens, data_dir, path);
  if (!issued) return issued.error();
  return path;
}

Result<std::string> rotate_admin_token(Tokens& tokens, const std::string& data_dir) {
  std::string path;
  Result<IssuedToken> issued = issue_admin_file(tokens, data_dir, path);
  if (!issued) return issued.error();
  for (const TokenRecord& t : tokens.list()) {
    if (t.bootstrap && t.id != issued->record.id && t.revoked_ms == 0) {
      if (auto r = tokens.revoke(t.id); !r) return make_error("revoke " + t.id + ": " + r.error().message);
    }
  }
  return path;
}

}  // namespace trellis::control
