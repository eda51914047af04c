// Socket set-up helpers: listening sockets (one per worker with SO_REUSEPORT),
// non-blocking connects, and address text.
#pragma once

#include <sys/socket.h>

#include <string>

#include "proxy/config.h"

namespace trellis::proxy {

// Binds and listens; returns the descriptor or -1 with `error` set.
int open_listen_socket(const SocketAddress& address, bool reuse_port, std::string& error);

// Starts a non-blocking connect. Returns the descriptor (the connect may still
// be in progress) or -1 with `error` set to an errno value.
int start_connect(const SocketAddress& address, int& error);

// Accepts one connection, non-blocking, with TCP_NODELAY; -1 when none is left.
int accept_connection(int listen_fd, sockaddr_storage& peer, int& error);

// "1.2.3.4:80" / "[::1]:80"; `ip_only` drops the port.
std::string format_address(const sockaddr_storage& address, bool ip_only = false);

}  // namespace trellis::proxy
