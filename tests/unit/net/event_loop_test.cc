#include "net/event_loop.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace trellis::net {
namespace {

TEST(EventLoop, TimersFireInDeadlineOrder) {
  EventLoop loop;
  std::vector<int> fired;
  Timer a(loop, [&] { fired.push_back(1); });
  Timer b(loop, [&] { fired.push_back(2); });
  Timer c(loop, [&] {
    fired.push_back(3);
    loop.stop();
  });
  c.arm(std::chrono::milliseconds(30));
  a.arm(std::chrono::milliseconds(10));
  b.arm(std::chrono::milliseconds(20));
  loop.run();
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
}

TEST(EventLoop, RearmingLaterDelaysAndCancelStops) {
  EventLoop loop;
  std::vector<int> fired;
  Timer moved(loop, [&] { fired.push_back(1); });
  Timer cancelled(loop, [&] { fired.push_back(2); });
  Timer end(loop, [&] {
    fired.push_back(3);
    loop.stop();
  });
  moved.arm(std::chrono::milliseconds(5));
  moved.arm(std::chrono::milliseconds(40));  // lazily re-queued past `end`
  cancelled.arm(std::chrono::milliseconds(10));
  cancelled.cancel();
  end.arm(std::chrono::milliseconds(20));
  loop.run();
  EXPECT_EQ(fired, (std::vector<int>{3}));
  EXPECT_TRUE(moved.armed());
}

TEST(EventLoop, PostRunsOnTheLoopThread) {
  EventLoop loop;
  std::thread::id ran_on;
  std::thread runner([&] { loop.run(); });
  loop.post([&] {
    ran_on = std::this_thread::get_id();
    loop.stop();
  });
  std::thread::id loop_thread = runner.get_id();
  runner.join();
  EXPECT_EQ(ran_on, loop_thread);
}

class Marker final : public Deferred {
 public:
  explicit Marker(bool& destroyed) : destroyed_(destroyed) {}
  ~Marker() override { destroyed_ = true; }

 private:
  bool& destroyed_;
};

TEST(EventLoop, DeferredDeletionWaitsForTheEndOfTheIteration) {
  EventLoop loop;
  bool destroyed = false;
  bool seen_alive = false;
  Timer t(loop, [&] {
    loop.defer_delete(std::make_unique<Marker>(destroyed));
    seen_alive = !destroyed;
    loop.stop();
  });
  t.arm(Duration::zero());
  loop.run();
  EXPECT_TRUE(seen_alive);
  EXPECT_TRUE(destroyed);
}

}  // namespace
}  // namespace trellis::net
