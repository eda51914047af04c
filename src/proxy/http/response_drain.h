// The rest of a response nobody wants any more (a retry on its status moved
// on): read and dropped, so its connection can serve the next request instead
// of being closed and opened again. Bounded in bytes and time: past either
// limit the connection is closed after all.
#pragma once

#include <memory>

#include "http/codec.h"
#include "proxy/runtime/worker.h"
#include "proxy/upstream/upstream_codec.h"

namespace trellis::proxy {

class ResponseDrain final : public WorkerConnection, public http::ResponseDecoder {
 public:
  static constexpr size_t kMaxBytes = 64 * 1024;
  static constexpr Duration kMaxTime = std::chrono::seconds(1);

  // Takes over `codec`, whose response head has been read.
  static void start(Worker& worker, std::unique_ptr<UpstreamCodec> codec);

  // WorkerConnection
  void start_drain() override {}  // finishes by itself, bounded by its limits
  void abort() override { finish(false); }

  // http::ResponseDecoder: everything is dropped.
  void decode_response_headers(const http::ResponseHeaders&, bool end_stream) override;
  void decode_response_data(std::string_view data, bool end_stream) override;
  void decode_response_trailers(const http::HeaderList&) override { finish(true); }
  void flush_response() override {}
  bool response_blocked() const override { return false; }
  void on_upstream_drained() override {}
  void on_upstream_failure(http::UpstreamFailure, std::string_view) override { finish(false); }

 private:
  ResponseDrain(Worker& worker, std::unique_ptr<UpstreamCodec> codec);
  void finish(bool keep);

  std::unique_ptr<UpstreamCodec> codec_;
  size_t bytes_ = 0;
  bool finished_ = false;
  net::Timer deadline_;
};

}  // namespace trellis::proxy
