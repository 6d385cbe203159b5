// recvmsg(2) of one message with its SCM_RIGHTS fds: the one wrapper the
// vhost-user connection (cpp/core/vhost_user.cc) and the N-API fd helpers
// (cpp/napi/fdio.cc) share. The fds arrive close-on-exec and are owned at
// once (appended to `fds`), so none leaks whatever the caller does next.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#include "core/fd.h"

namespace nm {

// Reads into buf (len bytes at most), retrying on EINTR. Returns recvmsg's
// result (-1 with errno set, 0 at EOF). `msg_flags` gets the message's flags:
// MSG_TRUNC (a datagram longer than len), MSG_CTRUNC (more than MaxFds fds
// came; the kernel closed those that did not fit).
template <size_t MaxFds>
inline ssize_t recv_with_fds(int sock, void *buf, size_t len, std::vector<unique_fd> &fds, int &msg_flags) {
  iovec iov{buf, len};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * MaxFds)];
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = cbuf;
  m.msg_controllen = sizeof cbuf;
  ssize_t r;
  do {
    r = ::recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  msg_flags = 0;
  if (r < 0) return r;
  msg_flags = m.msg_flags;
  for (cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    const size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  return r;
}

}  // namespace nm
