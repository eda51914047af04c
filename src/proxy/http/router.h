// The protocol-neutral HTTP stream: routes a request by Host and path to a
// cluster, picks an endpoint, forwards the request through an upstream codec
// and the response back through the downstream codec. It sees codecs only
// through the interfaces in codec.h, so HTTP/1.1 and HTTP/2 share it.
#pragma once

#include <memory>
#include <string>

#include "proxy/http/codec.h"
#include "proxy/http/message.h"
#include "proxy/http1/upstream_codec.h"
#include "proxy/snapshot.h"

namespace trellis::proxy {
class Worker;
class UpstreamCluster;
}  // namespace trellis::proxy

namespace trellis::proxy::http {

// What the stream needs to know about the client connection it serves.
struct DownstreamContext {
  std::shared_ptr<const Snapshot> snapshot;
  const ListenerRuntime* listener = nullptr;
  ListenerStats* stats = nullptr;
  std::string_view client_ip;       // for x-forwarded-for
  std::string_view client_address;  // ip:port, for the access log
};

class Router final : public RequestDecoder, public ResponseDecoder {
 public:
  Router(Worker& worker, ResponseEncoder& downstream);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Starts a new exchange. The context must outlive it.
  void begin(const DownstreamContext& context);
  // Answers the current request from the proxy itself (codec-level errors too).
  void reply_local(int status, std::string_view body);
  // Ends the exchange: status and latency metrics, access log. Bytes are as
  // counted on the client's wire by the codec.
  void end(uint64_t bytes_received, uint64_t bytes_sent);
  bool response_started() const { return response_started_; }

  // RequestDecoder (from the downstream codec)
  void decode_headers(const RequestHeaders& headers, bool end_stream) override;
  void decode_data(std::string_view data, bool end_stream) override;
  void decode_trailers(const HeaderList& trailers) override;
  void flush() override;
  bool blocked() const override;
  void on_downstream_drained() override;
  void on_downstream_reset() override;

  // ResponseDecoder (from the upstream codec)
  void decode_response_headers(const ResponseHeaders& headers, bool end_stream) override;
  void decode_response_data(std::string_view data, bool end_stream) override;
  void decode_response_trailers(const HeaderList& trailers) override;
  void flush_response() override;
  bool response_blocked() const override;
  void on_upstream_drained() override;
  void on_upstream_failure(UpstreamFailure failure, std::string_view detail) override;

 private:
  void add_forwarding_headers();
  bool connect_upstream(bool fresh);
  void response_complete();
  void release_upstream(bool reusable);
  bool retry_on_fresh_connection();
  void on_timeout();
  void log_access(uint64_t bytes_received, uint64_t bytes_sent, Duration elapsed);

  Worker& worker_;
  ResponseEncoder& downstream_;
  http1::UpstreamCodec upstream_;
  const DownstreamContext* context_ = nullptr;

  RequestHeadersCopy request_;
  std::string scratch_;     // x-forwarded-for value being built
  std::string request_id_;  // generated x-request-id
  MonoTime start_{};
  UpstreamCluster* cluster_ = nullptr;
  std::string_view cluster_name_;
  std::string upstream_address_;
  int status_ = 0;
  bool head_request_ = false;
  bool request_ended_ = false;
  bool response_started_ = false;
  bool response_ended_ = false;
  bool retried_ = false;
  Timer timeout_;
};

}  // namespace trellis::proxy::http
