#include "preload/pipe_end.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/shm_atomic.h"
#include "preload/sys.h"

namespace nmpre {

using namespace nm;

namespace {

bool ofd_lock(int fd, int type, off_t byte, bool test_only, bool *held) {
  struct flock fl{};
  fl.l_type = static_cast<short>(type);
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (test_only) {
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) return false;
    *held = fl.l_type != F_UNLCK;
    return true;
  }
  return fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

std::string sys_err(const std::string &what, int e) { return what + ": " + std::strerror(e); }

}  // namespace

int PipeEnd::open(const std::string &path, uint32_t end, const Layout &want, const std::string &name, std::string *err) {
  path_ = path;
  end_ = end;
  for (int attempt = 0; attempt < 16; attempt++) {
    const int fd = sys::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return *err = sys_err("open pipe region " + path_, errno), errno;
    if (flock(fd, LOCK_EX) < 0) {
      const int e = errno;
      sys::close(fd);
      return *err = sys_err("flock " + path_, e), e;
    }
    // the last closer may have unlinked the file while we waited: retry
    struct stat a, b;
    if (fstat(fd, &a) < 0 || stat(path_.c_str(), &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
      sys::close(fd);
      continue;
    }
    bool mine_held = false, peer_held = false;
    if (!ofd_lock(fd, F_WRLCK, end_, true, &mine_held) || !ofd_lock(fd, F_WRLCK, 1 - end_, true, &peer_held)) {
      const int e = errno;
      sys::close(fd);
      return *err = sys_err("F_OFD_GETLK " + path_, e), e;
    }
    if (mine_held) {
      sys::close(fd);
      *err = "pipe end " + name + " is already open in another process: each end can be opened once";
      return EBUSY;
    }
    uint8_t *base;
    uint64_t size;
    if (!peer_held) {
      // nobody is attached: start from a fresh region (a stale one is replaced)
      size = want.size;
      if (ftruncate(fd, 0) < 0 || ftruncate(fd, static_cast<off_t>(size)) < 0) {
        const int e = errno;
        sys::close(fd);
        return *err = sys_err("ftruncate " + path_, e), e;
      }
      void *m = sys::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (m == MAP_FAILED) {
        const int e = errno;
        sys::close(fd);
        return *err = sys_err("mmap " + path_, e), e;
      }
      base = static_cast<uint8_t *>(m);
      std::string names[MAX_IFS] = {name, name};
      init_region(base, want, names);
      layout_ = want;
    } else {
      size = static_cast<uint64_t>(a.st_size);
      if (size < REGION_HEADER_SIZE || size > (1ULL << 40)) {
        sys::close(fd);
        *err = "pipe region " + path_ + " has an impossible size";
        return EINVAL;
      }
      void *m = sys::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (m == MAP_FAILED) {
        const int e = errno;
        sys::close(fd);
        return *err = sys_err("mmap " + path_, e), e;
      }
      base = static_cast<uint8_t *>(m);
      Result<Layout> v = validate_header(base, size);
      std::string verr = !v.ok() ? v.error().what : v->p.n_ifs != 2 ? "not a pipe region" : "";
      if (v.ok()) layout_ = *v;
      if (!verr.empty()) {
        munmap(m, size);
        sys::close(fd);
        *err = "pipe region " + path_ + " is invalid: " + verr;
        return EINVAL;
      }
    }
    if (!ofd_lock(fd, F_WRLCK, end_, false, nullptr)) {
      const int e = errno;
      munmap(base, size);
      sys::close(fd);
      return *err = sys_err("F_OFD_SETLK " + path_, e), e;
    }
    fd_ = fd;
    base_ = base;
    size_ = size;
    hdr_ = reinterpret_cast<RegionHeader *>(base);
    if (const int e = open_doorbells(err)) {
      release();
      return e;
    }
    restore_state();
    hdr_->end_state[end_].store(END_OPEN, std::memory_order_release);
    flock(fd_, LOCK_UN);
    kick(peer_bell_);  // wake a peer that sleeps, so it sees us arrive
    return 0;
  }
  *err = "pipe region " + path_ + " keeps being replaced; giving up";
  return EAGAIN;
}

int PipeEnd::open_doorbells(std::string *err) {
  for (uint32_t e = 0; e < 2; e++) {
    const std::string fifo = path_ + (e == 0 ? ".m" : ".s");
    if (mkfifo(fifo.c_str(), 0600) < 0 && errno != EEXIST) return *err = sys_err("mkfifo " + fifo, errno), errno;
    // O_RDWR on a FIFO never blocks on Linux and keeps it from hitting EOF
    const int fd = sys::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return *err = sys_err("open " + fifo, errno), errno;
    (e == end_ ? my_bell_ : peer_bell_) = fd;
  }
  return 0;
}

void PipeEnd::kick(int fd) {
  if (fd < 0) return;
  const uint64_t one = 1;
  const ssize_t r = write(fd, &one, sizeof one);
  (void)r;  // EAGAIN: the FIFO is full of kicks already
}

// A re-attaching end picks up where the published records say, each value
// checked against the ring size before use.
void PipeEnd::restore_state() {
  const uint32_t T = layout_.p.tx_rings, N = layout_.p.tx_slots;
  for (uint32_t r = 0; r < T; r++) {
    uint32_t c = load_acquire(&ktoa(end_, r)->hwcur);
    if (c >= N) c = 0;
    tx_[r] = {c, c == 0 ? N - 1 : c - 1};
    netmap_ring *tr = ring(end_, r);
    tr->head = tr->cur = tx_[r].hwcur;
    tr->tail = tx_[r].hwtail;
    const uint32_t fill = load_acquire(&ktoa(1 - end_, T + r)->hwtail);
    fill_[r] = fill < N ? fill : 0;
    uint32_t rh = load_acquire(&atok(end_, T + r)->head);
    uint32_t rt = load_acquire(&ktoa(end_, T + r)->hwtail);
    if (rh >= N) rh = 0;
    if (rt >= N) rt = rh;
    rx_[r] = {rh, rt};
    netmap_ring *rr = ring(end_, T + r);
    rr->head = rr->cur = rh;
    rr->tail = rt;
    peer_released_[r] = load_acquire(&atok(1 - end_, T + r)->head);
    if (peer_released_[r] >= N) peer_released_[r] = fill_[r];
  }
}

int64_t PipeEnd::tx_sync(uint32_t r) {
  const uint32_t T = layout_.p.tx_rings, N = layout_.p.tx_slots;
  netmap_ring *tr = ring(end_, r);
  RingState &st = tx_[r];
  const uint32_t head = load_relaxed(&tr->head), cur = load_relaxed(&tr->cur);
  if (head >= N || cur >= N || ring_dist(head, st.hwcur, N) > ring_dist(st.hwtail, st.hwcur, N) ||
      ring_dist(cur, head, N) > ring_dist(st.hwtail, head, N))
    return -1;
  const uint32_t peer = 1 - end_;
  nm_csb_atok *pa = atok(peer, T + r);
  nm_csb_ktoa *pk = ktoa(peer, T + r);
  uint32_t released = load_acquire(&pa->head);
  uint32_t &fill = fill_[r];
  // the consumer may only move its head forward, up to what we filled
  if (released >= N || ring_dist(released, peer_released_[r], N) > ring_dist(fill, peer_released_[r], N)) {
    peer_errors[r]++;
    released = peer_released_[r];
  }
  peer_released_[r] = released;
  const uint32_t room = ring_dist(released + N - 1 >= N ? released - 1 : released + N - 1, fill, N);
  const uint32_t want = ring_dist(head, st.hwcur, N);
  const uint32_t n = want < room ? want : room;
  netmap_slot *ts = ring_slots(tr);
  netmap_slot *rs = ring_slots(ring(peer, T + r));
  const uint32_t nbufs = layout_.num_bufs, bsz = layout_.p.buf_size;
  uint32_t c = st.hwcur, moved = 0;
  for (uint32_t i = 0; i < n; i++) {
    netmap_slot *s = &ts[c];
    netmap_slot *d = &rs[fill];
    const uint32_t sb = s->buf_idx, db = d->buf_idx;
    const uint16_t sl = s->len, sf = s->flags;
    if (sb >= 2 && sb < nbufs && sl <= bsz && db >= 2 && db < nbufs) {
      d->buf_idx = sb;
      d->len = sl;
      d->flags = static_cast<uint16_t>(NS_BUF_CHANGED | (sf & NS_MOREFRAG));
      s->buf_idx = db;
      s->flags = NS_BUF_CHANGED;
      fill = ring_next(fill, N);
      moved++;
    } else {
      invalid_slots[r]++;  // dropped, counted; the slot is simply returned
    }
    c = ring_next(c, N);
  }
  st.hwcur = c;
  st.hwtail = c == 0 ? N - 1 : c - 1;
  store_release(&tr->tail, st.hwtail);
  store_release(&ktoa(end_, r)->hwcur, st.hwcur);
  store_release(&ktoa(end_, r)->hwtail, st.hwtail);
  store_release(&atok(end_, r)->head, head);
  store_release(&atok(end_, r)->cur, cur);
  if (moved) {
    store_release(&pk->hwtail, fill);
    full_fence();
    if (load_relaxed(&pa->appl_need_kick) && exchange(&pa->appl_need_kick, 0)) kick(peer_bell_);
  }
  tx_frames[r] += moved;
  return ring_dist(head, st.hwcur, N);
}

int64_t PipeEnd::rx_sync(uint32_t r) {
  const uint32_t T = layout_.p.tx_rings, N = layout_.p.rx_slots;
  netmap_ring *rr = ring(end_, T + r);
  RingState &st = rx_[r];
  const uint32_t head = load_relaxed(&rr->head), cur = load_relaxed(&rr->cur);
  if (head >= N || cur >= N || ring_dist(head, st.hwcur, N) > ring_dist(st.hwtail, st.hwcur, N) ||
      ring_dist(cur, head, N) > ring_dist(st.hwtail, head, N))
    return -1;
  const bool released = head != st.hwcur;
  nm_csb_atok *a = atok(end_, T + r);
  nm_csb_ktoa *k = ktoa(end_, T + r);
  if (released) {
    store_release(&a->head, head);
    store_release(&k->hwcur, head);
    st.hwcur = head;
  }
  store_release(&a->cur, cur);
  uint32_t t = load_acquire(&k->hwtail);
  // the producer fills forward from our old tail, never into [head, ...)
  const uint32_t limit = head == 0 ? N - 1 : head - 1;
  if (t >= N || ring_dist(t, st.hwtail, N) > ring_dist(limit, st.hwtail, N)) {
    peer_errors[r]++;
    t = st.hwtail;
  }
  st.hwtail = t;
  store_release(&rr->tail, t);
  if (released) {
    full_fence();
    nm_csb_atok *pta = atok(1 - end_, r);
    if (load_relaxed(&pta->appl_need_kick) && exchange(&pta->appl_need_kick, 0)) kick(peer_bell_);
  }
  return ring_dist(t, head, N);
}

int PipeEnd::peer_state() const {
  if (!base_) return 0;
  const uint32_t peer = 1 - end_;
  bool held = false;
  ofd_lock(fd_, F_WRLCK, peer, true, &held);
  const uint32_t st = hdr_->end_state[peer].load(std::memory_order_acquire);
  if (held) return 1;
  return st == END_OPEN ? 2 : 0;
}

void PipeEnd::release() {
  if (!base_) {
    if (fd_ >= 0) sys::close(fd_);
    fd_ = -1;
    return;
  }
  flock(fd_, LOCK_EX);
  hdr_->end_state[end_].store(END_CLOSED, std::memory_order_release);
  kick(peer_bell_);
  struct flock fl{};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = end_;
  fl.l_len = 1;
  fcntl(fd_, F_OFD_SETLK, &fl);
  bool peer_held = true;
  ofd_lock(fd_, F_WRLCK, 1 - end_, true, &peer_held);
  if (!peer_held) {
    unlink(path_.c_str());
    unlink((path_ + ".m").c_str());
    unlink((path_ + ".s").c_str());
  }
  flock(fd_, LOCK_UN);
  sys::close(fd_);
  if (my_bell_ >= 0) sys::close(my_bell_);
  if (peer_bell_ >= 0) sys::close(peer_bell_);
  fd_ = my_bell_ = peer_bell_ = -1;
  munmap(base_, size_);
  base_ = nullptr;
  hdr_ = nullptr;
}

}  // namespace nmpre
