#include "cli/api_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/unique_fd.h"
#include "http/http1/response_reader.h"
#include "net/buffer.h"

namespace trellis::cli {
namespace {

using Clock = std::chrono::steady_clock;

// API documents are small; this only stops a confused peer from filling memory.
constexpr size_t kMaxResponseBody = 64u << 20;

// Waits until `fd` is ready for `events`: 1 ready, 0 deadline passed, -1 error.
int wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return 0;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 60'000)));
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
  }
}

std::string seconds_text(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? fmt::format("{}s", d.count() / 1000) : fmt::format("{}ms", d.count());
}

std::string openssl_reason() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "the connection was closed";
  const char* reason = ERR_reason_error_string(e);
  return reason != nullptr ? reason : "unknown TLS error";
}

// One TLS connection over a non-blocking socket, used as if it blocked:
// every call waits (poll) for what OpenSSL asks for, until the deadline.
class BlockingTls {
 public:
  BlockingTls(SSL* ssl, int fd, Clock::time_point deadline) : ssl_(ssl), fd_(fd), deadline_(deadline) {}
  ~BlockingTls() { SSL_free(ssl_); }
  BlockingTls(const BlockingTls&) = delete;
  BlockingTls& operator=(const BlockingTls&) = delete;

  // 1 done, 0 deadline passed, -1 failed (error() says why).
  int handshake() {
    return run([this] { return SSL_connect(ssl_); });
  }
  int write_all(std::string_view data) {
    while (!data.empty()) {
      size_t written = 0;
      int r = run([&] { return SSL_write_ex(ssl_, data.data(), data.size(), &written); });
      if (r <= 0) return r;
      data.remove_prefix(written);
    }
    return 1;
  }
  // Bytes read; 0 at the end of the stream; -1 failed; -2 deadline passed.
  ssize_t read(char* out, size_t size) {
    size_t got = 0;
    int r = run([&] { return SSL_read_ex(ssl_, out, size, &got); }, /*eof_ok=*/true);
    if (r == 0) return -2;
    if (r < 0) return eof_ ? 0 : -1;
    return static_cast<ssize_t>(got);
  }
  const std::string& error() const { return error_; }

 private:
  template <class Op>
  int run(Op op, bool eof_ok = false) {
    for (;;) {
      int r = op();
      if (r == 1) return 1;
      int e = SSL_get_error(ssl_, r);
      short events = 0;
      if (e == SSL_ERROR_WANT_READ) {
        events = POLLIN;
      } else if (e == SSL_ERROR_WANT_WRITE) {
        events = POLLOUT;
      } else if (eof_ok &&
                 (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))) {
        // A server that closes without close_notify after a complete
        // response is fine: the response's framing says whether it was.
        eof_ = true;
        return -1;
      } else {
        long verify = SSL_get_verify_result(ssl_);
        error_ = verify != X509_V_OK
                     ? std::string("its certificate was refused: ") + X509_verify_cert_error_string(verify)
                     : openssl_reason();
        return -1;
      }
      int ready = wait_for(fd_, events, deadline_);
      if (ready == 0) return 0;
      if (ready < 0) {
        error_ = std::strerror(errno);
        return -1;
      }
    }
  }

  SSL* ssl_;
  int fd_;
  Clock::time_point deadline_;
  std::string error_;
  bool eof_ = false;
};

}  // namespace

std::string default_server() {
  const char* env = std::getenv("TRELLIS_SERVER");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(kDefaultServer);
}

Result<net::SocketAddress> parse_server_address(std::string_view text) {
  std::string_view t = text;
  if (t.substr(0, 7) == "http://")
    return Error{"the API is served over TLS only: write https://IP:PORT or IP:PORT"};
  if (t.substr(0, 8) == "https://") t.remove_prefix(8);
  if (size_t slash = t.find('/'); slash != std::string_view::npos) {
    // Only a bare trailing "/" is harmless; a path would be silently ignored.
    if (t.substr(slash) != "/") return Error{"must be IP:PORT, without a path"};
    t = t.substr(0, slash);
  }
  std::string address(t);
  if (address.rfind("localhost:", 0) == 0) address = "127.0.0.1" + address.substr(9);
  net::SocketAddress out;
  std::string error;
  if (!net::parse_socket_address(address, out, error)) return Error{error};
  return out;
}

std::string ApiReply::error() const {
  if (body.is_object() && body.contains("error") && body["error"].is_string()) {
    return body["error"].get<std::string>();
  }
  return fmt::format("the API answered HTTP {}", status);
}

ApiClient::ApiClient(net::SocketAddress server, std::chrono::milliseconds timeout)
    : server_(std::move(server)), timeout_(timeout) {}

Result<bool> ApiClient::set_trust_bundle(const std::string& pem) {
  net::TlsContextOptions options;
  options.role = net::TlsRole::kClient;
  options.trust_bundle_pem = pem;
  options.allow_tls12 = true;
  options.alpn = {"http/1.1"};
  auto context = net::TlsContext::create(options);
  if (!context) return context.error();
  tls_ = std::move(*context);
  return true;
}

Result<HttpResponse> ApiClient::send(std::string_view method, std::string_view target, std::string_view body,
                                     std::string_view content_type) const {
  const Clock::time_point deadline = Clock::now() + timeout_;
  const std::string where = "trellis-control at " + server_.text;
  auto sys_error = [](int err) { return std::string(std::strerror(err)); };

  UniqueFd fd(::socket(server_.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Error{"cannot open a socket: " + sys_error(errno)};
  if (::connect(fd.get(), server_.sa(), server_.length) != 0) {
    if (errno != EINPROGRESS) return Error{"cannot reach " + where + ": " + sys_error(errno)};
    int ready = wait_for(fd.get(), POLLOUT, deadline);
    if (ready == 0)
      return Error{"cannot reach " + where + ": no connection within " + seconds_text(timeout_)};
    int err = 0;
    socklen_t len = sizeof(err);
    if (ready < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return Error{"cannot reach " + where + ": " + sys_error(err)};
  }

  if (!tls_) return Error{"no trust bundle to check " + where + "'s certificate with"};
  SSL* ssl = SSL_new(tls_->native());
  if (ssl == nullptr || SSL_set_fd(ssl, fd.get()) != 1) {
    SSL_free(ssl);
    return Error{"cannot start TLS: " + openssl_reason()};
  }
  BlockingTls tls(ssl, fd.get(), deadline);
  // The certificate must name the address we dialled (trellis-control puts
  // its listen addresses, 127.0.0.1, ::1 and localhost in it).
  std::string ip = server_.text.substr(0, server_.text.rfind(':'));
  if (!ip.empty() && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
  if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip.c_str()) != 1)
    return Error{"cannot check " + where + "'s certificate against its address " + ip};
  if (int r = tls.handshake(); r <= 0) {
    return Error{r == 0 ? where + ": no TLS handshake within " + seconds_text(timeout_)
                        : "TLS with " + where + " failed: " + tls.error()};
  }

  std::string request = fmt::format(
      "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: trellis-cli\r\n"
      "Accept: application/json\r\nConnection: close\r\n",
      method, target, server_.text);
  if (!credential_.token.empty()) request += "Authorization: Bearer " + credential_.token + "\r\n";
  if (!body.empty() || method == "PUT" || method == "POST") {
    request += fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n", content_type, body.size());
  }
  request += "\r\n";
  request.append(body);
  if (int r = tls.write_all(request); r <= 0) {
    return Error{r == 0 ? where + " did not take the request within " + seconds_text(timeout_)
                        : "lost the connection to " + where + " while sending: " + tls.error()};
  }

  http::http1::ResponseReader reader;
  reader.start(method == "HEAD", kMaxResponseBody);
  net::Buffer in;
  const std::string malformed = where + " sent a malformed response: ";
  const std::string cut_short = "lost the connection to " + where + " in the middle of its response";
  for (;;) {
    ssize_t n = tls.read(in.prepare(16384), 16384);
    if (n == -2) return Error{where + " did not answer within " + seconds_text(timeout_)};
    http::http1::ResponseReader::Status status;
    if (n > 0) {
      in.commit(static_cast<size_t>(n));
      status = reader.on_data(in);
    } else if (n == 0) {
      if (reader.status() == 0 && in.empty())
        return Error{where + " closed the connection without answering"};
      status = reader.on_eof();
      if (status == http::http1::ResponseReader::Status::kError) return Error{cut_short};
    } else {
      return Error{"lost the connection to " + where + ": " + tls.error()};
    }
    if (status == http::http1::ResponseReader::Status::kError) return Error{malformed + reader.error()};
    if (status == http::http1::ResponseReader::Status::kComplete)
      return HttpResponse{reader.status(), reader.body()};
  }
}

Result<ApiReply> ApiClient::call(std::string_view method, std::string_view target, const Json& body) const {
  // Text from files may hold invalid UTF-8: send U+FFFD for it rather than fail.
  std::string text =
      body.is_null() ? std::string() : body.dump(-1, ' ', false, Json::error_handler_t::replace);
  Result<HttpResponse> response = send(method, target, text);
  if (!response.ok()) return response.error();
  ApiReply reply;
  reply.status = response->status;
  reply.body = Json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (reply.body.is_discarded()) {
    std::string raw = response->body;
    while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r' || raw.back() == ' ')) raw.pop_back();
    if (raw.size() > 200) raw = raw.substr(0, 200) + "...";
    reply.body = Json{{"error", raw.empty() ? fmt::format("the API answered HTTP {}", reply.status)
                                            : fmt::format("HTTP {}: {}", reply.status, raw)}};
  }
  if (reply.status == 401) {
    std::string hint =
        credential_.token.empty()
            ? fmt::format(
                  "trellis-control needs a token: pass --token-file PATH, or set TRELLIS_TOKEN or "
                  "TRELLIS_TOKEN_FILE, or put it in {} (trellis-control wrote an admin token to admin-token "
                  "in "
                  "its --data-dir)",
                  default_token_file().empty() ? std::string("~/.config/trellis/token")
                                               : default_token_file())
            : fmt::format("trellis-control refused the token from {}: {}", credential_.source, reply.error());
    if (!reply.body.is_object()) reply.body = Json::object();
    reply.body["error"] = hint;
  }
  return reply;
}

}  // namespace trellis::cli
