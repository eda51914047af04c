#include "cli/credentials.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/text.h"

namespace trellis::cli {
namespace {

// A token is sent in a header: it may hold only characters that cannot end
// the field or the head. Trellis tokens use far fewer.
Result<std::string> checked(std::string text, const std::string& source) {
  text = std::string(trim(text));
  if (text.empty()) return Error{source + " holds no token (it is empty)"};
  for (char c : text) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
    if (!ok) return Error{source + " does not hold a token: it must be one line like trellis-tok-..."};
  }
  return text;
}

Result<std::string> read_token_file(const std::string& path, const std::string& source) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read the token file " + source + ": " + std::strerror(errno)};
  std::ostringstream text;
  text << in.rdbuf();
  // A token is one short line; a large file is not a token file.
  if (text.str().size() > 4096) return Error{source + " does not hold a token: it is too large"};
  return checked(text.str(), source);
}

// $XDG_CONFIG_HOME/trellis/<name>, else ~/.config/trellis/<name>; "" without either.
std::string config_file(const char* name) {
  const char* config = std::getenv("XDG_CONFIG_HOME");
  if (config != nullptr && *config == '/') return std::string(config) + "/trellis/" + name;
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return std::string(home) + "/.config/trellis/" + name;
  return "";
}

}  // namespace

std::string default_token_file() { return config_file("token"); }

Result<Credential> find_credential(const std::string& token_file) {
  auto from_file = [](const std::string& path, const std::string& source) -> Result<Credential> {
    Result<std::string> token = read_token_file(path, source);
    if (!token) return token.error();
    return Credential{std::move(*token), source};
  };
  if (!token_file.empty()) return from_file(token_file, "--token-file " + token_file);
  if (const char* env = std::getenv("TRELLIS_TOKEN"); env != nullptr && *env != '\0') {
    Result<std::string> token = checked(env, "TRELLIS_TOKEN");
    if (!token) return token.error();
    return Credential{std::move(*token), "TRELLIS_TOKEN"};
  }
  if (const char* env = std::getenv("TRELLIS_TOKEN_FILE"); env != nullptr && *env != '\0') {
    return from_file(env, std::string("TRELLIS_TOKEN_FILE=") + env);
  }
  std::string fallback = default_token_file();
  std::error_code ec;
  if (!fallback.empty() && std::filesystem::exists(fallback, ec)) return from_file(fallback, fallback);
  return Credential{};
}

namespace {

Result<TrustBundle> read_bundle(const std::string& path, const std::string& source) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot read the trust bundle " + source + ": " + std::strerror(errno)};
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (1u << 20)) return Error{source + " is too large for a trust bundle"};
  if (text.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return Error{source + " holds no PEM certificate: it must be trellis-control's trust-bundle.pem"};
  return TrustBundle{text.str(), source};
}

}  // namespace

Result<TrustBundle> find_trust_bundle(const std::string& ca_file) {
  if (!ca_file.empty()) return read_bundle(ca_file, "--ca-file " + ca_file);
  if (const char* env = std::getenv("TRELLIS_CA_FILE"); env != nullptr && *env != '\0')
    return read_bundle(env, std::string("TRELLIS_CA_FILE=") + env);
  std::string fallback = config_file("ca.pem");
  std::error_code ec;
  if (!fallback.empty() && std::filesystem::exists(fallback, ec)) return read_bundle(fallback, fallback);
  return Error{
      "trellis-control serves its API over TLS, and its certificate is checked against the mesh's trust "
      "bundle: pass --ca-file PATH, or set TRELLIS_CA_FILE, or copy it to " +
      (fallback.empty() ? std::string("~/.config/trellis/ca.pem") : fallback) +
      " (trellis-control wrote it to trust-bundle.pem in its --data-dir)"};
}

}  // namespace trellis::cli
