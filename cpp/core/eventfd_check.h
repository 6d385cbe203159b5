// An fd another process handed us to wake it or be woken by (vhost-user's
// kick and call fds, a shortcut peer's bells) must be an eventfd: writing 8
// bytes to it or reading 8 from it then cannot reach anything else (a pipe,
// a file, a socket the peer wants us to write into). The kernel names what
// an fd is in /proc/self/fd. The fd is made non-blocking.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace nm {

// Sets O_NONBLOCK on fd's open file (shared with every holder of it).
inline bool set_nonblocking(int fd) {
  const int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && ((fl & O_NONBLOCK) || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

// Empty when `fd` is an eventfd (now non-blocking); else why it is refused.
inline std::string eventfd_check(int fd) {
  char link[64], target[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n < 0) return std::string("cannot tell what its fd is (readlink ") + link + ": " + std::strerror(errno) + ")";
  target[n] = 0;
  if (std::strcmp(target, "anon_inode:[eventfd]") != 0) return std::string("its fd is not an eventfd but ") + target;
  if (!set_nonblocking(fd)) return std::string("fcntl O_NONBLOCK: ") + std::strerror(errno);
  return {};
}

}  // namespace nm
