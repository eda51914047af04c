// Workload identities in the mesh: the SPIFFE ID a certificate carries in a
// URI subject alternative name ("spiffe://<trust domain>/ns/<ns>/sa/<sa>").
#pragma once

#include <string>
#include <string_view>

#include <openssl/types.h>

namespace trellis::net {

inline constexpr std::string_view kSpiffeScheme = "spiffe://";

// Whether `id` is a well-formed SPIFFE ID: "spiffe://", a trust domain of
// lower-case letters, digits, '.', '-', '_', then an optional path of
// non-empty segments of letters, digits, '.', '-', '_' (not "." or "..").
bool is_spiffe_id(std::string_view id);

// The SPIFFE ID in `certificate`'s URI SANs. Empty when the certificate is
// null, has no such URI SAN, or has several: a certificate names exactly one
// workload, and one naming several is mis-issued, so we do not pick one.
// Only reads the certificate: the caller verifies it first.
std::string spiffe_identity(const X509* certificate);

}  // namespace trellis::net
