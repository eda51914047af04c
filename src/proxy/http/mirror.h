// A request mirror: a copy of a finished request sent to a shadow cluster.
// It owns itself, throws the response away, and shares nothing with the
// request it copies, so a slow or failing shadow never slows the primary.
#pragma once

#include <string>
#include <string_view>

#include "http/codec.h"
#include "http/message.h"
#include "proxy/runtime/worker.h"
#include "proxy/upstream/cluster.h"
#include "proxy/upstream/upstream_codec.h"

namespace trellis::proxy {

class MirrorStream final : public WorkerConnection, public http::ResponseDecoder {
 public:
  // Sends `request` with `body` (the whole body) to `cluster`, giving up after
  // `timeout` (0: 15 s). The copy goes out with its own connection from the
  // cluster's pool.
  static void start(Worker& worker, UpstreamCluster& cluster, const http::RequestHeaders& request,
                    std::string_view body, Duration timeout);

  // WorkerConnection
  void start_drain() override {}  // finishes by itself, bounded by its timeout
  void abort() override { finish(false); }

  // ResponseDecoder: the response is read and dropped.
  void decode_response_headers(const http::ResponseHeaders& headers, bool end_stream) override;
  void decode_response_data(std::string_view data, bool end_stream) override;
  void decode_response_trailers(const http::HeaderList& trailers) override;
  void flush_response() override {}
  bool response_blocked() const override { return false; }
  void on_upstream_drained() override {}
  void on_upstream_failure(http::UpstreamFailure failure, std::string_view detail) override;

 private:
  MirrorStream(Worker& worker, UpstreamCluster& cluster);
  void send(const http::RequestHeaders& request, std::string_view body, Duration timeout);
  void finish(bool keep);

  UpstreamCluster& cluster_;
  std::unique_ptr<UpstreamCodec> upstream_;  // the cluster's protocol
  net::Timer timeout_;
  UpstreamPick pick_;
  MonoTime started_{};
  bool finished_ = false;
};

}  // namespace trellis::proxy
