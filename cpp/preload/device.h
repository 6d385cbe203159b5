// The emulated /dev/netmap: what an fd returned by open("/dev/netmap") is
// under the preload, and the netmap operations on it (ioctl, mmap, poll,
// close). interpose.cc routes the libc calls here; everything else passes
// through untouched.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace nmpre {

// Emulated fds currently open; 0 means every call passes straight through.
extern std::atomic<int> g_open_fds;

bool is_netmap_fd(int fd);
// open("/dev/netmap"): a new emulated fd, or -1 with errno.
int dev_open(int flags);
// close(fd) of an emulated fd (releases its registration), or of an epoll
// fd we track. Returns true when the fd was ours and is now closed.
// Closing one of the library's own fds is EBADF, as for an fd that is not open.
bool dev_close(int fd, int *rc);
// dup/dup2/dup3/F_DUPFD where oldfd is an emulated fd or newfd one we track:
// the new fd shares oldfd's registration, as a dup of netmap's fd does.
// newfd < 0 is F_DUPFD with lowest fd -newfd - 1. Returns false when neither
// is ours (the caller passes the call through). A newfd of the library's
// own is EBADF (it is not the program's to replace).
bool dev_dup(int oldfd, int newfd, int flags, int *rc);
// close_range(2) of [first, last]: drops what the table holds for those
// fds, as close() would, and has the kernel close them, all but the
// library's own fds in the range (the program never opened those).
int dev_close_range(unsigned first, unsigned last, int flags);
// An fd open() or openat() returned for a file other than /dev/netmap: one of
// the library's when the core opened it for the library (see own_fd).
int dev_opened(int fd);
// ioctl on an emulated fd.
int dev_ioctl(int fd, unsigned long req, void *arg);
// mmap of an emulated fd.
void *dev_mmap(int fd, void *addr, size_t len, int prot, int flags, off_t off);
// poll/ppoll over a set that may include emulated fds; timeout null: forever.
int dev_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask);
// epoll_ctl with an emulated fd (tracked by us, not the kernel).
int dev_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
// epoll_wait on an epoll fd; returns false when the set holds no emulated
// fd (the caller then passes the call through).
bool dev_epoll_wait(int epfd, struct epoll_event *ev, int max, const struct timespec *timeout, const sigset_t *mask,
                    int *rc);

}  // namespace nmpre
