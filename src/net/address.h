// Socket addresses and socket set-up: numeric "ip:port" addresses, listening
// sockets (one per worker with SO_REUSEPORT), non-blocking connects, accepts.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <string_view>

namespace trellis::net {

// A resolved numeric socket address ("127.0.0.1:8080", "[::1]:80"). Names are not
// resolved: a sidecar config names addresses, DNS belongs to discovery.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // canonical "ip:port" / "[ip6]:port"

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  bool operator==(const SocketAddress& o) const { return text == o.text; }
};

// Parses "ip:port" or "[ipv6]:port"; false with `error` set when malformed.
bool parse_socket_address(std::string_view text, SocketAddress& out, std::string& error);

// Binds and listens; returns the descriptor or -1 with `error` set.
int open_listen_socket(const SocketAddress& address, bool reuse_port, std::string& error);

// Starts a non-blocking connect. Returns the descriptor (the connect may still
// be in progress) or -1 with `error` set to an errno value.
int start_connect(const SocketAddress& address, int& error);

// Accepts one connection, non-blocking, with TCP_NODELAY; -1 when none is left.
int accept_connection(int listen_fd, sockaddr_storage& peer, int& error);

// "1.2.3.4:80" / "[::1]:80"; `ip_only` drops the port.
std::string format_address(const sockaddr_storage& address, bool ip_only = false);

}  // namespace trellis::net
