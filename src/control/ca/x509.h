// X.509 and PEM helpers for the mesh CA, on OpenSSL 3: owning handles, PEM in
// and out, what a certificate or key is, and chain verification at a given
// time. Nothing here reads a clock, a file or a private key's bytes into an
// error message.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/result.h"

namespace trellis::control {

using SystemTime = std::chrono::system_clock::time_point;

struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509ReqDeleter {
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
using UniqueX509 = std::unique_ptr<X509, X509Deleter>;
using UniquePkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using UniqueX509Req = std::unique_ptr<X509_REQ, X509ReqDeleter>;
using UniqueGeneralNames = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;

// The reason OpenSSL gave for the last failure on this thread (or `fallback`),
// and an empty error queue afterwards, so that a stale reason never shows up
// in a later, unrelated message. OpenSSL's reasons name what failed, never
// the bytes it was given.
std::string openssl_reason(std::string_view fallback = "unknown reason");

// Every "CERTIFICATE" block in `pem`, in order. An error when there is none,
// when a block does not parse, or when the text holds anything but
// certificates (a key pasted into a certificate file is refused, not skipped).
Result<std::vector<UniqueX509>> parse_pem_certificates(std::string_view pem);
// One unencrypted private key (PKCS#8 or the traditional PEM forms). The
// error never contains any of `pem`.
Result<UniquePkey> parse_pem_private_key(std::string_view pem);
// One "CERTIFICATE REQUEST" block.
Result<UniqueX509Req> parse_pem_csr(std::string_view pem);

std::string certificate_pem(const X509* certificate);
std::string certificates_pem(const std::vector<const X509*>& certificates);
// PKCS#8, unencrypted: for files of mode 0600 and for the caller that asked
// for a key. The intermediate buffer is wiped.
std::string private_key_pem(const EVP_PKEY* key);

// A fresh ECDSA P-256 key pair.
Result<UniquePkey> generate_p256_key();

// Whether `key` is the private half of the certificate's public key.
bool key_matches_certificate(const EVP_PKEY* key, const X509* certificate);
// Whether the key is an ECDSA key on P-256 (named curve).
bool is_ecdsa_p256(const EVP_PKEY* key);
// What a key is, for messages: "ECDSA P-256", "ECDSA P-384", "RSA 2048-bit",
// "Ed25519", ...
std::string describe_key(const EVP_PKEY* key);

// Lower-case hex SHA-256 of the DER encoding, 64 digits.
std::string sha256_fingerprint(const X509* certificate);
// The serial number in lower-case hex, without leading zeros.
std::string serial_hex(const X509* certificate);
// The subject as one line, RFC 2253 style: "CN=Trellis mesh root 1a2b,O=Trellis".
std::string subject_line(const X509* certificate);
SystemTime not_before(const X509* certificate);
SystemTime not_after(const X509* certificate);

// Subject equals issuer and the signature verifies with its own key.
bool is_self_signed(const X509* certificate);
// basicConstraints CA:TRUE and a keyUsage with keyCertSign: a certificate
// that may sign others. The error says which is missing.
Result<bool> check_can_sign_certificates(const X509* certificate);

// Every URI subject alternative name, in order.
std::vector<std::string> uri_sans(const X509* certificate);

// Verifies `leaf` through the `untrusted` intermediates to one of the
// self-signed `roots`, as of `at`. No purpose or policy checks: the caller
// looks at what the leaf says. The error is OpenSSL's reason and at which
// certificate of the chain it arose.
Result<bool> verify_chain(const X509* leaf, const std::vector<const X509*>& untrusted,
                          const std::vector<const X509*>& roots, SystemTime at);

}  // namespace trellis::control
