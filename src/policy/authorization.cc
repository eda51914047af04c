#include "policy/authorization.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace trellis::policy {
namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::string at(std::string_view path, size_t i) { return std::string(path) + "[" + std::to_string(i) + "]"; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// Whether the path may need any change: most paths do not, and are checked
// without a copy.
bool maybe_unnormalized(std::string_view path) {
  if (path.find_first_of("%\\") != std::string_view::npos) return true;
  if (path.find("//") != std::string_view::npos) return true;
  if (path.find("/./") != std::string_view::npos || path.find("/../") != std::string_view::npos) return true;
  return path.ends_with("/.") || path.ends_with("/..");
}

}  // namespace

Result<IpAddress> IpAddress::parse(std::string_view text) {
  std::string s(text);
  IpAddress out;
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    std::memcpy(out.bytes.data(), &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) return from_bytes(v6.s6_addr, 16);
  return make_error("\"" + s + "\" is not an IP address");
}

IpAddress IpAddress::from_bytes(const uint8_t* data, size_t size) {
  IpAddress out;
  if (size == 16 && std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), data)) {
    std::memcpy(out.bytes.data(), data + 12, 4);
  } else if (size == 16) {
    out.v6 = true;
    std::memcpy(out.bytes.data(), data, 16);
  } else if (size == 4) {
    std::memcpy(out.bytes.data(), data, 4);
  }
  return out;
}

Result<IpBlock> IpBlock::parse(std::string_view text) {
  size_t slash = text.find('/');
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return address.error();
  IpBlock out;
  out.base = *address;
  const int max = out.base.v6 ? 128 : 32;
  if (slash == std::string_view::npos) {
    out.prefix = static_cast<uint8_t>(max);
    return out;
  }
  std::string_view digits = text.substr(slash + 1);
  int prefix = 0;
  if (digits.empty() || digits.size() > 3)
    return make_error("\"" + std::string(text) + "\": bad prefix length");
  for (char c : digits) {
    if (c < '0' || c > '9') return make_error("\"" + std::string(text) + "\": bad prefix length");
    prefix = prefix * 10 + (c - '0');
  }
  if (prefix > max) return make_error("\"" + std::string(text) + "\": prefix longer than the address");
  out.prefix = static_cast<uint8_t>(prefix);
  IpAddress masked = out.base;
  for (int bit = prefix; bit < max; ++bit)
    masked.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  if (masked.bytes != out.base.bytes)
    return make_error("\"" + std::string(text) + "\" has bits set after its prefix");
  return out;
}

bool IpBlock::contains(const IpAddress& address) const {
  if (address.v6 != base.v6) return false;
  const int whole = prefix / 8;
  if (std::memcmp(address.bytes.data(), base.bytes.data(), static_cast<size_t>(whole)) != 0) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (address.bytes[whole] & mask) == (base.bytes[whole] & mask);
}

bool Authorizer::Pattern::matches(std::string_view value) const {
  if (any) return !value.empty();
  if (prefix) return value.starts_with(text);
  return value == text;
}

Result<Authorizer> Authorizer::compile(const AuthorizationConfig& config) {
  Authorizer out;
  out.default_action_ = config.default_action;
  auto pattern = [](const std::string& text) {
    Pattern p;
    if (text == "*") {
      p.any = true;
    } else if (text.ends_with('*')) {
      p.prefix = true;
      p.text = text.substr(0, text.size() - 1);
    } else {
      p.text = text;
    }
    return p;
  };
  for (size_t i = 0; i < config.policies.size(); ++i) {
    const AuthzPolicyConfig& in = config.policies[i];
    Policy policy;
    policy.name = in.name;
    policy.action = in.action;
    for (size_t r = 0; r < in.rules.size(); ++r) {
      const std::string rule_path = at(at("policies", i) + ".rules", r);
      Rule rule;
      for (size_t f = 0; f < in.rules[r].from.size(); ++f) {
        const AuthzSource& from = in.rules[r].from[f];
        Source source;
        for (const std::string& id : from.identities) source.identities.push_back(pattern(id));
        source.namespaces = from.namespaces;
        for (size_t b = 0; b < from.ip_blocks.size(); ++b) {
          auto block = IpBlock::parse(from.ip_blocks[b]);
          if (!block)
            return make_error(at(at(rule_path + ".from", f) + ".ipBlocks", b) + ": " + block.error().message);
          source.ip_blocks.push_back(*block);
        }
        rule.from.push_back(std::move(source));
      }
      for (const AuthzOperation& to : in.rules[r].to) {
        Operation operation;
        operation.methods = to.methods;
        for (const std::string& p : to.paths) operation.paths.push_back(pattern(p));
        operation.ports = to.ports;
        rule.to.push_back(std::move(operation));
      }
      policy.rules.push_back(std::move(rule));
    }
    if (policy.action == AuthzAction::kAllow && !out.has_allow_) {
      out.has_allow_ = true;
      out.first_allow_ = static_cast<int>(i);
    }
    out.policies_.push_back(std::move(policy));
  }
  return out;
}

bool Authorizer::source_matches(const Source& source, const AuthzRequest& request) {
  if (!source.identities.empty() &&
      std::none_of(source.identities.begin(), source.identities.end(),
                   [&](const Pattern& p) { return p.matches(request.identity); }))
    return false;
  if (!source.namespaces.empty()) {
    std::string_view ns = identity_namespace(request.identity);
    if (ns.empty() ||
        std::find(source.namespaces.begin(), source.namespaces.end(), ns) == source.namespaces.end())
      return false;
  }
  if (!source.ip_blocks.empty() &&
      std::none_of(source.ip_blocks.begin(), source.ip_blocks.end(),
                   [&](const IpBlock& b) { return b.contains(request.address); }))
    return false;
  return true;
}

bool Authorizer::operation_matches(const Operation& operation, const AuthzRequest& request,
                                   AuthzAction action) {
  if (!operation.ports.empty() &&
      std::find(operation.ports.begin(), operation.ports.end(), request.port) == operation.ports.end())
    return false;
  const bool names_http = !operation.methods.empty() || !operation.paths.empty();
  if (names_http && !request.http) return action == AuthzAction::kDeny;  // fail closed
  if (!operation.methods.empty() && std::find(operation.methods.begin(), operation.methods.end(),
                                              request.method) == operation.methods.end())
    return false;
  if (!operation.paths.empty() && std::none_of(operation.paths.begin(), operation.paths.end(),
                                               [&](const Pattern& p) { return p.matches(request.path); }))
    return false;
  return true;
}

bool Authorizer::rule_matches(const Rule& rule, const AuthzRequest& request, AuthzAction action) {
  if (!rule.from.empty() && std::none_of(rule.from.begin(), rule.from.end(),
                                         [&](const Source& s) { return source_matches(s, request); }))
    return false;
  if (!rule.to.empty() && std::none_of(rule.to.begin(), rule.to.end(), [&](const Operation& o) {
        return operation_matches(o, request, action);
      }))
    return false;
  return true;
}

AuthzDecision Authorizer::decide(const AuthzRequest& request) const {
  auto matches = [&](const Policy& p) {
    return std::any_of(p.rules.begin(), p.rules.end(),
                       [&](const Rule& r) { return rule_matches(r, request, p.action); });
  };
  for (size_t i = 0; i < policies_.size(); ++i) {
    if (policies_[i].action == AuthzAction::kDeny && matches(policies_[i]))
      return {false, static_cast<int>(i)};
  }
  if (has_allow_) {
    for (size_t i = 0; i < policies_.size(); ++i) {
      if (policies_[i].action == AuthzAction::kAllow && matches(policies_[i]))
        return {true, static_cast<int>(i)};
    }
    return {false, first_allow_};
  }
  return {default_action_ == AuthzAction::kAllow, AuthzDecision::kDefault};
}

std::string_view identity_namespace(std::string_view identity) {
  constexpr std::string_view kScheme = "spiffe://";
  if (!identity.starts_with(kScheme)) return {};
  std::string_view rest = identity.substr(kScheme.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return {};
  rest = rest.substr(slash);
  if (!rest.starts_with("/ns/")) return {};
  rest = rest.substr(4);
  size_t end = rest.find('/');
  if (end == std::string_view::npos || end == 0 || !rest.substr(end).starts_with("/sa/")) return {};
  return rest.substr(0, end);
}

bool normalize_path(std::string_view path, std::string& out, bool& changed) {
  changed = false;
  if (!path.starts_with('/') || !maybe_unnormalized(path)) return true;
  // 1. Percent-escapes: unreserved characters decoded (so "%2e%2e" is a dot
  //    segment), the rest kept in upper case; '/' and '\' in any form refused.
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '\\') return false;
    if (c != '%') {
      decoded.push_back(c);
      continue;
    }
    if (i + 2 >= path.size()) return false;  // a cut-off escape
    const int hi = hex_value(path[i + 1]);
    const int lo = hex_value(path[i + 2]);
    if (hi < 0 || lo < 0) return false;
    const auto byte = static_cast<unsigned char>(hi * 16 + lo);
    if (byte == '/' || byte == '\\') return false;
    if (unreserved(byte)) {
      decoded.push_back(static_cast<char>(byte));
    } else {
      constexpr const char* kHex = "0123456789ABCDEF";
      decoded.push_back('%');
      decoded.push_back(kHex[byte >> 4]);
      decoded.push_back(kHex[byte & 15]);
    }
    i += 2;
  }
  // 2. Segments: empty ones (repeated slashes) and "." dropped, ".." removes
  //    the one before; a trailing slash (or dot segment) is kept as a slash.
  std::vector<std::string_view> segments;
  std::string_view rest = std::string_view(decoded).substr(1);
  bool trailing = false;
  while (true) {
    size_t slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
      trailing = last;
    } else if (segment == "." || segment.empty()) {
      trailing = last;
    } else {
      segments.push_back(segment);
      trailing = false;
    }
    if (last) break;
    rest = rest.substr(slash + 1);
  }
  std::string result = "/";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) result.push_back('/');
    result.append(segments[i]);
  }
  if (trailing && !segments.empty()) result.push_back('/');
  if (result != path) {
    out = std::move(result);
    changed = true;
  }
  return true;
}

}  // namespace trellis::policy
