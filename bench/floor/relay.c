// The least a sidecar can do: a TCP relay that pairs each accepted
// connection with one to the upstream and, for every readable event, makes
// one read() and one write(). No HTTP, no TLS, no error handling beyond
// closing both ends; messages are assumed to fit one write (the benchmark's
// are a few hundred bytes). bench/floor.py runs two of them in a row to
// measure what the kernel and the machine cost a two-hop mesh path.
//
// usage: relay LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kMaxFd = 65536 };
static int peer[kMaxFd];

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: relay LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  struct sockaddr_in listen_at = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  listen_at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct sockaddr_in upstream = listen_at;
  upstream.sin_port = htons(atoi(argv[2]));
  int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listener, (struct sockaddr*)&listen_at, sizeof listen_at) != 0 || listen(listener, 128) != 0) {
    perror("relay: listen");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  struct epoll_event ready[64];
  static char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, ready, 64, -1);
    for (int i = 0; i < n; i++) {
      int fd = ready[i].data.fd;
      if (fd == listener) {
        int client = accept(listener, NULL, NULL);
        int server = socket(AF_INET, SOCK_STREAM, 0);
        if (client < 0 || server < 0 || client >= kMaxFd || server >= kMaxFd ||
            connect(server, (struct sockaddr*)&upstream, sizeof upstream) != 0) {
          close(client);
          close(server);
          continue;
        }
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        peer[client] = server;
        peer[server] = client;
        ev.data.fd = client;
        epoll_ctl(ep, EPOLL_CTL_ADD, client, &ev);
        ev.data.fd = server;
        epoll_ctl(ep, EPOLL_CTL_ADD, server, &ev);
        continue;
      }
      ssize_t got = read(fd, buf, sizeof buf);
      if (got <= 0 || write(peer[fd], buf, (size_t)got) != got) {
        close(peer[fd]);
        close(fd);
      }
    }
  }
}
