#include "net/signals.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace trellis::net {

SignalWatcher::SignalWatcher(EventLoop& loop, std::initializer_list<int> signals,
                             std::function<void(int)> handler)
    : loop_(loop), handler_(std::move(handler)) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, &previous_);
  fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd_ < 0) {
    spdlog::critical("signalfd: {}", std::strerror(errno));
    std::abort();
  }
  loop_.add_level_read(fd_, this);
}

SignalWatcher::~SignalWatcher() {
  loop_.remove(fd_);
  ::close(fd_);
  pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

void SignalWatcher::on_io(uint32_t) {
  signalfd_siginfo info;
  while (::read(fd_, &info, sizeof(info)) == sizeof(info)) handler_(static_cast<int>(info.ssi_signo));
}

}  // namespace trellis::net
