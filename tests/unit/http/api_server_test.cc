#include "http/api_server.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace trellis::http {
namespace {

// ---- RequestScreen: the checks alone -----------------------------------------

class RequestScreenTest : public ::testing::Test {
 protected:
  LocalEndpoint loopback_{"127.0.0.1", 15011, true};

  std::optional<ApiResponse> check(std::string_view method, std::vector<Header> headers,
                                   std::string_view body = {},
                                   const ApiServerOptions& options = api_options()) {
    headers_ = std::move(headers);
    RequestScreen screen(options);
    return screen.check(ApiRequest{method, "/v1/registry/instances", "", body, headers_, {}}, local_);
  }
  int status(std::string_view method, std::vector<Header> headers, std::string_view body = {}) {
    auto refused = check(method, std::move(headers), body);
    return refused ? refused->status : 0;
  }
  static ApiServerOptions api_options() {
    ApiServerOptions o;
    o.methods = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    return o;
  }

  LocalEndpoint local_ = loopback_;
  std::vector<Header> headers_;
};

TEST_F(RequestScreenTest, HostMustNameTheServer) {
  RequestScreen screen(api_options());
  for (const char* host : {"127.0.0.1:15011", "localhost:15011", "LocalHost:15011"}) {
    EXPECT_TRUE(screen.host_allowed(host, loopback_)) << host;
  }
  for (const char* host : {"attacker.example:15011", "attacker.example", "127.0.0.1:15012", "127.0.0.1",
                           "localhost", "127.0.0.2:15011", "", ":15011", "127.0.0.1:", "127.0.0.1:15011:1",
                           "127.0.0.1:0x3ab3", "127.0.0.1 :15011", "local%68ost:15011"}) {
    EXPECT_FALSE(screen.host_allowed(host, loopback_)) << host;
  }
}

TEST_F(RequestScreenTest, LocalhostOnlyOnLoopback) {
  RequestScreen screen(api_options());
  LocalEndpoint lan{"10.0.0.5", 15011, false};
  EXPECT_TRUE(screen.host_allowed("10.0.0.5:15011", lan));
  EXPECT_FALSE(screen.host_allowed("localhost:15011", lan));
  EXPECT_FALSE(screen.host_allowed("127.0.0.1:15011", lan));
}

TEST_F(RequestScreenTest, Ipv6HostsCompareAsAddresses) {
  RequestScreen screen(api_options());
  LocalEndpoint v6{"::1", 15011, true};
  EXPECT_TRUE(screen.host_allowed("[::1]:15011", v6));
  EXPECT_TRUE(screen.host_allowed("[0:0::0001]:15011", v6));
  EXPECT_TRUE(screen.host_allowed("localhost:15011", v6));
  EXPECT_FALSE(screen.host_allowed("::1:15011", v6));  // brackets are required
  EXPECT_FALSE(screen.host_allowed("[::2]:15011", v6));
}

TEST_F(RequestScreenTest, PortlessHostMeansTheDefaultPorts) {
  RequestScreen screen(api_options());
  EXPECT_TRUE(screen.host_allowed("127.0.0.1", {"127.0.0.1", 80, true}));
  EXPECT_TRUE(screen.host_allowed("localhost", {"127.0.0.1", 443, true}));
  EXPECT_FALSE(screen.host_allowed("127.0.0.1", {"127.0.0.1", 8080, true}));
}

TEST_F(RequestScreenTest, ExtraNamesWithAndWithoutPort) {
  ApiServerOptions o = api_options();
  o.host_names = {"Mesh.Example.com", "api.example.com:8443", "10.1.1.1"};
  RequestScreen screen(o);
  EXPECT_TRUE(screen.host_allowed("mesh.example.com", loopback_));
  EXPECT_TRUE(screen.host_allowed("mesh.example.com:443", loopback_));
  EXPECT_TRUE(screen.host_allowed("api.example.com:8443", loopback_));
  EXPECT_FALSE(screen.host_allowed("api.example.com:8444", loopback_));
  EXPECT_FALSE(screen.host_allowed("api.example.com", loopback_));
  EXPECT_TRUE(screen.host_allowed("10.1.1.1:9", loopback_));
  EXPECT_FALSE(screen.host_allowed("example.com", loopback_));

  EXPECT_TRUE(RequestScreen::valid_host_name("api.example.com:8443"));
  EXPECT_TRUE(RequestScreen::valid_host_name("[::1]"));
  EXPECT_FALSE(RequestScreen::valid_host_name("http://api.example.com"));
  EXPECT_FALSE(RequestScreen::valid_host_name("api example"));
  EXPECT_FALSE(RequestScreen::valid_host_name(""));
}

TEST_F(RequestScreenTest, ForeignHostIsMisdirectedWhateverElseTheRequestIs) {
  auto refused = check("POST", {{"Host", "attacker.example:15011"}, {"Content-Type", "text/plain"}}, "{}");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 421);
  EXPECT_NE(refused->body.find("attacker.example"), std::string::npos);
  EXPECT_EQ(status("GET", {}), 421) << "no Host at all";
  EXPECT_EQ(status("GET", {{"Host", "127.0.0.1:15011"}, {"host", "127.0.0.1:15011"}}), 421) << "two Hosts";
  EXPECT_EQ(status("GET", {{"Host", "127.0.0.1:15011"}}), 0);
}

TEST_F(RequestScreenTest, OptionsAndUnservedMethodsAre405WithoutCors) {
  auto refused = check("OPTIONS", {{"Host", "127.0.0.1:15011"},
                                   {"Origin", "http://127.0.0.1:15011"},
                                   {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 405);
  bool allow = false;
  for (const auto& [name, value] : refused->headers) {
    EXPECT_NE(name.rfind("access-control-", 0), 0u) << name;
    if (name == "allow") {
      allow = true;
      EXPECT_EQ(value, "GET, HEAD, POST, PUT, DELETE");
    }
  }
  EXPECT_TRUE(allow);
  ApiServerOptions admin;  // the proxy's admin: GET and HEAD only
  auto post = check("POST", {{"Host", "127.0.0.1:15011"}}, {}, admin);
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  ApiServerOptions listed = api_options();
  listed.methods.push_back("OPTIONS");
  EXPECT_EQ(check("OPTIONS", {{"Host", "127.0.0.1:15011"}}, {}, listed)->status, 405) << "never served";
}

TEST_F(RequestScreenTest, WriteBodiesMustBeJson) {
  const Header host{"Host", "127.0.0.1:15011"};
  EXPECT_EQ(status("POST", {host, {"Content-Type", "text/plain"}}, "{\"service\":\"a\"}"), 415);
  EXPECT_EQ(status("POST", {host}, "{}"), 415) << "no Content-Type";
  EXPECT_EQ(status("PUT", {host, {"Content-Type", "application/x-www-form-urlencoded"}}, "a=b"), 415);
  EXPECT_EQ(status("DELETE", {host, {"Content-Type", "multipart/form-data; boundary=x"}}, "x"), 415);
  EXPECT_EQ(status("POST", {host, {"Content-Type", "application/jsonp"}}, "{}"), 415);
  EXPECT_EQ(status("POST", {host, {"Content-Type", "application/json"}}, "{}"), 0);
  EXPECT_EQ(status("POST", {host, {"Content-Type", "Application/JSON ; charset=utf-8"}}, "{}"), 0);
  EXPECT_EQ(status("PUT", {host}), 0) << "no body, nothing to type";
  EXPECT_EQ(status("DELETE", {host}), 0);
  EXPECT_EQ(status("GET", {host, {"Content-Type", "text/plain"}}, "x"), 0) << "reads are not checked";
}

TEST_F(RequestScreenTest, WritesFromAForeignOriginAreRefused) {
  const Header host{"Host", "127.0.0.1:15011"};
  const Header json{"Content-Type", "application/json"};
  EXPECT_EQ(status("POST", {host, json, {"Origin", "http://attacker.example"}}, "{}"), 403);
  EXPECT_EQ(status("DELETE", {host, {"Origin", "null"}}), 403);
  EXPECT_EQ(status("PUT", {host, json, {"Origin", "http://127.0.0.1:15012"}}, "{}"), 403);
  EXPECT_EQ(status("PUT", {host, json, {"Origin", "http://127.0.0.1:15011/"}}, "{}"), 403);
  EXPECT_EQ(status("POST", {host, json, {"Origin", "http://127.0.0.1:15011"}}, "{}"), 0);
  EXPECT_EQ(status("POST", {host, json, {"Origin", "https://localhost:15011"}}, "{}"), 0);
  EXPECT_EQ(status("GET", {host, {"Origin", "http://attacker.example"}}), 0) << "reads are not checked";

  RequestScreen screen(api_options());
  EXPECT_TRUE(screen.origin_allowed("http://127.0.0.1", {"127.0.0.1", 80, true}));
  EXPECT_FALSE(screen.origin_allowed("http://127.0.0.1", {"127.0.0.1", 443, true}));
  EXPECT_TRUE(screen.origin_allowed("https://127.0.0.1", {"127.0.0.1", 443, true}));
  EXPECT_FALSE(screen.origin_allowed("ftp://127.0.0.1:15011", loopback_));
}

TEST(LocalEndpoint, FromSocketAddresses) {
  net::SocketAddress a;
  std::string error;
  ASSERT_TRUE(net::parse_socket_address("127.0.0.1:15011", a, error));
  LocalEndpoint v4 = local_endpoint(a.storage);
  EXPECT_EQ(v4.ip, "127.0.0.1");
  EXPECT_EQ(v4.port, 15011);
  EXPECT_TRUE(v4.loopback);
  ASSERT_TRUE(net::parse_socket_address("[::ffff:10.0.0.5]:80", a, error));
  LocalEndpoint mapped = local_endpoint(a.storage);
  EXPECT_EQ(mapped.ip, "10.0.0.5");
  EXPECT_FALSE(mapped.loopback);
  ASSERT_TRUE(net::parse_socket_address("[::1]:80", a, error));
  EXPECT_TRUE(local_endpoint(a.storage).loopback);
}

// ---- ApiServer: the same on a real socket -----------------------------------------

// A server on 127.0.0.1 (port chosen by the kernel), on a loop driven by
// run_until_idle(); the client is a blocking socket.
class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ApiServerOptions options;
    options.methods = {"GET", "POST"};
    server_ = std::make_unique<ApiServer>(
        loop_,
        [this](const ApiRequest& r) {
          ++calls_;
          if (r.path == "/later") {
            later_ = r.answer_later();
            return ApiResponse::pending_answer();
          }
          seen_authorization_ = std::string(r.header("authorization"));
          ApiResponse out{201, "application/json", "{}\n", reply_headers_};
          return out;
        },
        options);
    // Port 0, which the config parser refuses: the kernel picks one.
    net::SocketAddress address;
    auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.length = sizeof(sockaddr_in);
    address.text = "127.0.0.1:0";
    std::string error;
    ASSERT_TRUE(server_->listen(address, error)) << error;
    ASSERT_NE(server_->address().text, "127.0.0.1:0");
  }

  // Sends `request` on a new connection and returns everything answered.
  std::string exchange(const std::string& request) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::connect(fd, server_->address().sa(), server_->address().length), 0);
    EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    std::string out;
    for (int i = 0; i < 200; ++i) {
      loop_.run_until_idle();
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    loop_.run_until_idle();
    return out;
  }
  std::string host() const { return "Host: " + server_->address().text + "\r\n"; }

  SimulatedClock clock_;
  net::EventLoop loop_{clock_};
  std::unique_ptr<ApiServer> server_;
  // Connects and sends `request`; the socket.
  int open_and_send(const std::string& request) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::connect(fd, server_->address().sa(), server_->address().length), 0);
    EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    for (int i = 0; i < 20; ++i) loop_.run_until_idle();
    return fd;
  }
  // What has arrived on `fd` after a few turns of the loop, without waiting for more.
  std::string received(int fd, bool until_closed) {
    std::string out;
    for (int i = 0; i < 200; ++i) {
      loop_.run_until_idle();
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) {
        if (!until_closed && i > 5) break;
        continue;
      }
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // Calls `reply` from a thread of its own, as a handler's helper would.
  static void reply_from_thread(const Reply& reply, ApiResponse answer) {
    std::thread([&reply, answer] { reply(answer); }).join();
  }

  int calls_ = 0;
  Reply later_;
  std::string seen_authorization_;
  std::vector<std::pair<std::string, std::string>> reply_headers_;
};

TEST_F(ApiServerTest, HandlerSeesHeadersAndSetsFields) {
  reply_headers_ = {{"www-authenticate", "Bearer"}, {"Access-Control-Allow-Origin", "*"}};
  std::string out = exchange("POST /v1/x HTTP/1.1\r\n" + host() +
                             "Authorization: Bearer abc\r\nContent-Type: application/json\r\n"
                             "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(seen_authorization_, "Bearer abc");
  EXPECT_EQ(out.rfind("HTTP/1.1 201 Created\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("\r\nwww-authenticate: Bearer\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\r\nx-content-type-options: nosniff\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("ccess-control"), std::string::npos) << "no CORS field, even from the handler:\n" << out;
}

TEST_F(ApiServerTest, ForeignHostNeverReachesTheHandler) {
  std::string out = exchange(
      "POST /v1/registry/instances HTTP/1.1\r\nHost: attacker.example\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
  EXPECT_EQ(out.rfind("HTTP/1.1 421 Misdirected Request\r\n", 0), 0u) << out;
  EXPECT_EQ(calls_, 0);
  // DNS rebinding: the page's own name, now pointing here, on the right port.
  const std::string& bound = server_->address().text;
  std::string rebound =
      exchange("GET /config_dump HTTP/1.1\r\nHost: attacker.example:" + bound.substr(bound.rfind(':') + 1) +
               "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rebound.rfind("HTTP/1.1 421 ", 0), 0u) << rebound;
  EXPECT_EQ(calls_, 0);
}

TEST_F(ApiServerTest, TextBodyIs415AndOptionsIs405) {
  std::string text = exchange("POST /v1/x HTTP/1.1\r\n" + host() +
                              "Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  EXPECT_EQ(text.rfind("HTTP/1.1 415 Unsupported Media Type\r\n", 0), 0u) << text;
  std::string options = exchange("OPTIONS /v1/x HTTP/1.1\r\n" + host() +
                                 "Origin: http://attacker.example\r\nAccess-Control-Request-Method: POST\r\n"
                                 "Connection: close\r\n\r\n");
  EXPECT_EQ(options.rfind("HTTP/1.1 405 ", 0), 0u) << options;
  EXPECT_NE(options.find("\r\nallow: GET, POST\r\n"), std::string::npos) << options;
  EXPECT_EQ(options.find("ccess-control"), std::string::npos) << options;
  EXPECT_EQ(calls_, 0);
}

TEST_F(ApiServerTest, MalformedHandlerFieldIsA500) {
  reply_headers_ = {{"x-bad", "a\r\nset-cookie: x=y"}};
  std::string out = exchange("GET / HTTP/1.1\r\n" + host() + "Connection: close\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 500 ", 0), 0u) << out;
  EXPECT_EQ(out.find("set-cookie"), std::string::npos) << out;
  reply_headers_ = {{"Content-Length", "0"}};
  out = exchange("GET / HTTP/1.1\r\n" + host() + "Connection: close\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 500 ", 0), 0u) << "the framing is the server's:\n" << out;
}

TEST_F(ApiServerTest, AnAnswerGivenLaterComesBeforeThoseOfLaterRequests) {
  // Two requests at once: the first answered later from another thread,
  // the second at once but only after it.
  int fd = open_and_send("GET /later HTTP/1.1\r\n" + host() + "\r\nGET /now HTTP/1.1\r\n" + host() +
                         "Connection: close\r\n\r\n");
  ASSERT_TRUE(later_);
  EXPECT_EQ(calls_, 1) << "the second request waits for the first's answer";
  EXPECT_EQ(received(fd, false), "");
  reply_from_thread(later_, ApiResponse{202, "text/plain", "late\n", {}});
  std::string out = received(fd, true);
  ::close(fd);
  EXPECT_EQ(calls_, 2);
  size_t first = out.find("HTTP/1.1 202 Accepted\r\n");
  size_t second = out.find("HTTP/1.1 201 Created\r\n");
  ASSERT_EQ(first, 0u) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_NE(out.find("\r\n\r\nlate\n"), std::string::npos) << out;
}

TEST_F(ApiServerTest, AnAnswerGivenLaterToAClientThatLeftOrAServerThatIsGoneIsDropped) {
  int fd = open_and_send("GET /later HTTP/1.1\r\n" + host() + "\r\n");
  ASSERT_TRUE(later_);
  ::close(fd);
  for (int i = 0; i < 20; ++i) loop_.run_until_idle();
  reply_from_thread(later_, ApiResponse{200, "text/plain", "nobody\n", {}});
  for (int i = 0; i < 20; ++i) loop_.run_until_idle();

  later_ = nullptr;
  fd = open_and_send("GET /later HTTP/1.1\r\n" + host() + "\r\n");
  ASSERT_TRUE(later_);
  server_.reset();
  reply_from_thread(later_, ApiResponse{200, "text/plain", "nobody\n", {}});
  for (int i = 0; i < 20; ++i) loop_.run_until_idle();
  ::close(fd);
}

}  // namespace
}  // namespace trellis::http
