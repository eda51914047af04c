#include "control/resources/formats.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "control/resources/checker.h"
#include "control/validation.h"

namespace trellis::control {
namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

// Label names and values: [A-Za-z0-9] at both ends, [-_.A-Za-z0-9] between.
bool is_label_name(std::string_view text) {
  if (text.empty() || text.size() > 63) return false;
  if (!is_alnum(text.front()) || !is_alnum(text.back())) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool is_trust_domain_char(char c) { return is_lower_alnum(c) || c == '.' || c == '-' || c == '_'; }

}  // namespace

std::optional<std::string> check_dns_label(std::string_view text) {
  if (text.empty()) return "must not be empty";
  if (text.size() > 63) return "must be at most 63 characters, has " + std::to_string(text.size());
  if (is_dns1123_label(text)) return std::nullopt;
  return quote(text) +
         " is not a valid DNS label: use lower-case letters, digits and '-', starting and ending "
         "with a letter or digit";
}

std::optional<std::string> check_dns_subdomain(std::string_view text) {
  if (text.empty()) return "must not be empty";
  if (text.size() > 253) return "must be at most 253 characters, has " + std::to_string(text.size());
  if (is_dns1123_subdomain(text)) return std::nullopt;
  return quote(text) +
         " is not a valid name: use lower-case letters, digits, '-' and '.', each '.'-separated "
         "part starting and ending with a letter or digit";
}

std::optional<std::string> check_label_key(std::string_view text) {
  static const std::string kShape =
      ": a label key is a name of at most 63 letters, digits, '-', '_' and '.', starting and "
      "ending with a letter or digit, with an optional DNS prefix and '/', e.g. "
      "\"app.kubernetes.io/name\"";
  std::vector<std::string_view> parts = split(text, '/');
  if (parts.size() > 2) return quote(text) + " has more than one '/'" + kShape;
  std::string_view name = parts.back();
  if (parts.size() == 2) {
    std::string_view prefix = parts.front();
    if (prefix.empty() || prefix.size() > 253 || !is_dns1123_subdomain(prefix)) {
      return quote(text) + " has an invalid prefix " + quote(prefix) + kShape;
    }
  }
  if (!is_label_name(name)) return quote(text) + " is not a valid label key" + kShape;
  return std::nullopt;
}

std::optional<std::string> check_label_value(std::string_view text) {
  if (text.empty() || is_label_name(text)) return std::nullopt;
  return quote(text) +
         " is not a valid label value: use at most 63 letters, digits, '-', '_' and '.', starting "
         "and ending with a letter or digit";
}

std::optional<std::string> check_hostname(std::string_view text, bool allow_wildcard) {
  if (text.empty()) return "must not be empty";
  if (text.size() > 253) return "must be at most 253 characters, has " + std::to_string(text.size());
  std::string_view rest = text;
  if (allow_wildcard && rest.starts_with("*.")) rest.remove_prefix(2);
  if (rest.find('*') != std::string_view::npos) {
    if (!allow_wildcard) return quote(text) + " must be a precise host name, without '*'";
    return quote(text) + ": '*' is only allowed as the whole first label, as in \"*.example.com\"";
  }
  if (rest.find(':') != std::string_view::npos) {
    return quote(text) + " must be a host name without a port, not an IP address";
  }
  in_addr v4;
  if (inet_pton(AF_INET, std::string(rest).c_str(), &v4) == 1) {
    return quote(text) + " must be a host name, not an IP address";
  }
  for (std::string_view label : split(rest, '.')) {
    if (label.size() > 63 || !is_dns1123_label(label)) {
      return quote(text) +
             " is not a valid host name: use lower-case letters, digits and '-', in '.'-separated "
             "labels of at most 63 characters that start and end with a letter or digit";
    }
  }
  return std::nullopt;
}

std::optional<std::string> check_token(std::string_view text, std::string_view what) {
  if (text.empty()) return "must not be empty";
  if (text.size() > 256) return "must be at most 256 characters, has " + std::to_string(text.size());
  for (char c : text) {
    if (is_alnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr) continue;
    return quote(text) + " is not a valid " + std::string(what) +
           ": use letters, digits and any of !#$%&'*+-.^_`|~";
  }
  return std::nullopt;
}

std::optional<std::string> check_http_path(std::string_view text) {
  if (text.empty()) return "must not be empty";
  if (text.size() > 1024) return "must be at most 1024 characters, has " + std::to_string(text.size());
  if (text.front() != '/') return "must start with \"/\"";
  if (text.find('#') != std::string_view::npos) return "must not contain \"#\"";
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 < text.size() && is_hex(text[i + 1]) && is_hex(text[i + 2])) {
        i += 2;
        continue;
      }
      return "has a '%' that does not start an escape like %20";
    }
    if (is_alnum(c) || std::strchr("-/._~!$&'()*+,;=:@", c) != nullptr) continue;
    return "contains " + quote(std::string_view(&c, 1)) +
           ", which is not allowed in a URL path (percent-encode it, e.g. \" \" as %20)";
  }
  if (text.find("//") != std::string_view::npos) return "must not contain \"//\"";
  if (text.find("/./") != std::string_view::npos || text.find("/../") != std::string_view::npos ||
      text.ends_with("/.") || text.ends_with("/..")) {
    return "must not contain the dot segments \"/./\" or \"/../\"";
  }
  if (text.find("%2f") != std::string_view::npos || text.find("%2F") != std::string_view::npos) {
    return "must not contain an encoded \"/\" (%2F)";
  }
  return std::nullopt;
}

std::optional<std::string> check_cidr(std::string_view text) {
  static const std::string kShape =
      " is not an IP address or CIDR block, e.g. \"10.0.0.0/8\", \"192.168.1.7\" or "
      "\"2001:db8::/32\"";
  if (text.empty()) return "must not be empty";
  size_t slash = text.find('/');
  std::string address(text.substr(0, slash));
  unsigned char bytes[16] = {};
  int family = AF_INET;
  int width = 32;
  if (inet_pton(AF_INET, address.c_str(), bytes) != 1) {
    family = AF_INET6;
    width = 128;
    if (inet_pton(AF_INET6, address.c_str(), bytes) != 1) return quote(text) + kShape;
  }
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view prefix = text.substr(slash + 1);
  if (prefix.empty() || prefix.size() > 3 || !std::all_of(prefix.begin(), prefix.end(), is_digit)) {
    return quote(text) + kShape;
  }
  int bits = std::stoi(std::string(prefix));
  if (bits > width) {
    return quote(text) + ": the prefix length must be at most " + std::to_string(width) +
           (family == AF_INET ? " for IPv4" : " for IPv6");
  }
  bool host_bits = false;
  for (int bit = bits; bit < width; ++bit) {
    unsigned char mask = static_cast<unsigned char>(0x80 >> (bit % 8));
    if (bytes[bit / 8] & mask) {
      host_bits = true;
      bytes[bit / 8] = static_cast<unsigned char>(bytes[bit / 8] & ~mask);
    }
  }
  if (!host_bits) return std::nullopt;
  char network[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, network, sizeof network);
  return quote(text) + " has bits set after its /" + std::to_string(bits) + " prefix (did you mean " +
         quote(std::string(network) + "/" + std::to_string(bits)) + "?)";
}

std::optional<std::string> check_trust_domain(std::string_view text) {
  if (text.empty()) return "must not be empty";
  if (text.size() > 255) return "must be at most 255 characters, has " + std::to_string(text.size());
  if (std::all_of(text.begin(), text.end(), is_trust_domain_char) && text.front() != '.' &&
      text.back() != '.' && text.find("..") == std::string_view::npos) {
    return std::nullopt;
  }
  return quote(text) +
         " is not a valid trust domain: use lower-case letters, digits, '.', '-' and '_', e.g. "
         "\"cluster.local\"";
}

std::optional<std::string> check_identity_pattern(std::string_view text) {
  static const std::string kShape =
      "expected \"spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>\", \"*\", or such "
      "an ID cut short and ending in \"*\"";
  constexpr std::string_view kScheme = "spiffe://";
  if (text == "*") return std::nullopt;
  size_t star = text.find('*');
  bool wildcard = star != std::string_view::npos;
  if (wildcard && star + 1 != text.size()) {
    return quote(text) + ": '*' is only allowed at the end, or alone";
  }
  std::string_view body = wildcard ? text.substr(0, star) : text;
  if (!body.starts_with(kScheme)) return quote(text) + " is not a SPIFFE ID: " + kShape;
  std::vector<std::string_view> segments = split(body.substr(kScheme.size()), '/');
  if (segments.size() > 5) return quote(text) + " has too many '/'-separated parts: " + kShape;
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string_view s = segments[i];
    bool partial = wildcard && i + 1 == segments.size();  // the part the '*' completes
    switch (i) {
      case 0:
        if (partial ? !std::all_of(s.begin(), s.end(), is_trust_domain_char)
                    : check_trust_domain(s).has_value()) {
          return quote(text) + " has an invalid trust domain " + quote(s);
        }
        break;
      case 1:
      case 3: {
        std::string_view keyword = (i == 1) ? "ns" : "sa";
        if (partial ? !keyword.starts_with(s) : s != keyword) {
          return quote(text) + " is not a SPIFFE ID: " + kShape;
        }
        break;
      }
      case 2:
        if (partial ? !std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '-'; })
                    : !is_dns1123_label(s)) {
          return quote(text) + " has an invalid namespace " + quote(s);
        }
        break;
      default:
        if (partial ? !std::all_of(s.begin(), s.end(),
                                   [](char c) { return is_lower_alnum(c) || c == '-' || c == '.'; })
                    : !is_dns1123_subdomain(s)) {
          return quote(text) + " has an invalid service account " + quote(s);
        }
        break;
    }
  }
  if (!wildcard && segments.size() != 5) return quote(text) + " is not a SPIFFE ID: " + kShape;
  return std::nullopt;
}

}  // namespace trellis::control
