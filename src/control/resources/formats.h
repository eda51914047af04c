// Checks of the string formats that resource fields share: names, host names,
// header names, URL paths, CIDR blocks, SPIFFE identities (regular
// expressions are in regex_syntax.h). Each returns nothing when the text is
// well formed, else a reason meant to follow the field path
// ("spec.hostnames[0]: ...").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace trellis::control {

std::optional<std::string> check_dns_label(std::string_view text);
std::optional<std::string> check_dns_subdomain(std::string_view text);

// Kubernetes label keys ("[prefix/]name") and values.
std::optional<std::string> check_label_key(std::string_view text);
std::optional<std::string> check_label_value(std::string_view text);

// A host name as the Gateway API writes it: lower case, no port, not an IP
// address; with `allow_wildcard`, "*." may stand for the whole first label.
std::optional<std::string> check_hostname(std::string_view text, bool allow_wildcard);

// An HTTP token (RFC 9110): header names, query parameter names, cookie names.
// `what` names the thing in the message ("header name").
std::optional<std::string> check_token(std::string_view text, std::string_view what);

// A path to match or write exactly: starts with "/", only URL path
// characters, no "//", dot segments, "#" or encoded "/".
std::optional<std::string> check_http_path(std::string_view text);

// An IPv4 or IPv6 address, or a CIDR block without host bits set.
std::optional<std::string> check_cidr(std::string_view text);

// A SPIFFE ID "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>",
// "*", or a prefix of such an ID followed by "*".
std::optional<std::string> check_identity_pattern(std::string_view text);

// A SPIFFE trust domain: lower-case letters, digits, '.', '-' and '_'.
std::optional<std::string> check_trust_domain(std::string_view text);

}  // namespace trellis::control
