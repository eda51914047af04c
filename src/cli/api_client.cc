#include "cli/api_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

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

}  // namespace

std::string default_server() {
  const char* env = std::getenv("TRELLIS_SERVER");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(kDefaultServer);
}

Result<net::SocketAddress> parse_server_address(std::string_view text) {
  std::string_view t = text;
  if (t.substr(0, 7) == "http://") t.remove_prefix(7);
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
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return Error{"lost the connection to " + where + " while sending: " + sys_error(errno)};
    }
    if (wait_for(fd.get(), POLLOUT, deadline) <= 0) {
      return Error{where + " did not take the request within " + seconds_text(timeout_)};
    }
  }

  http::http1::ResponseReader reader;
  reader.start(method == "HEAD", kMaxResponseBody);
  net::Buffer in;
  const std::string malformed = where + " sent a malformed response: ";
  const std::string cut_short = "lost the connection to " + where + " in the middle of its response";
  for (;;) {
    int ready = wait_for(fd.get(), POLLIN, deadline);
    if (ready == 0) return Error{where + " did not answer within " + seconds_text(timeout_)};
    if (ready < 0) return Error{"lost the connection to " + where + ": " + sys_error(errno)};
    ssize_t n = ::recv(fd.get(), in.prepare(16384), 16384, 0);
    http::http1::ResponseReader::Status status;
    if (n > 0) {
      in.commit(static_cast<size_t>(n));
      status = reader.on_data(in);
    } else if (n == 0) {
      if (reader.status() == 0 && in.empty())
        return Error{where + " closed the connection without answering"};
      status = reader.on_eof();
      if (status == http::http1::ResponseReader::Status::kError) return Error{cut_short};
    } else if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
      continue;
    } else {
      return Error{"lost the connection to " + where + ": " + sys_error(errno)};
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

std::string url_encode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '.' || c == '_' || c == '~';
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace trellis::cli
