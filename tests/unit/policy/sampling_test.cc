// Traffic splitting and sampling draws, on a seeded generator.
#include "policy/sampling.h"

#include <gtest/gtest.h>

namespace trellis::policy {
namespace {

double sampled_share(uint64_t numerator, uint64_t denominator, Random& random, int draws) {
  int hits = 0;
  for (int i = 0; i < draws; ++i) hits += sampled(numerator, denominator, random) ? 1 : 0;
  return static_cast<double>(hits) / draws;
}

TEST(Sampling, SampledFollowsTheFraction) {
  FastRandom rng(41);
  EXPECT_NEAR(sampled_share(1, 100, rng, 200'000), 0.01, 0.001);
  EXPECT_NEAR(sampled_share(1, 4, rng, 200'000), 0.25, 0.005);
  EXPECT_NEAR(sampled_share(999'999, 1'000'000, rng, 200'000), 0.999999, 0.0005);
  EXPECT_NEAR(sampled_share(3, 7, rng, 200'000), 3.0 / 7, 0.005);
}

TEST(Sampling, SampledEdges) {
  FastRandom rng(42);
  EXPECT_EQ(sampled_share(0, 100, rng, 10'000), 0.0);
  EXPECT_EQ(sampled_share(0, 0, rng, 1000), 0.0);
  EXPECT_EQ(sampled_share(5, 0, rng, 1000), 0.0) << "no denominator: never";
  EXPECT_EQ(sampled_share(100, 100, rng, 10'000), 1.0);
  EXPECT_EQ(sampled_share(150, 100, rng, 10'000), 1.0);
}

struct Backend {
  const char* name;
  uint32_t weight;
};

std::vector<double> pick_shares(const std::vector<Backend>& items, Random& random, int draws) {
  std::vector<double> count(items.size(), 0);
  for (int i = 0; i < draws; ++i) {
    size_t k = pick_by_weight(
        items, [](const Backend& b) { return b.weight; }, random);
    EXPECT_LT(k, items.size());
    if (k < items.size()) ++count[k];
  }
  for (double& c : count) c /= draws;
  return count;
}

TEST(Sampling, PickByWeightNinetyTen) {
  FastRandom rng(43);
  auto got = pick_shares({{"stable", 90}, {"canary", 10}}, rng, 100'000);
  EXPECT_NEAR(got[0], 0.90, 0.01);
  EXPECT_NEAR(got[1], 0.10, 0.01);
}

TEST(Sampling, PickByWeightSkipsZeroWeights) {
  FastRandom rng(44);
  auto got = pick_shares({{"a", 0}, {"b", 1}, {"c", 0}, {"d", 3}, {"e", 0}}, rng, 100'000);
  EXPECT_EQ(got[0], 0.0);
  EXPECT_EQ(got[2], 0.0);
  EXPECT_EQ(got[4], 0.0);
  EXPECT_NEAR(got[1], 0.25, 0.01);
  EXPECT_NEAR(got[3], 0.75, 0.01);
}

TEST(Sampling, PickByWeightAllZeroOrEmpty) {
  FastRandom rng(45);
  auto weight = [](const Backend& b) { return b.weight; };
  EXPECT_EQ(pick_by_weight(std::vector<Backend>{{"a", 0}, {"b", 0}}, weight, rng), SIZE_MAX);
  EXPECT_EQ(pick_by_weight(std::vector<Backend>{}, weight, rng), SIZE_MAX);
  EXPECT_EQ(pick_by_weight(std::vector<Backend>{{"only", 7}}, weight, rng), 0u);
}

}  // namespace
}  // namespace trellis::policy
