// The thread an in-process port driver (AF_PACKET, AF_XDP, the TAP twin) runs
// in: one epoll set over the driver's fds plus a stop eventfd, a thread name,
// and a stop that wakes the thread and joins it. Each driver had written
// these steps out itself; they differ only in the fds they watch.
#pragma once

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/fd.h"
#include "core/result.h"

namespace nm {

class DriverThread {
 public:
  DriverThread() = default;
  DriverThread(const DriverThread &) = delete;
  DriverThread &operator=(const DriverThread &) = delete;
  // a driver stops its thread in its own destructor, before the members the
  // thread uses go; this one is the backstop
  ~DriverThread() { stop(); }

  // The epoll set: EPOLLIN on each of `fds` (data.fd = the fd) and on the stop
  // eventfd. `what` names the driver in the error ("driver thread of eth0").
  Status open(const std::vector<int> &fds, const std::string &what) {
    stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!stop_fd_ || !ep_) return sys_fail("eventfd/epoll_create1", what);
    std::vector<int> all = fds;
    all.push_back(stop_fd_.get());
    for (int fd : all) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return sys_fail("epoll_ctl", what);
    }
    return Ok{};
  }

  // Runs `body` on a new thread named `name` for top -H, perf and
  // /proc/PID/task/*/comm (cut to the kernel's 15 bytes; empty: unnamed).
  template <class F>
  void start(F body, const std::string &name) {
    thread_ = std::thread(std::move(body));
    if (!name.empty()) (void)::pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
  }

  // Asks the thread to stop (stopping() turns true and the stop eventfd, in
  // the epoll set, becomes readable) and joins it. Idempotent.
  void stop() {
    if (!thread_.joinable()) return;
    stopping_.store(true);
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(stop_fd_.get(), &one, sizeof one);
    thread_.join();
  }

  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  int epoll_fd() const { return ep_.get(); }

 private:
  unique_fd stop_fd_, ep_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace nm
