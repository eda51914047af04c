// A connection to a `protocol: auto` listener until its first bytes say what
// it speaks: the HTTP/2 preface or an HTTP/1.x request line go to the HTTP
// codecs, anything else (a TLS ClientHello the listener does not terminate,
// a binary protocol) to the TCP proxy and the listener's cluster. A client
// that sends nothing within the listener's detect_timeout is taken for the
// client of a protocol whose server speaks first (SMTP, MySQL), and proxied
// as TCP. Each outcome is counted per listener.
#pragma once

#include <netinet/in.h>

#include <memory>
#include <string_view>

#include "net/buffer.h"
#include "net/event_loop.h"
#include "net/transport.h"
#include "proxy/runtime/worker.h"

namespace trellis::proxy {

enum class Sniffed : uint8_t {
  kMore,   // too soon to tell
  kHttp1,  // an HTTP/1.x request line
  kHttp2,  // the HTTP/2 connection preface
  kTls,    // a TLS record header: TLS the listener does not terminate
  kOther,  // anything else
};

// What `input`, a connection's first bytes, is.
Sniffed sniff_protocol(std::string_view input);

class ProtocolDetector final : public WorkerConnection, public net::TransportCallbacks {
 public:
  ProtocolDetector(Worker& worker, int fd, const sockaddr_storage& peer, size_t listener_index);
  ~ProtocolDetector() override;

  void start_drain() override;
  void abort() override { close(); }

  void on_readable() override;
  void on_writable() override {}
  void on_transport_error(int error) override;

 private:
  void read();
  // Hands the connection over: to HTTP, or else to TCP.
  void decide(Sniffed sniffed, DetectionOutcome outcome);
  void close();

  std::shared_ptr<const Snapshot> snapshot_;
  size_t listener_index_;
  ListenerStats& stats_;
  std::unique_ptr<net::Transport> client_;
  sockaddr_storage peer_;
  net::Buffer input_;
  bool done_ = false;
  net::Timer timer_;
};

}  // namespace trellis::proxy
