#include "net/address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/text.h"

namespace trellis::net {
namespace {

constexpr std::string_view kAddressShape = "must be \"ip:port\" or \"[ipv6]:port\"";

bool parse_port(std::string_view text, uint16_t& port, std::string& error) {
  if (text.empty()) {
    error = "missing port: " + std::string(kAddressShape);
    return false;
  }
  bool digits = std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    error = "invalid port " + in_quotes(text);
    return false;
  }
  unsigned value = 0;
  bool too_long = text.size() > 5;
  if (!too_long) std::from_chars(text.data(), text.data() + text.size(), value);
  if (too_long || value < 1 || value > 65535) {
    error = "port must be between 1 and 65535";
    return false;
  }
  port = static_cast<uint16_t>(value);
  return true;
}

bool has_letter(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); });
}

}  // namespace

bool parse_socket_address(std::string_view text, SocketAddress& out, std::string& error) {
  std::string_view host;
  std::string_view port_text;
  bool is_v6 = false;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      error = "missing \"]\": " + std::string(kAddressShape);
      return false;
    }
    if (close + 1 < text.size() && text[close + 1] != ':') {
      error = std::string(kAddressShape);
      return false;
    }
    host = text.substr(1, close - 1);
    port_text = close + 2 <= text.size() ? text.substr(close + 2) : std::string_view{};
    is_v6 = true;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      error = "missing port: " + std::string(kAddressShape);
      return false;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      error = "IPv6 addresses must be in brackets, e.g. \"[::1]:8080\"";
      return false;
    }
  }
  if (host.empty()) {
    error = "missing IP: " + std::string(kAddressShape);
    return false;
  }
  uint16_t port = 0;
  if (!parse_port(port_text, port, error)) return false;

  std::string host_text(host);  // inet_pton wants a terminated string
  SocketAddress parsed;
  char buffer[INET6_ADDRSTRLEN] = {};
  if (is_v6) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    if (inet_pton(AF_INET6, host_text.c_str(), &sin6.sin6_addr) != 1) {
      error = in_quotes(host) + " is not a valid IPv6 address";
      return false;
    }
    std::memcpy(&parsed.storage, &sin6, sizeof(sin6));
    parsed.length = sizeof(sin6);
    inet_ntop(AF_INET6, &sin6.sin6_addr, buffer, sizeof(buffer));
    parsed.text = "[" + std::string(buffer) + "]:" + std::to_string(port);
  } else {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    if (inet_pton(AF_INET, host_text.c_str(), &sin.sin_addr) != 1) {
      error = has_letter(host)
                  ? in_quotes(host) + " is not a numeric IP address (host names are not resolved)"
                  : in_quotes(host) + " is not a valid IPv4 address";
      return false;
    }
    std::memcpy(&parsed.storage, &sin, sizeof(sin));
    parsed.length = sizeof(sin);
    inet_ntop(AF_INET, &sin.sin_addr, buffer, sizeof(buffer));
    parsed.text = std::string(buffer) + ":" + std::to_string(port);
  }
  out = std::move(parsed);
  return true;
}

int open_listen_socket(const SocketAddress& address, bool reuse_port, std::string& error) {
  int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (address.family() == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (::bind(fd, address.sa(), address.length) != 0 || ::listen(fd, 4096) != 0) {
    error = "cannot listen on ";
    error += address.text;
    error += ": ";
    error += std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

int start_connect(const SocketAddress& address, int& error) {
  int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errno;
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, address.sa(), address.length) != 0 && errno != EINPROGRESS) {
    error = errno;
    ::close(fd);
    return -1;
  }
  return fd;
}

int accept_connection(int listen_fd, sockaddr_storage& peer, int& error) {
  socklen_t len = sizeof(peer);
  int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    error = errno;
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

std::string format_address(const sockaddr_storage& address, bool ip_only) {
  char ip[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (address.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    port = ntohs(a->sin_port);
    if (ip_only) return ip;
    std::string out(ip);
    out += ':';
    out += std::to_string(port);
    return out;
  }
  if (address.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
    if (ip_only) return ip;
    std::string out = "[";
    out += ip;
    out += "]:";
    out += std::to_string(port);
    return out;
  }
  return "unknown";
}

}  // namespace trellis::net
