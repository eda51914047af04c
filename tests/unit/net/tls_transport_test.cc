#include "net/tls_transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/address.h"
#include "net/socket.h"
#include "net/tls_detect.h"
#include "support/loopback_listener.h"
#include "support/test_pki.h"

namespace trellis::net {
namespace {

using ::testing::HasSubstr;
using trellis::testing::LeafSpec;
using trellis::testing::TestCa;
using trellis::testing::TestCredentials;

// Loop passes before a test gives up on a condition: seconds of spinning,
// far more than any exchange here needs; only a hang reaches it.
constexpr int kMaxPasses = 1000000;

constexpr char kApi[] = "spiffe://trellis.test/ns/shop/sa/api";
constexpr char kWeb[] = "spiffe://trellis.test/ns/shop/sa/web";

// Client options, spelled out: GCC warns on designated initializers that
// leave members out.
TlsClientOptions expecting(std::vector<std::string> identities) {
  TlsClientOptions o;
  o.accepted_identities = std::move(identities);
  return o;
}
TlsClientOptions with_server_name(std::string name) {
  TlsClientOptions o;
  o.server_name = std::move(name);
  return o;
}
TlsClientOptions verifying(std::string name) {
  TlsClientOptions o;
  o.verify_name = std::move(name);
  return o;
}

// One end of a connection as its user sees it: everything readable is read
// at once, and what happened is remembered.
struct Peer final : TransportCallbacks {
  std::unique_ptr<Transport> transport;
  std::string received;
  bool eof = false;
  bool read_error = false;
  int error = 0;
  int writable = 0;

  void on_readable() override {
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
  void on_transport_error(int e) override { error = e; }

  TlsTransport& tls() { return static_cast<TlsTransport&>(*transport); }
  bool up() { return transport->open() && tls().established(); }
};

using Listener = trellis::testing::LoopbackListener<Peer>;

// Real OpenSSL over real loopback sockets, both ends on one loop driven by
// run_until_idle(): loopback delivers at once, so every pass moves the
// exchange on and nothing waits on time.
class TlsTransportTest : public ::testing::Test {
 protected:
  std::shared_ptr<const TlsContext> context(TlsContextOptions o) {
    auto made = TlsContext::create(o);
    EXPECT_TRUE(made.ok()) << made.error().message;
    return made.ok() ? *made : nullptr;
  }

  std::shared_ptr<const TlsContext> server_context(const TestCredentials& credentials,
                                                   ClientCertificate mode = ClientCertificate::kRequired) {
    TlsContextOptions o;
    o.role = TlsRole::kServer;
    o.certificate_chain_pem = credentials.certificate_chain_pem;
    o.private_key_pem = credentials.private_key_pem;
    o.trust_bundle_pem = root_.certificate_pem();
    o.client_certificate = mode;
    return context(std::move(o));
  }

  // `credentials` null: the client shows no certificate.
  std::shared_ptr<const TlsContext> client_context(const TestCredentials* credentials) {
    TlsContextOptions o;
    if (credentials != nullptr) {
      o.certificate_chain_pem = credentials->certificate_chain_pem;
      o.private_key_pem = credentials->private_key_pem;
    }
    o.trust_bundle_pem = root_.certificate_pem();
    return context(std::move(o));
  }

  std::shared_ptr<TransportFactory> client_factory(std::shared_ptr<const TlsContext> context,
                                                   TlsClientOptions options = {}) {
    auto made = TlsTransportFactory::client(std::move(context), std::move(options));
    EXPECT_TRUE(made.ok()) << made.error().message;
    return made.ok() ? *made : nullptr;
  }

  void listen(std::shared_ptr<const TlsContext> context) {
    auto factory = TlsTransportFactory::server(std::move(context));
    ASSERT_TRUE(factory.ok()) << factory.error().message;
    listener_ = std::make_unique<Listener>(loop_, *factory);
  }

  Peer& connect(const std::shared_ptr<TransportFactory>& factory) {
    auto peer = std::make_unique<Peer>();
    int error = 0;
    peer->transport = factory->connect(loop_, listener_->address(), peer.get(), error);
    EXPECT_NE(peer->transport, nullptr) << "connect: " << error;
    clients_.push_back(std::move(peer));
    return *clients_.back();
  }

  Peer& server(size_t i = 0) { return *listener_->peers.at(i); }
  bool accepted(size_t n) { return listener_ && listener_->peers.size() >= n; }

  // Runs the loop until `done` holds; false if it never does. The bound is
  // far above what any exchange here needs and only catches a hang.
  bool run_until(const std::function<bool()>& done) {
    for (int pass = 0; pass < kMaxPasses; ++pass) {
      if (done()) return true;
      loop_.run_until_idle();
    }
    return done();
  }

  // Connects a client with `credentials` (null: none) that accepts the
  // server's `identities`, and runs until both sides are up.
  Peer& connect_up(const TestCredentials* credentials, std::vector<std::string> identities = {}) {
    TlsClientOptions options;
    options.accepted_identities = std::move(identities);
    Peer& client = connect(client_factory(client_context(credentials), std::move(options)));
    size_t index = listener_->peers.size();
    EXPECT_TRUE(run_until([&] { return client.writable > 0 && accepted(index + 1) && server(index).up(); }))
        << "client: " << client.tls().failure_reason();
    return client;
  }

  SimulatedClock clock_;
  EventLoop loop_{clock_};
  TestCa root_{"Transport Test Root"};
  std::unique_ptr<Listener> listener_;
  std::vector<std::unique_ptr<Peer>> clients_;
};

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

TEST_F(TlsTransportTest, MutualTlsCarriesLargeDataBothWays) {
  listen(server_context(root_.issue_spiffe(kApi)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& client = connect_up(&web, {kApi});
  ASSERT_EQ(client.writable, 1);
  Peer& srv = server();

  // More than the sockets hold: both sides' writes stop on WANT_WRITE and
  // go on from the buffered rest as the other side reads. Small send
  // buffers, or the kernel's autotuning takes megabytes on loopback. (Not
  // receive buffers: shrunk below the window already offered, they make
  // the kernel drop segments and wait for retransmission.)
  for (Peer* p : {&client, &srv}) {
    int small = 16 * 1024;
    ASSERT_EQ(setsockopt(p->tls().fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  }
  std::string up = pattern(3 << 20, 1);
  std::string down = pattern(3 << 20, 2);
  ASSERT_TRUE(client.transport->write(up));
  ASSERT_TRUE(srv.transport->write(down));
  EXPECT_GT(client.transport->pending_output(), 0u);
  EXPECT_GT(srv.transport->pending_output(), 0u);
  client.transport->shutdown_write();
  srv.transport->shutdown_write();
  ASSERT_TRUE(run_until([&] { return client.eof && srv.eof; }))
      << "client read " << client.received.size() << ", " << client.transport->pending_output()
      << " to send; server read " << srv.received.size() << ", " << srv.transport->pending_output()
      << " to send";

  EXPECT_EQ(srv.received.size(), up.size());
  EXPECT_TRUE(srv.received == up);
  EXPECT_EQ(client.received.size(), down.size());
  EXPECT_TRUE(client.received == down);
  // Application bytes, not TLS records.
  EXPECT_EQ(client.transport->bytes_written(), up.size());
  EXPECT_EQ(client.transport->bytes_read(), down.size());
  EXPECT_EQ(srv.transport->bytes_written(), down.size());
  EXPECT_EQ(srv.transport->bytes_read(), up.size());
  EXPECT_EQ(client.transport->pending_output(), 0u);
  // Once when up, once when the buffered output drained.
  EXPECT_EQ(client.writable, 2);
  EXPECT_FALSE(client.read_error || srv.read_error);
  EXPECT_EQ(client.error + srv.error, 0);
}

TEST_F(TlsTransportTest, EachSideSeesThePeersVerifiedIdentity) {
  listen(server_context(root_.issue_spiffe(kApi)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& client = connect_up(&web, {kApi});
  EXPECT_EQ(client.transport->peer_identity(), kApi);
  EXPECT_EQ(server().transport->peer_identity(), kWeb);
  // And what they say arrives.
  ASSERT_TRUE(client.transport->write("ping"));
  ASSERT_TRUE(run_until([&] { return server().received == "ping"; }));
  ASSERT_TRUE(server().transport->write("pong"));
  ASSERT_TRUE(run_until([&] { return client.received == "pong"; }));
}

TEST_F(TlsTransportTest, AnIdentityThroughAnIntermediateIsVerified) {
  TestCa intermediate = root_.intermediate("Transport Test Intermediate");
  listen(server_context(intermediate.issue_spiffe(kApi)));
  TestCredentials web = intermediate.issue_spiffe(kWeb);
  Peer& client = connect_up(&web, {kApi});
  EXPECT_EQ(client.transport->peer_identity(), kApi);
  EXPECT_EQ(server().transport->peer_identity(), kWeb);
}

TEST_F(TlsTransportTest, ClientRefusesAServerWithAnotherIdentity) {
  listen(server_context(root_.issue_spiffe("spiffe://trellis.test/ns/shop/sa/impostor")));
  TestCredentials web = root_.issue_spiffe(kWeb);
  TlsClientOptions options;
  options.accepted_identities = {kApi, "spiffe://trellis.test/ns/shop/sa/api-canary"};
  Peer& client = connect(client_factory(client_context(&web), options));
  ASSERT_TRUE(run_until([&] { return client.error != 0 && accepted(1) && server().error != 0; }));
  EXPECT_EQ(client.error, EACCES);
  EXPECT_EQ(
      client.tls().failure_reason(),
      "server identity spiffe://trellis.test/ns/shop/sa/impostor is not one of the destination's identities");
  EXPECT_EQ(client.writable, 0);
  EXPECT_TRUE(client.transport->failed());
  EXPECT_EQ(client.transport->peer_identity(), "");
  // The server hears of it by an alert.
  EXPECT_TRUE(server().transport->failed());
  EXPECT_EQ(server().writable, 0);
}

TEST_F(TlsTransportTest, ClientAcceptsAnyOfTheDestinationsIdentities) {
  listen(server_context(root_.issue_spiffe("spiffe://trellis.test/ns/shop/sa/api-canary")));
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& client = connect_up(&web, {kApi, "spiffe://trellis.test/ns/shop/sa/api-canary"});
  EXPECT_EQ(client.transport->peer_identity(), "spiffe://trellis.test/ns/shop/sa/api-canary");
}

TEST_F(TlsTransportTest, ClientRefusesAServerWithoutIdentityWhenOneIsExpected) {
  LeafSpec dns_only;
  dns_only.dns_names = {"api.shop.svc"};
  listen(server_context(root_.issue(dns_only)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  TlsClientOptions options;
  options.accepted_identities = {kApi};
  Peer& client = connect(client_factory(client_context(&web), options));
  ASSERT_TRUE(run_until([&] { return client.error != 0; }));
  EXPECT_EQ(client.error, EACCES);
  EXPECT_THAT(client.tls().failure_reason(), HasSubstr("has no SPIFFE identity"));
}

TEST_F(TlsTransportTest, ServerRequiringACertificateRefusesAClientWithout) {
  listen(server_context(root_.issue_spiffe(kApi), ClientCertificate::kRequired));
  Peer& client = connect(client_factory(client_context(nullptr)));
  ASSERT_TRUE(run_until([&] { return accepted(1) && server().error != 0; }));
  EXPECT_EQ(server().error, EACCES);
  EXPECT_EQ(server().tls().failure_reason(), "client presented no certificate, and one is required");
  EXPECT_EQ(server().transport->peer_identity(), "");
  // In TLS 1.3 the client finishes first and learns it from the alert.
  ASSERT_TRUE(run_until([&] { return client.error != 0 || client.read_error; }));
  EXPECT_TRUE(client.transport->failed());
  EXPECT_THAT(client.tls().failure_reason(), HasSubstr("certificate required"));
}

TEST_F(TlsTransportTest, ServerWithOptionalCertificateAdmitsAClientWithout) {
  listen(server_context(root_.issue_spiffe(kApi), ClientCertificate::kOptional));
  Peer& client = connect_up(nullptr, {kApi});
  EXPECT_EQ(server().transport->peer_identity(), "");
  EXPECT_EQ(client.transport->peer_identity(), kApi);
  ASSERT_TRUE(client.transport->write("hello"));
  ASSERT_TRUE(run_until([&] { return server().received == "hello"; }));
}

TEST_F(TlsTransportTest, ACertificateFromAnotherCaIsRefused) {
  TestCa stranger("Unrelated Root");
  // A server the client's bundle does not vouch for.
  listen(server_context(stranger.issue_spiffe(kApi)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& client = connect(client_factory(client_context(&web), expecting({kApi})));
  ASSERT_TRUE(run_until([&] { return client.error != 0; }));
  EXPECT_EQ(client.error, EACCES);
  EXPECT_THAT(client.tls().failure_reason(),
              HasSubstr("server certificate refused: unable to get local issuer"));
  EXPECT_EQ(client.writable, 0);
}

TEST_F(TlsTransportTest, AClientCertificateFromAnotherCaIsRefused) {
  TestCa stranger("Unrelated Root");
  listen(server_context(root_.issue_spiffe(kApi)));
  TestCredentials intruder = stranger.issue_spiffe(kWeb);
  connect(client_factory(client_context(&intruder)));
  ASSERT_TRUE(run_until([&] { return accepted(1) && server().error != 0; }));
  EXPECT_EQ(server().error, EACCES);
  EXPECT_THAT(server().tls().failure_reason(), HasSubstr("client certificate refused"));
  EXPECT_EQ(server().transport->peer_identity(), "");
}

TEST_F(TlsTransportTest, AnExpiredCertificateIsRefused) {
  LeafSpec expired;
  expired.uris = {kApi};
  expired.not_before = std::chrono::hours(-48);
  expired.not_after = std::chrono::hours(-24);
  listen(server_context(root_.issue(expired)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& client = connect(client_factory(client_context(&web), expecting({kApi})));
  ASSERT_TRUE(run_until([&] { return client.error != 0; }));
  EXPECT_EQ(client.error, EACCES);
  EXPECT_THAT(client.tls().failure_reason(), HasSubstr("certificate has expired"));
}

TEST_F(TlsTransportTest, PeersChainedToEitherRootOfTheBundleAreAccepted) {
  TestCa next_root("Transport Test Root 2");
  std::string bundle = root_.certificate_pem() + next_root.certificate_pem();
  TestCredentials api = root_.issue_spiffe(kApi);      // not yet renewed
  TestCredentials web = next_root.issue_spiffe(kWeb);  // renewed under the new root
  TlsContextOptions server_options;
  server_options.role = TlsRole::kServer;
  server_options.certificate_chain_pem = api.certificate_chain_pem;
  server_options.private_key_pem = api.private_key_pem;
  server_options.trust_bundle_pem = bundle;
  listen(context(server_options));
  TlsContextOptions client_options;
  client_options.certificate_chain_pem = web.certificate_chain_pem;
  client_options.private_key_pem = web.private_key_pem;
  client_options.trust_bundle_pem = bundle;
  Peer& client = connect(client_factory(context(client_options), expecting({kApi})));
  ASSERT_TRUE(run_until([&] { return client.writable > 0 && accepted(1) && server().up(); }))
      << client.tls().failure_reason();
  EXPECT_EQ(client.transport->peer_identity(), kApi);
  EXPECT_EQ(server().transport->peer_identity(), kWeb);

  // Without the old root the same server is refused.
  client_options.trust_bundle_pem = next_root.certificate_pem();
  Peer& strict = connect(client_factory(context(client_options), expecting({kApi})));
  ASSERT_TRUE(run_until([&] { return strict.error != 0; }));
  EXPECT_EQ(strict.error, EACCES);
}

TEST_F(TlsTransportTest, AlpnAgreesOnTheServersPreferredProtocol) {
  TestCredentials api = root_.issue_spiffe(kApi);
  TlsContextOptions server_options;
  server_options.role = TlsRole::kServer;
  server_options.certificate_chain_pem = api.certificate_chain_pem;
  server_options.private_key_pem = api.private_key_pem;
  server_options.trust_bundle_pem = root_.certificate_pem();
  server_options.alpn = {"h2", "http/1.1"};
  listen(context(server_options));
  TestCredentials web = root_.issue_spiffe(kWeb);
  TlsContextOptions client_options;
  client_options.certificate_chain_pem = web.certificate_chain_pem;
  client_options.private_key_pem = web.private_key_pem;
  client_options.trust_bundle_pem = root_.certificate_pem();
  client_options.alpn = {"http/1.1", "h2"};
  Peer& client = connect(client_factory(context(client_options)));
  ASSERT_TRUE(run_until([&] { return client.writable > 0 && accepted(1) && server().up(); }));
  EXPECT_EQ(client.transport->alpn(), "h2");
  EXPECT_EQ(server().transport->alpn(), "h2");

  // Nothing in common: no protocol, the connection still comes up.
  client_options.alpn = {"spdy/3"};
  Peer& other = connect(client_factory(context(client_options)));
  ASSERT_TRUE(run_until([&] { return other.writable > 0 && accepted(2) && server(1).up(); }));
  EXPECT_EQ(other.transport->alpn(), "");
  EXPECT_EQ(server(1).transport->alpn(), "");
}

TEST_F(TlsTransportTest, AReconnectingClientResumesItsSession) {
  listen(server_context(root_.issue_spiffe(kApi)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  auto client_ctx = client_context(&web);
  auto factory = client_factory(client_ctx, expecting({kApi}));
  Peer& first = connect(factory);
  ASSERT_TRUE(run_until([&] { return first.writable > 0 && accepted(1) && server().up(); }));
  EXPECT_FALSE(first.tls().resumed());
  // The session ticket comes after the handshake, before the server's data.
  ASSERT_TRUE(server().transport->write("hello"));
  ASSERT_TRUE(run_until([&] { return first.received == "hello"; }));
  first.transport->close();  // as a pool drops an idle connection

  Peer& second = connect(factory);
  ASSERT_TRUE(run_until([&] { return second.writable > 0 && accepted(2) && server(1).up(); }));
  EXPECT_TRUE(second.tls().resumed());
  EXPECT_TRUE(server(1).tls().resumed());
  // Identities are carried by the session.
  EXPECT_EQ(second.transport->peer_identity(), kApi);
  EXPECT_EQ(server(1).transport->peer_identity(), kWeb);
  ASSERT_TRUE(second.transport->write("again"));
  ASSERT_TRUE(run_until([&] { return server(1).received == "again"; }));

  // Sessions belong to the factory that got them: another one, even with
  // the same context, starts afresh.
  Peer& third = connect(client_factory(client_ctx, expecting({kApi})));
  ASSERT_TRUE(run_until([&] { return third.writable > 0 && accepted(3) && server(2).up(); }));
  EXPECT_FALSE(third.tls().resumed());
}

// Workers share a cluster's factory; each keeps the sessions it got. Two
// threads connect with one factory at once (the server greets every
// connection, which also delivers the session ticket): each thread's first
// connection is a full handshake, its second resumes.
TEST_F(TlsTransportTest, ThreadsSharingAFactoryEachResumeTheirOwnSessions) {
  listen(server_context(root_.issue_spiffe(kApi)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  auto factory = client_factory(client_context(&web), expecting({kApi}));
  SocketAddress address = listener_->address();
  std::atomic<int> finished{0};
  auto connect_twice = [&](std::vector<bool>& resumed) {
    EventLoop loop;
    for (int i = 0; i < 2; ++i) {
      Peer peer;
      int error = 0;
      peer.transport = factory->connect(loop, address, &peer, error);
      ASSERT_NE(peer.transport, nullptr);
      for (int pass = 0; pass < kMaxPasses && peer.received != "hello" && peer.error == 0; ++pass) {
        loop.run_until_idle();
      }
      ASSERT_EQ(peer.received, "hello") << peer.tls().failure_reason();
      resumed.push_back(peer.tls().resumed());
      peer.transport->close();
    }
  };
  std::vector<bool> here, there;
  std::thread worker([&] {
    connect_twice(there);
    ++finished;
  });
  // This thread serves both, and connects in between.
  std::vector<bool> greeted;
  auto serve = [&] {
    for (size_t i = 0; i < listener_->peers.size(); ++i) {
      if (greeted.size() <= i) greeted.push_back(false);
      if (!greeted[i] && server(i).up()) greeted[i] = server(i).transport->write("hello");
    }
  };
  Peer* mine = nullptr;
  for (int connection = 0; connection < 2; ++connection) {
    mine = &connect(factory);
    ASSERT_TRUE(run_until([&] {
      serve();
      return mine->received == "hello" || mine->error != 0;
    })) << mine->tls().failure_reason();
    here.push_back(mine->tls().resumed());
    mine->transport->close();
  }
  EXPECT_TRUE(run_until([&] {
    serve();
    return finished.load() == 1;
  }));
  worker.join();
  EXPECT_EQ(here, (std::vector<bool>{false, true}));
  EXPECT_EQ(there, (std::vector<bool>{false, true}));
}

TEST_F(TlsTransportTest, ServerNameChoosesTheCertificate) {
  TestCredentials fallback = root_.issue_spiffe("spiffe://trellis.test/ns/edge/sa/default");
  TestCredentials exact = root_.issue_spiffe("spiffe://trellis.test/ns/edge/sa/api");
  TestCredentials wildcard = root_.issue_spiffe("spiffe://trellis.test/ns/edge/sa/wildcard");
  TlsContextOptions o;
  o.role = TlsRole::kServer;
  o.certificate_chain_pem = fallback.certificate_chain_pem;
  o.private_key_pem = fallback.private_key_pem;
  o.trust_bundle_pem = root_.certificate_pem();
  o.client_certificate = ClientCertificate::kNone;
  o.server_names = {{"*.example.com", wildcard.certificate_chain_pem, wildcard.private_key_pem},
                    {"api.example.com", exact.certificate_chain_pem, exact.private_key_pem}};
  listen(context(o));
  auto client_ctx = client_context(nullptr);
  auto identity_for = [&](const std::string& name) {
    Peer& client = connect(client_factory(client_ctx, with_server_name(name)));
    EXPECT_TRUE(run_until([&] { return client.writable > 0 || client.error != 0; })) << name;
    return std::string(client.transport->peer_identity());
  };
  EXPECT_EQ(identity_for("api.example.com"), "spiffe://trellis.test/ns/edge/sa/api");
  EXPECT_EQ(identity_for("API.Example.com"), "spiffe://trellis.test/ns/edge/sa/api");
  EXPECT_EQ(identity_for("shop.example.com"), "spiffe://trellis.test/ns/edge/sa/wildcard");
  EXPECT_EQ(identity_for("a.b.example.com"), "spiffe://trellis.test/ns/edge/sa/default");
  EXPECT_EQ(identity_for("example.com"), "spiffe://trellis.test/ns/edge/sa/default");
  EXPECT_EQ(identity_for(""), "spiffe://trellis.test/ns/edge/sa/default");
}

TEST_F(TlsTransportTest, AClientCanVerifyADnsNameOrIpInstead) {
  LeafSpec spec;
  spec.dns_names = {"api.trellis.test"};
  spec.ips = {"127.0.0.1"};
  listen(server_context(root_.issue(spec), ClientCertificate::kNone));
  auto client_ctx = client_context(nullptr);
  auto outcome = [&](const std::string& name) {
    Peer& client = connect(client_factory(client_ctx, verifying(name)));
    EXPECT_TRUE(run_until([&] { return client.writable > 0 || client.error != 0; })) << name;
    return client.error == 0 ? std::string("ok") : std::string(client.tls().failure_reason());
  };
  EXPECT_EQ(outcome("api.trellis.test"), "ok");
  EXPECT_EQ(outcome("127.0.0.1"), "ok");
  EXPECT_THAT(outcome("admin.trellis.test"), HasSubstr("hostname mismatch"));
  EXPECT_THAT(outcome("127.0.0.2"), HasSubstr("IP address mismatch"));
}

TEST_F(TlsTransportTest, MeshServersSpeakTls13OnlyGatewaysAlsoTls12WithAead) {
  TestCredentials api = root_.issue_spiffe(kApi);
  // A client outside the mesh that speaks TLS 1.2 at most, offering
  // `ciphers`. Shaped before any connection uses its context.
  auto tls12_client = [&](const char* ciphers) {
    TlsContextOptions o;
    o.trust_bundle_pem = root_.certificate_pem();
    o.allow_tls12 = true;
    auto ctx = context(o);
    SSL_CTX_set_max_proto_version(ctx->native(), TLS1_2_VERSION);
    EXPECT_EQ(SSL_CTX_set_cipher_list(ctx->native(), ciphers), 1);
    return client_factory(ctx, expecting({kApi}));
  };
  std::string reason;
  auto comes_up = [&](const std::shared_ptr<TransportFactory>& factory) {
    Peer& client = connect(factory);
    EXPECT_TRUE(run_until([&] { return client.writable > 0 || client.error != 0; }));
    reason = client.tls().failure_reason();
    return client.error == 0;
  };
  constexpr char kAead[] = "ECDHE-ECDSA-AES128-GCM-SHA256";
  constexpr char kCbc[] = "ECDHE-ECDSA-AES128-SHA256";

  listen(server_context(api, ClientCertificate::kNone));
  EXPECT_FALSE(comes_up(tls12_client(kAead)));
  EXPECT_THAT(reason, HasSubstr("protocol version"));

  TlsContextOptions gateway;
  gateway.role = TlsRole::kServer;
  gateway.certificate_chain_pem = api.certificate_chain_pem;
  gateway.private_key_pem = api.private_key_pem;
  gateway.client_certificate = ClientCertificate::kNone;
  gateway.allow_tls12 = true;
  listen(context(gateway));
  EXPECT_TRUE(comes_up(tls12_client(kAead)));
  EXPECT_FALSE(comes_up(tls12_client(kCbc)));
  EXPECT_THAT(reason, HasSubstr("handshake failure"));
  // TLS 1.3 clients still get TLS 1.3.
  EXPECT_TRUE(comes_up(client_factory(client_context(nullptr), expecting({kApi}))));
}

TEST_F(TlsTransportTest, AClientHelloLooksLikeTlsToAPermissiveListener) {
  // A plain listener sees the raw bytes a TLS client sends first.
  listener_ = std::make_unique<Listener>(loop_, PlainTransportFactory::shared());
  TestCredentials web = root_.issue_spiffe(kWeb);
  connect(client_factory(client_context(&web)));
  ASSERT_TRUE(run_until([&] { return accepted(1) && server().received.size() >= kTlsClientHelloBytes; }));
  EXPECT_TRUE(looks_like_tls(server().received));
  EXPECT_TRUE(looks_like_tls(server().received.substr(0, kTlsDetectBytes)));
}

TEST_F(TlsTransportTest, CloseIsFinalAndSilent) {
  listen(server_context(root_.issue_spiffe(kApi)));
  TestCredentials web = root_.issue_spiffe(kWeb);
  Peer& client = connect_up(&web, {kApi});
  client.transport->close();
  EXPECT_FALSE(client.transport->open());
  EXPECT_FALSE(client.transport->write("x"));
  Buffer in;
  EXPECT_EQ(client.transport->read(in), ReadResult::kError);
  // The server reads the end of the stream (no close_notify: a plain EOF).
  ASSERT_TRUE(run_until([&] { return server().eof; }));
  EXPECT_EQ(client.writable, 1);
  EXPECT_EQ(client.error, 0);
}

TEST(TlsTransportFactory, RefusesMismatchedContextsAndIdentities) {
  TestCa root("Factory Test Root");
  TestCredentials api = root.issue_spiffe(kApi);
  TlsContextOptions client_options;
  client_options.trust_bundle_pem = root.certificate_pem();
  auto client = TlsContext::create(client_options);
  ASSERT_TRUE(client.ok());
  TlsContextOptions server_options = client_options;
  server_options.role = TlsRole::kServer;
  server_options.certificate_chain_pem = api.certificate_chain_pem;
  server_options.private_key_pem = api.private_key_pem;
  auto server = TlsContext::create(server_options);
  ASSERT_TRUE(server.ok());

  EXPECT_FALSE(TlsTransportFactory::server(*client).ok());
  EXPECT_FALSE(TlsTransportFactory::client(*server, {}).ok());
  auto bad_id = TlsTransportFactory::client(*client, expecting({"api.shop"}));
  ASSERT_FALSE(bad_id.ok());
  EXPECT_THAT(bad_id.error().message, HasSubstr("\"api.shop\" is not a SPIFFE ID"));
  TlsClientOptions both = expecting({kApi});
  both.verify_name = "api.test";
  EXPECT_FALSE(TlsTransportFactory::client(*client, both).ok());
  EXPECT_FALSE(TlsTransportFactory::client(*client, with_server_name("10.0.0.1")).ok());
  EXPECT_TRUE(TlsTransportFactory::client(*client, expecting({kApi})).ok());
}

}  // namespace
}  // namespace trellis::net
