// A listener on 127.0.0.1 and a port the kernel picks, for transport tests on
// real sockets: each accepted connection becomes a `Peer` (the test's
// TransportCallbacks, with a `transport` member, and an `fd` member if it
// wants the descriptor) over the listener's transport factory.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "net/address.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::testing {

template <class Peer>
class LoopbackListener final : public net::IoHandler {
 public:
  LoopbackListener(net::EventLoop& loop, std::shared_ptr<net::TransportFactory> factory)
      : loop_(loop), factory_(std::move(factory)) {
    // Port 0, which parse_socket_address() rightly refuses in configs.
    net::SocketAddress any;
    sockaddr_in loopback{};
    loopback.sin_family = AF_INET;
    loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::memcpy(&any.storage, &loopback, sizeof(loopback));
    any.length = sizeof(loopback);
    std::string error;
    fd_ = net::open_listen_socket(any, false, error);
    EXPECT_GE(fd_, 0) << error;
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &length);
    net::parse_socket_address(net::format_address(bound), address_, error);
    loop_.add_level_read(fd_, this);
  }
  ~LoopbackListener() {
    peers.clear();
    loop_.remove(fd_);
    ::close(fd_);
  }

  void on_io(uint32_t) override {
    for (;;) {
      sockaddr_storage from{};
      int error = 0;
      int fd = net::accept_connection(fd_, from, error);
      if (fd < 0) return;
      auto peer = std::make_unique<Peer>();
      if constexpr (requires { peer->fd; }) peer->fd = fd;
      peer->transport = factory_->accepted(loop_, fd, peer.get());
      peers.push_back(std::move(peer));
    }
  }

  const net::SocketAddress& address() const { return address_; }
  std::vector<std::unique_ptr<Peer>> peers;

 private:
  net::EventLoop& loop_;
  std::shared_ptr<net::TransportFactory> factory_;
  int fd_ = -1;
  net::SocketAddress address_;
};

}  // namespace trellis::testing
