// What the sidecar checks in its own credentials before serving with them:
// PEM parsing, validity at a wall-clock time, the URI names a certificate
// carries, and chain verification to a trust bundle. Nothing here reads a
// clock or a file, and no error quotes its input, so key material never
// reaches a log through one.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/x509.h>

#include "common/result.h"
#include "net/tls_handles.h"

namespace trellis::proxy {

// Certificates are valid over wall-clock time, unlike the event loop's
// monotonic MonoTime: a certificate check takes a SystemTime.
using SystemTime = std::chrono::system_clock::time_point;

// Every "CERTIFICATE" block in `pem`, in order. `what` starts each error
// ("certificate", "trust bundle file /etc/trellis/ca.pem"). Refused: text
// with no certificate, a block that does not parse, and text that also holds
// a private key (a key belongs in its own file of mode 0600, never next to
// certificates that are handed around).
Result<std::vector<net::UniqueX509>> parse_certificates(std::string_view pem, const std::string& what);

// One unencrypted private key in PEM (PKCS#8 or traditional). An encrypted
// key is refused rather than prompting for a passphrase.
Result<net::UniquePkey> parse_private_key(std::string_view pem, const std::string& what);

SystemTime certificate_not_before(const X509* certificate);
SystemTime certificate_not_after(const X509* certificate);

// Every URI subject alternative name, in order. An error when the
// certificate holds the extension twice or it does not parse.
Result<std::vector<std::string>> certificate_uris(const X509* certificate);

// Whether `at` falls within [notBefore, notAfter). The error, to follow the
// certificate's name, says which end was crossed and when ("expired at
// 2030-01-02T03:04:05Z (now is ...)", "is not valid before ...").
Result<bool> check_valid_at(const X509* certificate, SystemTime at);

// Verifies `leaf` through `intermediates` to one of the self-signed `roots`
// as of `at`, for use as both a TLS server and a TLS client (a sidecar is
// both). The error is OpenSSL's reason, where in the chain it arose and for
// which purpose: "unable to get local issuer certificate (at the certificate
// itself, verifying it as a TLS server)".
Result<bool> verify_chain(X509* leaf, const std::vector<net::UniqueX509>& intermediates,
                          const std::vector<net::UniqueX509>& roots, SystemTime at);

// RFC 3339 UTC to the second, for messages: "2030-01-02T03:04:05Z".
std::string format_utc(SystemTime t);

// A name from a certificate, for a message: cut short, with bytes that could
// forge a log line shown as \x escapes.
std::string printable(std::string_view text);

}  // namespace trellis::proxy
