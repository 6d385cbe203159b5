// The libc entry points the preload replaces, reached without going through
// its own wrappers. The library's own code calls these; the core it links
// (cpp/core: pipe, port_client) calls libc, which lands in the wrappers, and
// they pass its fds and paths straight on, taking no lock for fds that are
// not emulated (so even a close under g_mu is safe).
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/types.h>

namespace nmpre::sys {

int open(const char *path, int flags, mode_t mode = 0);
int close(int fd);
int ioctl(int fd, unsigned long req, void *arg);
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask);
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout_ms, const sigset_t *mask);
int dup3(int oldfd, int newfd, int flags);

}  // namespace nmpre::sys
