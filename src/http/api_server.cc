#include "http/api_server.h"

#include <unistd.h>

#include <cerrno>

#include "http/http1/parser.h"
#include "http/http1/wire.h"
#include "net/address.h"
#include "net/transport.h"

namespace trellis::http {

class ApiServer::Session final : public net::TransportCallbacks, public net::Deferred {
 public:
  Session(ApiServer& server, int fd)
      : server_(server),
        socket_(server.transport_->accepted(server.loop_, fd, this)),
        timer_(server.loop_, [this] { close(); }) {
    server_.sessions_.insert(this);
    timer_.arm(std::chrono::seconds(30));
    on_readable();
  }
  ~Session() override { server_.sessions_.erase(this); }

  void on_readable() override {
    for (;;) {
      if (closed_) return;
      net::ReadResult r = socket_->read(in_);
      if (r == net::ReadResult::kAgain) return;
      if (r != net::ReadResult::kData) {
        if (socket_->pending_output() == 0 || r == net::ReadResult::kError)
          close();
        else
          eof_ = true;
        return;
      }
      serve();
    }
  }
  void on_writable() override {
    if (close_after_write_ || eof_) close();
  }
  void on_transport_error(int) override { close(); }

 private:
  void serve() {
    while (!closed_ && !in_.empty()) {
      http1::ParseResult pr = http1::parse_request(in_.view(), req_);
      if (pr.status == http1::ParseStatus::kNeedMore) return;
      if (pr.status == http1::ParseStatus::kError) {
        respond({pr.error_status, "text/plain", std::string("bad request: ") + pr.error + "\n"}, true, false);
        return;
      }
      // The body, whole: these are small API documents, not streams.
      std::string_view body;
      size_t total = pr.consumed;
      if (req_.info.body == http1::BodyKind::kContentLength) {
        if (req_.info.content_length > ApiServer::kMaxBody) {
          respond({413, "text/plain", "request body too large\n"}, true, false);
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
              respond({413, "text/plain", "request body too large\n"}, true, false);
              return;
            }
          } else if (step.kind == http1::ChunkedDecoder::Kind::kDone) {
            break;
          } else if (step.kind == http1::ChunkedDecoder::Kind::kNeedMore) {
            return;  // re-decoded from the start when more arrives
          } else {
            respond({400, "text/plain", std::string("bad request: ") + step.error + "\n"}, true, false);
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
      ApiResponse resp;
      try {
        resp = server_.handler_(ApiRequest{req_.method, target, query, body});
      } catch (const std::exception& e) {
        // Nothing a page does may take the process down.
        resp = {500, "text/plain", std::string("internal error: ") + e.what() + "\n"};
      }
      in_.consume(total);
      respond(resp, !keep_alive, head);
    }
  }

  void respond(const ApiResponse& resp, bool close_after, bool head) {
    net::Buffer out;
    out.append("HTTP/1.1 ");
    out.append_decimal(static_cast<unsigned>(resp.status));
    out.append(' ');
    out.append(http1::reason_phrase(resp.status));
    out.append("\r\ncontent-type: ");
    out.append(resp.content_type);
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
    server_.sessions_.erase(this);
    server_.loop_.defer_delete(std::unique_ptr<net::Deferred>(this));
  }

  ApiServer& server_;
  std::unique_ptr<net::Transport> socket_;
  net::Timer timer_;
  net::Buffer in_;
  http1::RequestHead req_;
  std::string chunked_body_;
  bool closed_ = false;
  bool close_after_write_ = false;
  bool eof_ = false;
};

ApiServer::ApiServer(net::EventLoop& loop, Handler handler, std::shared_ptr<net::TransportFactory> transport)
    : loop_(loop), handler_(std::move(handler)), transport_(std::move(transport)) {}

ApiServer::~ApiServer() {
  if (fd_ >= 0) {
    loop_.remove(fd_);
    ::close(fd_);
  }
  // Connections still open (a keep-alive client): their loop has stopped, so
  // nothing can be running in them now.
  while (!sessions_.empty()) delete *sessions_.begin();
}

bool ApiServer::listen(const net::SocketAddress& address, std::string& error) {
  fd_ = net::open_listen_socket(address, false, error);
  if (fd_ < 0) return false;
  loop_.add_level_read(fd_, this);
  return true;
}

void ApiServer::on_io(uint32_t) {
  for (int i = 0; i < 16; ++i) {
    sockaddr_storage peer;
    int error = 0;
    int fd = net::accept_connection(fd_, peer, error);
    if (fd < 0) return;
    new Session(*this, fd);  // owns itself, listed in sessions_ until it closes
  }
}

}  // namespace trellis::http
