#include "core/shared_bell.h"

#include <pthread.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace nm {

uint64_t drain_bell(int fd) {
  uint64_t v = 0;
  iovec iov{&v, sizeof v};
  ssize_t r = ::preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
  if (r < 0 && errno == EOPNOTSUPP) r = ::read(fd, &v, sizeof v);  // a kernel before 5.12: O_NONBLOCK alone
  return r == sizeof v ? v : 0;
}

int shared_bell_signal() { return SIGRTMAX - 5; }

namespace {

constexpr auto kTick = std::chrono::milliseconds(50);

// One per thread that has rung a shared bell.
struct Writer {
  std::atomic<uint32_t> seq{0};  // odd while the thread is inside ring_bell's write
  uint32_t seen = 0;             // the watchdog's: the odd seq it saw at its last tick
  pthread_t thread{};
};

class Watchdog {
 public:
  // Never destroyed: a thread may ring a bell while the process exits, and
  // the watchdog must outlive it (it holds no fd or mapping).
  static Watchdog &get() {
    static Watchdog *w = new Watchdog;
    return *w;
  }

  void add(Writer *w) {
    std::lock_guard l(m_);
    writers_.push_back(w);
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
    cv_.notify_one();
  }

  // Under the lock the watchdog signals with: once this returns, the thread
  // may exit and its pthread_t is never used again.
  void remove(Writer *w) {
    std::lock_guard l(m_);
    std::erase(writers_, w);
  }

 private:
  [[noreturn]] void run() {
    pthread_setname_np(pthread_self(), "bell-watchdog");
    const int sig = shared_bell_signal();
    std::unique_lock l(m_);
    for (;;) {
      // no writer, no ticks; else 20 a second, whatever the datapath does
      if (writers_.empty())
        cv_.wait(l);
      else
        cv_.wait_for(l, kTick);
      for (Writer *w : writers_) {
        const uint32_t s = w->seq.load(std::memory_order_relaxed);
        if ((s & 1) && s == w->seen) pthread_kill(w->thread, sig);
        w->seen = (s & 1) ? s : 0;
      }
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::vector<Writer *> writers_;
  bool started_ = false;
};

void interrupt_only(int) {}

struct Registration {
  Writer w;
  bool on = false;
  ~Registration() {
    if (on) Watchdog::get().remove(&w);
  }
};
thread_local Registration reg;

Writer &this_writer() {
  if (!reg.on) {
    static std::once_flag installed;
    const int sig = shared_bell_signal();
    std::call_once(installed, [sig] {
      struct sigaction sa {};
      sa.sa_handler = interrupt_only;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = 0;  // no SA_RESTART: the interrupted write must return
      sigaction(sig, &sa, nullptr);
    });
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);  // a thread may have been started with signals blocked
    reg.w.thread = pthread_self();
    Watchdog::get().add(&reg.w);
    reg.on = true;
  }
  return reg.w;
}

}  // namespace

bool ring_bell(int fd) {
  Writer &w = this_writer();
  const uint32_t s = w.seq.load(std::memory_order_relaxed);
  // relaxed: the watchdog needs to see the odd value within a tick, not at once
  w.seq.store(s + 1, std::memory_order_relaxed);
  const uint64_t one = 1;
  const ssize_t r = ::write(fd, &one, sizeof one);
  const bool stuck = r < 0 && errno == EINTR;
  w.seq.store(s + 2, std::memory_order_relaxed);
  return !stuck;
}

}  // namespace nm
