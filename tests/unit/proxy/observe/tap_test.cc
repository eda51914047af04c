#include "proxy/observe/tap.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace trellis::proxy {
namespace {

using Clock = std::chrono::steady_clock;

TapEvent event(std::string method, std::string path, bool inbound = true) {
  TapEvent e;
  e.method = std::move(method);
  e.path = std::move(path);
  e.inbound = inbound;
  e.status = 200;
  return e;
}

std::vector<std::string> paths(const Tap::Page& page) {
  std::vector<std::string> out;
  for (const TapEvent* e : page.events) out.push_back(e->path);
  return out;
}

TEST(Tap, OffUntilAskedAndOffAgainWhenNobodyAsks) {
  Tap tap(2);
  EXPECT_FALSE(tap.on());
  Clock::time_point t0 = Clock::now();
  tap.keep_on(t0);
  EXPECT_TRUE(tap.on());
  tap.record(0, event("GET", "/a"));
  EXPECT_TRUE(tap.expire(t0 + Tap::kIdle - std::chrono::seconds(1)));
  EXPECT_FALSE(tap.expire(t0 + Tap::kIdle));
  EXPECT_FALSE(tap.on());
  // What it held is gone with it.
  tap.keep_on(t0 + Tap::kIdle);
  EXPECT_TRUE(tap.read(0, {}, 100).events.empty());
}

TEST(Tap, ReadersPageThroughNumberedEventsOfEveryWorker) {
  Tap tap(2);
  tap.keep_on(Clock::now());
  uint64_t from_now = tap.newest();
  tap.record(0, event("GET", "/a"));
  tap.record(1, event("POST", "/b"));
  tap.record(0, event("GET", "/c", false));
  Tap::Page page = tap.read(from_now, {}, 2);
  EXPECT_EQ(paths(page), (std::vector<std::string>{"/a", "/c"}));  // worker 0's first, then worker 1's
  page = tap.read(page.last, {}, 100);
  EXPECT_EQ(paths(page), (std::vector<std::string>{"/b"}));
  EXPECT_TRUE(tap.read(page.last, {}, 100).events.empty());
  EXPECT_EQ(page.missed, 0u);
  // A reader with a number from before the proxy restarted gets what there is.
  EXPECT_EQ(paths(tap.read(page.last + 100, {}, 100)), (std::vector<std::string>{"/a", "/c", "/b"}));
}

TEST(Tap, FiltersByMethodPathPrefixAndDirection) {
  Tap tap(1);
  tap.keep_on(Clock::now());
  tap.record(0, event("GET", "/api/users"));
  tap.record(0, event("POST", "/api/users"));
  tap.record(0, event("GET", "/health"));
  tap.record(0, event("GET", "/api/orders", false));
  EXPECT_EQ(paths(tap.read(0, TapFilter{"GET", "/api/", ""}, 100)),
            (std::vector<std::string>{"/api/users", "/api/orders"}));
  EXPECT_EQ(paths(tap.read(0, TapFilter{"", "", "outbound"}, 100)),
            (std::vector<std::string>{"/api/orders"}));
  Tap::Page page = tap.read(0, TapFilter{"DELETE", "", ""}, 100);
  EXPECT_TRUE(page.events.empty());
  EXPECT_EQ(page.last, 4u) << "a reader that matched nothing still moves on";
}

TEST(Tap, WhatOverflowsIsCountedNotKept) {
  Tap tap(1);
  tap.keep_on(Clock::now());
  for (size_t i = 0; i < Tap::kPerWorker + 3; ++i) tap.record(0, event("GET", "/x"));
  Tap::Page page = tap.read(0, {}, 10);
  EXPECT_EQ(page.dropped, 3u);
  // The ring keeps the newest kRing: a reader far behind learns how many it missed.
  for (int round = 0; round < 4; ++round) {
    for (size_t i = 0; i < Tap::kPerWorker; ++i) tap.record(0, event("GET", "/y"));
    tap.read(tap.newest(), {}, 1);
  }
  page = tap.read(0, {}, 1);
  EXPECT_EQ(page.missed, 5 * Tap::kPerWorker - Tap::kRing);
}

}  // namespace
}  // namespace trellis::proxy
