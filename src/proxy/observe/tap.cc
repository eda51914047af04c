#include "proxy/observe/tap.h"

#include <utility>

namespace trellis::proxy {

bool TapFilter::matches(const TapEvent& e) const {
  if (!method.empty() && e.method != method) return false;
  if (!path_prefix.empty() && !std::string_view(e.path).starts_with(path_prefix)) return false;
  if (!direction.empty() && (direction == "inbound") != e.inbound) return false;
  return true;
}

Tap::Tap(size_t workers) {
  for (size_t i = 0; i < workers; ++i) queues_.push_back(std::make_unique<Queue>());
}

void Tap::record(size_t worker, TapEvent event) {
  Queue& q = *queues_[worker];
  std::lock_guard lock(q.mu);  // only while the tap is on; the admin thread takes it to drain
  if (q.events.size() >= kPerWorker) {
    ++q.dropped;
    return;
  }
  q.events.push_back(std::move(event));
}

void Tap::keep_on(std::chrono::steady_clock::time_point now) {
  last_asked_ = now;
  on_.store(true, std::memory_order_relaxed);
}

bool Tap::expire(std::chrono::steady_clock::time_point now) {
  if (!on()) return false;
  if (now - last_asked_ < kIdle) return true;
  on_.store(false, std::memory_order_relaxed);
  drain();  // what was queued until now
  ring_.clear();
  dropped_ = 0;
  return false;
}

void Tap::drain() {
  std::vector<TapEvent> taken;
  for (auto& q : queues_) {
    {
      std::lock_guard lock(q->mu);
      taken.swap(q->events);
      dropped_ += q->dropped;
      q->dropped = 0;
    }
    for (TapEvent& e : taken) {
      e.seq = next_seq_++;
      ring_.push_back(std::move(e));
      if (ring_.size() > kRing) ring_.pop_front();
    }
    taken.clear();
  }
}

Tap::Page Tap::read(uint64_t after, const TapFilter& filter, size_t max) {
  drain();
  // A number this tap never gave (it restarted since): all it holds.
  if (after >= next_seq_) after = 0;
  Page page;
  page.dropped = dropped_;
  page.last = after;
  uint64_t oldest = ring_.empty() ? next_seq_ : ring_.front().seq;
  if (after + 1 < oldest && after + 1 < next_seq_) page.missed = oldest - after - 1;
  for (const TapEvent& e : ring_) {
    if (e.seq <= after) continue;
    if (page.events.size() >= max) break;
    page.last = e.seq;
    if (filter.matches(e)) page.events.push_back(&e);
  }
  // Nothing more to see: start after the newest next time.
  if (page.events.size() < max && next_seq_ > 1) page.last = std::max(page.last, next_seq_ - 1);
  return page;
}

}  // namespace trellis::proxy
