#include "policy/load_balancer.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace trellis::policy {
namespace {

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
  for (auto algo : {LbAlgorithm::kRoundRobin, LbAlgorithm::kWeightedRoundRobin, LbAlgorithm::kRandom,
                    LbAlgorithm::kWeightedRandom, LbAlgorithm::kLeastRequest, LbAlgorithm::kRingHash,
                    LbAlgorithm::kMaglev, LbAlgorithm::kPeakEwma}) {
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
  // Hosts start at the default estimate (30 ms); the ones not yet tried fade
  // below the real 1 ms within ~3.5 s and are tried, so all share evenly.
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

}  // namespace
}  // namespace trellis::policy
