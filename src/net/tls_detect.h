// Telling TLS from plaintext by a connection's first bytes, for a permissive
// listener that accepts both (mTLS from sidecars, plaintext from workloads
// not yet in the mesh).
#pragma once

#include <cstddef>
#include <string_view>

namespace trellis::net {

// How many first bytes looks_like_tls() needs to answer yes: a TLS record
// header's type and version. One byte can already rule TLS out.
inline constexpr size_t kTlsDetectBytes = 3;
// With this many it also checks that the record carries a ClientHello.
inline constexpr size_t kTlsClientHelloBytes = 6;

// Whether `first_bytes` (what the peer sent first, peeked, not consumed)
// starts a TLS connection: a handshake record (22) with a TLS 1.0-1.3 record
// version (3, 1..4); when present, a plausible record length and a ClientHello
// (1) as its first message. No plaintext protocol the mesh carries starts
// with byte 22 (HTTP/1 starts with a method, HTTP/2 with "PRI"). False with
// fewer than kTlsDetectBytes bytes: peek until that many arrive (or the peer
// stops sending) before asking.
bool looks_like_tls(std::string_view first_bytes);

}  // namespace trellis::net
