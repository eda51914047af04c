#include "http/grpc_stream.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/address.h"
#include "net/event_loop.h"
#include "trellis/v1/discovery.grpc.pb.h"

// Inside trellis::proxy, `grpc` names this project's namespace: grpc++ is `::grpc`.
namespace trellis::http::grpc {
namespace {

using namespace std::chrono_literals;
using trellis::v1::ControlMessage;
using trellis::v1::ProxyMessage;

// Bound for anything that should happen at once; a passing run never waits this long.
constexpr auto kWait = 10s;
constexpr char kPath[] = "/trellis.v1.ProxyDiscovery/Stream";

net::SocketAddress loopback(int port) {
  net::SocketAddress address;
  std::string error;
  EXPECT_TRUE(net::parse_socket_address("127.0.0.1:" + std::to_string(port), address, error)) << error;
  return address;
}

std::string ack(uint64_t version) {
  ProxyMessage m;
  m.mutable_ack()->set_version(version);
  return m.SerializeAsString();
}

std::string nack(uint64_t version, std::string error) {
  ProxyMessage m;
  m.mutable_nack()->set_version(version);
  m.mutable_nack()->set_error(std::move(error));
  return m.SerializeAsString();
}

ControlMessage update(uint64_t version, std::string removed = {}) {
  ControlMessage m;
  m.mutable_update()->set_version(version);
  if (!removed.empty()) m.mutable_update()->add_removed_listeners(std::move(removed));
  return m;
}

ControlMessage parse_control(const std::string& payload) {
  ControlMessage m;
  EXPECT_TRUE(m.ParseFromString(payload));
  return m;
}

// ---- the grpc++ server ------------------------------------------------------

class ServerState;

// One call on the server: answers each Ack/Nack with an update of the same
// version (a Nack's error comes back as a removed listener), writes whatever
// the test pushes, and finishes when the test says so. Writes go one at a
// time, as the callback API requires.
class Reactor final : public ::grpc::ServerBidiReactor<ProxyMessage, ControlMessage> {
 public:
  explicit Reactor(ServerState& state) : state_(state) { StartRead(&in_); }

  void push(ControlMessage message) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(message));
    }
    advance();
  }
  void finish(::grpc::Status status) {
    {
      std::lock_guard lock(mu_);
      if (!want_finish_) finish_status_ = std::move(status);
      want_finish_ = true;
    }
    advance();
  }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      queue_.pop_front();
      if (!ok) queue_.clear();
    }
    advance();
  }
  void OnCancel() override { finish(::grpc::Status::CANCELLED); }
  void OnDone() override;

 private:
  // Starts the next write or the finish; the grpc++ calls run outside the lock.
  void advance() {
    ControlMessage* next = nullptr;
    bool finish_now = false;
    {
      std::lock_guard lock(mu_);
      if (finished_ || writing_) return;
      if (!queue_.empty()) {
        writing_ = true;
        next = &queue_.front();  // deque: stays put while others are appended
      } else if (want_finish_) {
        finished_ = true;
        finish_now = true;
      }
    }
    if (next) StartWrite(next);
    if (finish_now) Finish(finish_status_);
  }

  ServerState& state_;
  ProxyMessage in_;
  std::mutex mu_;
  std::deque<ControlMessage> queue_;
  bool writing_ = false;
  bool want_finish_ = false;
  bool finished_ = false;
  ::grpc::Status finish_status_;
};

// What the server saw, for the test thread to wait on. Owns the reactors, so a
// pointer handed to the test stays valid until the server is gone.
class ServerState {
 public:
  Reactor* new_call() {
    std::lock_guard lock(mu_);
    reactors_.push_back(std::make_unique<Reactor>(*this));
    cv_.notify_all();
    return reactors_.back().get();
  }
  void received(const ProxyMessage& m) {
    std::lock_guard lock(mu_);
    received_.push_back(m);
    cv_.notify_all();
  }
  void reads_done() {
    std::lock_guard lock(mu_);
    ++reads_done_;
    cv_.notify_all();
  }
  void done() {
    std::lock_guard lock(mu_);
    ++done_;
    cv_.notify_all();
  }

  template <typename Pred>
  bool wait(Pred pred, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(); });
  }
  // The n-th call (0-based) once it exists.
  Reactor* call(size_t n) {
    if (!wait([&] { return reactors_.size() > n; })) return nullptr;
    std::lock_guard lock(mu_);
    return reactors_[n].get();
  }
  size_t calls() {
    std::lock_guard lock(mu_);
    return reactors_.size();
  }
  std::vector<ProxyMessage> received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  // Only under wait().
  size_t received_count() const { return received_.size(); }
  int reads_done_count() const { return reads_done_; }
  size_t done_count() const { return done_; }
  size_t call_count() const { return reactors_.size(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::vector<ProxyMessage> received_;
  int reads_done_ = 0;
  size_t done_ = 0;
};

void Reactor::OnReadDone(bool ok) {
  if (!ok) {  // the client half-closed, or the call is gone
    state_.reads_done();
    return;
  }
  state_.received(in_);
  if (in_.has_ack()) push(update(in_.ack().version()));
  if (in_.has_nack()) push(update(in_.nack().version(), in_.nack().error()));
  StartRead(&in_);
}

void Reactor::OnDone() { state_.done(); }

class TestServer {
 public:
  // `strict_pings`: grpc++'s default ping policy (at most one ping per five
  // minutes without data). Otherwise pings are welcome at any rate, as the
  // control plane configures it for its proxies' keepalive.
  explicit TestServer(bool strict_pings = false) : service_(state_) {
    ::grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    if (!strict_pings) {
      builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 0);
      builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    }
    server_ = builder.BuildAndStart();
  }
  ~TestServer() { shutdown(); }

  // Cancels every call at once, as a dying server would.
  void shutdown() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now());
    state_.wait([&] { return state_.done_count() == state_.call_count(); });
    server_.reset();
  }

  bool running() const { return server_ != nullptr && port_ > 0; }
  net::SocketAddress address() const { return loopback(port_); }
  ServerState& state() { return state_; }

 private:
  class Service final : public trellis::v1::ProxyDiscovery::CallbackService {
   public:
    explicit Service(ServerState& state) : state_(state) {}
    ::grpc::ServerBidiReactor<ProxyMessage, ControlMessage>* Stream(::grpc::CallbackServerContext*) override {
      return state_.new_call();
    }

   private:
    ServerState& state_;
  };

  ServerState state_;  // outlives the server: reactors may finish during its shutdown
  Service service_;
  int port_ = 0;
  std::unique_ptr<::grpc::Server> server_;
};

// ---- a hand-driven HTTP/2 peer, for what grpc++ never sends ------------------

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string out;
  out += static_cast<char>(payload.size() >> 16);
  out += static_cast<char>(payload.size() >> 8);
  out += static_cast<char>(payload.size());
  out += static_cast<char>(type);
  out += static_cast<char>(flags);
  out += static_cast<char>(stream >> 24);
  out += static_cast<char>(stream >> 16);
  out += static_cast<char>(stream >> 8);
  out += static_cast<char>(stream);
  out += payload;
  return out;
}

constexpr uint8_t kData = 0x0, kHeaders = 0x1, kRstStream = 0x3, kSettings = 0x4, kPing = 0x6, kGoaway = 0x7;
constexpr uint8_t kEndStream = 0x1, kEndHeaders = 0x4, kAck = 0x1;
// HPACK: indexed ":status: 200" / ":status: 404", and content-type (static
// index 31) as a literal without indexing.
constexpr std::string_view kStatus200 = "\x88";
constexpr std::string_view kStatus404 = "\x8d";
std::string content_type(std::string_view value) {
  std::string out = "\x0f\x10";
  out += static_cast<char>(value.size());
  out += value;
  return out;
}

int listen_loopback(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, 8) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "cannot listen on loopback";
    return -1;
  }
  port = ntohs(a.sin_port);
  return fd;
}

// Accepts one connection, answers the preface with an empty SETTINGS frame,
// sends `reply` once the request's HEADERS arrived (then closes, when
// `close_after_reply`), and otherwise only listens: it never acknowledges a
// PING, it counts them.
class RawPeer {
 public:
  explicit RawPeer(std::string reply, bool close_after_reply = false)
      : reply_(std::move(reply)), close_after_reply_(close_after_reply) {
    listen_fd_ = listen_loopback(port_);
    thread_ = std::thread([this] { run(); });
  }
  ~RawPeer() {
    stop_ = true;
    thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  net::SocketAddress address() const { return loopback(port_); }
  int pings() const { return pings_.load(); }

 private:
  void run() {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return;
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    write_all(fd, frame(kSettings, 0, 0, {}));
    std::string in;
    size_t parsed = 24;  // the client's connection preface
    bool replied = false;
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      pollfd c{fd, POLLIN, 0};
      if (::poll(&c, 1, 10) != 1) continue;
      char buf[16384];
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      while (in.size() >= parsed + 9) {
        auto byte = [&](size_t i) { return static_cast<uint8_t>(in[parsed + i]); };
        size_t length = (size_t{byte(0)} << 16) | (size_t{byte(1)} << 8) | byte(2);
        if (in.size() < parsed + 9 + length) break;
        if (byte(3) == kHeaders && !replied) {
          write_all(fd, reply_);
          replied = true;
          if (close_after_reply_) stop_ = true;
        }
        if (byte(3) == kPing && (byte(4) & kAck) == 0) ++pings_;
        parsed += 9 + length;
      }
    }
    ::close(fd);
  }
  static void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  std::string reply_;
  bool close_after_reply_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> pings_{0};
  std::thread thread_;
};

// ---- the client side: an event loop in a thread ------------------------------

struct Closed {
  int status;
  std::string message;
};

// Records the callbacks (they run on the loop thread) for the test thread;
// the hooks let a test act from inside a callback.
class Probe final : public StreamCallbacks {
 public:
  void on_stream_ready() override {
    {
      std::lock_guard lock(mu_);
      ++ready_;
    }
    cv_.notify_all();
    if (after_ready) after_ready();
  }
  void on_stream_message(std::string_view payload) override {
    {
      std::lock_guard lock(mu_);
      messages_.emplace_back(payload);
    }
    cv_.notify_all();
    if (after_message) after_message();
  }
  void on_stream_closed(int status, std::string_view message) override {
    {
      std::lock_guard lock(mu_);
      closed_.push_back({status, std::string(message)});
    }
    cv_.notify_all();
    if (after_closed) after_closed();
  }

  bool wait_ready(int n = 1) {
    return wait([&] { return ready_ >= n; });
  }
  bool wait_messages(size_t n) {
    return wait([&] { return messages_.size() >= n; });
  }
  bool wait_closed(size_t n = 1) {
    return wait([&] { return closed_.size() >= n; });
  }
  int ready() {
    std::lock_guard lock(mu_);
    return ready_;
  }
  std::vector<std::string> messages() {
    std::lock_guard lock(mu_);
    return messages_;
  }
  std::vector<Closed> closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

  std::function<void()> after_ready;
  std::function<void()> after_message;
  std::function<void()> after_closed;

 private:
  template <typename Pred>
  bool wait(Pred pred) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return pred(); });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  int ready_ = 0;
  std::vector<std::string> messages_;
  std::vector<Closed> closed_;
};

class LoopThread {
 public:
  LoopThread() : thread_([this] { loop_.run(); }) {}
  ~LoopThread() {
    loop_.stop();
    thread_.join();
  }
  net::EventLoop& loop() { return loop_; }

  // Runs `f` on the loop thread and returns its result.
  template <typename F>
  auto call(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    loop_.post([&task] { task(); });
    return result.get();
  }

 private:
  net::EventLoop loop_;
  std::thread thread_;
};

class GrpcStreamTest : public ::testing::Test {
 protected:
  void TearDown() override {
    loop_.call([&] { client_.reset(); });
  }

  void make_client(StreamOptions options = {}) {
    loop_.call([&] { client_ = std::make_unique<StreamClient>(loop_.loop(), probe_, options); });
  }
  bool start(const net::SocketAddress& server) {
    return loop_.call([&] { return client_->start(server, "trellis-control", kPath); });
  }
  // Connects to a fresh grpc++ server and waits until the server has the call.
  Reactor* connect(StreamOptions options = {}) {
    server_ = std::make_unique<TestServer>();
    EXPECT_TRUE(server_->running());
    make_client(options);
    EXPECT_TRUE(start(server_->address()));
    EXPECT_TRUE(probe_.wait_ready());
    return server_->state().call(0);
  }
  bool send(std::string payload) {
    return loop_.call([&] { return client_->send(payload); });
  }
  bool client_open() {
    return loop_.call([&] { return client_->open(); });
  }

  std::unique_ptr<TestServer> server_;
  Probe probe_;
  LoopThread loop_;
  std::unique_ptr<StreamClient> client_;  // lives on the loop thread
};

TEST_F(GrpcStreamTest, MessagesTravelBothWaysIncludingOneMebibyte) {
  Reactor* call = connect();
  ASSERT_NE(call, nullptr);
  EXPECT_TRUE(client_open());

  ASSERT_TRUE(send(ack(7)));
  ASSERT_TRUE(probe_.wait_messages(1));
  EXPECT_EQ(parse_control(probe_.messages()[0]).update().version(), 7u);

  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  ASSERT_TRUE(send(nack(8, big)));
  ASSERT_TRUE(probe_.wait_messages(2));
  ControlMessage echoed = parse_control(probe_.messages()[1]);
  EXPECT_EQ(echoed.update().version(), 8u);
  ASSERT_EQ(echoed.update().removed_listeners_size(), 1);
  EXPECT_TRUE(echoed.update().removed_listeners(0) == big);  // no 1 MiB diff on failure

  auto received = server_->state().received();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_TRUE(received[1].nack().error() == big);
  EXPECT_TRUE(probe_.closed().empty());
}

TEST_F(GrpcStreamTest, ThousandSmallMessagesKeepTheirOrderBothWays) {
  ASSERT_NE(connect(), nullptr);
  constexpr int kCount = 1000;
  // Queued in one loop pass: they leave in a few large writes.
  bool all_sent = loop_.call([&] {
    bool ok = true;
    for (int i = 0; i < kCount; ++i) ok = client_->send(ack(static_cast<uint64_t>(i))) && ok;
    return ok;
  });
  ASSERT_TRUE(all_sent);
  ASSERT_TRUE(probe_.wait_messages(kCount));
  auto messages = probe_.messages();
  ASSERT_EQ(messages.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(parse_control(messages[i]).update().version(), static_cast<uint64_t>(i)) << i;
  }
  auto received = server_->state().received();
  ASSERT_EQ(received.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(received[i].ack().version(), static_cast<uint64_t>(i)) << i;
  }
}

TEST_F(GrpcStreamTest, ServerStatusAndMessageReachTheClient) {
  Reactor* call = connect();
  ASSERT_NE(call, nullptr);
  // grpc-message travels percent-encoded.
  const std::string reason = "node reviews-1 refused: 100% sure, caf\xc3\xa9";
  call->finish(::grpc::Status(::grpc::StatusCode::PERMISSION_DENIED, reason));
  ASSERT_TRUE(probe_.wait_closed());
  auto closed = probe_.closed();
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].status, 7);
  EXPECT_EQ(closed[0].message, reason);
  EXPECT_FALSE(client_open());
  EXPECT_FALSE(send(ack(1)));
}

TEST_F(GrpcStreamTest, ServerMessagesBeforeItsStatusAreAllDelivered) {
  Reactor* call = connect();
  ASSERT_NE(call, nullptr);
  for (uint64_t v = 1; v <= 3; ++v) call->push(update(v));
  call->finish(::grpc::Status::OK);
  ASSERT_TRUE(probe_.wait_closed());
  auto messages = probe_.messages();
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(parse_control(messages[2]).update().version(), 3u);
  EXPECT_EQ(probe_.closed()[0].status, kStatusOk);
  EXPECT_EQ(probe_.closed()[0].message, "");
}

// grpc++ answers its own shutdown with UNAVAILABLE trailers; a connection lost
// without any is in TransportFailuresAreUnavailable.
TEST_F(GrpcStreamTest, ServerShutdownIsUnavailable) {
  ASSERT_NE(connect(), nullptr);
  server_->shutdown();
  ASSERT_TRUE(probe_.wait_closed());
  auto closed = probe_.closed();
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].status, kStatusUnavailable) << closed[0].message;
  EXPECT_FALSE(client_open());
}

TEST_F(GrpcStreamTest, ConnectRefusedIsUnavailable) {
  int port = 0;
  int fd = listen_loopback(port);
  ::close(fd);  // nothing listens there now
  make_client();
  ASSERT_TRUE(start(loopback(port)));
  ASSERT_TRUE(probe_.wait_closed());
  auto closed = probe_.closed();
  EXPECT_EQ(closed[0].status, kStatusUnavailable);
  EXPECT_NE(closed[0].message.find("refused"), std::string::npos) << closed[0].message;
  EXPECT_EQ(probe_.ready(), 0);
}

TEST_F(GrpcStreamTest, ConnectTimeoutIsUnavailable) {
  // The kernel completes the handshake, but nobody ever speaks HTTP/2.
  int port = 0;
  int fd = listen_loopback(port);
  StreamOptions options;
  options.connect_timeout = 100ms;
  make_client(options);
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(start(loopback(port)));
  ASSERT_TRUE(probe_.wait_closed());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 100ms);
  auto closed = probe_.closed();
  EXPECT_EQ(closed[0].status, kStatusUnavailable);
  EXPECT_NE(closed[0].message.find("timed out"), std::string::npos) << closed[0].message;
  ::close(fd);
}

TEST_F(GrpcStreamTest, FinishEndsTheServersReadsWhileItKeepsWriting) {
  Reactor* call = connect();
  ASSERT_NE(call, nullptr);
  ASSERT_TRUE(send(ack(1)));
  loop_.call([&] { client_->finish(); });
  ServerState& state = server_->state();
  ASSERT_TRUE(state.wait([&] { return state.reads_done_count() == 1; }));
  EXPECT_EQ(state.received().size(), 1u);  // the queued message went out before END_STREAM
  EXPECT_FALSE(send(ack(2)));
  EXPECT_TRUE(client_open());  // half-closed: messages still arrive

  call->push(update(42));
  call->finish(::grpc::Status::OK);
  ASSERT_TRUE(probe_.wait_closed());
  auto messages = probe_.messages();
  ASSERT_EQ(messages.size(), 2u);  // the echo of ack(1), then 42
  EXPECT_EQ(parse_control(messages[1]).update().version(), 42u);
  EXPECT_EQ(probe_.closed()[0].status, kStatusOk);
}

TEST_F(GrpcStreamTest, KeepaliveWithATinyIntervalKeepsTheStreamOpen) {
  StreamOptions options;
  options.keepalive_interval = 5ms;
  options.keepalive_timeout = 2s;
  ASSERT_NE(connect(options), nullptr);
  // Twenty pings answered in a row: each one kept the stream open.
  auto acked = [&] { return loop_.call([&] { return client_->pings_acked(); }); };
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (acked() < 20 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_GE(acked(), 20u);
  EXPECT_TRUE(probe_.closed().empty());
  EXPECT_TRUE(client_open());
  ASSERT_TRUE(send(ack(5)));
  ASSERT_TRUE(probe_.wait_messages(1));
  EXPECT_EQ(parse_control(probe_.messages()[0]).update().version(), 5u);
}

// The same pings against grpc++'s default policy: the server refuses them,
// which shows they were sent, and why the control plane relaxes that policy.
TEST_F(GrpcStreamTest, KeepaliveAgainstTheDefaultServerPingPolicyIsRefused) {
  server_ = std::make_unique<TestServer>(/*strict_pings=*/true);
  StreamOptions options;
  options.keepalive_interval = 5ms;
  make_client(options);
  ASSERT_TRUE(start(server_->address()));
  ASSERT_TRUE(probe_.wait_closed());
  auto closed = probe_.closed();
  EXPECT_EQ(closed[0].status, kStatusUnavailable);
  EXPECT_NE(closed[0].message.find("too_many_pings"), std::string::npos) << closed[0].message;
}

TEST_F(GrpcStreamTest, UnansweredPingIsUnavailable) {
  RawPeer peer("");  // says SETTINGS and nothing else, ever
  StreamOptions options;
  options.keepalive_interval = 20ms;
  options.keepalive_timeout = 100ms;
  make_client(options);
  ASSERT_TRUE(start(peer.address()));
  ASSERT_TRUE(probe_.wait_ready());
  ASSERT_TRUE(probe_.wait_closed());
  auto closed = probe_.closed();
  EXPECT_EQ(closed[0].status, kStatusUnavailable);
  EXPECT_NE(closed[0].message.find("keepalive"), std::string::npos) << closed[0].message;
  EXPECT_EQ(peer.pings(), 1);  // one ping, then the wait for its ACK
}

TEST_F(GrpcStreamTest, ResetThenStartAgainReconnects) {
  ASSERT_NE(connect(), nullptr);
  bool open_after_reset = loop_.call([&] {
    client_->reset();
    return client_->open();
  });
  EXPECT_FALSE(open_after_reset);
  EXPECT_FALSE(send(ack(1)));

  ASSERT_TRUE(start(server_->address()));
  ASSERT_TRUE(probe_.wait_ready(2));
  ASSERT_NE(server_->state().call(1), nullptr);
  ASSERT_TRUE(send(ack(9)));
  ASSERT_TRUE(probe_.wait_messages(1));
  EXPECT_EQ(parse_control(probe_.messages()[0]).update().version(), 9u);
  // The first call ended on the server; the client was never told of it.
  ServerState& state = server_->state();
  EXPECT_TRUE(state.wait([&] { return state.done_count() >= 1; }));
  EXPECT_TRUE(probe_.closed().empty());
}

TEST_F(GrpcStreamTest, StartFromInsideOnStreamClosedReconnects) {
  Reactor* call = connect();
  ASSERT_NE(call, nullptr);
  net::SocketAddress address = server_->address();
  bool restarted = false;
  loop_.call([&] {
    probe_.after_closed = [&] {  // on the loop thread, inside the callback
      if (!restarted) restarted = client_->start(address, "trellis-control", kPath);
    };
  });
  call->finish(::grpc::Status(::grpc::StatusCode::ABORTED, "rebalancing"));
  ASSERT_TRUE(probe_.wait_ready(2));
  EXPECT_TRUE(loop_.call([&] { return restarted; }));
  ASSERT_TRUE(send(ack(3)));
  ASSERT_TRUE(probe_.wait_messages(1));
  EXPECT_EQ(parse_control(probe_.messages()[0]).update().version(), 3u);
  auto closed = probe_.closed();
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].status, 10);
  EXPECT_EQ(closed[0].message, "rebalancing");
}

TEST_F(GrpcStreamTest, ResetInsideOnStreamMessageStopsDelivery) {
  Reactor* call = connect();
  ASSERT_NE(call, nullptr);
  loop_.call([&] { probe_.after_message = [&] { client_->reset(); }; });
  for (uint64_t v = 1; v <= 5; ++v) call->push(update(v));
  ServerState& state = server_->state();
  // The server's call ends once the client's connection is gone.
  ASSERT_TRUE(state.wait([&] { return state.done_count() == 1; }));
  loop_.call([] {});  // whatever the loop still had queued has run
  EXPECT_EQ(probe_.messages().size(), 1u);
  EXPECT_TRUE(probe_.closed().empty());
}

TEST_F(GrpcStreamTest, DestroyingTheClientInsideACallbackIsSafe) {
  Reactor* call = connect();
  ASSERT_NE(call, nullptr);
  loop_.call([&] { probe_.after_message = [&] { client_.reset(); }; });
  call->push(update(1));
  call->push(update(2));
  ServerState& state = server_->state();
  ASSERT_TRUE(state.wait([&] { return state.done_count() == 1; }));
  EXPECT_EQ(probe_.messages().size(), 1u);
  EXPECT_TRUE(probe_.closed().empty());
}

TEST_F(GrpcStreamTest, OversizeMessageIsUnavailable) {
  StreamOptions options;
  options.max_message_bytes = 1024;
  Reactor* call = connect(options);
  ASSERT_NE(call, nullptr);
  call->push(update(1, std::string(4096, 'x')));
  ASSERT_TRUE(probe_.wait_closed());
  auto closed = probe_.closed();
  EXPECT_EQ(closed[0].status, kStatusUnavailable);
  EXPECT_NE(closed[0].message.find("exceeds"), std::string::npos) << closed[0].message;
  EXPECT_TRUE(probe_.messages().empty());
}

struct PeerCase {
  const char* name;
  std::string reply;
  int status;
  std::string_view reason;  // part of the message
  bool close_after_reply = false;
};

void run_peer_cases(LoopThread& loop, std::unique_ptr<StreamClient>& client,
                    const std::vector<PeerCase>& cases) {
  for (const PeerCase& c : cases) {
    SCOPED_TRACE(c.name);
    Probe probe;
    RawPeer peer(c.reply, c.close_after_reply);
    bool started = loop.call([&] {
      client = std::make_unique<StreamClient>(loop.loop(), probe);
      return client->start(peer.address(), "", kPath);
    });
    ASSERT_TRUE(started);
    ASSERT_TRUE(probe.wait_closed());
    auto closed = probe.closed();
    EXPECT_EQ(closed[0].status, c.status) << closed[0].message;
    EXPECT_NE(closed[0].message.find(c.reason), std::string::npos) << closed[0].message;
    EXPECT_TRUE(probe.messages().empty());
    loop.call([&] { client.reset(); });
  }
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

TEST_F(GrpcStreamTest, TransportFailuresAreUnavailable) {
  const std::string grpc_headers =
      frame(kHeaders, kEndHeaders, 1, std::string(kStatus200) + content_type("application/grpc"));
  run_peer_cases(
      loop_, client_,
      {
          {"connection lost mid-stream", grpc_headers, kStatusUnavailable, "connection",
           /*close_after_reply=*/true},
          {"GOAWAY before the stream", frame(kGoaway, 0, 0, be32(0) + be32(0)), kStatusUnavailable, "GOAWAY"},
          {"stream reset", grpc_headers + frame(kRstStream, 0, 1, be32(0x8)), kStatusUnavailable, "CANCEL"},
          {"protocol error", frame(kData, 0, 0, "x"), kStatusUnavailable, "HTTP/2"},
      });
}

TEST_F(GrpcStreamTest, MalformedResponses) {
  const std::string grpc_headers = std::string(kStatus200) + content_type("application/grpc");
  run_peer_cases(loop_, client_,
                 {
                     {"non-200 status", frame(kHeaders, kEndHeaders | kEndStream, 1, kStatus404),
                      kStatusInternal, "HTTP status 404"},
                     {"wrong content-type",
                      frame(kHeaders, kEndHeaders, 1, std::string(kStatus200) + content_type("text/html")),
                      kStatusInternal, "not application/grpc"},
                     {"trailers without grpc-status",
                      frame(kHeaders, kEndHeaders, 1, grpc_headers) +
                          frame(kHeaders, kEndHeaders | kEndStream, 1, content_type("application/grpc")),
                      kStatusInternal, "grpc-status"},
                     {"malformed length prefix",
                      frame(kHeaders, kEndHeaders, 1, grpc_headers) +
                          frame(kData, 0, 1, std::string("\x07\x00\x00\x00\x01x", 6)),
                      kStatusUnavailable, "prefix"},
                 });
}

}  // namespace
}  // namespace trellis::http::grpc
