// Load balancers on seeded randomness: spreads, consistency under membership
// changes, locality, slow start and stats carried across rebuilds.
#include "policy/load_balancer.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace trellis::policy {
namespace {

constexpr LbAlgorithm kAllAlgorithms[] = {
    LbAlgorithm::kRoundRobin,     LbAlgorithm::kWeightedRoundRobin, LbAlgorithm::kRandom,
    LbAlgorithm::kWeightedRandom, LbAlgorithm::kLeastRequest,       LbAlgorithm::kRingHash,
    LbAlgorithm::kMaglev,         LbAlgorithm::kPeakEwma,
};

std::shared_ptr<const HostSet> host_set(std::vector<uint32_t> weights) {
  std::vector<Host> hosts;
  for (size_t i = 0; i < weights.size(); ++i) hosts.push_back({100 + i, weights[i], true});
  return std::make_shared<const HostSet>(std::move(hosts));
}

std::shared_ptr<const HostSet> equal_hosts(size_t n, size_t skip = SIZE_MAX) {
  std::vector<Host> hosts;
  for (size_t i = 0; i < n; ++i)
    if (i != skip) hosts.push_back({1000 + i, 1, true});
  return std::make_shared<const HostSet>(std::move(hosts));
}

std::vector<double> shares(LoadBalancer& lb, size_t picks) {
  std::vector<double> counts(lb.hosts().size(), 0);
  for (size_t i = 0; i < picks; ++i) {
    size_t pick = lb.choose({});
    EXPECT_LT(pick, counts.size());
    if (pick < counts.size()) ++counts[pick];
  }
  for (double& c : counts) c /= static_cast<double>(picks);
  return counts;
}

void expect_shares(const std::vector<double>& got, const std::vector<double>& want, double tolerance) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tolerance) << "host " << i;
}

// The id of the host each of `keys` hashed keys lands on.
std::vector<uint64_t> key_owners(LoadBalancer& lb, size_t keys) {
  std::vector<uint64_t> owners;
  for (uint64_t k = 0; k < keys; ++k) {
    PickContext ctx;
    ctx.hash = k;  // deliberately weak keys: the balancer must spread them
    owners.push_back(lb.hosts().hosts()[lb.choose(ctx)].id);
  }
  return owners;
}

TEST(LoadBalancer, RoundRobinCyclesOverHealthyHostsOnly) {
  FastRandom rng(1);
  auto hosts = std::make_shared<const HostSet>(
      std::vector<Host>{{1, 1, true}, {2, 1, false}, {3, 1, true}, {4, 0, true}, {5, 1, true}});
  auto lb = make_load_balancer(LbAlgorithm::kRoundRobin, hosts, rng);
  std::vector<size_t> seen;
  for (int i = 0; i < 6; ++i) seen.push_back(lb->choose({}));
  // Wherever it starts, it visits 0, 2, 4 in order, twice.
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(seen[i] == 0 || seen[i] == 2 || seen[i] == 4);
    EXPECT_EQ(seen[i], seen[(i + 3) % 6]);
    EXPECT_NE(seen[i], seen[(i + 1) % 6]);
  }
}

TEST(LoadBalancer, NoEligibleHostGivesSizeMax) {
  FastRandom rng(1);
  auto none = std::make_shared<const HostSet>(std::vector<Host>{{1, 1, false}, {2, 0, true}});
  for (auto algo : kAllAlgorithms) {
    auto lb = make_load_balancer(algo, none, rng);
    PickContext ctx;
    ctx.hash = 7;
    EXPECT_EQ(lb->choose(ctx), SIZE_MAX) << static_cast<int>(algo);
    auto empty = make_load_balancer(algo, std::make_shared<const HostSet>(), rng);
    EXPECT_EQ(empty->choose(ctx), SIZE_MAX) << static_cast<int>(algo);
  }
}

TEST(LoadBalancer, SmoothWeightedRoundRobinInterleavesHeavyHost) {
  FastRandom rng(1);
  auto lb = make_load_balancer(LbAlgorithm::kWeightedRoundRobin, host_set({5, 1, 1}), rng);
  std::string seq;
  for (int i = 0; i < 14; ++i) seq += static_cast<char>('a' + lb->choose({}));
  EXPECT_EQ(seq, "aabacaaaabacaa");
}

TEST(LoadBalancer, WeightedRoundRobinIsExactOverACycle) {
  FastRandom rng(1);
  auto lb = make_load_balancer(LbAlgorithm::kWeightedRoundRobin, host_set({1, 2, 7}), rng);
  expect_shares(shares(*lb, 10'000), {0.1, 0.2, 0.7}, 1e-9);
}

TEST(LoadBalancer, RandomSpreadsEvenly) {
  FastRandom rng(42);
  auto lb = make_load_balancer(LbAlgorithm::kRandom, host_set({1, 2, 7}), rng);
  expect_shares(shares(*lb, 100'000), {1 / 3.0, 1 / 3.0, 1 / 3.0}, 0.01);
}

TEST(LoadBalancer, WeightedRandomFollowsWeights) {
  FastRandom rng(42);
  auto lb = make_load_balancer(LbAlgorithm::kWeightedRandom, host_set({1, 2, 7}), rng);
  expect_shares(shares(*lb, 100'000), {0.1, 0.2, 0.7}, 0.01);
}

TEST(LoadBalancer, LeastRequestIdleClusterFollowsWeights) {
  FastRandom rng(7);
  auto lb = make_load_balancer(LbAlgorithm::kLeastRequest, host_set({1, 2, 7}), rng);
  expect_shares(shares(*lb, 100'000), {0.1, 0.2, 0.7}, 0.01);
}

TEST(LoadBalancer, LeastRequestPrefersLessLoadedHost) {
  FastRandom rng(7);
  auto lb = make_load_balancer(LbAlgorithm::kLeastRequest, equal_hosts(2), rng);
  for (int i = 0; i < 5; ++i) lb->on_start(0);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(lb->choose({}), 1u);
  // With three hosts the loaded one is never the lesser of a distinct pair.
  auto lb3 = make_load_balancer(LbAlgorithm::kLeastRequest, equal_hosts(3), rng);
  for (int i = 0; i < 5; ++i) lb3->on_start(1);
  auto got = shares(*lb3, 30'000);
  EXPECT_EQ(got[1], 0.0);
  EXPECT_NEAR(got[0], 0.5, 0.02);
  // Completions bring it back.
  for (int i = 0; i < 5; ++i) lb3->on_complete(1, Millis(1), MonoTime{});
  EXPECT_NEAR(shares(*lb3, 30'000)[1], 1 / 3.0, 0.02);
}

TEST(LoadBalancer, LeastRequestSpreadsTrafficUnderSteadyLoad) {
  // Each pick stays outstanding for a while: the balancer must keep load per
  // unit of weight level, so the weight-3 host carries three times the load.
  FastRandom rng(3);
  auto lb = make_load_balancer(LbAlgorithm::kLeastRequest, host_set({1, 3}), rng);
  std::vector<size_t> in_flight;
  std::vector<double> count(2, 0);
  for (int i = 0; i < 40'000; ++i) {
    size_t pick = lb->choose({});
    lb->on_start(pick);
    in_flight.push_back(pick);
    ++count[pick];
    if (in_flight.size() > 40) {
      lb->on_complete(in_flight.front(), Millis(1), MonoTime{});
      in_flight.erase(in_flight.begin());
    }
  }
  EXPECT_NEAR(count[1] / 40'000, 0.75, 0.03);
}

TEST(LoadBalancer, RingHashSameKeySameHost) {
  FastRandom rng(1);
  auto a = make_load_balancer(LbAlgorithm::kRingHash, equal_hosts(5), rng);
  auto b = make_load_balancer(LbAlgorithm::kRingHash, equal_hosts(5), rng);
  EXPECT_EQ(key_owners(*a, 10'000), key_owners(*a, 10'000));
  EXPECT_EQ(key_owners(*a, 10'000), key_owners(*b, 10'000));
}

TEST(LoadBalancer, RingHashRemovingAHostMovesOnlyItsKeys) {
  FastRandom rng(1);
  constexpr size_t kHosts = 10, kKeys = 100'000, kGone = 3;
  auto before = make_load_balancer(LbAlgorithm::kRingHash, equal_hosts(kHosts), rng);
  auto after = make_load_balancer(LbAlgorithm::kRingHash, equal_hosts(kHosts, kGone), rng);
  auto owners_before = key_owners(*before, kKeys);
  auto owners_after = key_owners(*after, kKeys);
  size_t moved = 0;
  for (size_t k = 0; k < kKeys; ++k) {
    if (owners_before[k] == owners_after[k]) continue;
    ++moved;
    EXPECT_EQ(owners_before[k], 1000 + kGone) << "key " << k;
  }
  EXPECT_GT(moved, 0u);
  EXPECT_LT(static_cast<double>(moved) / kKeys, 1.0 / kHosts + 0.03);
}

TEST(LoadBalancer, RingHashFollowsWeightsRoughly) {
  FastRandom rng(1);
  auto lb = make_load_balancer(LbAlgorithm::kRingHash, host_set({1, 2, 7}), rng);
  std::vector<double> count(3, 0);
  for (uint64_t id : key_owners(*lb, 100'000)) ++count[id - 100];
  expect_shares({count[0] / 1e5, count[1] / 1e5, count[2] / 1e5}, {0.1, 0.2, 0.7}, 0.04);
}

TEST(LoadBalancer, MaglevSameKeySameHostAndEvenSpread) {
  FastRandom rng(1);
  constexpr size_t kHosts = 10, kKeys = 200'000;
  auto a = make_load_balancer(LbAlgorithm::kMaglev, equal_hosts(kHosts), rng);
  auto b = make_load_balancer(LbAlgorithm::kMaglev, equal_hosts(kHosts), rng);
  auto owners = key_owners(*a, kKeys);
  EXPECT_EQ(owners, key_owners(*b, kKeys));
  std::map<uint64_t, double> count;
  for (uint64_t id : owners) ++count[id];
  ASSERT_EQ(count.size(), kHosts);
  for (auto& [id, c] : count) EXPECT_NEAR(c / kKeys, 1.0 / kHosts, 0.01) << "host " << id;
}

TEST(LoadBalancer, MaglevFollowsWeights) {
  FastRandom rng(1);
  auto lb = make_load_balancer(LbAlgorithm::kMaglev, host_set({1, 2, 7}), rng);
  std::vector<double> count(3, 0);
  for (uint64_t id : key_owners(*lb, 100'000)) ++count[id - 100];
  expect_shares({count[0] / 1e5, count[1] / 1e5, count[2] / 1e5}, {0.1, 0.2, 0.7}, 0.01);
}

TEST(LoadBalancer, MaglevRemovingAHostMovesFewOtherKeys) {
  FastRandom rng(1);
  constexpr size_t kHosts = 10, kKeys = 100'000, kGone = 6;
  auto before = make_load_balancer(LbAlgorithm::kMaglev, equal_hosts(kHosts), rng);
  auto after = make_load_balancer(LbAlgorithm::kMaglev, equal_hosts(kHosts, kGone), rng);
  auto owners_before = key_owners(*before, kKeys);
  auto owners_after = key_owners(*after, kKeys);
  size_t moved = 0, moved_elsewhere = 0;
  for (size_t k = 0; k < kKeys; ++k) {
    if (owners_before[k] == owners_after[k]) continue;
    ++moved;
    if (owners_before[k] != 1000 + kGone) ++moved_elsewhere;
  }
  // Every key of the removed host moves; of the rest, only a few percent.
  EXPECT_LT(static_cast<double>(moved) / kKeys, 1.0 / kHosts + 0.03);
  EXPECT_LT(static_cast<double>(moved_elsewhere) / kKeys, 0.03);
}

TEST(LoadBalancer, HashBalancersWithoutKeyStillServe) {
  FastRandom rng(5);
  for (auto algo : {LbAlgorithm::kRingHash, LbAlgorithm::kMaglev}) {
    auto lb = make_load_balancer(algo, equal_hosts(4), rng);
    auto got = shares(*lb, 40'000);
    for (double s : got) EXPECT_NEAR(s, 0.25, 0.05);
  }
}

TEST(LoadBalancer, PeakEwmaAvoidsASlowHostAndRetriesItAfterDecay) {
  FastRandom rng(11);
  LbOptions options;
  options.ewma_decay = std::chrono::seconds(1);
  auto lb = make_load_balancer(LbAlgorithm::kPeakEwma, equal_hosts(3), rng, options);
  MonoTime now{};
  std::vector<Duration> latency(3, Millis(1));
  // Serves `picks` requests, one per millisecond, each done in its host's
  // latency; returns the share host 0 got.
  auto run = [&](int picks) {
    int to_zero = 0;
    for (int i = 0; i < picks; ++i) {
      now += Millis(1);
      PickContext ctx;
      ctx.now = now;
      size_t pick = lb->choose(ctx);
      lb->on_start(pick);
      lb->on_complete(pick, latency[pick], now);
      if (pick == 0) ++to_zero;
    }
    return static_cast<double>(to_zero) / picks;
  };
  // The first host tried starts at the default estimate (30 ms); once one is
  // observed, the others start from what it costs, so all share evenly.
  run(5000);
  EXPECT_NEAR(run(3000), 1 / 3.0, 0.05);

  // One slow answer from host 0 and it is shed at once.
  latency[0] = Millis(500);
  now += Millis(1);
  lb->on_start(0);
  lb->on_complete(0, latency[0], now);
  latency[0] = Millis(1);
  EXPECT_LT(run(2000), 0.01);

  // Its memory fades (500 ms x e^-t/1s drops under 1 ms after ~6 s), it is
  // tried again, answers fast and gets its share back.
  run(8000);
  EXPECT_NEAR(run(3000), 1 / 3.0, 0.05);
}

// A host added to a cluster whose hosts are observed starts as an average
// host: it gets its share at once, even under light traffic, instead of
// waiting for a default estimate to fade below the others'.
TEST(LoadBalancer, PeakEwmaGivesANewHostItsShareAtOnce) {
  for (Duration new_latency : {Duration(Millis(1)), Duration(Millis(100))}) {
    FastRandom rng(5);
    auto lb = make_load_balancer(LbAlgorithm::kPeakEwma, equal_hosts(4), rng);
    MonoTime now{};
    // Ten requests a second, one at a time; hosts answer in 1 ms.
    auto serve = [&](int requests, size_t new_host) {
      int to_new = 0;
      for (int i = 0; i < requests; ++i) {
        now += Millis(100);
        PickContext ctx;
        ctx.now = now;
        size_t pick = lb->choose(ctx);
        lb->on_start(pick);
        lb->on_complete(pick, pick == new_host ? new_latency : Duration(Millis(1)), now);
        to_new += pick == new_host;
      }
      return to_new;
    };
    serve(600, SIZE_MAX);
    auto next = make_load_balancer(LbAlgorithm::kPeakEwma, equal_hosts(5), rng);
    next->adopt_stats(*lb);
    lb = std::move(next);
    int in_ten_seconds = serve(100, 4);
    if (new_latency == Millis(1)) {
      EXPECT_GE(in_ten_seconds, 12) << "a fifth of 100 requests is 20";
    } else {
      EXPECT_LE(in_ten_seconds, 2) << "a slow new host is tried, then avoided";
    }
  }
}

TEST(LoadBalancer, PeakEwmaPrefersTheFasterHost) {
  FastRandom rng(11);
  auto lb = make_load_balancer(LbAlgorithm::kPeakEwma, equal_hosts(2), rng);
  MonoTime now{};
  lb->on_start(0);
  lb->on_complete(0, Millis(20), now);
  lb->on_start(1);
  lb->on_complete(1, Millis(2), now);
  PickContext ctx;
  ctx.now = now + Millis(1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lb->choose(ctx), 1u);
  // Outstanding requests count too: ten in flight make the fast host costlier.
  for (int i = 0; i < 10; ++i) lb->on_start(1);
  EXPECT_EQ(lb->choose(ctx), 0u);
}

// --- locality ---------------------------------------------------------------

// `local` hosts in the client's zone followed by `remote` others, ids 1.., of
// which the first `healthy_local` and `healthy_remote` of each side are healthy.
std::shared_ptr<const HostSet> zoned(size_t local, size_t healthy_local, size_t remote,
                                     size_t healthy_remote) {
  std::vector<Host> hosts;
  for (size_t i = 0; i < local; ++i) hosts.push_back({1 + i, 1, i < healthy_local, true});
  for (size_t i = 0; i < remote; ++i) hosts.push_back({100 + i, 1, i < healthy_remote, false});
  return std::make_shared<const HostSet>(std::move(hosts));
}

LbOptions locality(uint32_t min_healthy_percent = 70) {
  LbOptions o;
  o.locality_enabled = true;
  o.locality_min_healthy_percent = min_healthy_percent;
  return o;
}

// The share of `picks` that went to local hosts; every pick must be eligible.
double local_share(LoadBalancer& lb, size_t picks, Random& keys) {
  size_t local = 0;
  for (size_t i = 0; i < picks; ++i) {
    PickContext ctx;
    ctx.hash = keys.next();
    size_t pick = lb.choose(ctx);
    EXPECT_LT(pick, lb.hosts().size());
    if (pick >= lb.hosts().size()) return -1;
    const Host& h = lb.hosts().hosts()[pick];
    EXPECT_TRUE(h.healthy && h.weight > 0) << "host " << h.id;
    if (h.local) ++local;
  }
  return static_cast<double>(local) / static_cast<double>(picks);
}

TEST(LoadBalancerLocality, AllLocalHealthyKeepsTrafficLocal) {
  FastRandom rng(21), keys(1);
  for (auto algo : kAllAlgorithms) {
    auto lb = make_load_balancer(algo, zoned(3, 3, 3, 3), rng, locality());
    EXPECT_EQ(local_share(*lb, 20'000, keys), 1.0) << static_cast<int>(algo);
  }
}

TEST(LoadBalancerLocality, SpillsInProportionBelowTheThreshold) {
  FastRandom rng(22), keys(2);
  // 1 of 3 local hosts eligible (33.3%) against a 70% threshold: 33.3/70 of
  // the traffic stays local, the rest goes to the other zone.
  for (auto algo : kAllAlgorithms) {
    auto lb = make_load_balancer(algo, zoned(3, 1, 3, 3), rng, locality(70));
    EXPECT_NEAR(local_share(*lb, 100'000, keys), (100.0 / 3) / 70, 0.01) << static_cast<int>(algo);
  }
  // At the threshold exactly, everything stays local: 7 of 10 at 70%.
  auto at = make_load_balancer(LbAlgorithm::kRandom, zoned(10, 7, 3, 3), rng, locality(70));
  EXPECT_EQ(local_share(*at, 20'000, keys), 1.0);
  // Just under it, a little spills: 6 of 10 at 70% keeps 6/7 local.
  auto under = make_load_balancer(LbAlgorithm::kRandom, zoned(10, 6, 3, 3), rng, locality(70));
  EXPECT_NEAR(local_share(*under, 100'000, keys), 6.0 / 7, 0.01);
}

TEST(LoadBalancerLocality, FallsBackToWhicheverSideHasHosts) {
  FastRandom rng(23), keys(3);
  for (auto algo : kAllAlgorithms) {
    SCOPED_TRACE(static_cast<int>(algo));
    auto no_local = make_load_balancer(algo, zoned(0, 0, 3, 3), rng, locality());
    EXPECT_EQ(local_share(*no_local, 1000, keys), 0.0);
    auto local_down = make_load_balancer(algo, zoned(3, 0, 3, 3), rng, locality());
    EXPECT_EQ(local_share(*local_down, 1000, keys), 0.0);
    // Few local hosts left, but nowhere else to go.
    auto remote_down = make_load_balancer(algo, zoned(10, 1, 3, 0), rng, locality());
    EXPECT_EQ(local_share(*remote_down, 1000, keys), 1.0);
    auto no_remote = make_load_balancer(algo, zoned(10, 1, 0, 0), rng, locality());
    EXPECT_EQ(local_share(*no_remote, 1000, keys), 1.0);
    auto none = make_load_balancer(algo, zoned(3, 0, 3, 0), rng, locality());
    EXPECT_EQ(none->choose({}), SIZE_MAX);
    auto empty = make_load_balancer(algo, std::make_shared<const HostSet>(), rng, locality());
    EXPECT_EQ(empty->choose({}), SIZE_MAX);
  }
}

TEST(LoadBalancerLocality, ZeroThresholdSpillsOnlyWhenNoLocalHostIsLeft) {
  FastRandom rng(24), keys(4);
  auto lb = make_load_balancer(LbAlgorithm::kRoundRobin, zoned(10, 1, 3, 3), rng, locality(0));
  EXPECT_EQ(local_share(*lb, 1000, keys), 1.0);
}

TEST(LoadBalancerLocality, DisabledIgnoresZones) {
  FastRandom rng(25), keys(5);
  auto lb = make_load_balancer(LbAlgorithm::kRandom, zoned(3, 3, 3, 3), rng);
  EXPECT_NEAR(local_share(*lb, 100'000, keys), 0.5, 0.01);
}

TEST(LoadBalancerLocality, BalancesWithinASideByTheAlgorithm) {
  FastRandom rng(26);
  // Weighted round robin within the local side, indices into the full set.
  std::vector<Host> hosts = {
      {1, 1, true, false}, {2, 3, true, true}, {3, 1, true, false}, {4, 1, true, true}};
  auto lb = make_load_balancer(LbAlgorithm::kWeightedRoundRobin, std::make_shared<const HostSet>(hosts), rng,
                               locality());
  expect_shares(shares(*lb, 8000), {0, 0.75, 0, 0.25}, 1e-9);
}

TEST(LoadBalancerLocality, HashingStaysConsistentWithinASide) {
  FastRandom rng(27);
  for (auto algo : {LbAlgorithm::kRingHash, LbAlgorithm::kMaglev}) {
    auto a = make_load_balancer(algo, zoned(4, 4, 4, 4), rng, locality());
    auto b = make_load_balancer(algo, zoned(4, 4, 4, 4), rng, locality());
    auto owners = key_owners(*a, 10'000);
    EXPECT_EQ(owners, key_owners(*b, 10'000)) << static_cast<int>(algo);
    std::map<uint64_t, size_t> count;
    for (uint64_t id : owners) ++count[id];
    EXPECT_EQ(count.size(), 4u) << "all local hosts, none remote";
    for (auto& [id, c] : count) EXPECT_LT(id, 100u);
  }
}

TEST(LoadBalancerLocality, ReportsReachTheInnerBalancer) {
  FastRandom rng(28);
  // Two local hosts (indices 1 and 3) between remote ones: least request must
  // see host 1's load through the index mapping and send everything to 3.
  std::vector<Host> hosts = {
      {1, 1, true, false}, {2, 1, true, true}, {3, 1, true, false}, {4, 1, true, true}};
  auto lb =
      make_load_balancer(LbAlgorithm::kLeastRequest, std::make_shared<const HostSet>(hosts), rng, locality());
  for (int i = 0; i < 5; ++i) lb->on_start(1);
  EXPECT_EQ(lb->stats(1).active, 5u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(lb->choose({}), 3u);
  for (int i = 0; i < 5; ++i) lb->on_complete(1, Millis(7), MonoTime{});
  EXPECT_EQ(lb->stats(1).active, 0u);
  EXPECT_TRUE(lb->stats(1).observed);
  EXPECT_NEAR(lb->latency_estimate_ns(1, MonoTime{}), 7e6, 1);
  auto got = shares(*lb, 20'000);
  EXPECT_NEAR(got[1], 0.5, 0.02);
  EXPECT_NEAR(got[3], 0.5, 0.02);
}

// --- slow start -------------------------------------------------------------

TEST(LoadBalancer, SlowStartWeightGrowsLinearlyFromATenth) {
  using std::chrono::seconds;
  const Duration window = seconds(10);
  EXPECT_EQ(slow_start_weight(5, seconds(0), window), 50u) << "10% at the start";
  EXPECT_EQ(slow_start_weight(5, Millis(500), window), 50u) << "never under 10%";
  EXPECT_EQ(slow_start_weight(5, seconds(1), window), 50u);
  EXPECT_EQ(slow_start_weight(5, seconds(5), window), 250u);
  EXPECT_EQ(slow_start_weight(5, seconds(9), window), 450u);
  EXPECT_EQ(slow_start_weight(5, seconds(10), window), 5 * kSlowStartScale) << "full at the window";
  EXPECT_EQ(slow_start_weight(5, seconds(60), window), 5 * kSlowStartScale);
  // Growth is monotonic.
  uint32_t last = 0;
  for (int ms = 0; ms <= 10'000; ms += 250) {
    uint32_t w = slow_start_weight(3, Millis(ms), window);
    EXPECT_GE(w, last) << ms;
    last = w;
  }
}

TEST(LoadBalancer, SlowStartEdgeCases) {
  using std::chrono::seconds;
  EXPECT_EQ(slow_start_weight(4, seconds(0), Duration::zero()), 4 * kSlowStartScale) << "no window: off";
  EXPECT_EQ(slow_start_weight(4, seconds(0), -seconds(1)), 4 * kSlowStartScale);
  EXPECT_EQ(slow_start_weight(1, Duration::zero(), seconds(10)), 10u);
  EXPECT_EQ(slow_start_weight(0, seconds(1), seconds(10)), 0u) << "weight 0 stays out of rotation";
  EXPECT_EQ(slow_start_weight(0, seconds(20), seconds(10)), 0u);
  EXPECT_EQ(slow_start_weight(UINT32_MAX, seconds(20), seconds(10)), UINT32_MAX) << "saturates";
}

TEST(LoadBalancer, SlowStartHostGetsItsShare) {
  // A warmed host (weight 1) beside one a quarter through its window.
  FastRandom rng(30);
  using std::chrono::seconds;
  auto hosts = host_set(
      {slow_start_weight(1, seconds(60), seconds(60)), slow_start_weight(1, seconds(15), seconds(60))});
  auto lb = make_load_balancer(LbAlgorithm::kWeightedRandom, hosts, rng);
  expect_shares(shares(*lb, 100'000), {100.0 / 125, 25.0 / 125}, 0.01);
}

// --- stats across rebuilds ----------------------------------------------------

TEST(LoadBalancer, AdoptStatsKeepsSurvivingHostsStats) {
  FastRandom rng(31);
  for (auto algo : kAllAlgorithms) {
    SCOPED_TRACE(static_cast<int>(algo));
    auto before = make_load_balancer(
        algo, std::make_shared<const HostSet>(std::vector<Host>{{1, 1, true}, {2, 1, true}, {3, 1, true}}),
        rng);
    MonoTime t0 = MonoTime{} + std::chrono::seconds(5);
    for (int i = 0; i < 4; ++i) before->on_start(1);  // id 2: 4 outstanding
    before->on_start(2);
    before->on_complete(2, Millis(40), t0);  // id 3: observed 40 ms
    before->on_start(0);                     // id 1: leaves

    // New membership, new order, a changed weight: ids 3, 4 (new), 2.
    auto after = make_load_balancer(
        algo, std::make_shared<const HostSet>(std::vector<Host>{{3, 2, true}, {4, 1, true}, {2, 1, true}}),
        rng);
    after->adopt_stats(*before);
    EXPECT_EQ(after->stats(2).active, 4u);
    EXPECT_FALSE(after->stats(2).observed);
    EXPECT_EQ(after->stats(0).active, 0u);
    EXPECT_TRUE(after->stats(0).observed);
    EXPECT_EQ(after->stats(0).ewma_at, t0);
    EXPECT_DOUBLE_EQ(after->latency_estimate_ns(0, t0 + Millis(100)),
                     before->latency_estimate_ns(2, t0 + Millis(100)));
    EXPECT_EQ(after->stats(1).active, 0u) << "a new host starts fresh";
    EXPECT_FALSE(after->stats(1).observed);
    // Completions of requests started on the old balancer land on the new one.
    after->on_complete(2, Millis(1), t0);
    EXPECT_EQ(after->stats(2).active, 3u);
  }
}

TEST(LoadBalancer, AdoptedOutstandingCountsSteerLeastRequest) {
  FastRandom rng(32);
  auto before = make_load_balancer(LbAlgorithm::kLeastRequest, equal_hosts(2), rng);
  for (int i = 0; i < 10; ++i) before->on_start(0);
  auto after = make_load_balancer(LbAlgorithm::kLeastRequest, equal_hosts(2), rng);
  after->adopt_stats(*before);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(after->choose({}), 1u);
}

TEST(LoadBalancerLocality, AdoptStatsAcrossWrappersAndSides) {
  FastRandom rng(33);
  // id 1 local, id 2 remote; after the update id 2 has moved to the local side.
  auto before = make_load_balancer(
      LbAlgorithm::kLeastRequest,
      std::make_shared<const HostSet>(std::vector<Host>{{1, 1, true, true}, {2, 1, true, false}}), rng,
      locality());
  for (int i = 0; i < 6; ++i) before->on_start(0);
  for (int i = 0; i < 2; ++i) before->on_start(1);
  before->on_complete(1, Millis(9), MonoTime{});

  auto hosts = std::make_shared<const HostSet>(
      std::vector<Host>{{2, 1, true, true}, {1, 1, true, true}, {3, 1, true, false}});
  auto after = make_load_balancer(LbAlgorithm::kLeastRequest, hosts, rng, locality());
  after->adopt_stats(*before);
  EXPECT_EQ(after->stats(1).active, 6u);
  EXPECT_EQ(after->stats(0).active, 1u);
  EXPECT_TRUE(after->stats(0).observed);
  // The inner balancer sees the adopted counts: id 2 (index 0) is the lighter.
  for (int i = 0; i < 100; ++i) ASSERT_EQ(after->choose({}), 0u);

  // And a wrapper adopts from a plain balancer too.
  auto plain = make_load_balancer(LbAlgorithm::kLeastRequest, hosts, rng);
  for (int i = 0; i < 3; ++i) plain->on_start(0);
  auto wrapped = make_load_balancer(LbAlgorithm::kLeastRequest, hosts, rng, locality());
  wrapped->adopt_stats(*plain);
  EXPECT_EQ(wrapped->stats(0).active, 3u);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(wrapped->choose({}), 1u);
}

}  // namespace
}  // namespace trellis::policy
