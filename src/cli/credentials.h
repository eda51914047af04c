// Where the CLI's API token comes from: a flag, the environment or a file in
// the user's configuration directory. Errors name the place, never the token.
#pragma once

#include <string>

#include "common/result.h"

namespace trellis::cli {

struct Credential {
  std::string token;   // empty: none was found anywhere
  std::string source;  // for messages: "--token-file PATH", "TRELLIS_TOKEN", ...
};

// In order: the file `token_file` names (the --token-file flag, when not
// empty), $TRELLIS_TOKEN, the file $TRELLIS_TOKEN_FILE names, then
// $XDG_CONFIG_HOME/trellis/token (~/.config/trellis/token) if that file
// exists. A file holds the token on one line; surrounding white space is
// ignored. A named file that cannot be read, or holds something that cannot
// be a token, is an error.
Result<Credential> find_credential(const std::string& token_file);

// The default file, for messages: "~/.config/trellis/token" spelled out.
std::string default_token_file();

// The roots the API server's certificate must chain to (trellis-control's
// <data-dir>/trust-bundle.pem), as PEM: the file `ca_file` names (the
// --ca-file flag, when not empty), else the file $TRELLIS_CA_FILE names,
// else $XDG_CONFIG_HOME/trellis/ca.pem (~/.config/trellis/ca.pem). None
// found is an error saying where to put it: the API is served over TLS only.
struct TrustBundle {
  std::string pem;
  std::string source;  // for messages
};
Result<TrustBundle> find_trust_bundle(const std::string& ca_file);

}  // namespace trellis::cli
