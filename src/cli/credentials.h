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

}  // namespace trellis::cli
