// The proxies' stream as a proxy sees it: a real grpc++ client over TLS to
// the push server, with a mesh CA made for each test. What one proxy may ask
// of the stream is bounded, and no proxy can pass for another.
#include "control/push_server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "common/spiffe.h"
#include "control/ca/certificate_authority.h"
#include "control/registry.h"
#include "support/ca_test_pki.h"
#include "trellis/v1/discovery.grpc.pb.h"

namespace trellis::control {
namespace {

using namespace std::chrono_literals;
using testing::KeyKind;
using testing::make_csr;
using testing::make_key;
using testing::uri_san;
using testing::write_test_file;

constexpr const char* kTrustDomain = "cluster.local";
constexpr const char* kJoinToken = "trellis-tok-00000000-good";

// Admits the one join token above as default/details and signs with a real CA.
class TestSource final : public PushSource {
 public:
  explicit TestSource(CertificateAuthority& ca) : ca_(ca) {}
  MeshView mesh_view() override { return {}; }
  Result<ProxyIdentity> verify_join_token(std::string_view secret) override {
    if (secret != kJoinToken) return Error{"invalid token"};
    return ProxyIdentity{"default", "details", "join token tok-00000000"};
  }
  Result<Signed> sign_proxy_certificate(std::string_view csr_pem, const ProxyIdentity& identity) override {
    ++signed_;
    auto id = SpiffeId::make(kTrustDomain, identity.namespace_, identity.service_account);
    if (!id) return Error{id.error().message};
    auto issued = ca_.sign_workload(csr_pem, *id, std::chrono::hours(1));
    if (!issued) return Error{issued.error().message};
    Signed out;
    out.certificate.set_certificate_pem(issued->certificate_pem);
    out.certificate.set_trust_bundle_pem(issued->trust_bundle_pem);
    out.issuer = "issuer";
    return out;
  }
  std::string trust_domain() override { return kTrustDomain; }
  std::string trust_bundle_pem() override { return ca_.trust_bundle_pem(); }
  std::string issuer_of(std::string_view pem) override { return ca_.issued_by_current(pem) ? "issuer" : ""; }
  Result<bool> proxy_connected(const v1::Hello&) override { return true; }
  void proxy_heartbeat(const v1::Hello&) override {}

  std::atomic<int> signed_{0};

 private:
  CertificateAuthority& ca_;
};

class PushServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trellis-push-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto ca = CertificateAuthority::open((dir_ / "ca").string(), kTrustDomain, clock_);
    ASSERT_TRUE(ca) << ca.error().message;
    ca_ = std::move(*ca);
    auto server = ca_->issue_server({"localhost"}, {"127.0.0.1"}, std::chrono::hours(24));
    ASSERT_TRUE(server) << server.error().message;
    PushServer::TlsFiles files{(dir_ / "server.key").string(), (dir_ / "server.crt").string(),
                               (dir_ / "bundle.pem").string()};
    write_test_file(files.private_key, server->private_key_pem, 0600);
    write_test_file(files.certificate_chain,
                    server->certificate.certificate_pem + server->certificate.chain_pem, 0644);
    write_test_file(files.trust_bundle, ca_->trust_bundle_pem(), 0644);
    source_ = std::make_unique<TestSource>(*ca_);
    push_ = std::make_unique<PushServer>(*source_);
    auto port = push_->start("127.0.0.1:0", files);
    ASSERT_TRUE(port) << port.error().message;
    port_ = *port;
  }

  void TearDown() override {
    push_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A proxy's stream: TLS checked against the mesh's roots, with a client
  // certificate when given one.
  struct Proxy {
    std::unique_ptr<v1::ProxyDiscovery::Stub> stub;
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::ProxyMessage, v1::ControlMessage>> stream;
  };
  std::unique_ptr<Proxy> connect(const std::string& key_pem = "", const std::string& certificate_pem = "") {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ca_->trust_bundle_pem();
    tls.pem_private_key = key_pem;
    tls.pem_cert_chain = certificate_pem;
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::SslCredentials(tls));
    auto proxy = std::make_unique<Proxy>();
    proxy->stub = v1::ProxyDiscovery::NewStub(channel);
    proxy->context.set_deadline(std::chrono::system_clock::now() + 20s);
    proxy->stream = proxy->stub->Stream(&proxy->context);
    return proxy;
  }

  static v1::ProxyMessage hello(const std::string& node_id, const std::string& service, bool with_token,
                                const std::string& csr) {
    v1::ProxyMessage message;
    v1::Hello* h = message.mutable_hello();
    h->mutable_node()->set_id(node_id);
    h->mutable_node()->set_service(service);
    if (with_token) h->set_join_token(kJoinToken);
    h->set_csr_pem(csr);
    return message;
  }

  std::string csr(const std::string& service = "details") {
    return make_csr(key_.get(), {uri_san("spiffe://cluster.local/ns/default/sa/" + service)});
  }

  std::filesystem::path dir_;
  SystemWallClock clock_;
  std::unique_ptr<CertificateAuthority> ca_;
  std::unique_ptr<TestSource> source_;
  std::unique_ptr<PushServer> push_;
  int port_ = 0;
  UniquePkey key_ = make_key(KeyKind::kP256);
};

TEST_F(PushServerTest, AJoinedProxyGetsItsCertificateThenOneSigningASecondAtMost) {
  auto proxy = connect();
  ASSERT_TRUE(proxy->stream->Write(hello("details-1", "details", true, csr())));
  v1::ControlMessage in;
  ASSERT_TRUE(proxy->stream->Read(&in));
  ASSERT_TRUE(in.has_certificate());
  EXPECT_FALSE(in.certificate().certificate_pem().empty()) << in.certificate().error();
  // A burst of renewals: none signed within a second of the last, and the
  // queue for a proxy that stops reading stays bounded.
  v1::ProxyMessage renew;
  renew.mutable_certificate_request()->set_csr_pem(csr());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(proxy->stream->Write(renew));
  ASSERT_TRUE(proxy->stream->Read(&in));
  while (in.has_update()) ASSERT_TRUE(proxy->stream->Read(&in));
  ASSERT_TRUE(in.has_certificate());
  EXPECT_EQ(in.certificate().error(), "too many certificate requests: at most one a second");
  EXPECT_EQ(source_->signed_.load(), 1);
  // A second later, one is signed again.
  std::this_thread::sleep_for(1100ms);
  ASSERT_TRUE(proxy->stream->Write(renew));
  for (int i = 0; i < 10 && source_->signed_.load() < 2; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(source_->signed_.load(), 2);
}

TEST_F(PushServerTest, ANodeIdInUseByAnotherIdentityIsRefused) {
  auto details = connect();
  ASSERT_TRUE(details->stream->Write(hello("node-1", "details", true, csr())));
  v1::ControlMessage in;
  ASSERT_TRUE(details->stream->Read(&in));
  ASSERT_TRUE(in.has_certificate() && !in.certificate().certificate_pem().empty());
  // Another identity (a certificate for reviews) with the same node id.
  UniquePkey other = make_key(KeyKind::kP256);
  auto reviews_id = *SpiffeId::make(kTrustDomain, "default", "reviews");
  auto reviews = ca_->sign_workload(make_csr(other.get(), {uri_san(reviews_id.to_string())}), reviews_id, 1h);
  ASSERT_TRUE(reviews) << reviews.error().message;
  auto thief = connect(private_key_pem(other.get()), reviews->certificate_pem);
  ASSERT_TRUE(thief->stream->Write(hello("node-1", "reviews", false, "")));
  while (thief->stream->Read(&in)) {
  }
  grpc::Status status = thief->stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(status.error_message().find("that node id is connected already as "
                                        "spiffe://cluster.local/ns/default/sa/details"),
            std::string::npos)
      << status.error_message();
}

TEST_F(PushServerTest, TheControlPlanesOwnCertificateAdmitsNoProxy) {
  auto server = ca_->issue_server({"localhost"}, {}, std::chrono::hours(1));
  ASSERT_TRUE(server) << server.error().message;
  auto proxy = connect(server->private_key_pem, server->certificate.certificate_pem);
  ASSERT_TRUE(proxy->stream->Write(hello("control-1", "trellis-control", false, "")));
  v1::ControlMessage in;
  while (proxy->stream->Read(&in)) {
  }
  grpc::Status status = proxy->stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(status.error_message().find("is the control plane's, not a proxy's"), std::string::npos)
      << status.error_message();
}

}  // namespace
}  // namespace trellis::control
