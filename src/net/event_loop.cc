#include "net/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include <spdlog/spdlog.h>

namespace trellis::net {

class EventLoop::Wakeup final : public IoHandler {
 public:
  explicit Wakeup(EventLoop& loop) : loop_(loop) {}
  void on_io(uint32_t) override {
    uint64_t n;
    while (::read(loop_.wakeup_fd_, &n, sizeof(n)) > 0) {
    }
    // Not here: a posted task may free handlers (a drain drops acceptors)
    // that later events of this same epoll batch still point at.
    loop_.posted_ready_ = true;
  }

 private:
  EventLoop& loop_;
};

Timer::Timer(EventLoop& loop, std::function<void()> callback) : loop_(loop), callback_(std::move(callback)) {}

Timer::~Timer() {
  if (heap_index_ != kNotInHeap) loop_.heap_remove(this);
}

void Timer::arm(Duration after) { arm_at(loop_.now() + after); }

void Timer::arm_at(MonoTime deadline) {
  deadline_ = deadline;
  armed_ = true;
  if (heap_index_ != kNotInHeap) {
    if (heap_deadline_ <= deadline) return;  // fires early, sees deadline_, re-queues
    loop_.heap_remove(this);
  }
  heap_deadline_ = deadline;
  loop_.heap_push(this);
}

EventLoop::EventLoop(Clock& clock) : clock_(clock), simulated_(dynamic_cast<SimulatedClock*>(&clock)) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wakeup_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wakeup_fd_ < 0) {
    spdlog::critical("event loop: cannot create epoll/eventfd: {}", strerror(errno));
    std::abort();
  }
  wakeup_handler_ = std::make_unique<Wakeup>(*this);
  add_level_read(wakeup_fd_, wakeup_handler_.get());
  update_now();
}

EventLoop::~EventLoop() {
  for (Timer* t : heap_) t->heap_index_ = Timer::kNotInHeap;
  deferred_.clear();
  ::close(wakeup_fd_);
  ::close(epfd_);
}

bool EventLoop::add(int fd, IoHandler* handler) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = handler;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool EventLoop::add_level_read(int fd, IoHandler* handler) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = handler;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void EventLoop::remove(int fd) { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::stop() {
  stop_.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] auto r = ::write(wakeup_fd_, &one, sizeof(one));
}

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  [[maybe_unused]] auto r = ::write(wakeup_fd_, &one, sizeof(one));
}

void EventLoop::run_posted() {
  {
    std::lock_guard lock(posted_mu_);
    running_.swap(posted_);
  }
  for (auto& task : running_) task();
  running_.clear();
}

void EventLoop::defer_delete(std::unique_ptr<Deferred> object) { deferred_.push_back(std::move(object)); }

void EventLoop::run_deferred() {
  // Deleting one may defer another (a session releasing its upstream).
  while (!deferred_.empty()) {
    auto batch = std::move(deferred_);
    deferred_.clear();
    batch.clear();
  }
}

int EventLoop::next_timeout_ms() const {
  if (!deferred_.empty()) return 0;
  if (heap_.empty()) return -1;
  auto wait = heap_.front()->heap_deadline_ - now_;
  if (wait <= Duration::zero()) return 0;
  // Round up so a timer never fires early and spins.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

void EventLoop::run() {
  while (!stop_.load(std::memory_order_acquire)) run_once(next_timeout_ms());
  run_posted();
  run_deferred();
}

bool EventLoop::run_once(int timeout_ms) {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  int n = epoll_wait(epfd_, events, kMaxEvents, timeout_ms);
  update_now();
  if (n < 0 && errno != EINTR) {
    spdlog::error("epoll_wait: {}", strerror(errno));
  }
  for (int i = 0; i < n; ++i) {
    static_cast<IoHandler*>(events[i].data.ptr)->on_io(events[i].events);
  }
  bool posted = posted_ready_;
  if (posted_ready_) {
    posted_ready_ = false;
    run_posted();
  }
  bool timers = !heap_.empty() && heap_.front()->heap_deadline_ <= now_;
  run_timers();
  bool deferred = !deferred_.empty();
  run_deferred();
  return n > 0 || posted || timers || deferred;
}

void EventLoop::run_until_idle() {
  // Bounded: a timer that re-arms itself at zero delay would spin forever.
  for (int i = 0; i < 100000; ++i) {
    if (!run_once(0)) return;
  }
  spdlog::critical("event loop: still busy after 100000 passes (a timer re-arming at zero delay?)");
  std::abort();
}

void EventLoop::advance(Duration d) {
  if (simulated_ == nullptr) {
    spdlog::critical("event loop: advance() needs a SimulatedClock");
    std::abort();
  }
  MonoTime target = simulated_->now() + d;
  run_until_idle();
  MonoTime next;
  while (next_deadline(next) && next <= target) {
    if (next > simulated_->now()) simulated_->set(next);
    run_until_idle();
  }
  simulated_->set(target);
  run_until_idle();
}

bool EventLoop::next_deadline(MonoTime& out) const {
  if (heap_.empty()) return false;
  out = heap_.front()->heap_deadline_;
  return true;
}

void EventLoop::run_timers() {
  while (!heap_.empty() && heap_.front()->heap_deadline_ <= now_) {
    Timer* t = heap_.front();
    heap_remove(t);
    if (!t->armed_) continue;
    if (t->deadline_ > now_) {
      t->heap_deadline_ = t->deadline_;
      heap_push(t);
      continue;
    }
    t->armed_ = false;
    t->callback_();
  }
}

void EventLoop::heap_push(Timer* t) {
  t->heap_index_ = heap_.size();
  heap_.push_back(t);
  heap_sift_up(t->heap_index_);
}

void EventLoop::heap_remove(Timer* t) {
  size_t i = t->heap_index_;
  size_t last = heap_.size() - 1;
  t->heap_index_ = Timer::kNotInHeap;
  if (i != last) {
    heap_[i] = heap_[last];
    heap_[i]->heap_index_ = i;
    heap_.pop_back();
    heap_sift_down(i);
    heap_sift_up(i);
  } else {
    heap_.pop_back();
  }
}

void EventLoop::heap_sift_up(size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent]->heap_deadline_ <= heap_[i]->heap_deadline_) break;
    std::swap(heap_[parent], heap_[i]);
    heap_[parent]->heap_index_ = parent;
    heap_[i]->heap_index_ = i;
    i = parent;
  }
}

void EventLoop::heap_sift_down(size_t i) {
  size_t n = heap_.size();
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && heap_[l]->heap_deadline_ < heap_[m]->heap_deadline_) m = l;
    if (r < n && heap_[r]->heap_deadline_ < heap_[m]->heap_deadline_) m = r;
    if (m == i) return;
    std::swap(heap_[m], heap_[i]);
    heap_[m]->heap_index_ = m;
    heap_[i]->heap_index_ = i;
    i = m;
  }
}

}  // namespace trellis::net
