#include "cli/load_generator.h"

#include <pthread.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <thread>

#include "http/header.h"
#include "http/http1/response_reader.h"
#include "net/address.h"
#include "net/event_loop.h"
#include "net/signals.h"
#include "net/socket.h"
#include "net/tls_context.h"
#include "net/tls_transport.h"

namespace trellis::cli {

using SteadyClock = std::chrono::steady_clock;

// ------------------------------------------------------------------- engine

namespace {

// Reconnecting after a failure: at once the first time after a success (a
// server closing an idle keep-alive connection is normal), then backing off
// so that a dead target costs little. Connect failures always wait.
constexpr Duration kBackoffBase = std::chrono::milliseconds(10);
constexpr Duration kBackoffMax = std::chrono::milliseconds(500);
// How long the run waits for the connections to come up before starting the
// schedule anyway (those still connecting catch up, charged from t0).
constexpr Duration kConnectGrace = std::chrono::seconds(2);
// Past the end and the timeout, whatever is still in flight is given up.
constexpr Duration kHardStopMargin = std::chrono::milliseconds(100);
// How often the main thread looks for finished workers between signals.
constexpr auto kPollInterval = std::chrono::milliseconds(10);

// What every worker reads and nobody changes during the run.
struct Plan {
  const LoadOptions& options;
  std::string request;  // HTTP/1.1: the bytes every request is
  bool head_request;
  // HTTP/2: the extra fields (lower-case names, user-agent and content-length
  // added as for HTTP/1.1).
  std::vector<std::pair<std::string, std::string>> h2_headers;
  std::string authority;  // HTTP/2: a given Host, else the URL's
  // HTTP/2: the request's fields as nghttp2 takes them, built once (views
  // into the strings above and the options).
  std::vector<nghttp2_nv> h2_request;
  std::string body;                                  // HTTP/2: every request's body
  std::shared_ptr<net::TransportFactory> transport;  // plain, or TLS for https://
};

nghttp2_nv nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// Cross-thread progress, for the main thread.
struct Progress {
  std::atomic<uint32_t> settled{0};   // connections whose first connect attempt ended
  std::atomic<uint32_t> finished{0};  // workers done
};

class Worker;

// What a worker asks of each of its connections, whatever their protocol,
// and what every kind shares: the pacer, the timer, the first-connect report
// and the backoff after failures.
class Connection : public net::TransportCallbacks {
 public:
  Connection(Worker& worker, uint32_t index);
  virtual ~Connection() = default;
  virtual void connect() = 0;
  // The schedule starts at t0.
  virtual void on_start(MonoTime t0) = 0;
  // A send the connection queued (with this generation) is due.
  virtual void on_due(uint64_t generation) = 0;
  // Sending ends: count what was meant for [window_start, end) and not sent.
  virtual void on_end(MonoTime window_start, MonoTime end) = 0;
  // Stop at once, counting nothing more.
  virtual void abandon() = 0;

 protected:
  // The timer fired: a connect or request timed out, or a backoff ended.
  virtual void on_timer() = 0;
  // Reports the end of the first connect attempt, once.
  void settle();
  // Open loop: counts the requests meant for [window_start, end) that never
  // went out (the target or the connection could not keep up).
  void count_missed(MonoTime window_start, MonoTime end);
  // After a failure: reconnect at once the first time after a success (a
  // server closing an idle keep-alive connection is normal), else wait out
  // the backoff. A failed connect always waits.
  void reconnect_after_failure(bool connect_failed);

  Worker& worker_;
  LoadStats& stats_;
  const Plan& plan_;
  net::EventLoop& loop_;
  Pacer pacer_;
  net::Timer timer_;
  bool queued_ = false;     // waiting in the worker's send queue
  bool settled_ = false;    // first connect attempt reported
  bool connected_ = false;  // connected at least once
  uint64_t generation_ = 0;
  uint32_t failures_ = 0;  // since the last complete response
};

// One HTTP/1.1 keep-alive connection: at most one request in flight, sent
// when the pacer says (or at once in closed loop), reconnected on failure.
class Http1Connection final : public Connection {
 public:
  Http1Connection(Worker& worker, uint32_t index);
  ~Http1Connection() override = default;

  void connect() override;
  void on_start(MonoTime t0) override;
  void on_due(uint64_t generation) override;
  void on_end(MonoTime window_start, MonoTime end) override;
  void abandon() override;

  void on_readable() override;
  void on_writable() override;
  void on_transport_error(int error) override;

 private:
  enum class State : uint8_t {
    kWaiting,     // no socket: backing off, or done
    kConnecting,  // connect in progress (timer: connect timeout)
    kReady,       // connected, nothing in flight
    kInFlight,    // a request sent, its response not complete (timer: request timeout)
  };

  void maybe_send();
  void send(MonoTime intended, MonoTime now);
  void complete();
  // Drops the connection; counts `kind` when there is something to charge it to.
  void drop(ErrorKind kind);
  void close_socket();
  void on_timer() override;

  std::unique_ptr<net::Transport> socket_;
  net::Buffer in_;
  http::http1::ResponseReader reader_;
  State state_ = State::kWaiting;
  MonoTime intended_{};
  bool measured_ = false;  // the request in flight counts
};

// One HTTP/2 connection (prior knowledge): up to `streams` requests in
// flight at once, each sent when the pacer says (closed loop: as soon as a
// stream is free), each with its own timeout; reconnected on failure.
class Http2Connection final : public Connection {
 public:
  Http2Connection(Worker& worker, uint32_t index);
  ~Http2Connection() override;

  void connect() override;
  void on_start(MonoTime t0) override;
  void on_due(uint64_t generation) override;
  void on_end(MonoTime window_start, MonoTime end) override;
  void abandon() override;

  void on_readable() override;
  void on_writable() override;
  void on_transport_error(int error) override;

 private:
  enum class State : uint8_t { kWaiting, kConnecting, kReady };
  struct Exchange {
    MonoTime intended;
    MonoTime deadline;
    bool measured = false;
    int status = 0;
    int grpc_status = -1;  // -1: none seen
    size_t body_left = 0;  // request body bytes not yet sent
  };

  bool start_session();
  void maybe_send();
  void send(MonoTime intended, MonoTime now);
  void flush();
  void complete(int32_t id);
  // One exchange failed: counted when it is measured.
  void fail(int32_t id, ErrorKind kind);
  // Drops the connection and every exchange on it.
  void drop(ErrorKind kind);
  void close_socket();
  void arm_timer();
  void on_timer() override;

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user);
  static ssize_t read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source*, void* user);

  std::unique_ptr<net::Transport> socket_;
  nghttp2_session* session_ = nullptr;
  net::Buffer in_;
  net::Buffer out_;
  std::map<int32_t, Exchange>
      exchanges_;  // in flight, oldest (lowest id) first; the timer: the first's deadline
  State state_ = State::kWaiting;
};

// One thread: an event loop, its share of the connections, and a precise
// send timer shared by them.
class Worker final : public net::IoHandler {
 public:
  Worker(const Plan& plan, uint32_t id, Progress& progress);
  ~Worker();

  void launch() {
    thread_ = std::thread([this] { thread_main(); });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // Thread-safe: run from the main thread.
  void post_start(MonoTime t0) {
    loop_.post([this, t0] { start(t0); });
  }
  void post_stop(MonoTime at, bool hard) {
    loop_.post([this, at, hard] { stop(at, hard); });
  }
  LoadStats& stats() { return stats_; }

  // For the connections.
  const Plan& plan() const { return plan_; }
  net::EventLoop& loop() { return loop_; }
  bool started() const { return started_; }
  bool ending() const { return ending_; }
  MonoTime window_start() const { return window_start_; }
  MonoTime end() const { return end_; }
  // Whether a failure not tied to a request (a connect) happening now counts.
  bool measuring(MonoTime now) const {
    if (ending_) return false;
    return started_ ? now >= window_start_ : plan_.options.warmup == Duration::zero();
  }
  void queue(Connection* connection, MonoTime at, uint64_t generation);
  void request_started() { ++in_flight_; }
  void request_ended() {
    --in_flight_;
    maybe_finish();
  }
  void settled() { progress_.settled.fetch_add(1, std::memory_order_release); }

  void on_io(uint32_t events) override;  // the send timer fired

 private:
  struct Due {
    MonoTime at;
    Connection* connection;
    uint64_t generation;
    bool operator>(const Due& o) const { return at > o.at; }
  };

  void thread_main();
  void start(MonoTime t0);
  void stop(MonoTime at, bool hard);
  void end_sending();
  void hard_stop();
  void maybe_finish() {
    if (ending_ && in_flight_ == 0) finish();
  }
  void finish() {
    finished_ = true;
    loop_.stop();
  }
  void arm_send_timer();
  void send_due();

  const Plan& plan_;
  uint32_t id_;
  Progress& progress_;
  net::EventLoop loop_;
  LoadStats stats_;
  std::vector<std::unique_ptr<Connection>> connections_;
  // Precise send timer. The loop's timers have millisecond resolution, which
  // would add up to a millisecond to every open-loop request (latency counts
  // from the intended time); a timerfd wakes within microseconds.
  int timer_fd_ = -1;
  std::vector<Due> due_;  // min-heap on `at`; entries of re-queued connections go stale
  MonoTime timer_at_{};
  bool timer_armed_ = false;
  bool dispatching_ = false;
  net::Timer coarse_send_timer_;  // only if no timerfd could be had
  net::Timer end_timer_;
  net::Timer hard_timer_;
  std::thread thread_;
  MonoTime window_start_{};
  MonoTime end_ = MonoTime::max();
  uint64_t in_flight_ = 0;
  bool started_ = false;
  bool ending_ = false;
  bool finished_ = false;
};

// --- Http1Connection

// --- Connection

Connection::Connection(Worker& worker, uint32_t index)
    : worker_(worker),
      stats_(worker.stats()),
      plan_(worker.plan()),
      loop_(worker.loop()),
      pacer_(plan_.options.rate > 0 ? Pacer(plan_.options.rate, plan_.options.connections, index) : Pacer()),
      timer_(worker.loop(), [this] { on_timer(); }) {}

void Connection::settle() {
  if (settled_) return;
  settled_ = true;
  worker_.settled();
}

void Connection::count_missed(MonoTime window_start, MonoTime end) {
  if (!pacer_.open_loop() || !worker_.started()) return;
  uint64_t due = pacer_.due_before(end);
  uint64_t first = std::max(pacer_.next_index(), pacer_.due_before(window_start));
  if (due > first) stats_.missed += due - first;
}

void Connection::reconnect_after_failure(bool connect_failed) {
  if (worker_.ending()) return;
  if (!connect_failed && failures_ <= 1) {
    connect();
    return;
  }
  uint32_t doublings = std::min<uint32_t>(failures_ - 1, 16);
  timer_.arm(std::min<Duration>(kBackoffBase * (int64_t{1} << doublings), kBackoffMax));
}

// --- Http1Connection

Http1Connection::Http1Connection(Worker& worker, uint32_t index) : Connection(worker, index) {}

void Http1Connection::connect() {
  int error = 0;
  in_.clear();
  socket_ = plan_.transport->connect(loop_, plan_.options.target.address, this, error);
  if (!socket_) {
    drop(ErrorKind::kConnect);
    return;
  }
  state_ = State::kConnecting;
  timer_.arm(plan_.options.timeout);
}

void Http1Connection::on_start(MonoTime t0) {
  pacer_.start(t0);
  maybe_send();
}

void Http1Connection::maybe_send() {
  if (state_ != State::kReady || !worker_.started() || worker_.ending() || queued_) return;
  MonoTime now = SteadyClock::now();
  if (!pacer_.open_loop()) {
    if (now < worker_.end()) send(pacer_.take(now), now);
    return;
  }
  MonoTime at = pacer_.next_intended();
  if (at >= worker_.end()) return;  // this connection's share is sent
  if (at > now) {
    queued_ = true;
    worker_.queue(this, at, ++generation_);
    return;
  }
  // Due or overdue (the previous response came late, or the connection was
  // down): send now, charged from when it was meant to go.
  send(pacer_.take(now), now);
}

void Http1Connection::on_due(uint64_t generation) {
  if (!queued_ || generation != generation_) return;
  queued_ = false;
  maybe_send();
}

void Http1Connection::send(MonoTime intended, MonoTime now) {
  intended_ = intended;
  measured_ = intended >= worker_.window_start();
  if (measured_) {
    ++stats_.sent;
    if (pacer_.open_loop()) stats_.send_delay_us.record(to_micros(now - intended));
  }
  reader_.start(plan_.head_request);
  state_ = State::kInFlight;
  worker_.request_started();
  timer_.arm_at(now + plan_.options.timeout);
  if (!socket_->write(plan_.request)) drop(ErrorKind::kReset);
}

void Http1Connection::complete() {
  MonoTime now = SteadyClock::now();
  if (measured_) {
    ++stats_.completed;
    ++stats_.status[static_cast<size_t>(std::clamp(reader_.status(), 0, 999))];
    stats_.latency_us.record(to_micros(charged_latency(intended_, now)));
  }
  failures_ = 0;
  timer_.cancel();
  state_ = State::kReady;
  bool keep_alive = reader_.keep_alive();
  worker_.request_ended();
  if (!keep_alive) {
    close_socket();
    state_ = State::kWaiting;
    if (!worker_.ending()) connect();
    return;
  }
  maybe_send();
}

void Http1Connection::drop(ErrorKind kind) {
  MonoTime now = SteadyClock::now();
  bool in_flight = state_ == State::kInFlight;
  bool connecting = kind == ErrorKind::kConnect;
  // A server closing an idle keep-alive connection is not an error; a failed
  // request is charged to the request's own window, a failed connect to now.
  bool counted = in_flight ? measured_ : connecting && worker_.measuring(now);
  if (counted) ++stats_.error(kind);
  if (connecting) settle();
  close_socket();
  state_ = State::kWaiting;
  queued_ = false;
  ++failures_;
  timer_.cancel();
  if (in_flight) worker_.request_ended();
  reconnect_after_failure(connecting);
}

void Http1Connection::close_socket() {
  if (socket_) {
    socket_->close();
    loop_.defer_delete(std::move(socket_));
  }
  in_.clear();
}

void Http1Connection::on_timer() {
  switch (state_) {
    case State::kWaiting:
      if (!worker_.ending()) connect();
      break;
    case State::kConnecting:
      drop(ErrorKind::kConnect);
      break;
    case State::kInFlight:
      drop(ErrorKind::kTimeout);
      break;
    case State::kReady:
      break;
  }
}

void Http1Connection::on_end(MonoTime window_start, MonoTime end) {
  count_missed(window_start, end);  // reported, never silently dropped
  queued_ = false;
  // A connection that never came up during the whole run (a target that drops
  // SYNs, with a timeout longer than the run) would otherwise leave no trace.
  if (state_ == State::kConnecting && !connected_ && worker_.started()) ++stats_.error(ErrorKind::kConnect);
  if (state_ == State::kWaiting || state_ == State::kConnecting) {
    timer_.cancel();
    close_socket();
    state_ = State::kWaiting;
  }
}

void Http1Connection::abandon() {
  timer_.cancel();
  close_socket();
  state_ = State::kWaiting;
  queued_ = false;
}

void Http1Connection::on_writable() {
  if (state_ != State::kConnecting) return;  // a large request body finished sending
  timer_.cancel();
  state_ = State::kReady;
  connected_ = true;
  settle();
  maybe_send();
}

void Http1Connection::on_transport_error(int error) {
  drop(state_ == State::kConnecting ? ErrorKind::kConnect : ErrorKind::kReset);
}

void Http1Connection::on_readable() {
  while (socket_ != nullptr && state_ != State::kConnecting) {
    net::ReadResult r = socket_->read(in_);
    if (r == net::ReadResult::kAgain) return;
    if (r == net::ReadResult::kError) {
      drop(ErrorKind::kReset);
      return;
    }
    if (state_ != State::kInFlight) {
      // End of file or stray bytes on an idle connection: nothing to charge,
      // start over on a fresh one.
      drop(ErrorKind::kReset);
      return;
    }
    http::http1::ResponseReader::Status status =
        r == net::ReadResult::kEof ? reader_.on_eof() : reader_.on_data(in_);
    if (status == http::http1::ResponseReader::Status::kError) {
      drop(r == net::ReadResult::kEof ? ErrorKind::kReset : ErrorKind::kProtocol);
      return;
    }
    if (status == http::http1::ResponseReader::Status::kComplete) complete();
    if (r == net::ReadResult::kEof) {
      if (socket_ != nullptr && state_ != State::kConnecting) drop(ErrorKind::kReset);
      return;
    }
  }
}

// --- Http2Connection

Http2Connection::Http2Connection(Worker& worker, uint32_t index) : Connection(worker, index) {}

Http2Connection::~Http2Connection() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void Http2Connection::connect() {
  int error = 0;
  socket_ = plan_.transport->connect(loop_, plan_.options.target.address, this, error);
  if (!socket_) {
    drop(ErrorKind::kConnect);
    return;
  }
  state_ = State::kConnecting;
  timer_.arm(plan_.options.timeout);
}

bool Http2Connection::start_session() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) return false;
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &on_stream_close);
  int rv = nghttp2_session_client_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  // Responses are read as they come: large windows keep the server sending.
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 16 << 20);
  return true;
}

void Http2Connection::on_start(MonoTime t0) {
  pacer_.start(t0);
  maybe_send();
}

void Http2Connection::maybe_send() {
  if (state_ != State::kReady || !worker_.started() || worker_.ending() || queued_) return;
  uint32_t room = std::min(plan_.options.streams, nghttp2_session_get_remote_settings(
                                                      session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  // After the server's GOAWAY no stream may start: the exchanges in flight
  // finish, then the connection is replaced (flush).
  if (nghttp2_session_check_request_allowed(session_) == 0) room = 0;
  while (state_ == State::kReady && exchanges_.size() < room) {
    MonoTime now = SteadyClock::now();
    if (!pacer_.open_loop()) {
      if (now >= worker_.end()) break;
      send(pacer_.take(now), now);
      continue;
    }
    MonoTime at = pacer_.next_intended();
    if (at >= worker_.end()) break;  // this connection's share is sent
    if (at > now) {
      queued_ = true;
      worker_.queue(this, at, ++generation_);
      break;
    }
    send(pacer_.take(now), now);  // due or overdue: charged from when it was meant to go
  }
  flush();
}

void Http2Connection::on_due(uint64_t generation) {
  if (!queued_ || generation != generation_) return;
  queued_ = false;
  maybe_send();
}

void Http2Connection::send(MonoTime intended, MonoTime now) {
  const Plan& p = plan_;
  nghttp2_data_provider body{};
  body.read_callback = &read_body;
  int32_t id = nghttp2_submit_request(session_, nullptr, p.h2_request.data(), p.h2_request.size(),
                                      p.options.body_size > 0 ? &body : nullptr, this);
  if (id < 0) {
    drop(ErrorKind::kReset);  // no stream left on this connection (GOAWAY)
    return;
  }
  Exchange& e = exchanges_[id];
  e.intended = intended;
  e.deadline = now + p.options.timeout;
  e.measured = intended >= worker_.window_start();
  e.body_left = p.options.body_size;
  if (e.measured) {
    ++stats_.sent;
    if (pacer_.open_loop()) stats_.send_delay_us.record(to_micros(now - intended));
  }
  worker_.request_started();
  if (exchanges_.size() == 1) arm_timer();
}

void Http2Connection::flush() {
  if (session_ == nullptr || socket_ == nullptr) return;
  for (;;) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      drop(ErrorKind::kProtocol);
      return;
    }
    if (n == 0) break;
    out_.append(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(n)));
  }
  if (!out_.empty() && !socket_->write(out_)) {
    drop(ErrorKind::kReset);
    return;
  }
  // The server ended the connection (GOAWAY) and nothing is left on it.
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
    drop(ErrorKind::kReset);
  }
}

void Http2Connection::complete(int32_t id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return;
  const Exchange& e = it->second;
  if (e.measured) {
    ++stats_.completed;
    ++stats_.status[static_cast<size_t>(std::clamp(e.status, 0, 999))];
    if (plan_.options.grpc) {
      if (e.grpc_status >= 0 && e.grpc_status < static_cast<int>(stats_.grpc_status.size())) {
        ++stats_.grpc_status[static_cast<size_t>(e.grpc_status)];
      } else {
        ++stats_.grpc_status_missing;
      }
    }
    stats_.latency_us.record(to_micros(charged_latency(e.intended, SteadyClock::now())));
  }
  bool oldest = it == exchanges_.begin();
  exchanges_.erase(it);
  failures_ = 0;
  worker_.request_ended();
  if (oldest) arm_timer();
}

void Http2Connection::fail(int32_t id, ErrorKind kind) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return;
  if (it->second.measured) ++stats_.error(kind);
  bool oldest = it == exchanges_.begin();
  exchanges_.erase(it);
  worker_.request_ended();
  if (oldest) arm_timer();
}

void Http2Connection::drop(ErrorKind kind) {
  MonoTime now = SteadyClock::now();
  bool connecting = kind == ErrorKind::kConnect;
  if (connecting && exchanges_.empty() && worker_.measuring(now)) ++stats_.error(kind);
  if (connecting) settle();
  // Every exchange on the connection failed with it.
  while (!exchanges_.empty()) {
    auto it = exchanges_.begin();
    if (it->second.measured) ++stats_.error(kind == ErrorKind::kConnect ? ErrorKind::kReset : kind);
    exchanges_.erase(it);
    worker_.request_ended();
  }
  close_socket();
  state_ = State::kWaiting;
  queued_ = false;
  ++failures_;
  timer_.cancel();
  reconnect_after_failure(connecting);
}

void Http2Connection::close_socket() {
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
    session_ = nullptr;
  }
  if (socket_) {
    socket_->close();
    loop_.defer_delete(std::move(socket_));
  }
  in_.clear();
  out_.clear();
}

void Http2Connection::arm_timer() {
  if (state_ != State::kReady) return;
  if (exchanges_.empty()) {
    timer_.cancel();
  } else {
    timer_.arm_at(exchanges_.begin()->second.deadline);  // the oldest times out first
  }
}

void Http2Connection::on_timer() {
  switch (state_) {
    case State::kWaiting:
      if (!worker_.ending()) connect();
      return;
    case State::kConnecting:
      drop(ErrorKind::kConnect);
      return;
    case State::kReady:
      break;
  }
  MonoTime now = SteadyClock::now();
  while (!exchanges_.empty() && exchanges_.begin()->second.deadline <= now) {
    int32_t id = exchanges_.begin()->first;
    fail(id, ErrorKind::kTimeout);
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }
  arm_timer();
  maybe_send();
}

void Http2Connection::on_end(MonoTime window_start, MonoTime end) {
  count_missed(window_start, end);
  queued_ = false;
  if (state_ == State::kConnecting && !connected_ && worker_.started()) ++stats_.error(ErrorKind::kConnect);
  if (state_ != State::kReady) {
    timer_.cancel();
    close_socket();
    state_ = State::kWaiting;
  }
}

void Http2Connection::abandon() {
  timer_.cancel();
  exchanges_.clear();
  close_socket();
  state_ = State::kWaiting;
  queued_ = false;
}

void Http2Connection::on_writable() {
  if (state_ != State::kConnecting) {
    flush();  // room again for what was staged
    return;
  }
  timer_.cancel();
  // Over TLS the server must have chosen HTTP/2 by ALPN.
  if ((plan_.options.target.tls && socket_->alpn() != "h2") || !start_session()) {
    drop(ErrorKind::kProtocol);
    return;
  }
  state_ = State::kReady;
  connected_ = true;
  settle();
  maybe_send();
}

void Http2Connection::on_transport_error(int) {
  drop(state_ == State::kConnecting ? ErrorKind::kConnect : ErrorKind::kReset);
}

void Http2Connection::on_readable() {
  while (socket_ != nullptr && state_ == State::kReady) {
    net::ReadResult r = socket_->read(in_);
    if (r == net::ReadResult::kAgain) break;
    if (r != net::ReadResult::kData) {
      drop(ErrorKind::kReset);
      return;
    }
    ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in_.data()), in_.size());
    in_.clear();
    if (rv < 0) {
      drop(ErrorKind::kProtocol);
      return;
    }
  }
  if (socket_ == nullptr || state_ != State::kReady) return;
  maybe_send();
}

int Http2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                               size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  const std::string_view field(reinterpret_cast<const char*>(name), namelen);
  const bool status_field = field == ":status";
  // In the trailers, or the headers of a trailers-only answer.
  const bool grpc_field = self->plan_.options.grpc && field == "grpc-status";
  if (!status_field && !grpc_field) return 0;
  auto it = self->exchanges_.find(frame->hd.stream_id);
  if (it == self->exchanges_.end()) return 0;
  int number = -1;
  auto [end, ec] = std::from_chars(reinterpret_cast<const char*>(value),
                                   reinterpret_cast<const char*>(value) + valuelen, number);
  if (ec != std::errc() || end != reinterpret_cast<const char*>(value) + valuelen) number = -1;
  if (status_field && number >= 200) it->second.status = number;  // 1xx: interim
  if (grpc_field) it->second.grpc_status = number;
  return 0;
}

int Http2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  bool ends = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
              (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (ends) self->complete(frame->hd.stream_id);
  return 0;
}

int Http2Connection::on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
  // Still in flight: reset by the server before its response ended.
  static_cast<Http2Connection*>(user)->fail(
      id, error_code == NGHTTP2_NO_ERROR ? ErrorKind::kProtocol : ErrorKind::kReset);
  return 0;
}

ssize_t Http2Connection::read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                                   nghttp2_data_source*, void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  auto it = self->exchanges_.find(id);
  size_t n = 0;
  if (it != self->exchanges_.end()) {
    const std::string& body = self->plan_.body;
    n = std::min(length, it->second.body_left);
    std::memcpy(buf, body.data() + (body.size() - it->second.body_left), n);
    it->second.body_left -= n;
  }
  if (it == self->exchanges_.end() || it->second.body_left == 0) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

// --- Worker

Worker::Worker(const Plan& plan, uint32_t id, Progress& progress)
    : plan_(plan),
      id_(id),
      progress_(progress),
      coarse_send_timer_(loop_, [this] { send_due(); }),
      end_timer_(loop_, [this] { end_sending(); }),
      hard_timer_(loop_, [this] { hard_stop(); }) {
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ >= 0) loop_.add_level_read(timer_fd_, this);
}

Worker::~Worker() {
  if (timer_fd_ >= 0) {
    loop_.remove(timer_fd_);
    ::close(timer_fd_);
  }
}

void Worker::thread_main() {
  // Timer slack lets the kernel delay a wake-up (50 µs by default) to batch
  // it with others; each microsecond of it would be charged to the target.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  const LoadOptions& o = plan_.options;
  for (uint32_t k = id_; k < o.connections; k += o.threads) {
    if (o.protocol == Protocol::kHttp2) {
      connections_.push_back(std::make_unique<Http2Connection>(*this, k));
    } else {
      connections_.push_back(std::make_unique<Http1Connection>(*this, k));
    }
  }
  due_.reserve(connections_.size() * 2);
  for (auto& c : connections_) c->connect();
  loop_.run();
  // Sockets and buffers go back where they came from: this thread.
  connections_.clear();
  loop_.run_deferred();
  progress_.finished.fetch_add(1, std::memory_order_release);
}

void Worker::start(MonoTime t0) {
  if (finished_ || ending_) return;
  started_ = true;
  window_start_ = t0 + plan_.options.warmup;
  end_ = window_start_ + plan_.options.duration;
  end_timer_.arm_at(end_);
  for (auto& c : connections_) c->on_start(t0);
}

void Worker::stop(MonoTime at, bool hard) {
  if (finished_) return;
  if (hard) {
    hard_stop();
    return;
  }
  if (ending_) return;
  if (at < end_) end_ = at;
  end_sending();
}

void Worker::end_sending() {
  if (ending_) return;
  ending_ = true;
  end_timer_.cancel();
  for (auto& c : connections_) c->on_end(window_start_, end_);
  due_.clear();
  hard_timer_.arm(plan_.options.timeout + kHardStopMargin);
  maybe_finish();
}

void Worker::hard_stop() {
  ending_ = true;
  // Requests still out have outlived their own timeout only if the loop was
  // starved; a second signal gives them up without counting them.
  for (auto& c : connections_) c->abandon();
  finish();
}

void Worker::queue(Connection* connection, MonoTime at, uint64_t generation) {
  due_.push_back(Due{at, connection, generation});
  std::push_heap(due_.begin(), due_.end(), std::greater<>());
  if (!dispatching_) arm_send_timer();
}

void Worker::arm_send_timer() {
  if (due_.empty()) return;
  MonoTime at = due_.front().at;
  if (timer_fd_ < 0) {
    coarse_send_timer_.arm_at(at);
    return;
  }
  if (timer_armed_ && timer_at_ <= at) return;  // fires first; re-armed then
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  if (ns <= 0) ns = 1;  // zero would disarm
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  // steady_clock is CLOCK_MONOTONIC on Linux, so its time points are absolute timerfd times.
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  timer_at_ = at;
  timer_armed_ = true;
}

void Worker::on_io(uint32_t) {
  uint64_t expirations = 0;
  [[maybe_unused]] auto n = ::read(timer_fd_, &expirations, sizeof(expirations));
  timer_armed_ = false;
  send_due();
}

void Worker::send_due() {
  dispatching_ = true;
  // Everything whose time has come goes out in this wake-up, each charged
  // from its own intended time.
  MonoTime now = SteadyClock::now();
  while (!due_.empty() && due_.front().at <= now) {
    std::pop_heap(due_.begin(), due_.end(), std::greater<>());
    Due d = due_.back();
    due_.pop_back();
    d.connection->on_due(d.generation);
  }
  dispatching_ = false;
  arm_send_timer();
}

}  // namespace

Result<std::shared_ptr<net::TransportFactory>> make_tls_transport(const Target& target, Protocol protocol,
                                                                  const std::string& trust_bundle_pem) {
  net::TlsContextOptions context;
  context.role = net::TlsRole::kClient;
  context.trust_bundle_pem = trust_bundle_pem;
  context.allow_tls12 = true;
  context.alpn = {protocol == Protocol::kHttp2 ? "h2" : "http/1.1"};
  auto made = net::TlsContext::create(context);
  if (!made) return made.error();
  net::TlsClientOptions client;
  client.verify_name = target.host;  // and, for a DNS name, the SNI
  auto factory = net::TlsTransportFactory::client(std::move(*made), std::move(client));
  if (!factory) return factory.error();
  return std::shared_ptr<net::TransportFactory>(std::move(*factory));
}

LoadReport run_load(const LoadOptions& options) {
  Plan plan{options,
            build_http1_request(options),
            options.method == "HEAD",
            build_http2_fields(options),
            options.target.authority,
            {},
            {},
            {}};
  for (const auto& [name, value] : options.headers)
    if (http::iequals(name, "host")) plan.authority = value;
  plan.h2_request = {nv(":method", options.method), nv(":scheme", "http"), nv(":authority", plan.authority),
                     nv(":path", options.target.path)};
  for (const auto& [name, value] : plan.h2_headers) plan.h2_request.push_back(nv(name, value));
  plan.transport = options.tls ? options.tls : net::PlainTransportFactory::shared();
  if (options.protocol == Protocol::kHttp2)
    plan.body = options.body.empty() ? std::string(options.body_size, 'x') : options.body;
  LoadReport report;
  // The main thread watches progress and signals; the workers send. The
  // watcher comes first: threads started after it never see SIGINT/SIGTERM.
  net::EventLoop loop;
  Progress progress;
  std::vector<std::unique_ptr<Worker>> workers;
  MonoTime t0{}, window_start{}, stopped{};
  bool started = false;
  bool hard = false;
  // Connect first, so the schedule does not start with handshakes.
  auto start_run = [&] {
    started = true;
    t0 = SteadyClock::now();
    window_start = t0 + options.warmup;
    stopped = report.interrupted ? t0 : window_start + options.duration;
    for (auto& w : workers) {
      if (report.interrupted) {
        w->post_stop(t0, false);
      } else {
        w->post_start(t0);
      }
    }
  };
  // The first signal ends the run and lets requests in flight finish; a
  // second one stops at once.
  net::SignalWatcher signals(loop, {SIGINT, SIGTERM}, [&](int) {
    MonoTime now = SteadyClock::now();
    if (!report.interrupted) {
      report.interrupted = true;
      if (!started) {
        start_run();
        return;
      }
      stopped = std::min(stopped, now);
      for (auto& w : workers) w->post_stop(now, false);
    } else if (!hard) {
      hard = true;
      for (auto& w : workers) w->post_stop(now, true);
    }
  });
  for (uint32_t t = 0; t < options.threads; ++t)
    workers.push_back(std::make_unique<Worker>(plan, t, progress));
  for (auto& w : workers) w->launch();

  MonoTime grace_end = SteadyClock::now() + std::min<Duration>(options.timeout, kConnectGrace);
  net::Timer poll(loop, [&] {
    if (!started && (progress.settled.load(std::memory_order_acquire) >= options.connections ||
                     SteadyClock::now() >= grace_end))
      start_run();
    if (started && progress.finished.load(std::memory_order_acquire) >= options.threads) {
      loop.stop();
      return;
    }
    poll.arm(kPollInterval);
  });
  poll.arm(Duration::zero());
  loop.run();
  for (auto& w : workers) w->join();

  for (auto& w : workers) report.stats.merge(w->stats());
  report.measured = std::clamp<Duration>(stopped - window_start, Duration::zero(), options.duration);
  return report;
}

}  // namespace trellis::cli
