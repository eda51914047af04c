// Outlier detection: consecutive-error and success-rate ejection with a
// growing, decaying ejection time, capped by max_ejection_percent.
#include "policy/outlier_detector.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>
#include <utility>

namespace trellis::policy {

namespace {

constexpr uint64_t kRequest = 1;
constexpr uint64_t kSuccess = uint64_t{1} << 32;

int64_t ns_of(MonoTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

int64_t ns_of(Duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

// Resets a counter only when it is not already zero: the common success
// path then reads the host's line without writing it.
void clear(std::atomic<uint32_t>& counter) {
  if (counter.load(std::memory_order_relaxed) != 0) counter.store(0, std::memory_order_relaxed);
}

}  // namespace

OutlierDetector::OutlierDetector(const OutlierConfig& config, std::vector<uint64_t> host_ids)
    : config_(config),
      ids_(std::move(host_ids)),
      size_(ids_.size()),
      hosts_(std::make_unique<HostState[]>(size_)) {}

bool OutlierDetector::report(size_t index, Outcome outcome, MonoTime now) {
  if (index >= size_) return false;
  HostState& h = hosts_[index];
  if (config_.success_rate.enabled)
    h.window.fetch_add(outcome == Outcome::kSuccess ? kSuccess | kRequest : kRequest,
                       std::memory_order_relaxed);
  if (outcome == Outcome::kSuccess) {
    clear(h.consecutive_5xx);
    clear(h.consecutive_gateway);
    return false;
  }

  // As in Envoy, reaching a threshold resets its counter whether or not the
  // ejection happens (it may be refused by max_ejection_percent): the next
  // attempt then takes a whole new streak, not the very next error. Exactly
  // one report sees the counter reach the threshold, so concurrent workers
  // make one attempt per streak.
  bool ejected = false;
  if (outcome == Outcome::kGatewayError) {
    const uint32_t threshold = config_.consecutive_gateway_errors;
    if (threshold != 0 && h.consecutive_gateway.fetch_add(1, std::memory_order_relaxed) + 1 == threshold) {
      h.consecutive_gateway.store(0, std::memory_order_relaxed);
      ejected = try_eject(index, Rule::kGatewayErrors, ns_of(now));
    }
  } else {
    clear(h.consecutive_gateway);
  }
  const uint32_t threshold = config_.consecutive_5xx;
  if (threshold != 0 && h.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1 == threshold) {
    h.consecutive_5xx.store(0, std::memory_order_relaxed);
    ejected = try_eject(index, Rule::kConsecutive5xx, ns_of(now)) || ejected;
  }
  return ejected;
}

bool OutlierDetector::reserve_ejection() {
  const uint64_t cap = uint64_t{config_.max_ejection_percent} * size_;
  uint32_t cur = ejected_count_.load(std::memory_order_relaxed);
  do {
    const bool allowed = (uint64_t{cur} + 1) * 100 <= cap || (config_.always_eject_one_host && cur == 0);
    if (!allowed) return false;
  } while (!ejected_count_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

bool OutlierDetector::try_eject(size_t index, Rule rule, int64_t now_ns) {
  HostState& h = hosts_[index];
  if (h.ejected_until.load(std::memory_order_relaxed) != kNotEjected) return false;
  if (!reserve_ejection()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const int64_t base = ns_of(config_.base_ejection_time);
  const int64_t max = std::max(ns_of(config_.max_ejection_time), base);
  uint32_t m = h.multiplier.load(std::memory_order_relaxed);
  // Once at the cap the multiplier stops growing, so a host that recovers
  // decays back from the cap rather than from some larger count.
  const bool at_cap = base == 0 || static_cast<int64_t>(m) >= (max + base - 1) / base;
  const uint32_t next = at_cap ? m : m + 1;
  const int64_t length = std::min<int64_t>(max, base * std::max<uint32_t>(next, 1));

  int64_t expected = kNotEjected;
  if (!h.ejected_until.compare_exchange_strong(expected, now_ns + length, std::memory_order_acq_rel)) {
    // Another worker ejected it first.
    ejected_count_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  h.multiplier.store(next, std::memory_order_relaxed);
  ejections_[static_cast<size_t>(rule)].fetch_add(1, std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_release);
  return true;
}

OutlierDetector::TickResult OutlierDetector::tick(MonoTime now) {
  TickResult result;
  const int64_t t = ns_of(now);

  for (size_t i = 0; i < size_; ++i) {
    HostState& h = hosts_[i];
    int64_t until = h.ejected_until.load(std::memory_order_acquire);
    if (until == kNotEjected) {
      // In service for a whole interval: one step of backoff forgiven. A
      // compare-and-swap, so an ejection racing with it is never undone.
      uint32_t m = h.multiplier.load(std::memory_order_relaxed);
      if (m > 0) h.multiplier.compare_exchange_strong(m, m - 1, std::memory_order_relaxed);
      continue;
    }
    if (until > t) continue;
    if (!h.ejected_until.compare_exchange_strong(until, kNotEjected, std::memory_order_acq_rel)) continue;
    // Counters restart so that a returning host is not ejected again by the
    // tail of the streak that took it out.
    h.consecutive_5xx.store(0, std::memory_order_relaxed);
    h.consecutive_gateway.store(0, std::memory_order_relaxed);
    ejected_count_.fetch_sub(1, std::memory_order_relaxed);
    epoch_.fetch_add(1, std::memory_order_release);
    ++result.unejected;
  }

  const auto& sr = config_.success_rate;
  if (!sr.enabled) return result;
  std::vector<std::pair<double, size_t>> rates;  // (success rate, host)
  for (size_t i = 0; i < size_; ++i) {
    HostState& h = hosts_[i];
    const uint64_t window = h.window.exchange(0, std::memory_order_relaxed);
    const uint64_t requests = window & 0xffffffffu;
    if (requests == 0 || requests < sr.request_volume) continue;
    // An ejected host cannot be ejected again; its few stragglers say little.
    if (h.ejected_until.load(std::memory_order_relaxed) != kNotEjected) continue;
    rates.emplace_back(static_cast<double>(window >> 32) / static_cast<double>(requests), i);
  }
  if (rates.empty() || rates.size() < sr.minimum_hosts) return result;

  double mean = 0;
  for (const auto& r : rates) mean += r.first;
  mean /= static_cast<double>(rates.size());
  double variance = 0;
  for (const auto& r : rates) variance += (r.first - mean) * (r.first - mean);
  variance /= static_cast<double>(rates.size());
  // A billionth of slack: hosts that are all alike must not be found below
  // their own mean by rounding.
  const double threshold = mean - sr.stdev_factor * std::sqrt(variance) - 1e-9;

  // Worst first, so that when max_ejection_percent runs out it is the worst
  // hosts that were ejected.
  std::sort(rates.begin(), rates.end());
  for (const auto& [rate, index] : rates) {
    if (rate >= threshold) break;
    if (try_eject(index, Rule::kSuccessRate, t)) ++result.ejected;
  }
  return result;
}

void OutlierDetector::adopt_state(const OutlierDetector& previous) {
  std::unordered_map<uint64_t, size_t> by_id;
  by_id.reserve(previous.size_);
  for (size_t j = 0; j < previous.size_; ++j) by_id.emplace(previous.ids_[j], j);

  uint32_t ejected = 0;
  for (size_t i = 0; i < size_; ++i) {
    auto it = by_id.find(ids_[i]);
    if (it == by_id.end()) continue;
    const HostState& from = previous.hosts_[it->second];
    HostState& to = hosts_[i];
    to.consecutive_5xx.store(from.consecutive_5xx.load(std::memory_order_relaxed), std::memory_order_relaxed);
    to.consecutive_gateway.store(from.consecutive_gateway.load(std::memory_order_relaxed),
                                 std::memory_order_relaxed);
    to.window.store(from.window.load(std::memory_order_relaxed), std::memory_order_relaxed);
    to.multiplier.store(from.multiplier.load(std::memory_order_relaxed), std::memory_order_relaxed);
    const int64_t until = from.ejected_until.load(std::memory_order_acquire);
    to.ejected_until.store(until, std::memory_order_relaxed);
    if (until != kNotEjected) ++ejected;
  }
  // Ejections carried over are kept even if the smaller set now exceeds
  // max_ejection_percent; they end on their own and block new ones meanwhile.
  ejected_count_.store(ejected, std::memory_order_relaxed);
  for (size_t r = 0; r < std::size(ejections_); ++r)
    ejections_[r].store(previous.ejections_[r].load(std::memory_order_relaxed), std::memory_order_relaxed);
  refused_.store(previous.refused_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  // Past the previous epoch, so a reader comparing epochs across the swap
  // sees a change.
  epoch_.store(previous.epoch() + 1, std::memory_order_release);
}

bool OutlierDetector::is_ejected(size_t index, MonoTime now) const {
  return index < size_ && ns_of(now) < hosts_[index].ejected_until.load(std::memory_order_acquire);
}

OutlierDetector::HostSnapshot OutlierDetector::snapshot(size_t index) const {
  HostSnapshot snap;
  if (index >= size_) return snap;
  const HostState& h = hosts_[index];
  const int64_t until = h.ejected_until.load(std::memory_order_acquire);
  if (until != kNotEjected)
    snap.ejected_until = MonoTime(std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(until)));
  snap.multiplier = h.multiplier.load(std::memory_order_relaxed);
  snap.consecutive_5xx = h.consecutive_5xx.load(std::memory_order_relaxed);
  snap.consecutive_gateway_errors = h.consecutive_gateway.load(std::memory_order_relaxed);
  const uint64_t window = h.window.load(std::memory_order_relaxed);
  snap.window_requests = static_cast<uint32_t>(window & 0xffffffffu);
  snap.window_successes = static_cast<uint32_t>(window >> 32);
  return snap;
}

OutlierDetector::Stats OutlierDetector::stats() const {
  Stats s;
  s.ejections_consecutive_5xx =
      ejections_[static_cast<size_t>(Rule::kConsecutive5xx)].load(std::memory_order_relaxed);
  s.ejections_gateway_errors =
      ejections_[static_cast<size_t>(Rule::kGatewayErrors)].load(std::memory_order_relaxed);
  s.ejections_success_rate =
      ejections_[static_cast<size_t>(Rule::kSuccessRate)].load(std::memory_order_relaxed);
  s.ejections_refused = refused_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace trellis::policy
