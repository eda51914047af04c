// AuthorizationPolicy decisions: which requests an inbound sidecar lets
// through to its service, by the client's verified identity, namespace and
// address and by what it asks for (method, path, port). Compiled once per
// config snapshot; a decision reads only the compiled form and allocates
// nothing.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace trellis::policy {

enum class AuthzAction : uint8_t { kAllow, kDeny };

// A client address: IPv4 (an IPv4-mapped IPv6 address counts as IPv4) or IPv6.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 in the first 4
  // Numeric text only ("10.1.2.3", "2001:db8::1").
  static Result<IpAddress> parse(std::string_view text);
  // From raw network-order bytes (4 or 16 of them).
  static IpAddress from_bytes(const uint8_t* data, size_t size);
};

// An address or a CIDR block ("10.0.0.0/8", "192.168.1.7", "2001:db8::/32").
struct IpBlock {
  IpAddress base;
  uint8_t prefix = 0;
  // Host bits set after the prefix are an error, not silently cleared: the
  // author meant something else.
  static Result<IpBlock> parse(std::string_view text);
  bool contains(const IpAddress& address) const;
};

// The policy as written (the proxy's config model and what the control plane
// sends); lists are "any of", fields of one entry "all of".
struct AuthzSource {
  // SPIFFE IDs; "*" any identity; "spiffe://td/ns/a/*" a prefix.
  std::vector<std::string> identities;
  std::vector<std::string> namespaces;  // of the client's identity
  std::vector<std::string> ip_blocks;
};

struct AuthzOperation {
  std::vector<std::string> methods;
  std::vector<std::string> paths;  // exact, or a prefix when ending in '*'
  std::vector<uint32_t> ports;     // the port the client connected to
};

struct AuthzRule {
  std::vector<AuthzSource> from;   // empty: any client
  std::vector<AuthzOperation> to;  // empty: any operation
};

struct AuthzPolicyConfig {
  std::string name;  // "<namespace>/<name>": in 403 bodies, logs and stats
  AuthzAction action = AuthzAction::kAllow;
  std::vector<AuthzRule> rules;
};

struct AuthorizationConfig {
  // Applies to a service that has no ALLOW policy.
  AuthzAction default_action = AuthzAction::kAllow;
  std::vector<AuthzPolicyConfig> policies;

  // Nothing to check: every request passes.
  bool empty() const { return policies.empty() && default_action == AuthzAction::kAllow; }
};

// What the inbound proxy knows of a request. For a TCP connection `http` is
// false and method and path are unknown.
struct AuthzRequest {
  std::string_view identity;  // verified client SPIFFE ID; empty without mTLS
  IpAddress address;
  uint32_t port = 0;
  bool http = false;
  std::string_view method;
  std::string_view path;  // normalized, without the query
};

struct AuthzDecision {
  bool allowed = true;
  // The policy that decided (an index into the config's policies): the DENY
  // policy that matched, the ALLOW policy that matched or, when no ALLOW rule
  // matched, the first ALLOW policy. kDefault: the default action decided.
  static constexpr int kDefault = -1;
  int policy = kDefault;
};

class Authorizer {
 public:
  // Errors name the field: "policies[1].rules[0].from[0].ipBlocks[2]: ...".
  static Result<Authorizer> compile(const AuthorizationConfig& config);

  // DENY policies first (any matching rule refuses), then ALLOW policies (if
  // there is one, some rule must match), then the default action.
  //
  // A TCP connection has no method or path: an operation that names them
  // never matches in an ALLOW rule and always matches in a DENY rule, so a
  // policy written for HTTP fails closed on TCP both ways.
  AuthzDecision decide(const AuthzRequest& request) const;

  size_t size() const { return policies_.size(); }
  const std::string& name(size_t policy) const { return policies_[policy].name; }
  AuthzAction action(size_t policy) const { return policies_[policy].action; }
  bool empty() const { return policies_.empty() && default_action_ == AuthzAction::kAllow; }

 private:
  struct Pattern {
    std::string text;
    bool prefix = false;  // text is the part before the '*'
    bool any = false;     // "*"
    bool matches(std::string_view value) const;
  };
  struct Source {
    std::vector<Pattern> identities;
    std::vector<std::string> namespaces;
    std::vector<IpBlock> ip_blocks;
  };
  struct Operation {
    std::vector<std::string> methods;
    std::vector<Pattern> paths;
    std::vector<uint32_t> ports;
  };
  struct Rule {
    std::vector<Source> from;
    std::vector<Operation> to;
  };
  struct Policy {
    std::string name;
    AuthzAction action = AuthzAction::kAllow;
    std::vector<Rule> rules;
  };

  static bool source_matches(const Source& source, const AuthzRequest& request);
  static bool operation_matches(const Operation& operation, const AuthzRequest& request, AuthzAction action);
  static bool rule_matches(const Rule& rule, const AuthzRequest& request, AuthzAction action);

  AuthzAction default_action_ = AuthzAction::kAllow;
  std::vector<Policy> policies_;
  bool has_allow_ = false;
  int first_allow_ = AuthzDecision::kDefault;
};

// The namespace in "spiffe://<trust domain>/ns/<namespace>/sa/<account>";
// empty when the identity does not have that shape.
std::string_view identity_namespace(std::string_view identity);

// A request path (without the query) as authorization must see it, so that
// "/a/../admin", "//admin" and "/%61dmin" cannot slip past a rule on
// "/admin/*": percent-escapes of unreserved characters decoded, others upper
// case, dot segments removed, repeated slashes merged. An encoded '/' or '\'
// (or a raw '\') makes the path ambiguous to the application: refused.
// Returns false for a refused path; `out` is only written when it differs.
bool normalize_path(std::string_view path, std::string& out, bool& changed);

}  // namespace trellis::policy
