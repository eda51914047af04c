// Reading PEM text with OpenSSL without ever prompting or quoting it:
// certificates in order, OpenSSL's reason for a failure (fixed texts, never
// the input), and a read-only memory BIO over a string.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "net/tls_handles.h"

namespace trellis::net {

// A passphrase callback that refuses: an encrypted key fails instead of
// prompting on a terminal.
int no_passphrase(char*, int, int, void*);

// OpenSSL's reason for the thread's last error, with the error queue cleared
// so it never shows up in a later, unrelated message.
std::string last_openssl_reason();

UniqueBio read_only_bio(std::string_view pem);

// Every certificate in `pem`, in order; PEM blocks of other types are
// skipped, and none at all is an empty list (the caller words that). Errors:
// "too large", "cannot read certificate N (<reason>)".
Result<std::vector<UniqueX509>> read_pem_certificates(std::string_view pem);

// SHA-256 of `text`, lower-case hex: how the proxies and the control plane
// name a trust bundle to each other.
std::string sha256_hex(std::string_view text);

}  // namespace trellis::net
