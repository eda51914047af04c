#include "proxy/runtime/protocol_detector.h"

#include <array>

#include "http/http1/parser.h"
#include "proxy/http1/server_connection.h"
#include "proxy/http2/server_connection.h"
#include "proxy/tcp/tcp_session.h"

namespace trellis::proxy {
namespace {

// Methods whose request line marks HTTP/1.x (RFC 9110 §9, and PATCH): a
// protocol that happens to start with a word and a space (Redis's inline
// "GET key") is told apart by the line's end, which must name HTTP/1.x.
constexpr std::array<std::string_view, 9> kMethods = {"GET",     "HEAD",  "POST",  "PUT",    "DELETE",
                                                      "OPTIONS", "TRACE", "PATCH", "CONNECT"};

Sniffed sniff_http1(std::string_view input) {
  size_t space = input.find(' ');
  if (space == std::string_view::npos) {
    // A proper beginning of a method may still become one.
    for (std::string_view m : kMethods)
      if (input.size() <= m.size() && m.substr(0, input.size()) == input) return Sniffed::kMore;
    return Sniffed::kOther;
  }
  std::string_view method = input.substr(0, space);
  bool known = false;
  for (std::string_view m : kMethods) known = known || m == method;
  if (!known) return Sniffed::kOther;
  size_t end = input.find('\n', space);
  if (end == std::string_view::npos) {
    // The request line is still coming; one longer than a head may be is
    // HTTP's to refuse (431), not a reason to take it for TCP.
    return input.size() > http::http1::kMaxHeadBytes ? Sniffed::kHttp1 : Sniffed::kMore;
  }
  std::string_view line = input.substr(0, end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() >= 9 && line.substr(line.size() - 9, 8) == " HTTP/1." &&
      (line.back() == '0' || line.back() == '1'))
    return Sniffed::kHttp1;
  return Sniffed::kOther;
}

}  // namespace

Sniffed sniff_protocol(std::string_view input) {
  if (input.empty()) return Sniffed::kMore;
  switch (http2_preface(input)) {
    case Http2Preface::kYes:
      return Sniffed::kHttp2;
    case Http2Preface::kMaybe:
      return Sniffed::kMore;
    case Http2Preface::kNo:
      break;
  }
  // A TLS record header: handshake (22), major version 3.
  if (static_cast<uint8_t>(input[0]) == 0x16) {
    if (input.size() < 2) return Sniffed::kMore;
    if (input[1] == 0x03) return Sniffed::kTls;
  }
  return sniff_http1(input);
}

ProtocolDetector::ProtocolDetector(Worker& worker, int fd, const sockaddr_storage& peer,
                                   size_t listener_index)
    : WorkerConnection(worker),
      snapshot_(worker.snapshot()),
      listener_index_(listener_index),
      stats_(*snapshot_->listeners[listener_index].stats[worker.index()]),
      client_(snapshot_->listeners[listener_index].transport->accepted(worker.loop(), fd, this)),
      peer_(peer),
      timer_(worker.loop(), [this] { decide(Sniffed::kOther, DetectionOutcome::kTimeout); }) {
  timer_.arm(snapshot_->listeners[listener_index].config->detect_timeout);
  // The first bytes may have come with the handshake.
  read();
}

ProtocolDetector::~ProtocolDetector() { close(); }

void ProtocolDetector::start_drain() { close(); }

void ProtocolDetector::on_readable() { read(); }

void ProtocolDetector::on_transport_error(int) {
  if (done_) return;
  stats_.detected[static_cast<size_t>(DetectionOutcome::kClosed)].inc();
  close();
}

void ProtocolDetector::read() {
  while (!done_) {
    size_t n = 0;
    net::ReadResult r = client_->read(input_, net::Buffer::kBlockSize, &n);
    if (r == net::ReadResult::kAgain) return;
    if (r != net::ReadResult::kData) {
      // The client ended its side: what it sent, if anything, goes on as TCP.
      if (input_.empty()) {
        stats_.detected[static_cast<size_t>(DetectionOutcome::kClosed)].inc();
        close();
      } else {
        decide(Sniffed::kOther, DetectionOutcome::kTcp);
      }
      return;
    }
    stats_.bytes_received.inc(n);
    Sniffed sniffed = sniff_protocol(input_.view());
    switch (sniffed) {
      case Sniffed::kMore:
        continue;
      case Sniffed::kHttp1:
        decide(sniffed, DetectionOutcome::kHttp1);
        return;
      case Sniffed::kHttp2:
        decide(sniffed, DetectionOutcome::kHttp2);
        return;
      case Sniffed::kTls:
        decide(sniffed, DetectionOutcome::kTls);
        return;
      case Sniffed::kOther:
        decide(sniffed, DetectionOutcome::kTcp);
        return;
    }
  }
}

void ProtocolDetector::decide(Sniffed sniffed, DetectionOutcome outcome) {
  if (done_) return;
  stats_.detected[static_cast<size_t>(outcome)].inc();
  // A reload while the first bytes were awaited: the listener's place in
  // the config in force now (cluster indexes are the worker's current ones).
  if (worker_.snapshot() != snapshot_) {
    const std::string& name = snapshot_->listeners[listener_index_].config->name;
    const auto& current = worker_.snapshot();
    size_t index = 0;
    while (index < current->listeners.size() && current->listeners[index].config->name != name) ++index;
    if (index == current->listeners.size() ||
        current->listeners[index].config->protocol != ListenerProtocol::kAuto) {
      close();  // the listener is gone, or detects no more
      return;
    }
    snapshot_ = current;
    listener_index_ = index;
  }
  done_ = true;
  timer_.cancel();
  AdoptedConnection adopted{snapshot_, std::move(client_), std::move(input_), peer_, listener_index_};
  // Each owns itself from here and frees itself through the loop.
  if (sniffed == Sniffed::kHttp1 || sniffed == Sniffed::kHttp2) {
    new Http1ServerConnection(worker_, std::move(adopted));
  } else {
    new TcpSession(worker_, std::move(adopted));
  }
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

void ProtocolDetector::close() {
  if (done_) return;
  done_ = true;
  timer_.cancel();
  if (client_) client_->close();
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

}  // namespace trellis::proxy
