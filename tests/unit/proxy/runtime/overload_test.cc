#include "proxy/runtime/overload.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace trellis::proxy {
namespace {

ReadFile files(std::map<std::string, std::string> contents) {
  return [contents = std::move(contents)](const std::string& path) -> std::optional<std::string> {
    auto it = contents.find(path);
    if (it == contents.end()) return std::nullopt;
    return it->second;
  };
}

TEST(CgroupMemoryLimit, ReadsTheV2LimitOfTheProcesssCgroup) {
  EXPECT_EQ(cgroup_memory_limit("0::/kubepods/pod1/c1\n",
                                files({{"/sys/fs/cgroup/kubepods/pod1/c1/memory.max", "268435456\n"}})),
            268435456u);
  // The root cgroup, and one with no limit.
  EXPECT_EQ(cgroup_memory_limit("0::/\n", files({{"/sys/fs/cgroup/memory.max", "1048576\n"}})), 1048576u);
  EXPECT_EQ(cgroup_memory_limit("0::/a\n", files({{"/sys/fs/cgroup/a/memory.max", "max\n"}})), 0u);
  EXPECT_EQ(cgroup_memory_limit("0::/a\n", files({})), 0u);
}

TEST(CgroupMemoryLimit, ReadsTheV1MemoryControllersLimit) {
  const char* self = "12:cpu,cpuacct:/x\n11:memory:/docker/abc\n0::/\n";
  EXPECT_EQ(cgroup_memory_limit(
                self, files({{"/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "5000000"}})),
            5000000u);
  // v1's "no limit" is a huge number.
  EXPECT_EQ(
      cgroup_memory_limit(
          self, files({{"/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n"}})),
      0u);
  EXPECT_EQ(cgroup_memory_limit("", files({})), 0u);
  EXPECT_EQ(cgroup_memory_limit("garbage\n::\n", files({})), 0u);
}

TEST(OverloadLevel, ShedsFromNinetyPercentAndRefusesAtTheLimit) {
  EXPECT_EQ(overload_level(1u << 30, 0), OverloadLevel::kNone);
  EXPECT_EQ(overload_level(899, 1000), OverloadLevel::kNone);
  EXPECT_EQ(overload_level(900, 1000), OverloadLevel::kShedIdle);
  EXPECT_EQ(overload_level(999, 1000), OverloadLevel::kShedIdle);
  EXPECT_EQ(overload_level(1000, 1000), OverloadLevel::kRefuse);
}

TEST(OverloadLevel, TheConfiguredLimitWinsElseEightyPercentOfTheCgroups) {
  EXPECT_EQ(effective_heap_limit(std::nullopt, 1000), 800u);
  EXPECT_EQ(effective_heap_limit(std::nullopt, 0), 0u);
  EXPECT_EQ(effective_heap_limit(uint64_t{0}, 1000), 0u);
  EXPECT_EQ(effective_heap_limit(uint64_t{500}, 1000), 500u);
}

TEST(HeapAllocated, GrowsWithAnAllocation) {
  const uint64_t before = heap_use().allocated;
  auto* block = new char[8 << 20];
  block[0] = 1;
  EXPECT_GE(heap_use().allocated, before + (8 << 20));
  delete[] block;
}

}  // namespace
}  // namespace trellis::proxy
