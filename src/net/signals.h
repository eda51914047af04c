// Process signals taken as ordinary loop events, through a signalfd: the
// handler runs on the loop's thread and may do anything.
#pragma once

#include <signal.h>

#include <functional>
#include <initializer_list>

#include "net/event_loop.h"

namespace trellis::net {

class SignalWatcher final : public IoHandler {
 public:
  // Blocks `signals` in the calling thread, so threads started afterwards
  // inherit the mask and the signals reach only the signalfd: make it before
  // starting any thread. The previous mask comes back on destruction.
  SignalWatcher(EventLoop& loop, std::initializer_list<int> signals, std::function<void(int signo)> handler);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  void on_io(uint32_t events) override;

 private:
  EventLoop& loop_;
  std::function<void(int)> handler_;
  sigset_t previous_{};
  int fd_ = -1;
};

}  // namespace trellis::net
