#include "common/spiffe.h"

#include <cstdio>
#include <vector>

namespace trellis {
namespace {

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxTrustDomain = 255;
constexpr size_t kMaxLabel = 63;
constexpr size_t kMaxSubdomain = 253;
// Error messages echo the input so the operator sees what was sent; a huge
// input is cut so that one bad request cannot flood a log line.
constexpr size_t kMaxEcho = 128;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A character for an error message: 'A', or \xNN when it is not printable.
std::string show_char(char c) {
  auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x20 && byte < 0x7f) return std::string("'") + c + "'";
  char out[8];
  std::snprintf(out, sizeof out, "\\x%02x", byte);
  return out;
}

std::string echo(std::string_view text) {
  std::string out = "\"";
  out += text.substr(0, kMaxEcho);
  if (text.size() > kMaxEcho) out += "...";
  return out + "\"";
}

std::optional<std::string> check_label(std::string_view label, std::string_view what) {
  if (label.empty()) return std::string(what) + " has an empty label";
  if (label.size() > kMaxLabel) {
    return std::string(what) + " label " + echo(label) + " is longer than 63 characters";
  }
  for (char c : label) {
    if (!is_lower_alnum(c) && c != '-') {
      return std::string(what) + " " + echo(label) + " has the character " + show_char(c) +
             ": use lower-case letters, digits and '-'";
    }
  }
  if (label.front() == '-' || label.back() == '-') {
    return std::string(what) + " " + echo(label) + " must start and end with a letter or digit";
  }
  return std::nullopt;
}

Error invalid(std::string_view uri, const std::string& reason) {
  return make_error("invalid SPIFFE ID " + echo(uri) + ": " + reason);
}

}  // namespace

std::optional<std::string> SpiffeId::check_trust_domain(std::string_view trust_domain) {
  if (trust_domain.empty()) return "the trust domain is empty";
  if (trust_domain.size() > kMaxTrustDomain) {
    return "the trust domain is longer than 255 characters (" + std::to_string(trust_domain.size()) + ")";
  }
  for (char c : trust_domain) {
    if (!is_lower_alnum(c) && c != '.' && c != '-' && c != '_') {
      return "the trust domain " + echo(trust_domain) + " has the character " + show_char(c) +
             ": use lower-case letters, digits, '.', '-' and '_'";
    }
  }
  if (trust_domain.front() == '.' || trust_domain.back() == '.' ||
      trust_domain.find("..") != std::string_view::npos) {
    return "the trust domain " + echo(trust_domain) +
           " has an empty label (a leading, trailing or double '.')";
  }
  return std::nullopt;
}

std::optional<std::string> SpiffeId::check_namespace(std::string_view namespace_) {
  if (namespace_.empty()) return "the namespace is empty";
  return check_label(namespace_, "the namespace");
}

std::optional<std::string> SpiffeId::check_service_account(std::string_view service_account) {
  if (service_account.empty()) return "the service account is empty";
  if (service_account.size() > kMaxSubdomain) {
    return "the service account is longer than 253 characters (" + std::to_string(service_account.size()) +
           ")";
  }
  size_t start = 0;
  while (true) {
    size_t dot = service_account.find('.', start);
    std::string_view label = service_account.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty()) {
      return "the service account " + echo(service_account) +
             " has an empty label (a leading, trailing or double '.')";
    }
    if (auto problem = check_label(label, "the service account")) return problem;
    if (dot == std::string_view::npos) return std::nullopt;
    start = dot + 1;
  }
}

Result<SpiffeId> SpiffeId::parse(std::string_view uri) {
  if (uri.substr(0, kScheme.size()) != kScheme) {
    std::string scheme(uri.substr(0, kScheme.size()));
    for (char& c : scheme) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (scheme == kScheme) return invalid(uri, "the scheme must be \"spiffe://\" in lower case");
    return invalid(uri, "must start with \"spiffe://\"");
  }
  std::string_view rest = uri.substr(kScheme.size());
  // Each of these would give one workload a second spelling.
  if (rest.find('%') != std::string_view::npos) return invalid(uri, "percent-encoding is not allowed");
  if (rest.find('?') != std::string_view::npos) return invalid(uri, "a query is not allowed");
  if (rest.find('#') != std::string_view::npos) return invalid(uri, "a fragment is not allowed");

  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos) return invalid(uri, "userinfo is not allowed");
  if (authority.find(':') != std::string_view::npos) return invalid(uri, "a port is not allowed");
  if (auto problem = check_trust_domain(authority)) return invalid(uri, *problem);
  if (slash == std::string_view::npos) {
    return invalid(uri, "the path \"/ns/<namespace>/sa/<service account>\" is missing");
  }

  std::string_view path = rest.substr(slash);
  if (path.size() > 1 && path.back() == '/') return invalid(uri, "a trailing slash is not allowed");
  std::vector<std::string_view> segments;
  for (size_t start = 1;;) {
    size_t end = path.find('/', start);
    segments.push_back(path.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  for (std::string_view s : segments) {
    if (s.empty()) return invalid(uri, "the path has an empty segment");
  }
  if (segments.size() != 4 || segments[0] != "ns" || segments[2] != "sa") {
    return invalid(uri, "the path must be \"/ns/<namespace>/sa/<service account>\", not " + echo(path));
  }
  if (auto problem = check_namespace(segments[1])) return invalid(uri, *problem);
  if (auto problem = check_service_account(segments[3])) return invalid(uri, *problem);
  return SpiffeId{std::string(authority), std::string(segments[1]), std::string(segments[3])};
}

Result<SpiffeId> SpiffeId::make(std::string_view trust_domain, std::string_view namespace_,
                                std::string_view service_account) {
  for (const auto& problem : {check_trust_domain(trust_domain), check_namespace(namespace_),
                              check_service_account(service_account)}) {
    if (problem) return make_error("invalid SPIFFE ID: " + *problem);
  }
  return SpiffeId{std::string(trust_domain), std::string(namespace_), std::string(service_account)};
}

std::string SpiffeId::to_string() const {
  return std::string(kScheme) + trust_domain + "/ns/" + namespace_ + "/sa/" + service_account;
}

}  // namespace trellis
