// One client connection on an HTTP listener: reads requests with the HTTP/1.1
// codec, routes each to a cluster, forwards it over a pooled upstream
// connection and streams the response back. Requests on a connection are
// handled one at a time (pipelined ones wait in the input buffer).
#pragma once

#include <netinet/in.h>

#include <string>

#include "proxy/http1/parser.h"
#include "proxy/http1/serialize.h"
#include "proxy/socket.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace trellis::proxy {

class HttpSession final : public WorkerConnection, public SocketCallbacks, public UpstreamUser {
 public:
  HttpSession(Worker& worker, int fd, const sockaddr_storage& peer, size_t listener_index);
  ~HttpSession() override;

  void start_drain() override;
  void abort() override { close(); }

  void on_readable() override;
  void on_writable() override;
  void on_socket_error(int error) override;
  void on_upstream_connected() override;
  void on_upstream_readable() override;
  void on_upstream_writable() override;
  void on_upstream_error(int error, bool during_connect) override;

 private:
  enum class State : uint8_t {
    kIdle,          // waiting for (the rest of) a request head
    kRequest,       // request in flight (body may still be arriving)
    kTunnel,        // after 101 Switching Protocols: raw bytes both ways
    kClosing,       // final response written; discarding input until EOF
    kClosed,
  };

  void read_client();
  void process_input();
  bool start_request(size_t head_size);
  bool refresh_snapshot();
  bool forward_request_body();
  void read_upstream();
  bool process_response();
  bool parse_and_forward_response();
  bool forward_response_body(Buffer& in);
  bool forward_request_body_staged();
  void flush_client();
  void flush_upstream();
  void finish_request();
  void local_reply(int status, std::string_view body, bool close);
  void upstream_failed(int status, std::string_view body);
  bool retry_on_fresh_connection();
  void release_upstream(bool reusable);
  void pump_tunnel();
  void write_client(Buffer& data);
  void close_gracefully();
  void close();
  void log_request();
  bool client_write_blocked() const;
  bool upstream_write_blocked() const;

  std::shared_ptr<const Snapshot> snapshot_;
  const ListenerRuntime* listener_;
  std::string listener_name_;
  ListenerStats* stats_;
  Socket client_;
  sockaddr_storage peer_;
  std::string client_ip_;
  Buffer in_;        // client input
  Buffer out_;       // staged output to the client, sent by flush_client()
  Buffer up_out_;    // staged output to the upstream, sent by flush_upstream()
  Buffer head_out_;  // the serialized request head, kept for one retry
  State state_ = State::kIdle;

  // Current request.
  http1::RequestHead req_;
  std::string method_;       // copies: req_ views die when in_ moves
  std::string path_;
  std::string host_;
  std::string request_id_;
  bool head_request_ = false;
  bool request_has_body_ = false;
  bool request_complete_ = false;
  bool client_eof_ = false;
  bool keep_alive_ = true;
  bool expect_continue_ = false;
  bool upgrade_requested_ = false;
  bool retried_ = false;
  int client_minor_ = 1;
  uint64_t req_remaining_ = 0;
  http1::ChunkedDecoder req_chunked_;
  MonoTime request_start_{};
  uint64_t request_bytes_in_ = 0;
  uint64_t response_bytes_out_ = 0;
  const ClusterStats* cluster_stats_ = nullptr;
  UpstreamCluster* cluster_ = nullptr;
  std::string cluster_name_;
  std::string upstream_address_;

  // Upstream side of the current request.
  UpstreamConnection* upstream_ = nullptr;
  bool upstream_connected_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool response_bytes_seen_ = false;
  int status_ = 0;
  http1::ResponseHead resp_;
  http1::ResponseFraming framing_ = http1::ResponseFraming::kNone;
  http1::BodyKind resp_body_ = http1::BodyKind::kNone;
  uint64_t resp_remaining_ = 0;
  http1::ChunkedDecoder resp_chunked_;

  bool in_process_ = false;
  Timer idle_timer_;
  Timer request_timer_;
};

}  // namespace trellis::proxy
