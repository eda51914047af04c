// The load-balancing algorithms, the locality-aware wrapper over them, and
// slow-start weights.
#include "policy/load_balancer.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <unordered_map>

namespace trellis::policy {
namespace {

// A 64-bit finalizer (the SplitMix64 output function). Applied to the caller's
// hash too: a source address or a weak string hash would otherwise cluster on
// the ring and in the Maglev table.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t mix2(uint64_t a, uint64_t b) { return mix64(mix64(a) ^ (b + 0x9E3779B97F4A7C15ull)); }

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; static_cast<uint64_t>(d) * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

// --- round robin -----------------------------------------------------------

class RoundRobin final : public LoadBalancer {
 public:
  RoundRobin(std::shared_ptr<const HostSet> hosts, Random& random, const LbOptions& options)
      : LoadBalancer(std::move(hosts), random, options) {
    // Start each worker at a different host so that N workers do not all
    // send their first request to host 0.
    const auto& eligible = hosts_->eligible();
    if (!eligible.empty()) next_ = random_.uniform(eligible.size());
  }

  size_t choose(const PickContext&) override {
    const auto& eligible = hosts_->eligible();
    if (eligible.empty()) return SIZE_MAX;
    size_t pick = eligible[next_];
    next_ = next_ + 1 == eligible.size() ? 0 : next_ + 1;
    return pick;
  }

 private:
  size_t next_ = 0;
};

// Smooth weighted round robin: every pick adds each host's weight to its
// credit, takes the host with the most credit and charges it the total. Over a
// cycle each host is picked exactly weight times, spread out rather than in a
// burst (weights 5/1/1 give a a b a c a a).
class WeightedRoundRobin final : public LoadBalancer {
 public:
  WeightedRoundRobin(std::shared_ptr<const HostSet> hosts, Random& random, const LbOptions& options)
      : LoadBalancer(std::move(hosts), random, options), credit_(hosts_->eligible().size(), 0) {}

  size_t choose(const PickContext&) override {
    const auto& eligible = hosts_->eligible();
    if (eligible.empty()) return SIZE_MAX;
    size_t best = 0;
    for (size_t k = 0; k < eligible.size(); ++k) {
      credit_[k] += hosts_->hosts()[eligible[k]].weight;
      if (credit_[k] > credit_[best]) best = k;
    }
    credit_[best] -= static_cast<int64_t>(hosts_->total_weight());
    return eligible[best];
  }

 private:
  std::vector<int64_t> credit_;  // per eligible host
};

// --- random ----------------------------------------------------------------

class RandomLb final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;
  size_t choose(const PickContext&) override {
    const auto& eligible = hosts_->eligible();
    if (eligible.empty()) return SIZE_MAX;
    return eligible[random_.uniform(eligible.size())];
  }
};

class WeightedRandom final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;
  size_t choose(const PickContext&) override {
    if (hosts_->eligible().empty()) return SIZE_MAX;
    return pick_weighted();
  }
};

// --- least request ---------------------------------------------------------

// Power of two choices: draw two hosts by weight and keep the one with fewer
// outstanding requests per unit of weight. Comparing against the whole set
// would herd every worker onto the same momentarily idle host; two random
// candidates keep the spread while still steering away from the loaded ones.
class LeastRequest final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;
  size_t choose(const PickContext&) override {
    if (hosts_->eligible().empty()) return SIZE_MAX;
    auto [a, b] = pick_two();
    const auto& h = hosts_->hosts();
    // active_a / weight_a <= active_b / weight_b, without division. Ties keep
    // the first draw, so an idle cluster is spread by weight.
    uint64_t lhs = static_cast<uint64_t>(stats_[a].active) * h[b].weight;
    uint64_t rhs = static_cast<uint64_t>(stats_[b].active) * h[a].weight;
    return lhs <= rhs ? a : b;
  }
};

// --- peak EWMA -------------------------------------------------------------

// Power of two choices on cost = latency estimate x (outstanding + 1) / weight.
// The estimate jumps up to any slower observation at once (peak) and comes
// down only with time, so one slow host is shed quickly and trusted again
// slowly.
class PeakEwma final : public LoadBalancer {
 public:
  using LoadBalancer::LoadBalancer;
  size_t choose(const PickContext& ctx) override {
    if (hosts_->eligible().empty()) return SIZE_MAX;
    auto [a, b] = pick_two();
    stamp_default(a, ctx.now);
    stamp_default(b, ctx.now);
    return cost(a, ctx.now) <= cost(b, ctx.now) ? a : b;
  }

 private:
  // A host not yet observed starts from the median of what its cluster's
  // observed hosts cost now (the default RTT when none is observed): it
  // competes as an average host at once, and its first real latency replaces
  // the guess. Measured on a simulated 4-host cluster at 1 ms, one host added
  // (20 seeds; 2, 10 and 100 req/s, one request at a time): from the fixed
  // 30 ms default the new host got its first request after 32-37 s and none
  // in its first 30 s; from the median, after 0.04-1.7 s, with its fair 20%
  // share from the first 10 s. A new host at 100 ms gets one request either
  // way and is then avoided. (Slow start cannot help: it lowers the weight
  // that divides the cost, and starved a new host for 55-60 s.)
  void stamp_default(size_t index, MonoTime now) {
    HostStats& s = stats_[index];
    if (s.observed || s.default_stamped) return;
    s.ewma_ns = observed_median_ns(now);
    s.ewma_at = now;
    s.default_stamped = true;
  }

  double observed_median_ns(MonoTime now) {
    scratch_.clear();
    for (size_t i = 0; i < stats_.size(); ++i)
      if (stats_[i].observed) scratch_.push_back(latency_estimate_ns(i, now));
    if (scratch_.empty())
      return static_cast<double>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(options_.ewma_default_rtt).count());
    auto mid = scratch_.begin() + static_cast<std::ptrdiff_t>(scratch_.size() / 2);
    std::nth_element(scratch_.begin(), mid, scratch_.end());
    return *mid;
  }

  double cost(size_t index, MonoTime now) const {
    return latency_estimate_ns(index, now) * (stats_[index].active + 1) / hosts_->hosts()[index].weight;
  }

  std::vector<double> scratch_;  // for the median; reused
};

// --- ring hash -------------------------------------------------------------

// Consistent hashing on a ring: each host owns points placed by hashing its id
// and a replica number, and a key belongs to the first point at or after it.
// Points depend only on the host, so removing a host hands its keys to its
// ring neighbours and moves no other key.
class RingHash final : public LoadBalancer {
 public:
  RingHash(std::shared_ptr<const HostSet> hosts, Random& random, const LbOptions& options)
      : LoadBalancer(std::move(hosts), random, options) {
    const auto& eligible = hosts_->eligible();
    const auto& h = hosts_->hosts();
    uint64_t total = hosts_->total_weight();
    if (total == 0) return;
    double per_weight = options_.ring_points_per_weight;
    if (static_cast<double>(total) * per_weight > options_.ring_max_size)
      per_weight = static_cast<double>(options_.ring_max_size) / static_cast<double>(total);
    for (size_t index : eligible) {
      auto points = std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(h[index].weight * per_weight)));
      for (uint64_t r = 0; r < points; ++r)
        ring_.push_back({mix2(h[index].id, r), static_cast<uint32_t>(index)});
    }
    // Ties between points (astronomically rare) are broken by host id so the
    // ring does not depend on the order hosts were listed in.
    std::sort(ring_.begin(), ring_.end(), [&h](const Point& x, const Point& y) {
      return x.position != y.position ? x.position < y.position : h[x.host].id < h[y.host].id;
    });
  }

  size_t choose(const PickContext& ctx) override {
    if (ring_.empty()) return SIZE_MAX;
    uint64_t key = mix64(ctx.hash ? *ctx.hash : random_.next());
    auto it = std::lower_bound(ring_.begin(), ring_.end(), key,
                               [](const Point& p, uint64_t k) { return p.position < k; });
    if (it == ring_.end()) it = ring_.begin();
    return it->host;
  }

 private:
  struct Point {
    uint64_t position;
    uint32_t host;  // index into the host set
  };
  std::vector<Point> ring_;
};

// --- Maglev ----------------------------------------------------------------

// Maglev hashing: each host walks the table in its own permutation (an offset
// and a skip from its id) and claims the next free slot, turn by turn, until
// the table is full. Lookups are one modulo and one load, and the spread is
// even to within a slot or so per host; removing a host moves its keys and only
// a small fraction of the others.
class Maglev final : public LoadBalancer {
 public:
  Maglev(std::shared_ptr<const HostSet> hosts, Random& random, const LbOptions& options)
      : LoadBalancer(std::move(hosts), random, options) {
    const auto& eligible = hosts_->eligible();
    const auto& h = hosts_->hosts();
    if (eligible.empty()) return;
    uint32_t m = std::max<uint32_t>({options_.maglev_table_size, 2, static_cast<uint32_t>(eligible.size())});
    while (!is_prime(m)) ++m;

    struct Walk {
      uint64_t offset, skip, next = 0;
      uint64_t credit = 0;
    };
    std::vector<Walk> walks;
    uint32_t max_weight = 0;
    for (size_t index : eligible) {
      walks.push_back({mix2(h[index].id, 0xA1) % m, mix2(h[index].id, 0xB2) % (m - 1) + 1});
      max_weight = std::max(max_weight, h[index].weight);
    }
    table_.assign(m, UINT32_MAX);
    // Weighted turns: a host claims a slot each time its accumulated weight
    // reaches the heaviest host's, so slots split in proportion to weight.
    uint32_t filled = 0;
    while (filled < m) {
      for (size_t k = 0; k < eligible.size() && filled < m; ++k) {
        Walk& w = walks[k];
        w.credit += h[eligible[k]].weight;
        if (w.credit < max_weight) continue;
        w.credit -= max_weight;
        uint64_t slot;
        do {
          slot = (w.offset + w.skip * w.next) % m;
          ++w.next;
        } while (table_[slot] != UINT32_MAX);
        table_[slot] = static_cast<uint32_t>(eligible[k]);
        ++filled;
      }
    }
  }

  size_t choose(const PickContext& ctx) override {
    if (table_.empty()) return SIZE_MAX;
    uint64_t key = mix64(ctx.hash ? *ctx.hash : random_.next());
    return table_[key % table_.size()];
  }

 private:
  std::vector<uint32_t> table_;  // slot -> index into the host set
};

std::unique_ptr<LoadBalancer> make_plain(LbAlgorithm algorithm, std::shared_ptr<const HostSet> hosts,
                                         Random& random, const LbOptions& options) {
  switch (algorithm) {
    case LbAlgorithm::kRoundRobin:
      return std::make_unique<RoundRobin>(std::move(hosts), random, options);
    case LbAlgorithm::kWeightedRoundRobin:
      return std::make_unique<WeightedRoundRobin>(std::move(hosts), random, options);
    case LbAlgorithm::kRandom:
      return std::make_unique<RandomLb>(std::move(hosts), random, options);
    case LbAlgorithm::kWeightedRandom:
      return std::make_unique<WeightedRandom>(std::move(hosts), random, options);
    case LbAlgorithm::kLeastRequest:
      return std::make_unique<LeastRequest>(std::move(hosts), random, options);
    case LbAlgorithm::kRingHash:
      return std::make_unique<RingHash>(std::move(hosts), random, options);
    case LbAlgorithm::kMaglev:
      return std::make_unique<Maglev>(std::move(hosts), random, options);
    case LbAlgorithm::kPeakEwma:
      return std::make_unique<PeakEwma>(std::move(hosts), random, options);
  }
  return nullptr;
}

// --- locality --------------------------------------------------------------

// Two balancers of the same algorithm, one over the local hosts and one over
// the others, and a draw between them by how many local hosts are eligible.
// Each side keeps its own cursor, table and stats, so a consistent-hashing
// algorithm stays consistent within a side. The base class stats_ mirror the
// counts and latencies reported to the inner ones, so stats(index) reads as
// for a plain balancer.
class LocalityAware final : public LoadBalancer {
 public:
  LocalityAware(LbAlgorithm algorithm, std::shared_ptr<const HostSet> hosts, Random& random,
                const LbOptions& options)
      : LoadBalancer(std::move(hosts), random, options), owner_(hosts_->size()) {
    std::vector<Host> side_hosts[2];
    for (size_t i = 0; i < hosts_->size(); ++i) {
      const Host& h = hosts_->hosts()[i];
      Side& side = sides_[h.local ? kLocal : kRemote];
      owner_[i] = {h.local ? kLocal : kRemote, side.to_full.size()};
      side.to_full.push_back(i);
      side_hosts[h.local ? kLocal : kRemote].push_back(h);
    }
    LbOptions inner = options;
    inner.locality_enabled = false;
    for (int s : {kLocal, kRemote}) {
      sides_[s].lb =
          make_plain(algorithm, std::make_shared<const HostSet>(std::move(side_hosts[s])), random, inner);
    }
  }

  size_t choose(const PickContext& ctx) override {
    const HostSet& local = sides_[kLocal].lb->hosts();
    const HostSet& remote = sides_[kRemote].lb->hosts();
    uint64_t local_all = local.size();
    uint64_t local_eligible = local.eligible().size();
    int side;
    if (local_eligible == 0) {
      side = kRemote;
    } else if (remote.eligible().empty()) {
      side = kLocal;
    } else {
      // With L = local_eligible / local_all: all local while L >= the
      // threshold, else local with probability L / threshold. In integers:
      // local_eligible * 100 against threshold * local_all.
      uint64_t threshold = static_cast<uint64_t>(options_.locality_min_healthy_percent) * local_all;
      uint64_t have = local_eligible * 100;
      side = have >= threshold || random_.uniform(threshold) < have ? kLocal : kRemote;
    }
    size_t pick = sides_[side].lb->choose(ctx);
    return pick == SIZE_MAX ? SIZE_MAX : sides_[side].to_full[pick];
  }

  void on_start(size_t index) override {
    LoadBalancer::on_start(index);
    auto [side, sub] = owner_[index];
    sides_[side].lb->on_start(sub);
  }

  void on_complete(size_t index, Duration latency, MonoTime now) override {
    LoadBalancer::on_complete(index, latency, now);
    auto [side, sub] = owner_[index];
    sides_[side].lb->on_complete(sub, latency, now);
  }

  void adopt_stats(const LoadBalancer& previous) override {
    LoadBalancer::adopt_stats(previous);
    // From a wrapper, adopt from its inner balancers: they hold what only an
    // algorithm records (peak EWMA's stamp on an unobserved host). A host may
    // have changed sides, so each side adopts from both.
    const auto* prev = dynamic_cast<const LocalityAware*>(&previous);
    for (Side& side : sides_) {
      if (prev == nullptr) {
        side.lb->adopt_stats(previous);
      } else {
        for (const Side& old : prev->sides_) side.lb->adopt_stats(*old.lb);
      }
      for (size_t sub = 0; sub < side.to_full.size(); ++sub) stats_[side.to_full[sub]] = side.lb->stats(sub);
    }
  }

 private:
  enum : int { kLocal = 0, kRemote = 1 };
  struct Side {
    std::unique_ptr<LoadBalancer> lb;  // over the side's own HostSet
    std::vector<size_t> to_full;       // side index -> index into hosts_
  };
  Side sides_[2];
  std::vector<std::pair<int, size_t>> owner_;  // index into hosts_ -> (side, side index)
};

}  // namespace

HostSet::HostSet(std::vector<Host> hosts) : hosts_(std::move(hosts)) {
  uint64_t sum = 0;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    const Host& h = hosts_[i];
    if (!h.healthy || h.weight == 0) continue;
    if (!eligible_.empty() && h.weight != hosts_[eligible_.front()].weight) equal_weights_ = false;
    eligible_.push_back(i);
    sum += h.weight;
    cumulative_.push_back(sum);
  }
}

LoadBalancer::LoadBalancer(std::shared_ptr<const HostSet> hosts, Random& random, const LbOptions& options)
    : hosts_(std::move(hosts)), random_(random), options_(options), stats_(hosts_->size()) {}

void LoadBalancer::on_start(size_t index) {
  assert(index < stats_.size());
  ++stats_[index].active;
}

void LoadBalancer::on_complete(size_t index, Duration latency, MonoTime now) {
  assert(index < stats_.size());
  HostStats& s = stats_[index];
  if (s.active > 0) --s.active;
  double rtt = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count());
  double current = latency_estimate_ns(index, now);
  // The first observation replaces the default outright: it is the only
  // real knowledge there is.
  if (!s.observed || rtt > current) {
    s.ewma_ns = rtt;
  } else {
    // The faded estimate plus the new sample weighted by the time it covers:
    // a burst of completions at one instant does not drown older knowledge.
    double elapsed = std::chrono::duration<double>(now - s.ewma_at).count();
    double tau = std::chrono::duration<double>(options_.ewma_decay).count();
    double keep = elapsed <= 0 ? 1.0 : std::exp(-elapsed / tau);
    s.ewma_ns = current + rtt * (1 - keep);
  }
  s.ewma_at = now;
  s.observed = true;
}

double LoadBalancer::latency_estimate_ns(size_t index, MonoTime now) const {
  const HostStats& s = stats_[index];
  if (!s.observed && !s.default_stamped)
    return static_cast<double>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(options_.ewma_default_rtt).count());
  double elapsed = std::chrono::duration<double>(now - s.ewma_at).count();
  if (elapsed <= 0) return s.ewma_ns;
  double tau = std::chrono::duration<double>(options_.ewma_decay).count();
  return s.ewma_ns * std::exp(-elapsed / tau);
}

size_t LoadBalancer::pick_weighted() {
  const auto& eligible = hosts_->eligible();
  if (hosts_->all_weights_equal()) return eligible[random_.uniform(eligible.size())];
  const auto& cum = hosts_->cumulative_weight();
  uint64_t r = random_.uniform(cum.back());
  size_t k = static_cast<size_t>(std::upper_bound(cum.begin(), cum.end(), r) - cum.begin());
  return eligible[k];
}

std::pair<size_t, size_t> LoadBalancer::pick_two() {
  const auto& eligible = hosts_->eligible();
  size_t n = eligible.size();
  if (n == 1) return {eligible[0], eligible[0]};
  if (hosts_->all_weights_equal()) {
    size_t a = random_.uniform(n);
    size_t b = random_.uniform(n - 1);
    if (b >= a) ++b;  // a draw from the others, uniform, in one go
    return {eligible[a], eligible[b]};
  }
  // Draw the first by weight, then the second by weight from the rest by
  // drawing over the total minus the first's weight and skipping its range.
  const auto& cum = hosts_->cumulative_weight();
  uint64_t r = random_.uniform(cum.back());
  size_t a = static_cast<size_t>(std::upper_bound(cum.begin(), cum.end(), r) - cum.begin());
  uint64_t a_start = a == 0 ? 0 : cum[a - 1];
  uint64_t a_weight = cum[a] - a_start;
  uint64_t r2 = random_.uniform(cum.back() - a_weight);
  if (r2 >= a_start) r2 += a_weight;
  size_t b = static_cast<size_t>(std::upper_bound(cum.begin(), cum.end(), r2) - cum.begin());
  return {eligible[a], eligible[b]};
}

void LoadBalancer::adopt_stats(const LoadBalancer& previous) {
  std::unordered_map<uint64_t, size_t> by_id;
  by_id.reserve(previous.hosts().size());
  for (size_t j = 0; j < previous.hosts().size(); ++j) by_id.emplace(previous.hosts().hosts()[j].id, j);
  for (size_t i = 0; i < hosts_->size(); ++i) {
    auto it = by_id.find(hosts_->hosts()[i].id);
    if (it != by_id.end()) stats_[i] = previous.stats(it->second);
  }
}

std::unique_ptr<LoadBalancer> make_load_balancer(LbAlgorithm algorithm, std::shared_ptr<const HostSet> hosts,
                                                 Random& random, const LbOptions& options) {
  if (!hosts) hosts = std::make_shared<const HostSet>();
  if (options.locality_enabled)
    return std::make_unique<LocalityAware>(algorithm, std::move(hosts), random, options);
  return make_plain(algorithm, std::move(hosts), random, options);
}

uint32_t slow_start_weight(uint32_t weight, Duration age, Duration window) {
  // Weight 0 keeps the host out of rotation; the floor of 1 below is only so
  // a warming host never rounds down to out of rotation.
  if (weight == 0) return 0;
  double full = static_cast<double>(weight) * kSlowStartScale;
  double share = 1.0;
  if (window > Duration::zero() && age < window)
    share = std::max(0.1, std::chrono::duration<double>(age) / std::chrono::duration<double>(window));
  double scaled = std::max(1.0, full * share);
  // Saturate rather than wrap for a weight above UINT32_MAX / kSlowStartScale.
  return scaled >= static_cast<double>(std::numeric_limits<uint32_t>::max())
             ? std::numeric_limits<uint32_t>::max()
             : static_cast<uint32_t>(scaled);
}

}  // namespace trellis::policy
