// In-memory connections for tests on simulated time. A FakeNetwork is a
// net::TransportFactory: what the proxy connects to or accepts is a
// FakeTransport on its side and a FakePeer in the test's hands. Bytes written
// on one side become readable on the other at the loop's next pass, as a
// socket's would; nothing touches the kernel, so a test of the request path
// runs in microseconds and decides every byte, delay and failure.
#pragma once

#include <cerrno>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "net/address.h"
#include "net/event_loop.h"
#include "net/transport.h"

namespace trellis::testing {

class FakeTransport;

// The state of one connection, shared by its two sides.
struct FakeLink {
  explicit FakeLink(net::EventLoop& l) : loop(l) {}
  net::EventLoop& loop;
  FakeTransport* transport = nullptr;  // null once the proxy closed its side
  std::string to_peer;                 // written by the proxy, not yet taken by the test
  std::string to_transport;            // sent by the test, not yet read by the proxy
  bool connected = true;               // false until the test accepts a connect
  bool transport_shut_write = false;   // the proxy sent FIN
  bool peer_shut_write = false;        // the test sent FIN
  bool transport_closed = false;
  size_t peer_window = SIZE_MAX;  // bytes the test's side buffers before writes block
};

class FakeTransport final : public net::Transport {
 public:
  FakeTransport(std::shared_ptr<FakeLink> link, net::TransportCallbacks* callbacks)
      : link_(std::move(link)), callbacks_(callbacks), notify_(link_->loop, [this] { notify(); }) {
    link_->transport = this;
  }
  ~FakeTransport() override { close(); }

  net::ReadResult read(net::Buffer& into, size_t max, size_t* n_read) override {
    if (n_read) *n_read = 0;
    if (closed_ || failed_) return net::ReadResult::kError;
    if (!link_->connected) return net::ReadResult::kAgain;
    std::string& in = link_->to_transport;
    if (!in.empty()) {
      size_t n = std::min(in.size(), max);
      into.append(std::string_view(in).substr(0, n));
      in.erase(0, n);
      bytes_read_ += n;
      if (n_read) *n_read = n;
      return net::ReadResult::kData;
    }
    if (link_->peer_shut_write) return net::ReadResult::kEof;
    return net::ReadResult::kAgain;
  }
  bool read_ready() const override { return !link_->to_transport.empty() || link_->peer_shut_write; }

  bool write(std::string_view data) override {
    if (closed_ || failed_) return false;
    out_.append(data);
    flush();
    return true;
  }
  bool write(net::Buffer& data) override {
    bool ok = write(data.view());
    data.clear();
    return ok;
  }
  size_t pending_output() const override { return out_.size(); }
  void shutdown_write() override {
    shut_pending_ = true;
    flush();
  }
  void close() override {
    if (closed_) return;
    closed_ = true;
    notify_.cancel();
    link_->transport_closed = true;
    link_->transport = nullptr;
  }
  bool open() const override { return !closed_; }
  void set_callbacks(net::TransportCallbacks* callbacks) override { callbacks_ = callbacks; }
  bool failed() const override { return failed_; }
  int error() const override { return error_; }
  uint64_t bytes_read() const override { return bytes_read_; }
  uint64_t bytes_written() const override { return bytes_written_; }

  // From the test's side.
  void flush() {
    if (!link_->connected || closed_) return;
    size_t room = link_->peer_window - std::min(link_->peer_window, link_->to_peer.size());
    size_t n = std::min(room, out_.size());
    if (n > 0) {
      link_->to_peer.append(out_, 0, n);
      out_.erase(0, n);
      bytes_written_ += n;
      if (out_.empty() && wrote_blocked_) {
        wrote_blocked_ = false;
        schedule(kWritable);
      }
    }
    if (!out_.empty()) wrote_blocked_ = true;
    if (out_.empty() && shut_pending_) link_->transport_shut_write = true;
  }
  void connected() {
    link_->connected = true;
    flush();
    schedule(kWritable);
  }
  void fail(int error) {
    failed_ = true;
    error_ = error;
    schedule(kError);
  }
  void readable() { schedule(kReadable); }

 private:
  enum : unsigned { kReadable = 1, kWritable = 2, kError = 4 };
  void schedule(unsigned what) {
    pending_ |= what;
    if (!notify_.armed()) notify_.arm(Duration::zero());
  }
  // Like epoll: events arrive at the loop's next pass, never inside a call.
  void notify() {
    unsigned what = pending_;
    pending_ = 0;
    if (closed_) return;
    if (what & kError) {
      callbacks_->on_transport_error(error_);
      return;
    }
    if (what & kWritable) {
      callbacks_->on_writable();
      if (closed_) return;
    }
    if (what & kReadable) callbacks_->on_readable();
  }

  std::shared_ptr<FakeLink> link_;
  net::TransportCallbacks* callbacks_;
  std::string out_;  // what the test's side did not take yet
  bool closed_ = false;
  bool failed_ = false;
  bool shut_pending_ = false;
  bool wrote_blocked_ = false;
  int error_ = 0;
  unsigned pending_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  net::Timer notify_;
};

// The test's side of one connection.
class FakePeer {
 public:
  explicit FakePeer(std::shared_ptr<FakeLink> link) : link_(std::move(link)) {}

  // Completes a pending connect (the proxy's side hears on_writable).
  void accept() {
    if (link_->transport) link_->transport->connected();
    link_->connected = true;
  }
  // Refuses or breaks the connection: the proxy's side hears the error.
  void reset(int error = ECONNRESET) {
    if (link_->transport) link_->transport->fail(error);
  }
  void send(std::string_view data) {
    link_->to_transport.append(data);
    if (link_->transport) link_->transport->readable();
  }
  // FIN: the proxy's side reads EOF after what was sent.
  void shutdown() {
    link_->peer_shut_write = true;
    if (link_->transport) link_->transport->readable();
  }
  // Everything the proxy wrote since the last take().
  std::string take() {
    std::string out = std::move(link_->to_peer);
    link_->to_peer.clear();
    if (link_->transport) link_->transport->flush();
    return out;
  }
  // Bytes the test's side buffers before the proxy's writes block.
  void set_window(size_t bytes) {
    link_->peer_window = bytes;
    if (link_->transport) link_->transport->flush();
  }
  std::string_view pending() const { return link_->to_peer; }
  // Sent by the test and not read by the proxy yet.
  size_t unread() const { return link_->to_transport.size(); }
  bool connected() const { return link_->connected; }
  bool closed_by_proxy() const { return link_->transport_closed; }
  bool fin_from_proxy() const { return link_->transport_shut_write; }

 private:
  std::shared_ptr<FakeLink> link_;
};

// The connections a proxy makes (connect) and receives (accepted), by address.
class FakeNetwork final : public net::TransportFactory {
 public:
  std::unique_ptr<net::Transport> accepted(net::EventLoop& loop, int,
                                           net::TransportCallbacks* callbacks) override {
    auto link = std::make_shared<FakeLink>(loop);
    auto t = std::make_unique<FakeTransport>(link, callbacks);
    accepted_.emplace_back(link);
    return t;
  }
  std::unique_ptr<net::Transport> connect(net::EventLoop& loop, const net::SocketAddress& address,
                                          net::TransportCallbacks* callbacks, int& error) override {
    ++connects_[address.text];
    auto link = std::make_shared<FakeLink>(loop);
    link->connected = false;
    auto t = std::make_unique<FakeTransport>(link, callbacks);
    FakePeer peer(link);
    if (auto it = refuse_.find(address.text); it != refuse_.end()) {
      peer.reset(it->second);
    } else if (auto_accept_.count(address.text)) {
      peer.accept();
    }
    pending_[address.text].push_back(peer);
    return t;
  }

  // The next connection the proxy opened to `address` (in order).
  FakePeer next(const std::string& address) {
    auto& q = pending_[address];
    if (q.empty()) return FakePeer(nullptr);
    FakePeer p = q.front();
    q.pop_front();
    return p;
  }
  bool has_pending(const std::string& address) const {
    auto it = pending_.find(address);
    return it != pending_.end() && !it->second.empty();
  }
  // The most recent connection a listener accepted.
  FakePeer last_accepted() { return accepted_.back(); }
  // Drops every accepted connection and every connect not taken yet (a
  // network that outlives the worker that used it, as a fuzz target's).
  void forget() {
    accepted_.clear();
    pending_.clear();
  }
  int connects(const std::string& address) const {
    auto it = connects_.find(address);
    return it == connects_.end() ? 0 : it->second;
  }
  // Connects to `address` complete at the next pass.
  void auto_accept(const std::string& address) { auto_accept_[address] = true; }
  // Connects to `address` fail at the next pass (ECONNREFUSED).
  void refuse(const std::string& address, int error = ECONNREFUSED) { refuse_[address] = error; }
  void allow(const std::string& address) { refuse_.erase(address); }

 private:
  std::map<std::string, std::deque<FakePeer>> pending_;
  std::deque<FakePeer> accepted_;
  std::map<std::string, int> connects_;
  std::map<std::string, bool> auto_accept_;
  std::map<std::string, int> refuse_;
};

}  // namespace trellis::testing
