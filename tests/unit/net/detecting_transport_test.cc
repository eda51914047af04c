#include "net/detecting_transport.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/address.h"
#include "net/socket.h"
#include "net/tls_context.h"
#include "net/tls_detect.h"
#include "net/tls_transport.h"
#include "support/loopback_listener.h"
#include "support/test_pki.h"

namespace trellis::net {
namespace {

using trellis::testing::TestCa;
using trellis::testing::TestCredentials;

// Loop passes before a test gives up on a condition: seconds of spinning,
// far more than any exchange here needs; only a hang reaches it.
constexpr int kMaxPasses = 1000000;
// On the simulated clock: any length works, none is waited for.
constexpr Duration kTimeout = std::chrono::milliseconds(200);

constexpr char kApi[] = "spiffe://trellis.test/ns/shop/sa/api";
constexpr char kWeb[] = "spiffe://trellis.test/ns/shop/sa/web";

// One end of a connection as its user sees it: everything readable is read
// at once, and what happened is remembered.
struct Peer final : TransportCallbacks {
  std::unique_ptr<Transport> transport;
  int fd = -1;  // the socket under `transport`, where the test knows it
  std::string received;
  bool eof = false;
  bool read_error = false;
  int error = 0;
  int errors = 0;
  int readable = 0;
  int writable = 0;

  void on_readable() override {
    ++readable;
    Buffer in;
    for (;;) {
      ReadResult r = transport->read(in);
      if (r == ReadResult::kData) {
        received.append(in.view());
        in.clear();
        continue;
      }
      if (r == ReadResult::kEof) eof = true;
      if (r == ReadResult::kError) read_error = true;
      return;
    }
  }
  void on_writable() override { ++writable; }
  void on_transport_error(int e) override {
    error = e;
    ++errors;
  }

  DetectingTransport& detecting() { return static_cast<DetectingTransport&>(*transport); }
  int callbacks() const { return readable + writable + errors; }
};

using Listener = trellis::testing::LoopbackListener<Peer>;

// A client on a blocking socket, for exact control of what is sent when:
// connect() returns once the kernel has the connection (before the
// listener accepts it), send() once the bytes are queued at the server.
class RawClient {
 public:
  explicit RawClient(const SocketAddress& address) {
    fd_ = ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    EXPECT_EQ(::connect(fd_, address.sa(), address.length), 0) << std::strerror(errno);
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(std::string_view data) {
    ASSERT_EQ(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // Closes with a reset instead of a FIN.
  void reset() {
    linger abort{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    ::close(fd_);
    fd_ = -1;
  }
  // Takes what arrived, without waiting.
  void receive() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        received.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) eof = true;
      return;
    }
  }

  std::string received;
  bool eof = false;

 private:
  int fd_ = -1;
};

// Bytes queued at a socket, not yet read.
size_t queued(int fd) {
  int n = 0;
  EXPECT_EQ(::ioctl(fd, FIONREAD, &n), 0);
  return static_cast<size_t>(n);
}

// Bytes that differ along the whole length, so a lost or reordered chunk shows.
std::string pattern(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed;
  for (char& c : out) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return out;
}

// A permissive listener (mTLS required of TLS clients) on real loopback
// sockets; clients and listener on one loop on simulated time, driven by
// run_until_idle() (loopback delivers at once) and advance() for the
// detection timeout: nothing waits on real time.
class DetectingTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestCredentials api = root_.issue_spiffe(kApi);
    TlsContextOptions o;
    o.role = TlsRole::kServer;
    o.certificate_chain_pem = api.certificate_chain_pem;
    o.private_key_pem = api.private_key_pem;
    o.trust_bundle_pem = root_.certificate_pem();
    auto context = TlsContext::create(o);
    ASSERT_TRUE(context.ok()) << context.error().message;
    auto tls = TlsTransportFactory::server(*context);
    ASSERT_TRUE(tls.ok()) << tls.error().message;
    listener_ =
        std::make_unique<Listener>(loop_, std::make_shared<DetectingTransportFactory>(*tls, kTimeout));
  }

  // A TLS client (with `credentials`; null: none) that expects the
  // listener's identity, connecting to `address` (default: the listener).
  Peer& connect_tls(const TestCredentials* credentials, const SocketAddress* address = nullptr) {
    TlsContextOptions o;
    if (credentials != nullptr) {
      o.certificate_chain_pem = credentials->certificate_chain_pem;
      o.private_key_pem = credentials->private_key_pem;
    }
    o.trust_bundle_pem = root_.certificate_pem();
    auto context = TlsContext::create(o);
    EXPECT_TRUE(context.ok()) << context.error().message;
    TlsClientOptions options;
    options.accepted_identities = {kApi};
    auto factory = TlsTransportFactory::client(*context, options);
    EXPECT_TRUE(factory.ok()) << factory.error().message;
    return connect_with(**factory, address != nullptr ? *address : listener_->address());
  }

  Peer& connect_plain() { return connect_with(*PlainTransportFactory::shared(), listener_->address()); }

  Peer& connect_with(TransportFactory& factory, const SocketAddress& address) {
    auto peer = std::make_unique<Peer>();
    int error = 0;
    peer->transport = factory.connect(loop_, address, peer.get(), error);
    EXPECT_NE(peer->transport, nullptr) << "connect: " << error;
    clients_.push_back(std::move(peer));
    return *clients_.back();
  }

  Peer& server(size_t i = 0) { return *listener_->peers.at(i); }
  bool accepted(size_t n) { return listener_->peers.size() >= n; }

  // Runs the loop until `done` holds; false if it never does. The bound is
  // far above what any exchange here needs and only catches a hang.
  bool run_until(const std::function<bool()>& done) {
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      if (done()) return true;
      loop_.run_until_idle();
    }
    return done();
  }

  // Waits until the server's socket holds `n` unread bytes and the loop has
  // seen them.
  bool arrive(size_t n, size_t i = 0) {
    bool there = run_until([&] { return accepted(i + 1) && queued(server(i).fd) >= n; });
    loop_.run_until_idle();
    return there;
  }

  SimulatedClock clock_;
  EventLoop loop_{clock_};
  TestCa root_{"Detection Test Root"};
  std::unique_ptr<Listener> listener_;
  std::vector<std::unique_ptr<Peer>> clients_;
};

TEST_F(DetectingTransportTest, TlsAndPlainClientsShareOnePort) {
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& tls = connect_tls(&web);
  ASSERT_TRUE(tls.transport->write("ping"));
  ASSERT_TRUE(run_until([&] { return accepted(1) && server(0).received == "ping"; }))
      << "client: " << static_cast<TlsTransport&>(*tls.transport).failure_reason();
  DetectingTransport& secure = server(0).detecting();
  EXPECT_EQ(secure.detection(), Detection::kTls);
  EXPECT_TRUE(secure.is_tls());
  // The verified client identity, for authorization.
  EXPECT_EQ(secure.peer_identity(), kWeb);
  EXPECT_EQ(tls.transport->peer_identity(), kApi);
  ASSERT_NE(dynamic_cast<const TlsTransport*>(secure.inner()), nullptr);
  ASSERT_TRUE(secure.write("pong"));
  ASSERT_TRUE(run_until([&] { return tls.received == "pong"; }));

  Peer& plain = connect_plain();
  ASSERT_TRUE(plain.transport->write("GET / HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(run_until([&] { return accepted(2) && server(1).received == "GET / HTTP/1.1\r\n\r\n"; }));
  DetectingTransport& clear = server(1).detecting();
  EXPECT_EQ(clear.detection(), Detection::kPlaintext);
  EXPECT_FALSE(clear.is_tls());
  EXPECT_EQ(clear.peer_identity(), "");
  EXPECT_NE(dynamic_cast<const Socket*>(clear.inner()), nullptr);
  ASSERT_TRUE(clear.write("HTTP/1.1 200 OK\r\n\r\n"));
  ASSERT_TRUE(run_until([&] { return plain.received == "HTTP/1.1 200 OK\r\n\r\n"; }));
  EXPECT_EQ(server(0).error + server(1).error + tls.error + plain.error, 0);
}

TEST_F(DetectingTransportTest, APlainClientSendingOneByteAtATimeIsPlainFromTheFirst) {
  RawClient client(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(1); }));
  loop_.run_until_idle();
  EXPECT_EQ(server().detecting().detection(), Detection::kPending);
  Buffer in;
  EXPECT_EQ(server().transport->read(in), ReadResult::kAgain);
  EXPECT_FALSE(server().transport->read_ready());

  client.send("G");
  ASSERT_TRUE(run_until([&] { return server().received == "G"; }));
  EXPECT_EQ(server().detecting().detection(), Detection::kPlaintext);
  client.send("ET / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(run_until([&] { return server().received == "GET / HTTP/1.1\r\n\r\n"; }));
  EXPECT_EQ(server().transport->bytes_read(), 18u);
}

TEST_F(DetectingTransportTest, BytesThereBeforeTheAcceptAreReadAtOnce) {
  RawClient client(listener_->address());
  client.send("PRI * HTTP/2.0\r\n");
  ASSERT_TRUE(run_until([&] { return accepted(1) && server().received == "PRI * HTTP/2.0\r\n"; }));
  EXPECT_EQ(server().detecting().detection(), Detection::kPlaintext);
  // Three bytes that look like no TLS record decide as soon as they are there.
  RawClient other(listener_->address());
  other.send("\x16\x03\x09");
  ASSERT_TRUE(run_until([&] { return accepted(2) && server(1).received == "\x16\x03\x09"; }));
  EXPECT_EQ(server(1).detecting().detection(), Detection::kPlaintext);
}

TEST_F(DetectingTransportTest, AClientThatWaitsToBeGreetedIsServedPlainAfterTheTimeout) {
  RawClient client(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(1); }));
  loop_.run_until_idle();
  Peer& srv = server();
  // A server that speaks first: its greeting is kept until the decision.
  ASSERT_TRUE(srv.transport->write("220 smtp ready\r\n"));
  EXPECT_EQ(srv.transport->pending_output(), 16u);
  EXPECT_EQ(srv.transport->bytes_written(), 0u);

  loop_.advance(kTimeout - std::chrono::milliseconds(1));
  client.receive();
  EXPECT_EQ(client.received, "");
  EXPECT_EQ(srv.detecting().detection(), Detection::kPending);
  EXPECT_EQ(srv.callbacks(), 0);

  loop_.advance(std::chrono::milliseconds(1));
  EXPECT_EQ(srv.detecting().detection(), Detection::kTimedOut);
  EXPECT_FALSE(srv.detecting().is_tls());
  ASSERT_TRUE(run_until([&] {
    client.receive();
    return client.received == "220 smtp ready\r\n";
  }));
  EXPECT_EQ(srv.transport->pending_output(), 0u);
  EXPECT_EQ(srv.transport->bytes_written(), 16u);
  // The kept output went out: the owner hears it as a drain.
  EXPECT_EQ(srv.writable, 1);
  EXPECT_EQ(srv.readable, 0);  // nothing to read yet

  client.send("HELO client\r\n");
  ASSERT_TRUE(run_until([&] { return srv.received == "HELO client\r\n"; }));
}

TEST_F(DetectingTransportTest, ATlsLikePrefixThatStopsIsPlainAfterTheTimeout) {
  RawClient client(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(1); }));
  client.send("\x16");
  ASSERT_TRUE(arrive(1));
  EXPECT_EQ(server().detecting().detection(), Detection::kPending);
  client.send("\x03");
  ASSERT_TRUE(arrive(2));
  EXPECT_EQ(server().detecting().detection(), Detection::kPending);
  EXPECT_EQ(server().callbacks(), 0);

  loop_.advance(kTimeout);
  EXPECT_EQ(server().detecting().detection(), Detection::kTimedOut);
  // The bytes that were waiting are read, not stranded.
  ASSERT_TRUE(run_until([&] { return server().received == "\x16\x03"; }));
  client.send("more");
  ASSERT_TRUE(run_until([&] { return server().received == "\x16\x03more"; }));
}

TEST_F(DetectingTransportTest, APrefixTheClientEndsIsPlainWithoutTheTimeout) {
  RawClient client(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(1); }));
  client.send("\x16");
  ASSERT_TRUE(arrive(1));
  client.shutdown_write();
  ASSERT_TRUE(run_until([&] { return server().eof; }));
  EXPECT_EQ(server().detecting().detection(), Detection::kPlaintext);
  EXPECT_EQ(server().received, "\x16");
}

// A TLS client behind a relay that passes its ClientHello on a byte at a
// time: the listener waits for a whole record header, then hands over.
TEST_F(DetectingTransportTest, AClientHelloInPiecesIsStillTls) {
  Listener relay(loop_, PlainTransportFactory::shared());
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& client = connect_tls(&web, &relay.address());
  ASSERT_TRUE(run_until([&] { return !relay.peers.empty() && relay.peers[0]->received.size() >= 16; }));
  Peer& near = *relay.peers[0];
  RawClient far(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(1); }));
  size_t up = 0;  // bytes of the client's passed on

  for (size_t n = 1; n < kTlsDetectBytes; ++n) {
    far.send(near.received.substr(up++, 1));
    ASSERT_TRUE(arrive(n));
    EXPECT_EQ(server().detecting().detection(), Detection::kPending);
  }
  // The server greets before it knows: kept, then sent once TLS is up.
  ASSERT_TRUE(server().transport->write("early"));
  far.send(near.received.substr(up++, 1));
  ASSERT_TRUE(run_until([&] { return server().detecting().detection() != Detection::kPending; }));
  EXPECT_EQ(server().detecting().detection(), Detection::kTls);

  size_t down = 0;
  auto relay_both_ways = [&] {
    if (up < near.received.size()) {
      far.send(std::string_view(near.received).substr(up));
      up = near.received.size();
    }
    far.receive();
    if (down < far.received.size()) {
      EXPECT_TRUE(near.transport->write(std::string_view(far.received).substr(down)));
      down = far.received.size();
    }
  };
  ASSERT_TRUE(run_until([&] {
    relay_both_ways();
    return client.received == "early" || client.error != 0;
  })) << static_cast<TlsTransport&>(*client.transport).failure_reason();
  EXPECT_EQ(server().transport->peer_identity(), kWeb);
  EXPECT_EQ(server().writable, 1);  // the kept output drained
  ASSERT_TRUE(client.transport->write("late"));
  ASSERT_TRUE(run_until([&] {
    relay_both_ways();
    return server().received == "late";
  }));
}

TEST_F(DetectingTransportTest, AClientThatEndsBeforeSendingReadsAsEof) {
  // Ended before the listener accepted: decided when made.
  RawClient early(listener_->address());
  early.shutdown_write();
  ASSERT_TRUE(run_until([&] { return accepted(1) && server(0).eof; }));
  // Ended while the listener waited.
  RawClient late(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(2); }));
  loop_.run_until_idle();
  EXPECT_EQ(server(1).detecting().detection(), Detection::kPending);
  late.shutdown_write();
  ASSERT_TRUE(run_until([&] { return server(1).eof; }));

  for (size_t i = 0; i < 2; ++i) {
    Peer& srv = server(i);
    EXPECT_EQ(srv.detecting().detection(), Detection::kNoData) << i;
    EXPECT_FALSE(srv.detecting().is_tls());
    EXPECT_FALSE(srv.transport->failed());
    EXPECT_EQ(srv.received, "");
    EXPECT_EQ(srv.error, 0);
    // Half-closed, as on plain TCP: the answer still reaches the client.
    ASSERT_TRUE(srv.transport->write("bye"));
    srv.transport->shutdown_write();
  }
  ASSERT_TRUE(run_until([&] {
    early.receive();
    late.receive();
    return early.eof && late.eof;
  }));
  EXPECT_EQ(early.received, "bye");
  EXPECT_EQ(late.received, "bye");
}

TEST_F(DetectingTransportTest, AResetBeforeAnyByteFailsTheConnection) {
  // Reset before the listener accepted: seen when made, told on the
  // first event (the constructor calls nobody back).
  RawClient early(listener_->address());
  early.reset();
  ASSERT_TRUE(run_until([&] { return accepted(1) && server(0).error != 0; }));
  // Reset while the listener waited.
  RawClient late(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(2); }));
  loop_.run_until_idle();
  late.reset();
  ASSERT_TRUE(run_until([&] { return server(1).error != 0; }));

  for (size_t i = 0; i < 2; ++i) {
    Peer& srv = server(i);
    EXPECT_EQ(srv.error, ECONNRESET) << i;
    EXPECT_TRUE(srv.transport->failed());
    EXPECT_EQ(srv.transport->error(), ECONNRESET);
    EXPECT_EQ(srv.detecting().detection(), Detection::kNoData);
    EXPECT_EQ(srv.detecting().inner(), nullptr);
    Buffer in;
    EXPECT_EQ(srv.transport->read(in), ReadResult::kError);
    EXPECT_FALSE(srv.transport->write("x"));
  }
  // Told once.
  loop_.advance(kTimeout * 2);
  EXPECT_EQ(server(0).callbacks() + server(1).callbacks(), 2);
}

TEST_F(DetectingTransportTest, ATlsFailureReachesTheOwner) {
  Peer& client = connect_tls(nullptr);  // no certificate, and the listener requires one
  ASSERT_TRUE(run_until([&] { return accepted(1) && server().error != 0; }));
  DetectingTransport& srv = server().detecting();
  EXPECT_TRUE(srv.is_tls());
  EXPECT_EQ(server().error, EACCES);
  EXPECT_TRUE(srv.failed());
  EXPECT_EQ(srv.error(), EACCES);
  auto* tls = dynamic_cast<const TlsTransport*>(srv.inner());
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(tls->failure_reason(), "client presented no certificate, and one is required");
  EXPECT_TRUE(run_until([&] { return client.error != 0 || client.read_error; }));
}

TEST_F(DetectingTransportTest, LargeDataCrossesBothWaysAfterEitherDecision) {
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& tls = connect_tls(&web);
  ASSERT_TRUE(tls.transport->write("x"));
  ASSERT_TRUE(run_until([&] { return accepted(1) && server(0).received == "x"; }));
  tls.fd = static_cast<TlsTransport&>(*tls.transport).fd();
  Peer& plain = connect_plain();
  ASSERT_TRUE(plain.transport->write("x"));
  ASSERT_TRUE(run_until([&] { return accepted(2) && server(1).received == "x"; }));
  plain.fd = static_cast<Socket&>(*plain.transport).fd();
  ASSERT_TRUE(server(0).detecting().is_tls());
  ASSERT_FALSE(server(1).detecting().is_tls());

  for (size_t i = 0; i < 2; ++i) {
    Peer& client = i == 0 ? tls : plain;
    Peer& srv = server(i);
    client.received.clear();
    srv.received.clear();
    // More than the sockets hold, so both sides buffer and drain. Small
    // send buffers, or loopback's autotuning takes megabytes.
    for (Peer* p : {&client, &srv}) {
      int small = 16 * 1024;
      ASSERT_EQ(setsockopt(p->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    }
    std::string up = pattern(3 << 20, 1 + i);
    std::string down = pattern(3 << 20, 3 + i);
    ASSERT_TRUE(client.transport->write(up));
    ASSERT_TRUE(srv.transport->write(down));
    EXPECT_GT(srv.transport->pending_output(), 0u) << i;
    client.transport->shutdown_write();
    srv.transport->shutdown_write();
    ASSERT_TRUE(run_until([&] { return client.eof && srv.eof; }))
        << i << ": client read " << client.received.size() << ", server read " << srv.received.size();
    EXPECT_TRUE(srv.received == up) << i;
    EXPECT_TRUE(client.received == down) << i;
    // Application bytes, through the detecting transport.
    EXPECT_EQ(srv.transport->bytes_read(), up.size() + 1) << i;
    EXPECT_EQ(srv.transport->bytes_written(), down.size()) << i;
    EXPECT_EQ(srv.transport->pending_output(), 0u) << i;
    EXPECT_GE(srv.writable, 1) << i;
    EXPECT_EQ(srv.error + client.error, 0) << i;
  }
}

TEST_F(DetectingTransportTest, CloseWhileWaitingIsFinalAndSilent) {
  RawClient client(listener_->address());
  ASSERT_TRUE(run_until([&] { return accepted(1); }));
  loop_.run_until_idle();
  Peer& srv = server();
  ASSERT_TRUE(srv.transport->write("dropped"));
  srv.transport->close();
  EXPECT_FALSE(srv.transport->open());
  EXPECT_FALSE(srv.transport->write("x"));
  Buffer in;
  EXPECT_EQ(srv.transport->read(in), ReadResult::kError);
  ASSERT_TRUE(run_until([&] {
    client.receive();
    return client.eof;
  }));
  EXPECT_EQ(client.received, "");
  // The timeout no longer fires.
  loop_.advance(kTimeout * 2);
  EXPECT_EQ(srv.detecting().detection(), Detection::kPending);
  EXPECT_EQ(srv.callbacks(), 0);
}

TEST(DetectingTransportFactory, IsForListenersOnly) {
  DetectingTransportFactory factory(PlainTransportFactory::shared());
  EXPECT_EQ(factory.timeout(), std::chrono::seconds(1));
  EventLoop loop;
  SocketAddress address;
  std::string error;
  ASSERT_TRUE(parse_socket_address("127.0.0.1:9", address, error));
  int errno_value = 0;
  EXPECT_EQ(factory.connect(loop, address, nullptr, errno_value), nullptr);
  EXPECT_EQ(errno_value, EINVAL);
}

}  // namespace
}  // namespace trellis::net
