// Threads that never take the process's signals: every signal is blocked in
// them from their first instruction, so those the main thread waits for
// (SIGHUP, SIGUSR1, SIGTERM, ... through signalfd) never land on a helper
// thread, whose default action would end the process.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <thread>
#include <utility>

namespace trellis {

template <class F>
std::thread quiet_thread(F&& f) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);  // inherited by the new thread
  std::thread t(std::forward<F>(f));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return t;
}

}  // namespace trellis
