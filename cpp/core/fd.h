// RAII owners of the two kernel resources the core hands around: a file
// descriptor and a shared mapping. Moving transfers ownership; destruction
// closes / unmaps; release() hands the raw value over (e.g. to an
// ArrayBuffer finalizer) and forgets it.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "core/result.h"

namespace nm {

class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd &&o) noexcept : fd_(o.release()) {}
  unique_fd &operator=(unique_fd &&o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd &) = delete;
  unique_fd &operator=(const unique_fd &) = delete;
  ~unique_fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  // close(2)'s result is not actionable here: the fd is gone either way
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

class mapping {
 public:
  mapping() = default;
  mapping(void *base, size_t size) : base_(static_cast<uint8_t *>(base)), size_(size) {}
  mapping(mapping &&o) noexcept : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapping &operator=(mapping &&o) noexcept {
    if (this != &o) {
      reset();
      base_ = std::exchange(o.base_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  mapping(const mapping &) = delete;
  mapping &operator=(const mapping &) = delete;
  ~mapping() { reset(); }

  // mmap(size, PROT_READ|PROT_WRITE, MAP_SHARED) of fd from offset 0.
  static Result<mapping> map_shared(int fd, size_t size, const std::string &what) {
    void *m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return sys_fail("mmap", what);
    return mapping(m, size);
  }

  uint8_t *data() const { return base_; }
  size_t size() const { return size_; }
  explicit operator bool() const { return base_ != nullptr; }
  // Hands the range over; the caller unmaps it.
  void *release() {
    size_ = 0;
    return std::exchange(base_, nullptr);
  }
  void reset() {
    if (base_) ::munmap(base_, size_);
    base_ = nullptr;
    size_ = 0;
  }

 private:
  uint8_t *base_ = nullptr;
  size_t size_ = 0;
};

}  // namespace nm
