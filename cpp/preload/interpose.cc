// The libc entry points the preload replaces. Each one costs a single
// relaxed load for a program that has no emulated fd open (g_open_fds == 0)
// and otherwise passes everything that is not an emulated fd straight on.
// Internally the library calls the kernel directly (sys::), so it never
// re-enters these wrappers.
// node-gyp builds with _FILE_OFFSET_BITS=64, which renames open() to
// open64() in the headers; this file defines both under their own names.
#undef _FILE_OFFSET_BITS
#undef _LARGEFILE_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "preload/device.h"
#include "preload/sys.h"

namespace nmpre::sys {

int open(const char *path, int flags, mode_t mode) {
  return static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, flags, mode));
}
int close(int fd) { return static_cast<int>(syscall(SYS_close, fd)); }
int ioctl(int fd, unsigned long req, void *arg) { return static_cast<int>(syscall(SYS_ioctl, fd, req, arg)); }
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  return reinterpret_cast<void *>(syscall(SYS_mmap, addr, len, prot, flags, fd, off));
}
int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask) {
  // the kernel writes the time left back: give it a copy
  struct timespec t;
  if (ts) t = *ts;
  return static_cast<int>(syscall(SYS_ppoll, fds, n, ts ? &t : nullptr, mask, _NSIG / 8));
}
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  return static_cast<int>(syscall(SYS_epoll_ctl, epfd, op, fd, ev));
}
int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout_ms, const sigset_t *mask) {
  return static_cast<int>(syscall(SYS_epoll_pwait, epfd, ev, max, timeout_ms, mask, _NSIG / 8));
}
int dup3(int oldfd, int newfd, int flags) { return static_cast<int>(syscall(SYS_dup3, oldfd, newfd, flags)); }

}  // namespace nmpre::sys

using namespace nmpre;

namespace {

template <class F>
F next(const char *name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}
// the next definition of `name` (libc's), looked up once; the cache is an
// atomic since threads race to fill it (the same value, but a plain static
// written by one thread and read by another is a data race)
#define REAL(name, ...)                                                  \
  using name##_fn = __VA_ARGS__;                                         \
  static std::atomic<name##_fn> cached_##name{nullptr};                  \
  name##_fn real_##name = cached_##name.load(std::memory_order_relaxed); \
  if (!real_##name) {                                                    \
    real_##name = next<name##_fn>(#name);                                \
    cached_##name.store(real_##name, std::memory_order_relaxed);         \
  }

bool is_netmap_path(const char *path) { return path && std::strcmp(path, "/dev/netmap") == 0; }

bool dirfd_ok(int dirfd, const char *path) { return dirfd == AT_FDCWD || (path && path[0] == '/'); }

timespec ms_to_ts(int ms) { return {ms / 1000, static_cast<long>(ms % 1000) * 1000000L}; }

}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

// ---- open -----------------------------------------------------------------
// the mode argument, read only when the flags say one was passed
#define OPEN_MODE(mode)                          \
  mode_t mode = 0;                               \
  if (flags & (O_CREAT | O_TMPFILE)) {           \
    va_list ap;                                  \
    va_start(ap, flags);                         \
    mode = static_cast<mode_t>(va_arg(ap, int)); \
    va_end(ap);                                  \
  }

namespace {
using open_fn = int (*)(const char *, int, ...);
using openat_fn = int (*)(int, const char *, int, ...);
// open and open64 alike: /dev/netmap is ours, everything else libc's `real`
int open_body(open_fn real, const char *path, int flags, mode_t mode) {
  if (is_netmap_path(path)) return dev_open(flags);
  return dev_opened(real(path, flags, mode));
}
// openat and openat64 alike: /dev/netmap by an absolute path or from the cwd
int openat_body(openat_fn real, int dirfd, const char *path, int flags, mode_t mode) {
  if (is_netmap_path(path) && dirfd_ok(dirfd, path)) return dev_open(flags);
  return dev_opened(real(dirfd, path, flags, mode));
}
}  // namespace

EXPORT int open(const char *path, int flags, ...) {
  REAL(open, open_fn);
  OPEN_MODE(mode)
  return open_body(real_open, path, flags, mode);
}
EXPORT int open64(const char *path, int flags, ...) {
  REAL(open64, open_fn);
  OPEN_MODE(mode)
  return open_body(real_open64, path, flags, mode);
}
EXPORT int openat(int dirfd, const char *path, int flags, ...) {
  REAL(openat, openat_fn);
  OPEN_MODE(mode)
  return openat_body(real_openat, dirfd, path, flags, mode);
}
EXPORT int openat64(int dirfd, const char *path, int flags, ...) {
  REAL(openat64, openat_fn);
  OPEN_MODE(mode)
  return openat_body(real_openat64, dirfd, path, flags, mode);
}
// _FORTIFY_SOURCE spellings
EXPORT int __open_2(const char *path, int flags) {
  REAL(__open_2, int (*)(const char *, int));
  if (is_netmap_path(path)) return dev_open(flags);
  return dev_opened(real___open_2(path, flags));
}
EXPORT int __open64_2(const char *path, int flags) {
  REAL(__open64_2, int (*)(const char *, int));
  if (is_netmap_path(path)) return dev_open(flags);
  return dev_opened(real___open64_2(path, flags));
}

// ---- close / ioctl / mmap ------------------------------------------------------
EXPORT int close(int fd) {
  REAL(close, int (*)(int));
  int rc;
  if (dev_close(fd, &rc)) return rc;
  return real_close(fd);
}

// close_range(2) and glibc's closefrom close fds without close(): the
// table must let go of them first, or a file that reuses a number would be
// taken for the registration (and the registration's release would later
// close fds by numbers that are no longer its own); and the library's own
// fds in the range stay open
EXPORT int close_range(unsigned first, unsigned last, int flags) { return dev_close_range(first, last, flags); }
EXPORT void closefrom(int lowfd) {
  if (lowfd < 0) return;
  if (dev_close_range(static_cast<unsigned>(lowfd), ~0U, 0) == 0 || errno != ENOSYS) return;
  // a kernel without close_range (before 5.9): glibc's own fallback, which
  // cannot spare the library's fds
  REAL(closefrom, void (*)(int));
  if (real_closefrom) real_closefrom(lowfd);
}

EXPORT int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  if (g_open_fds.load(std::memory_order_relaxed) == 0 || !is_netmap_fd(fd)) {
    REAL(ioctl, int (*)(int, unsigned long, ...));
    return real_ioctl(fd, req, arg);
  }
  return dev_ioctl(fd, req, arg);
}

// mmap is the kernel's mmap(2) in glibc: calling the syscall keeps malloc's
// own mmaps from ever needing dlsym
EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (fd >= 0 && g_open_fds.load(std::memory_order_relaxed) != 0 && is_netmap_fd(fd))
    return dev_mmap(fd, addr, len, prot, flags, off);
  if (off & 4095) {
    errno = EINVAL;
    return MAP_FAILED;
  }
  return sys::mmap(addr, len, prot, flags, fd, off);
}
EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  return mmap(addr, len, prot, flags, fd, off);
}

// ---- dup ---------------------------------------------------------------------------
// A dup of an emulated fd shares its registration, as with netmap's fd; a
// dup onto one drops what the table held for it.
EXPORT int dup(int fd) {
  int rc;
  if (dev_dup(fd, -1, 0, &rc)) return rc;
  return static_cast<int>(syscall(SYS_dup, fd));
}
EXPORT int dup2(int oldfd, int newfd) {
  int rc;
  if (dev_dup(oldfd, newfd, 0, &rc)) return rc;
  if (oldfd == newfd) return fcntl(oldfd, F_GETFD) < 0 ? -1 : newfd;  // what dup2(2) does
  return sys::dup3(oldfd, newfd, 0);
}
EXPORT int dup3(int oldfd, int newfd, int flags) {
  int rc;
  if (oldfd != newfd && dev_dup(oldfd, newfd, flags, &rc)) return rc;
  return sys::dup3(oldfd, newfd, flags);
}
namespace {
// F_DUPFD of an emulated fd; false for everything else
bool fcntl_dup(int fd, int cmd, void *arg, int *rc) {
  if (cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC) return false;
  const long lowest = reinterpret_cast<long>(arg);
  return lowest >= 0 && lowest < (1L << 20) &&
         dev_dup(fd, static_cast<int>(-lowest - 1), cmd == F_DUPFD_CLOEXEC ? O_CLOEXEC : 0, rc);
}
}  // namespace
// the argument is one word whatever its type (an int or a pointer), as
// glibc's own fcntl reads it
EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  int rc;
  if (fcntl_dup(fd, cmd, arg, &rc)) return rc;
  REAL(fcntl, int (*)(int, int, ...));
  return real_fcntl(fd, cmd, arg);
}
// On 64-bit Linux fcntl64 is fcntl (one struct flock), as in glibc itself.
static_assert(sizeof(long) == 8, "fcntl64 differs from fcntl on 32-bit targets");
EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

// ---- poll / select / epoll -------------------------------------------------------
EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0) {
    REAL(poll, int (*)(struct pollfd *, nfds_t, int));
    return real_poll(fds, n, timeout);
  }
  const timespec ts = ms_to_ts(timeout);
  return dev_ppoll(fds, n, timeout < 0 ? nullptr : &ts, nullptr);
}
EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) abort();  // what glibc's checker does
  return poll(fds, n, timeout);
}
EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0) {
    REAL(ppoll, int (*)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *));
    return real_ppoll(fds, n, ts, mask);
  }
  return dev_ppoll(fds, n, ts, mask);
}
EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) abort();
  return ppoll(fds, n, ts, mask);
}

namespace {
// select over a set holding emulated fds: as poll, then back to fd_sets
int select_core(int nfds, fd_set *r, fd_set *w, fd_set *x, const timespec *ts, const sigset_t *mask) {
  pollfd pf[FD_SETSIZE];
  int n = 0;
  if (nfds > FD_SETSIZE) nfds = FD_SETSIZE;
  for (int fd = 0; fd < nfds; fd++) {
    short ev = 0;
    if (r && FD_ISSET(fd, r)) ev |= POLLIN;
    if (w && FD_ISSET(fd, w)) ev |= POLLOUT;
    if (x && FD_ISSET(fd, x)) ev |= POLLPRI;
    if (ev) pf[n++] = {fd, ev, 0};
  }
  const int rc = dev_ppoll(pf, static_cast<nfds_t>(n), ts, mask);
  if (rc < 0) return rc;
  if (r) FD_ZERO(r);
  if (w) FD_ZERO(w);
  if (x) FD_ZERO(x);
  int count = 0;
  for (int i = 0; i < n; i++) {
    const short re = pf[i].revents;
    if (re & POLLNVAL) {
      errno = EBADF;
      return -1;
    }
    if (r && (pf[i].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) FD_SET(pf[i].fd, r), count++;
    if (w && (pf[i].events & POLLOUT) && (re & (POLLOUT | POLLERR))) FD_SET(pf[i].fd, w), count++;
    if (x && (pf[i].events & POLLPRI) && (re & POLLPRI)) FD_SET(pf[i].fd, x), count++;
  }
  return count;
}

bool holds_netmap_fd(int nfds, fd_set *r, fd_set *w, fd_set *x) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0) return false;
  if (nfds > FD_SETSIZE) nfds = FD_SETSIZE;
  for (int fd = 0; fd < nfds; fd++)
    if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x))) && is_netmap_fd(fd)) return true;
  return false;
}
}  // namespace

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv) {
  if (!holds_netmap_fd(nfds, r, w, x)) {
    REAL(select, int (*)(int, fd_set *, fd_set *, fd_set *, struct timeval *));
    return real_select(nfds, r, w, x, tv);
  }
  timespec ts;
  if (tv) ts = {tv->tv_sec, tv->tv_usec * 1000};
  return select_core(nfds, r, w, x, tv ? &ts : nullptr, nullptr);
}
EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts, const sigset_t *mask) {
  if (!holds_netmap_fd(nfds, r, w, x)) {
    REAL(pselect, int (*)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *));
    return real_pselect(nfds, r, w, x, ts, mask);
  }
  return select_core(nfds, r, w, x, ts, mask);
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0 || !is_netmap_fd(fd)) {
    REAL(epoll_ctl, int (*)(int, int, int, struct epoll_event *));
    return real_epoll_ctl(epfd, op, fd, ev);
  }
  return dev_epoll_ctl(epfd, op, fd, ev);
}
EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout) {
  int rc;
  const timespec ts = ms_to_ts(timeout);
  if (dev_epoll_wait(epfd, ev, max, timeout < 0 ? nullptr : &ts, nullptr, &rc)) return rc;
  REAL(epoll_wait, int (*)(int, struct epoll_event *, int, int));
  return real_epoll_wait(epfd, ev, max, timeout);
}
EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask) {
  int rc;
  const timespec ts = ms_to_ts(timeout);
  if (dev_epoll_wait(epfd, ev, max, timeout < 0 ? nullptr : &ts, mask, &rc)) return rc;
  REAL(epoll_pwait, int (*)(int, struct epoll_event *, int, int, const sigset_t *));
  return real_epoll_pwait(epfd, ev, max, timeout, mask);
}
EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *ts, const sigset_t *mask) {
  int rc;
  if (dev_epoll_wait(epfd, ev, max, ts, mask, &rc)) return rc;
  REAL(epoll_pwait2, int (*)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *));
  if (!real_epoll_pwait2) {
    errno = ENOSYS;
    return -1;
  }
  return real_epoll_pwait2(epfd, ev, max, ts, mask);
}

// `vale-ctl-ts --preload-path` finds the library; this symbol lets a test
// check that the preload is the one loaded.
EXPORT const char *vale_ts_netmap_version(void) { return "vale-ts-netmap 1 (netmap API 14)"; }
