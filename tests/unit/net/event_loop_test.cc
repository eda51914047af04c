#include "net/event_loop.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace trellis::net {
namespace {

using std::chrono::milliseconds;

TEST(EventLoop, TimersFireInDeadlineOrderAtTheirDeadlines) {
  SimulatedClock clock;
  EventLoop loop(clock);
  MonoTime start = clock.now();
  std::vector<std::pair<int, Duration>> fired;
  Timer a(loop, [&] { fired.push_back({1, clock.now() - start}); });
  Timer b(loop, [&] { fired.push_back({2, clock.now() - start}); });
  Timer c(loop, [&] { fired.push_back({3, clock.now() - start}); });
  c.arm(milliseconds(30));
  a.arm(milliseconds(10));
  b.arm(milliseconds(20));
  loop.advance(milliseconds(29));
  EXPECT_EQ(fired.size(), 2u);
  loop.advance(milliseconds(1));
  ASSERT_EQ(fired.size(), 3u);
  EXPECT_EQ(fired[0], std::make_pair(1, Duration(milliseconds(10))));
  EXPECT_EQ(fired[1], std::make_pair(2, Duration(milliseconds(20))));
  EXPECT_EQ(fired[2], std::make_pair(3, Duration(milliseconds(30))));
}

TEST(EventLoop, RearmingLaterDelaysAndCancelStops) {
  SimulatedClock clock;
  EventLoop loop(clock);
  MonoTime start = clock.now();
  std::vector<std::pair<int, Duration>> fired;
  Timer moved(loop, [&] { fired.push_back({1, clock.now() - start}); });
  Timer cancelled(loop, [&] { fired.push_back({2, clock.now() - start}); });
  moved.arm(milliseconds(5));
  moved.arm(milliseconds(40));  // lazily re-queued: the old entry fires at 5 ms and re-queues
  cancelled.arm(milliseconds(10));
  cancelled.cancel();
  loop.advance(milliseconds(39));
  EXPECT_TRUE(fired.empty());
  EXPECT_TRUE(moved.armed());
  loop.advance(milliseconds(1));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0], std::make_pair(1, Duration(milliseconds(40))));
  EXPECT_FALSE(moved.armed());
}

TEST(EventLoop, RearmingEarlierMovesTheDeadlineForward) {
  SimulatedClock clock;
  EventLoop loop(clock);
  MonoTime start = clock.now();
  Duration at{};
  Timer t(loop, [&] { at = clock.now() - start; });
  t.arm(milliseconds(100));
  t.arm(milliseconds(7));
  loop.advance(milliseconds(200));
  EXPECT_EQ(at, Duration(milliseconds(7)));
}

TEST(EventLoop, TimerArmedFromATimerFiresWithinTheSameAdvance) {
  SimulatedClock clock;
  EventLoop loop(clock);
  MonoTime start = clock.now();
  std::vector<Duration> ticks;
  Timer periodic(loop, [&] {
    ticks.push_back(clock.now() - start);
    if (ticks.size() < 4) periodic.arm(milliseconds(25));
  });
  periodic.arm(milliseconds(25));
  loop.advance(std::chrono::seconds(1));
  EXPECT_EQ(ticks,
            (std::vector<Duration>{milliseconds(25), milliseconds(50), milliseconds(75), milliseconds(100)}));
}

TEST(EventLoop, ZeroDelayTimersRunWhenIdleWithoutTimePassing) {
  SimulatedClock clock;
  EventLoop loop(clock);
  MonoTime start = clock.now();
  int n = 0;
  Timer again(loop, [&] {
    if (++n < 10) again.arm(Duration::zero());
  });
  again.arm(Duration::zero());
  loop.run_until_idle();
  EXPECT_EQ(n, 10);
  EXPECT_EQ(clock.now(), start);
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

// A posted task may free handlers that later events of the same epoll batch
// still point at (a drain frees acceptors): posted tasks run after the batch.
TEST(EventLoop, PostedTasksRunAfterTheIoBatch) {
  SimulatedClock clock;
  EventLoop loop(clock);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  std::vector<std::string> order;
  struct Reader final : IoHandler {
    std::vector<std::string>& order;
    int fd;
    Reader(std::vector<std::string>& o, int f) : order(o), fd(f) {}
    void on_io(uint32_t) override {
      char c;
      while (::read(fd, &c, 1) == 1) {
      }
      order.push_back("io");
    }
  } reader(order, fds[0]);
  ASSERT_TRUE(loop.add_level_read(fds[0], &reader));
  loop.post([&] { order.push_back("posted"); });
  ASSERT_EQ(::write(fds[1], "x", 1), 1);
  loop.run_until_idle();
  // Whatever order epoll reports the wakeup and the pipe in, the task comes last.
  EXPECT_EQ(order, (std::vector<std::string>{"io", "posted"}));
  loop.remove(fds[0]);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace trellis::net
