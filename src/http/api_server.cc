#include "http/api_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/text.h"
#include "http/http1/parser.h"
#include "http/http1/wire.h"
#include "net/address.h"
#include "net/transport.h"

namespace trellis::http {
namespace {

std::optional<std::string> canonical_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  char out[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, out, sizeof(out));
  return std::string(out);
}

std::string ipv6_text(const in6_addr& a) {
  char out[INET6_ADDRSTRLEN];
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    inet_ntop(AF_INET, &a.s6_addr[12], out, sizeof(out));
  } else {
    inet_ntop(AF_INET6, &a, out, sizeof(out));
  }
  return out;
}

std::optional<std::string> canonical_ipv6(const std::string& text) {
  in6_addr a{};
  if (inet_pton(AF_INET6, text.c_str(), &a) != 1) return std::nullopt;
  return ipv6_text(a);
}

bool parse_port(std::string_view text, int& out) {
  if (text.empty() || text.size() > 5) return false;
  int port = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return false;
  out = port;
  return true;
}

bool is_write(std::string_view method) { return method != "GET" && method != "HEAD"; }

// "application/json", any case, with or without parameters.
bool is_json_media_type(std::string_view value) {
  std::string_view type = value.substr(0, value.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  return iequals(type, "application/json");
}

ApiResponse refusal(int status, std::string body) {
  return {status, "text/plain; charset=utf-8", body + "\n", {}};
}

// What a handler may add to the head: a token name, and a value without
// the bytes that would end the field or the head. The framing is the
// server's alone.
bool valid_field(const std::pair<std::string, std::string>& field) {
  if (field.first.empty()) return false;
  for (std::string_view framing : {"content-length", "transfer-encoding", "connection"}) {
    if (iequals(field.first, framing)) return false;
  }
  for (char c : field.first) {
    bool token = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.';
    if (!token) return false;
  }
  for (char c : field.second) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

std::string_view reason(int status) {
  // Not in the proxy's table: only this server answers them.
  if (status == 415) return "Unsupported Media Type";
  if (status == 421) return "Misdirected Request";
  return http1::reason_phrase(status);
}

}  // namespace

// "host", "host:port", "[v6]" or "[v6]:port". Names are kept to letters,
// digits, '-', '.' and '_': nothing a browser would send for a real name is
// refused, nothing odd gets compared. IPv6 comes without brackets, an
// IPv4-mapped one as IPv4.
std::optional<Authority> parse_authority(std::string_view text) {
  Authority out;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (port.empty()) return std::nullopt;
    }
    auto ip = canonical_ipv6(ascii_lower(text.substr(1, close - 1)));
    if (!ip) return std::nullopt;
    out.host = *ip;
    out.ip = true;
  } else {
    std::string_view host = text;
    if (size_t colon = text.find(':'); colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (port.empty()) return std::nullopt;
    }
    if (host.empty() || host.size() > 253) return std::nullopt;
    for (char c : host) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                c == '.' || c == '_';
      if (!ok) return std::nullopt;
    }
    out.host = ascii_lower(host);
    if (auto ip = canonical_ipv4(out.host)) {
      out.host = *ip;
      out.ip = true;
    }
  }
  if (!port.empty() && !parse_port(port, out.port)) return std::nullopt;
  return out;
}

std::string_view ApiRequest::header(std::string_view lower_name) const {
  for (const Header& h : headers) {
    if (iequals(h.name, lower_name)) return h.value;
  }
  return {};
}

LocalEndpoint local_endpoint(const sockaddr_storage& address) {
  LocalEndpoint out;
  if (address.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&address);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    out.ip = text;
    out.port = ntohs(a->sin_port);
    out.loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  } else if (address.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&address);
    out.ip = ipv6_text(a->sin6_addr);
    out.port = ntohs(a->sin6_port);
    out.loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
                   (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
  }
  return out;
}

RequestScreen::RequestScreen(const ApiServerOptions& options) {
  for (const std::string& name : options.host_names) {
    // Owners check names with valid_host_name() first; a bad one matches nothing.
    if (auto a = parse_authority(name)) names_.push_back({a->host, a->port});
  }
  for (const std::string& m : options.methods) {
    if (m == "OPTIONS") continue;
    methods_.push_back(m);
    allow_ += allow_.empty() ? m : ", " + m;
  }
}

bool RequestScreen::valid_host_name(std::string_view name) { return parse_authority(name).has_value(); }

bool RequestScreen::allowed(const std::string& host, int port, const LocalEndpoint& local) const {
  // A Host without a port means the scheme's default: 80, or 443 over TLS.
  auto port_matches = [port](int want) {
    if (want == -1) return true;
    return port == -1 ? (want == 80 || want == 443) : port == want;
  };
  if (host == local.ip && port_matches(local.port)) return true;
  if (local.loopback && host == "localhost" && port_matches(local.port)) return true;
  for (const Name& n : names_) {
    if (host == n.host && port_matches(n.port)) return true;
  }
  return false;
}

bool RequestScreen::host_allowed(std::string_view host, const LocalEndpoint& local) const {
  std::optional<Authority> a = parse_authority(host);
  return a && allowed(a->host, a->port, local);
}

bool RequestScreen::origin_allowed(std::string_view origin, const LocalEndpoint& local) const {
  int default_port;
  if (origin.substr(0, 7) == "http://") {
    origin.remove_prefix(7);
    default_port = 80;
  } else if (origin.substr(0, 8) == "https://") {
    origin.remove_prefix(8);
    default_port = 443;
  } else {
    return false;  // "null" (a sandboxed or file: page), other schemes
  }
  std::optional<Authority> a = parse_authority(origin);
  return a && allowed(a->host, a->port == -1 ? default_port : a->port, local);
}

std::optional<ApiResponse> RequestScreen::check(const ApiRequest& request, const LocalEndpoint& local) const {
  // Every request, even /healthz: a page that rebound its own name to this
  // address must learn nothing here, not even that something answers.
  std::string_view host;
  size_t hosts = 0;
  for (const Header& h : request.headers) {
    if (iequals(h.name, "host")) {
      host = h.value;
      ++hosts;
    }
  }
  if (hosts != 1 || !host_allowed(host, local)) {
    return refusal(
        421, hosts == 1 ? "misdirected request: Host \"" + std::string(host) + "\" does not name this server"
                        : std::string("misdirected request: one Host field is required"));
  }
  bool served = false;
  for (const std::string& m : methods_) served = served || m == request.method;
  if (!served) {
    ApiResponse r = refusal(405, "method not allowed");
    r.headers.emplace_back("allow", allow_);
    return r;
  }
  if (is_write(request.method)) {
    std::string_view origin = request.header("origin");
    if (!origin.empty() && !origin_allowed(origin, local)) {
      return refusal(
          403, "cross-origin request refused: Origin \"" + std::string(origin) + "\" is not this server's");
    }
    if (!request.body.empty() && !is_json_media_type(request.header("content-type"))) {
      return refusal(415, "unsupported media type: a request body must be Content-Type: application/json");
    }
  }
  return std::nullopt;
}

class ApiServer::Session final : public net::TransportCallbacks, public net::Deferred {
 public:
  Session(ApiServer& server, int fd, LocalEndpoint local)
      : server_(server),
        id_(++server.next_session_id_),
        local_(std::move(local)),
        socket_(server.transport_->accepted(server.loop_, fd, this)),
        timer_(server.loop_, [this] { close(); }) {
    server_.sessions_.emplace(id_, this);
    timer_.arm(std::chrono::seconds(30));
    on_readable();
  }
  ~Session() override { server_.sessions_.erase(id_); }

  void on_readable() override {
    for (;;) {
      if (closed_) return;
      // While an answer is awaited, what a client sends beyond one more
      // request is not read (the socket's buffer holds it back).
      if (waiting_ && in_.size() > kMaxHeldWhileWaiting) return;
      net::ReadResult r = socket_->read(in_);
      if (r == net::ReadResult::kAgain) return;
      if (r != net::ReadResult::kData) {
        if ((socket_->pending_output() == 0 && !waiting_) || r == net::ReadResult::kError)
          close();
        else
          eof_ = true;
        return;
      }
      serve();
    }
  }

  // The answer a handler gave later, on the loop's thread.
  void answer(const ApiResponse& resp) {
    if (closed_ || !waiting_) return;
    waiting_ = false;
    respond(resp, close_after_answer_ || eof_, head_answer_);
    if (!closed_) serve();
    if (!closed_ && !eof_) on_readable();
  }
  void on_writable() override {
    if (close_after_write_ || (eof_ && !waiting_)) close();
  }
  void on_transport_error(int) override { close(); }

 private:
  void serve() {
    while (!closed_ && !waiting_ && !in_.empty()) {
      http1::ParseResult pr = http1::parse_request(in_.view(), req_);
      if (pr.status == http1::ParseStatus::kNeedMore) return;
      if (pr.status == http1::ParseStatus::kError) {
        respond(refusal(pr.error_status, std::string("bad request: ") + pr.error), true, false);
        return;
      }
      // The body, whole: these are small API documents, not streams.
      std::string_view body;
      size_t total = pr.consumed;
      if (req_.info.body == http1::BodyKind::kContentLength) {
        if (req_.info.content_length > ApiServer::kMaxBody) {
          respond(refusal(413, "request body too large"), true, false);
          return;
        }
        if (in_.size() < pr.consumed + req_.info.content_length) return;  // wait for the rest
        body = in_.view().substr(pr.consumed, req_.info.content_length);
        total += req_.info.content_length;
      } else if (req_.info.body == http1::BodyKind::kChunked) {
        chunked_body_.clear();
        http1::ChunkedDecoder decoder;
        std::string_view rest = in_.view().substr(pr.consumed);
        size_t used = 0;
        for (;;) {
          auto step = decoder.next(rest.substr(used));
          used += step.consumed;
          if (step.kind == http1::ChunkedDecoder::Kind::kData) {
            chunked_body_.append(step.data);
            if (chunked_body_.size() > ApiServer::kMaxBody) {
              respond(refusal(413, "request body too large"), true, false);
              return;
            }
          } else if (step.kind == http1::ChunkedDecoder::Kind::kDone) {
            break;
          } else if (step.kind == http1::ChunkedDecoder::Kind::kNeedMore) {
            return;  // re-decoded from the start when more arrives
          } else {
            respond(refusal(400, std::string("bad request: ") + step.error), true, false);
            return;
          }
        }
        body = chunked_body_;
        total += used;
      }
      bool keep_alive = req_.info.keep_alive;
      bool head = req_.method == "HEAD";
      std::string_view target = req_.path;
      std::string_view query;
      if (size_t q = req_.target.find('?'); q != std::string_view::npos) query = req_.target.substr(q + 1);
      ApiRequest request{req_.method, target, query, body, req_.headers, {}};
      request.answer_later = [this] { return reply(); };
      ApiResponse resp;
      if (std::optional<ApiResponse> refused = server_.screen_.check(request, local_)) {
        resp = std::move(*refused);
      } else {
        try {
          resp = server_.handler_(request);
        } catch (const std::exception& e) {
          // Nothing a page does may take the process down.
          resp = {500, "text/plain", std::string("internal error: ") + e.what() + "\n", {}};
        }
      }
      in_.consume(total);
      if (resp.pending) {
        waiting_ = true;
        close_after_answer_ = !keep_alive;
        head_answer_ = head;
        return;
      }
      respond(resp, !keep_alive, head);
    }
  }

  // What answers the request being handled, later and from any thread.
  Reply reply() {
    return [link = server_.link_, id = id_](ApiResponse resp) {
      std::lock_guard lock(link->mu);
      if (link->loop == nullptr) return;
      link->loop->post([link, id, resp = std::move(resp)] {
        // On the loop's thread, as the server's destructor: no lock needed.
        if (link->server == nullptr) return;
        auto it = link->server->sessions_.find(id);
        if (it != link->server->sessions_.end()) it->second->answer(resp);
      });
    };
  }

  void respond(const ApiResponse& answer, bool close_after, bool head) {
    bool well_formed = valid_field({"content-type", answer.content_type});
    for (const auto& field : answer.headers) well_formed = well_formed && valid_field(field);
    const ApiResponse broken{500, "text/plain", "internal error: a response field is malformed\n", {}};
    const ApiResponse& resp = well_formed ? answer : broken;
    net::Buffer out;
    out.append("HTTP/1.1 ");
    out.append_decimal(static_cast<unsigned>(resp.status));
    out.append(' ');
    out.append(reason(resp.status));
    out.append("\r\ncontent-type: ");
    out.append(resp.content_type);
    // A browser must never read a JSON or text answer as a page.
    out.append("\r\nx-content-type-options: nosniff");
    for (const auto& [name, value] : resp.headers) {
      // No CORS, ever: no page of another origin may read these answers.
      if (ascii_lower(name).rfind("access-control-", 0) == 0) continue;
      out.append("\r\n");
      out.append(name);
      out.append(": ");
      out.append(value);
    }
    out.append("\r\ncontent-length: ");
    out.append_decimal(resp.body.size());
    out.append(close_after ? "\r\nconnection: close\r\n\r\n" : "\r\n\r\n");
    if (!head) out.append(resp.body);
    finish(out, close_after);
  }

  void finish(net::Buffer& out, bool close_after) {
    if (!socket_->write(out)) {
      close();
      return;
    }
    if (close_after) {
      close_after_write_ = true;
      if (socket_->pending_output() == 0) close();
    }
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    socket_->close();
    server_.sessions_.erase(id_);
    server_.loop_.defer_delete(std::unique_ptr<net::Deferred>(this));
  }

  static constexpr size_t kMaxHeldWhileWaiting = 64 * 1024;

  ApiServer& server_;
  const uint64_t id_;
  LocalEndpoint local_;
  std::unique_ptr<net::Transport> socket_;
  net::Timer timer_;
  net::Buffer in_;
  http1::RequestHead req_;
  std::string chunked_body_;
  bool closed_ = false;
  bool close_after_write_ = false;
  bool eof_ = false;
  bool waiting_ = false;  // for a Reply: serves nothing more until it comes
  bool close_after_answer_ = false;
  bool head_answer_ = false;
};

ApiServer::ApiServer(net::EventLoop& loop, Handler handler, ApiServerOptions options)
    : loop_(loop),
      handler_(std::move(handler)),
      transport_(std::move(options.transport)),
      screen_(options),
      link_(std::make_shared<Link>()) {
  link_->loop = &loop_;
  link_->server = this;
}

ApiServer::~ApiServer() {
  {
    std::lock_guard lock(link_->mu);
    link_->loop = nullptr;
    link_->server = nullptr;
  }
  if (fd_ >= 0) {
    loop_.remove(fd_);
    ::close(fd_);
  }
  // Connections still open (a keep-alive client): their loop has stopped, so
  // nothing can be running in them now.
  while (!sessions_.empty()) delete sessions_.begin()->second;
}

bool ApiServer::listen(const net::SocketAddress& address, std::string& error) {
  fd_ = net::open_listen_socket(address, false, error);
  if (fd_ < 0) return false;
  address_ = address;
  socklen_t length = sizeof(address_.storage);
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&address_.storage), &length) == 0) {
    address_.length = length;
    address_.text = net::format_address(address_.storage);
  }
  loop_.add_level_read(fd_, this);
  return true;
}

void ApiServer::on_io(uint32_t) {
  for (int i = 0; i < 16; ++i) {
    sockaddr_storage peer;
    int error = 0;
    int fd = net::accept_connection(fd_, peer, error);
    if (fd < 0) return;
    // The address this connection reached: for a wildcard listener, the one
    // of this host's addresses the client used.
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) local = address_.storage;
    new Session(*this, fd, local_endpoint(local));  // owns itself, listed in sessions_ until it closes
  }
}

}  // namespace trellis::http
