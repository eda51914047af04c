#include "proxy/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace trellis::proxy {

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
  int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
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

}  // namespace trellis::proxy
