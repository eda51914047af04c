// The request body as far as the router keeps it: for a replay (a retry), a
// mirror, or while a hold keeps the request from any upstream. Bounded by
// the cluster's buffer limit, except during a hold, when the client is
// stopped at the limit instead (the body has nowhere else to go).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace trellis::proxy {

class RequestBody {
 public:
  // How far the client's request has come.
  enum class End : uint8_t { kOpen, kEnded, kEndedWithTrailers };
  // What is kept of the body.
  enum class Keep : uint8_t { kNothing, kAll, kOverflowed };

  // A new request; `ended`: it has no more than its head.
  void begin(bool ended) {
    end_ = ended ? End::kEnded : End::kOpen;
    keep_ = Keep::kNothing;
    data_.clear();
  }
  // Keep the body from here on (a retry or a mirror may need it whole).
  void keep_all() { keep_ = Keep::kAll; }

  // A piece of the body arrived; `held`: no upstream takes it now.
  void append(std::string_view data, bool held, uint32_t limit) {
    if (keep_ == Keep::kOverflowed) return;
    if (!held && data_.size() + data.size() > limit) {
      // Past the limit the request can no longer be replayed or mirrored.
      keep_ = Keep::kOverflowed;
      data_.clear();
      data_.shrink_to_fit();
      return;
    }
    data_.append(data);
  }
  void end(bool with_trailers) { end_ = with_trailers ? End::kEndedWithTrailers : End::kEnded; }

  bool ended() const { return end_ != End::kOpen; }
  bool trailers() const { return end_ == End::kEndedWithTrailers; }
  bool keeping() const { return keep_ == Keep::kAll; }
  // Every byte of it is here (or it had none), so it can be sent again.
  // Trailers are forwarded once and never replayed.
  bool whole(bool has_body) const { return !trailers() && (!has_body || keep_ == Keep::kAll); }
  const std::string& data() const { return data_; }
  size_t size() const { return data_.size(); }

 private:
  End end_ = End::kOpen;
  Keep keep_ = Keep::kNothing;
  std::string data_;
};

}  // namespace trellis::proxy
