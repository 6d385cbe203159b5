#include "core/pipe.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <utility>

#include "core/path_split.h"
#include "core/shm_atomic.h"

namespace nm {

namespace {

// An OFD byte lock per end (byte 0 master, byte 1 slave): held while the end
// is open, dropped by the kernel when the holder dies.
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

// flock(2) retried on EINTR (LOCK_EX waits for another end's open or close).
int flock_retry(int fd, int op) {
  int r;
  do {
    r = ::flock(fd, op);
  } while (r < 0 && errno == EINTR);
  return r;
}

// The doorbell FIFO of one end, created if missing. Anything else found at
// that path (a directory, a regular file) is refused with the fix.
Result<unique_fd> open_doorbell(const std::string &fifo, const std::string &region) {
  const std::string hint = "remove " + fifo + " (a pipe's doorbell is a FIFO this library creates beside " + region +
                           ") and open the pipe again";
  if (mkfifo(fifo.c_str(), 0600) < 0 && errno != EEXIST)
    return sys_fail("mkfifo", "cannot create the pipe doorbell FIFO " + fifo, hint);
  // O_RDWR on a FIFO never blocks on Linux and keeps it from hitting EOF
  unique_fd fd(::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return sys_fail("open", "cannot open the pipe doorbell FIFO " + fifo, hint);
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return sys_fail("fstat", "cannot stat the pipe doorbell " + fifo, hint);
  if (!S_ISFIFO(st.st_mode)) return check_fail(EEXIST, "the pipe doorbell " + fifo + " is not a FIFO", hint);
  return fd;
}

// The region and its doorbells go, doorbells first: an opener that finds
// the region path gone (or another inode there) starts over and makes new
// doorbells, while one that found our old FIFOs beside a new region would
// ring bells its peer never opens. Called with the region's flock held.
void unlink_region(const std::string &path) {
  unlink((path + ".m").c_str());
  unlink((path + ".s").c_str());
  unlink(path.c_str());
}

// Pipes whose ends are both gone without closing (killed, or exited with
// the end still open) leave their files: netmap's pipes go with their
// processes, and a region of traffic-touched buffers is tmpfs memory until
// someone removes it. A creator removes the ones in its directory that no
// end holds (no end lock; flock free, so nobody is opening or closing it),
// of its own uid. An opener racing with this finds the path gone or
// replaced after its flock and starts over, as after a last close.
void sweep_stale(const std::string &path) {
  const auto split = split_path(path);
  if (!split) return;
  const std::string &dir = split->dir, &self = split->name;
  std::unique_ptr<DIR, int (*)(DIR *)> d(opendir(dir.c_str()), closedir);
  if (!d) return;
  const size_t plen = std::strlen(PIPE_FILE_PREFIX);
  while (const dirent *e = readdir(d.get())) {
    const std::string name = e->d_name;
    if (name.compare(0, plen, PIPE_FILE_PREFIX) != 0 || name == self) continue;
    // A doorbell's name: it goes with its region. Not left to the S_ISREG
    // test below: a regular file where a doorbell belongs is the open's to
    // refuse ("not a FIFO"), not a stale region to remove. (No region's name
    // ends so: it ends in the escaped pipe id, an identifier.)
    const std::string_view nv(name);
    if (nv.ends_with(".m") || nv.ends_with(".s")) continue;
    const std::string full = dir + "/" + name;
    unique_fd fd(::open(full.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) continue;
    struct stat a, b;
    if (fstat(fd.get(), &a) < 0 || !S_ISREG(a.st_mode) || a.st_uid != geteuid()) continue;
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) continue;
    bool held0 = true, held1 = true;
    if (!ofd_lock(fd.get(), F_WRLCK, 0, true, &held0) || !ofd_lock(fd.get(), F_WRLCK, 1, true, &held1)) continue;
    if (held0 || held1) continue;
    if (::stat(full.c_str(), &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) continue;
    unlink_region(full);
  }
}

}  // namespace

PipeEnd::PipeEnd(std::string path, uint32_t end, unique_fd fd, mapping map, const Layout &layout, bool created,
                 unique_fd my_bell, unique_fd peer_bell)
    : path_(std::move(path)),
      end_(end),
      fd_(std::move(fd)),
      my_bell_(std::move(my_bell)),
      peer_bell_(std::move(peer_bell)),
      map_(std::move(map)),
      layout_(layout),
      created_(created) {}

Result<PipeEnd> PipeEnd::open(const std::string &path, uint32_t end, const Layout &want, const std::string &name) {
  if (end > 1) return check_fail(EINVAL, "pipe end must be 0 (master) or 1 (slave)");
  if (want.p.n_ifs != 2) return check_fail(EINVAL, "a pipe region has two netmap_ifs");
  for (int attempt = 0; attempt < 16; attempt++) {
    unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return sys_fail("open", "cannot open pipe region " + path);
    // serialises opens and closes of both ends; dropped on every return
    // below with the fd, or explicitly once this end is published
    if (flock_retry(fd.get(), LOCK_EX) < 0) return sys_fail("flock", "cannot lock pipe region " + path);
    // the last closer may have unlinked the file while we waited: retry
    struct stat a, b;
    if (fstat(fd.get(), &a) < 0) return sys_fail("fstat", "cannot stat pipe region " + path);
    if (::stat(path.c_str(), &b) < 0) {
      if (errno == ENOENT) continue;
      return sys_fail("stat", "cannot stat pipe region " + path);
    }
    if (a.st_ino != b.st_ino || a.st_dev != b.st_dev) continue;
    bool mine_held = false, peer_held = false;
    if (!ofd_lock(fd.get(), F_WRLCK, end, true, &mine_held) ||
        !ofd_lock(fd.get(), F_WRLCK, 1 - end, true, &peer_held))
      return sys_fail("fcntl", "cannot test the end locks of pipe region " + path + " (F_OFD_GETLK)");
    if (mine_held)
      return check_fail(EBUSY, "pipe end " + name + " is already open in another process (EBUSY): each end can be opened once");

    mapping map;
    Layout layout;
    bool created = false;
    if (!peer_held) {
      // nobody is attached: start from a fresh region (a stale one from a
      // crashed pair is simply replaced), and remove other crashed pairs'
      sweep_stale(path);
      if (ftruncate(fd.get(), 0) < 0 || ftruncate(fd.get(), static_cast<off_t>(want.size)) < 0)
        return sys_fail("ftruncate", "cannot size pipe region " + path + " to " + std::to_string(want.size) + " bytes");
      auto m = mapping::map_shared(fd.get(), want.size, "cannot map pipe region " + path);
      if (!m) return std::move(m).take_error();
      map = std::move(m).value();
      const std::string names[MAX_IFS] = {name, name};
      init_region(map.data(), want, names);
      layout = want;
      created = true;
    } else {
      const uint64_t size = static_cast<uint64_t>(a.st_size);
      if (size < REGION_HEADER_SIZE || size > 0xffffffffULL)
        return check_fail(EINVAL, "pipe region " + path + " has an impossible size (" + std::to_string(size) + " bytes)",
                          "remove it and its .m/.s doorbells if no process uses the pipe");
      auto m = mapping::map_shared(fd.get(), size, "cannot map pipe region " + path);
      if (!m) return std::move(m).take_error();
      map = std::move(m).value();
      auto v = validate_header(map.data(), size);
      if (!v) return check_fail(EINVAL, "pipe region " + path + " is invalid: " + v.error().what);
      if (v->p.n_ifs != 2) return check_fail(EINVAL, "pipe region " + path + " is invalid: not a pipe region");
      layout = *v;
    }
    if (!ofd_lock(fd.get(), F_WRLCK, end, false, nullptr))
      return sys_fail("fcntl", "cannot take the end lock of pipe region " + path + " (F_OFD_SETLK)");
    auto bell_m = open_doorbell(path + ".m", path);
    if (!bell_m) return std::move(bell_m).take_error();
    auto bell_s = open_doorbell(path + ".s", path);
    if (!bell_s) return std::move(bell_s).take_error();
    unique_fd mine = std::move(end == 0 ? bell_m : bell_s).value();
    unique_fd peer = std::move(end == 0 ? bell_s : bell_m).value();

    // everything is open: commit
    PipeEnd p(path, end, std::move(fd), std::move(map), layout, created, std::move(mine), std::move(peer));
    p.restore_state();
    p.header()->end_state[end].store(END_OPEN, std::memory_order_release);
    // unlock failing is harmless: close() and the fd's last close drop it too
    (void)flock_retry(p.fd_.get(), LOCK_UN);
    // wake a peer that sleeps, so it sees us arrive
    p.kick_peer();
    return p;
  }
  return check_fail(EAGAIN, "pipe region " + path + " keeps being replaced; giving up");
}

Result<mapping> PipeEnd::map_again() const {
  return mapping::map_shared(fd_.get(), map_.size(), "cannot map pipe region " + path_);
}

void PipeEnd::kick_peer() const {
  uint64_t one = 1;
  ssize_t r = write(peer_bell_.get(), &one, sizeof one);
  (void)r;  // EAGAIN: the FIFO is full of kicks already
}

PeerState PipeEnd::peer_state() const {
  if (!map_) return PeerState::kClosed;
  const uint32_t peer = 1 - end_;
  bool held = false;
  // a failed test reads as "not held": the end_state word then decides
  (void)ofd_lock(fd_.get(), F_WRLCK, peer, true, &held);
  if (held) return PeerState::kOpen;
  const uint32_t st = header()->end_state[peer].load(std::memory_order_acquire);
  return st == END_OPEN ? PeerState::kDead : st == END_LEFT ? PeerState::kLeft : PeerState::kClosed;
}

// The close protocol is best effort by nature (nothing a caller could do
// about a failed unlock): every step is still taken, and closing the fd
// drops both locks in any case.
void PipeEnd::close() {
  if (!map_) return;
  (void)flock_retry(fd_.get(), LOCK_EX);
  header()->end_state[end_].store(END_LEFT, std::memory_order_release);
  kick_peer();
  struct flock fl{};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = end_;
  fl.l_len = 1;
  (void)fcntl(fd_.get(), F_OFD_SETLK, &fl);
  bool peer_held = true;
  (void)ofd_lock(fd_.get(), F_WRLCK, 1 - end_, true, &peer_held);
  if (!peer_held) unlink_region(path_);
  (void)flock_retry(fd_.get(), LOCK_UN);
  fd_.reset();
  my_bell_.reset();
  peer_bell_.reset();
  // our mapping goes now; a second one (map_again) lives as long as its owner
  map_.reset();
}

void PipeEnd::abandon() {
  fd_.reset();
  my_bell_.reset();
  peer_bell_.reset();
  map_.reset();
}

PipeStats PipeEnd::stats() const {
  PipeStats s;
  for (uint32_t r = 0; r < MAX_RINGS; r++)
    for (const PipeStats *x : {&tx_stats_[r], &rx_stats_[r]}) {
      s.tx_frames += x->tx_frames;
      s.invalid_slots += x->invalid_slots;
      s.peer_errors += x->peer_errors;
    }
  return s;
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
    uint32_t fill = load_acquire(&ktoa(1 - end_, T + r)->hwtail);
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
    tx_stats_[r].peer_errors++;
    released = peer_released_[r];
  }
  peer_released_[r] = released;
  uint32_t room = ring_dist(released + N - 1 >= N ? released - 1 : released + N - 1, fill, N);
  uint32_t want = ring_dist(head, st.hwcur, N);
  uint32_t n = want < room ? want : room;
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
      tx_stats_[r].invalid_slots++;  // dropped, counted; the slot is simply returned
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
    if (load_relaxed(&pa->appl_need_kick) && exchange(&pa->appl_need_kick, 0)) kick_peer();
  }
  tx_stats_[r].tx_frames += moved;
  return ring_dist(head, st.hwcur, N);
}

void PipeEnd::reset_ring(bool tx, uint32_t r) {
  if (r >= layout_.p.tx_rings) return;
  const RingState &st = tx ? tx_[r] : rx_[r];
  netmap_ring *g = ring(end_, tx ? r : layout_.p.tx_rings + r);
  store_release(&g->head, st.hwcur);
  store_release(&g->cur, st.hwcur);
  store_release(&g->tail, st.hwtail);
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
    rx_stats_[r].peer_errors++;
    t = st.hwtail;
  }
  st.hwtail = t;
  store_release(&rr->tail, t);
  if (released) {
    full_fence();
    nm_csb_atok *pta = atok(1 - end_, r);
    if (load_relaxed(&pta->appl_need_kick) && exchange(&pta->appl_need_kick, 0)) kick_peer();
  }
  return ring_dist(t, head, N);
}

}  // namespace nm
