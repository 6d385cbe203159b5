// Netmap pipes between processes: both ends live in one region (a file in
// /dev/shm), master = netmap_if 0, slave = netmap_if 1. txsync of one end
// moves slots into the other end's rx ring by swapping buffer indices, never
// copying. Each index word has a single writer; wakeups go through a FIFO
// doorbell per end. Which end is open is held as an OFD byte lock, so a
// crashed peer is seen (the kernel drops its lock) and a stale file reused.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

#include "napi/napi_util.h"
#include "core/region.h"
#include "core/shm_atomic.h"

namespace nm {

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

struct RingState {
  uint32_t hwcur = 0;
  uint32_t hwtail = 0;
};

class Pipe : public Napi::ObjectWrap<Pipe> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Pipe",
                       {InstanceMethod("txsync", &Pipe::TxSync), InstanceMethod("rxsync", &Pipe::RxSync),
                        InstanceMethod("peerState", &Pipe::PeerState), InstanceMethod("close", &Pipe::Close),
                        InstanceMethod("stats", &Pipe::Stats), InstanceMethod("benchLoop", &Pipe::BenchLoop), InstanceAccessor("memory", &Pipe::Memory, nullptr),
                        InstanceAccessor("doorbellFd", &Pipe::DoorbellFd, nullptr),
                        InstanceAccessor("nifpOffset", &Pipe::NifpOffset, nullptr),
                        InstanceAccessor("created", &Pipe::Created, nullptr)});
  }

  // new Pipe(path, end /*0 master, 1 slave*/, params, name)
  Pipe(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Pipe>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsString() || !info[2].IsObject() || !info[3].IsString())
      throw Napi::TypeError::New(env, "Pipe(path, end, params, name)");
    path_ = info[0].As<Napi::String>();
    end_ = arg_u32(info, 1, "end");
    if (end_ > 1) throw Napi::RangeError::New(env, "end must be 0 (master) or 1 (slave)");
    Napi::Object po = info[2].As<Napi::Object>();
    LayoutParams p;
    p.n_ifs = 2;
    // a pipe end's tx ring feeds the peer's rx ring: counts and sizes must match
    p.tx_rings = p.rx_rings = opt_u32(po, "rings", 1);
    p.tx_slots = p.rx_slots = opt_u32(po, "slots", DEFAULT_SLOTS);
    p.buf_size = opt_u32(po, "bufSize", DEFAULT_BUF_SIZE);
    p.extra_bufs = opt_u32(po, "extraBufs", 0);
    std::string name = info[3].As<Napi::String>();
    auto want = compute_layout(p);
    if (!want) throw coded_error(env, "pipe " + name + ": " + want.error().what, EINVAL);
    Open(env, *want, name);
  }

  ~Pipe() override { Release(); }

 private:
  void Open(Napi::Env env, const Layout &want, const std::string &name) {
    for (int attempt = 0; attempt < 16; attempt++) {
      int fd = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0) throw errno_error(env, "open pipe region " + path_, errno, "open");
      if (flock(fd, LOCK_EX) < 0) {
        int e = errno;
        close(fd);
        throw errno_error(env, "flock " + path_, e, "flock");
      }
      // the last closer may have unlinked the file while we waited: retry
      struct stat a, b;
      if (fstat(fd, &a) < 0 || stat(path_.c_str(), &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        close(fd);
        continue;
      }
      bool mine_held = false, peer_held = false;
      if (!ofd_lock(fd, F_WRLCK, end_, true, &mine_held) || !ofd_lock(fd, F_WRLCK, 1 - end_, true, &peer_held)) {
        int e = errno;
        close(fd);
        throw errno_error(env, "F_OFD_GETLK " + path_, e, "fcntl");
      }
      if (mine_held) {
        close(fd);
        throw coded_error(env,
                          "pipe end " + name + " is already open in another process (EBUSY): each end can be opened once", EBUSY);
      }
      uint8_t *base;
      uint64_t size;
      if (!peer_held) {
        // nobody is attached: start from a fresh region (a stale one from a
        // crashed pair is simply replaced)
        size = want.size;
        if (ftruncate(fd, 0) < 0 || ftruncate(fd, static_cast<off_t>(size)) < 0) {
          int e = errno;
          close(fd);
          throw errno_error(env, "ftruncate " + path_, e, "ftruncate");
        }
        void *m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
          int e = errno;
          close(fd);
          throw errno_error(env, "mmap " + path_, e, "mmap");
        }
        base = static_cast<uint8_t *>(m);
        std::string names[MAX_IFS] = {name, name};
        init_region(base, want, names);
        layout_ = want;
        created_ = true;
      } else {
        size = static_cast<uint64_t>(a.st_size);
        if (size < REGION_HEADER_SIZE || size > (1ULL << 40)) {
          close(fd);
          throw coded_error(env, "pipe region " + path_ + " has an impossible size", EINVAL);
        }
        void *m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
          int e = errno;
          close(fd);
          throw errno_error(env, "mmap " + path_, e, "mmap");
        }
        base = static_cast<uint8_t *>(m);
        auto v = validate_header(base, size);
        std::string err = v ? (v->p.n_ifs != 2 ? "not a pipe region" : "") : v.error().what;
        if (v) layout_ = *v;
        if (!err.empty()) {
          munmap(m, size);
          close(fd);
          throw coded_error(env, "pipe region " + path_ + " is invalid: " + err, EINVAL);
        }
      }
      if (!ofd_lock(fd, F_WRLCK, end_, false, nullptr)) {
        int e = errno;
        munmap(base, size);
        close(fd);
        throw errno_error(env, "F_OFD_SETLK " + path_, e, "fcntl");
      }
      fd_ = fd;
      base_ = base;
      size_ = size;
      hdr_ = reinterpret_cast<RegionHeader *>(base);
      OpenDoorbells(env);
      RestoreState();
      hdr_->end_state[end_].store(END_OPEN, std::memory_order_release);
      flock(fd_, LOCK_UN);
      // JS gets a mapping of its own: at teardown finalizers run in any
      // order, and the ArrayBuffer's may unmap before ours runs Release()
      void *js = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
      if (js == MAP_FAILED) {
        int e = errno;
        Release();
        throw errno_error(env, "mmap " + path_, e, "mmap");
      }
      memory_ = Napi::Persistent(mapping_to_arraybuffer(env, js, size_));
      // wake a peer that sleeps, so it sees us arrive
      Kick(peer_bell_);
      return;
    }
    throw coded_error(env, "pipe region " + path_ + " keeps being replaced; giving up", EAGAIN);
  }

  void OpenDoorbells(Napi::Env env) {
    for (uint32_t e = 0; e < 2; e++) {
      std::string fifo = path_ + (e == 0 ? ".m" : ".s");
      if (mkfifo(fifo.c_str(), 0600) < 0 && errno != EEXIST) throw errno_error(env, "mkfifo " + fifo, errno, "mkfifo");
      // O_RDWR on a FIFO never blocks on Linux and keeps it from hitting EOF
      int fd = open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) throw errno_error(env, "open " + fifo, errno, "open");
      (e == end_ ? my_bell_ : peer_bell_) = fd;
    }
  }

  netmap_ring *ring(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<netmap_ring *>(base_ + layout_.ring_ofs[iface][k]);
  }
  nm_csb_atok *atok(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<nm_csb_atok *>(base_ + layout_.csb_entry(iface, k));
  }
  nm_csb_ktoa *ktoa(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<nm_csb_ktoa *>(base_ + layout_.csb_entry(iface, k) + sizeof(nm_csb_atok));
  }

  // A re-attaching end picks up where the published records say, each value
  // checked against the ring size before use.
  void RestoreState() {
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

  static void Kick(int fd) {
    if (fd < 0) return;
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;  // EAGAIN: the FIFO is full of kicks already
  }

  // txsync(r): pushes [hwcur, head) into the peer's rx ring, as far as it has
  // room. Returns slots still pending, or -1 if head/cur are invalid.
  Napi::Value TxSync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!base_) throw coded_error(env, "pipe is closed", EBADF);
    uint32_t r = arg_u32(info, 0, "ring");
    if (r >= layout_.p.tx_rings) throw Napi::RangeError::New(env, "tx ring index out of range");
    return Napi::Number::New(env, static_cast<double>(tx_sync(r)));
  }

  int64_t tx_sync(uint32_t r) {
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
      peer_errors_++;
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
        invalid_slots_++;  // dropped, counted; the slot is simply returned
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
      if (load_relaxed(&pa->appl_need_kick) && exchange(&pa->appl_need_kick, 0)) Kick(peer_bell_);
    }
    tx_frames_ += moved;
    return ring_dist(head, st.hwcur, N);
  }

  // rxsync(r): releases [hwcur, head) to the producer, picks up new frames.
  // Returns the number of slots available to the user, or -1 if invalid.
  Napi::Value RxSync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!base_) throw coded_error(env, "pipe is closed", EBADF);
    uint32_t r = arg_u32(info, 0, "ring");
    if (r >= layout_.p.rx_rings) throw Napi::RangeError::New(env, "rx ring index out of range");
    return Napi::Number::New(env, static_cast<double>(rx_sync(r)));
  }

  int64_t rx_sync(uint32_t r) {
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
      peer_errors_++;
      t = st.hwtail;
    }
    st.hwtail = t;
    store_release(&rr->tail, t);
    if (released) {
      full_fence();
      nm_csb_atok *pta = atok(1 - end_, r);
      if (load_relaxed(&pta->appl_need_kick) && exchange(&pta->appl_need_kick, 0)) Kick(peer_bell_);
    }
    return ring_dist(t, head, N);
  }

  // benchLoop(role 'tx'|'rx', count, len, batch): the C++ reference for the
  // pipe benchmark, doing what bench/pipe-peer does from TS: tx writes a
  // sequence number into each frame and sets its length; rx checks the
  // number of each frame and releases it. Spins on sync, as the TS loop does.
  Napi::Value BenchLoop(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!base_) throw coded_error(env, "pipe is closed", EBADF);
    const bool tx = info[0].As<Napi::String>().Utf8Value() == "tx";
    const double count = info[1].As<Napi::Number>().DoubleValue();
    const uint32_t len = arg_u32(info, 2, "len");
    const uint32_t batch = arg_u32(info, 3, "batch");
    if (len < 4 || len > layout_.p.buf_size) throw Napi::RangeError::New(env, "len out of range");
    const uint32_t T = layout_.p.tx_rings;
    netmap_ring *rg = ring(end_, tx ? 0 : T);
    const uint32_t N = tx ? layout_.p.tx_slots : layout_.p.rx_slots;
    netmap_slot *sl = ring_slots(rg);
    const uint64_t total = static_cast<uint64_t>(count);
    uint64_t done = 0, errors = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (done < total) {
      if (tx) {
        uint32_t h = rg->head;
        uint32_t room = ring_dist(rg->tail, h, N);
        if (room > batch) room = batch;
        if (room > total - done) room = static_cast<uint32_t>(total - done);
        for (uint32_t i = 0; i < room; i++) {
          const uint32_t idx = sl[h].buf_idx;
          if (idx < 2 || idx >= layout_.num_bufs) return Napi::Number::New(env, -1);
          uint32_t seq = static_cast<uint32_t>(done + i);
          std::memcpy(base_ + layout_.buf_pool_ofs + static_cast<uint64_t>(idx) * layout_.p.buf_size, &seq, 4);
          sl[h].len = static_cast<uint16_t>(len);
          h = ring_next(h, N);
        }
        rg->head = rg->cur = h;
        done += room;
        if (tx_sync(0) < 0) return Napi::Number::New(env, -1);
      } else {
        if (rx_sync(0) < 0) return Napi::Number::New(env, -1);
        uint32_t h = rg->head;
        const uint32_t t = rg->tail;
        while (h != t) {
          const uint32_t idx = sl[h].buf_idx;
          uint32_t seq = 0;
          if (idx >= 2 && idx < layout_.num_bufs)
            std::memcpy(&seq, base_ + layout_.buf_pool_ofs + static_cast<uint64_t>(idx) * layout_.p.buf_size, 4);
          if (seq != static_cast<uint32_t>(done) || sl[h].len != len) errors++;
          done++;
          h = ring_next(h, N);
        }
        rg->head = rg->cur = h;
      }
    }
    if (tx) {
      // flush what the peer has not taken yet
      while (tx_sync(0) > 0) {
      }
    } else {
      rx_sync(0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    auto o = Napi::Object::New(env);
    o.Set("frames", static_cast<double>(done));
    o.Set("errors", static_cast<double>(errors));
    o.Set("ns", static_cast<double>((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec)));
    return o;
  }

  // 0: the peer never came or closed, 1: open, 2: died without closing
  Napi::Value PeerState(const Napi::CallbackInfo &info) {
    if (!base_) return Napi::Number::New(info.Env(), 0);
    uint32_t peer = 1 - end_;
    bool held = false;
    ofd_lock(fd_, F_WRLCK, peer, true, &held);
    uint32_t st = hdr_->end_state[peer].load(std::memory_order_acquire);
    if (held) return Napi::Number::New(info.Env(), 1);
    return Napi::Number::New(info.Env(), st == END_OPEN ? 2 : 0);
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    auto o = Napi::Object::New(info.Env());
    o.Set("txFrames", static_cast<double>(tx_frames_));
    o.Set("invalidSlots", static_cast<double>(invalid_slots_));
    o.Set("peerErrors", static_cast<double>(peer_errors_));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() {
    if (!base_) return;
    flock(fd_, LOCK_EX);
    hdr_->end_state[end_].store(END_CLOSED, std::memory_order_release);
    Kick(peer_bell_);
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
    close(fd_);
    if (my_bell_ >= 0) close(my_bell_);
    if (peer_bell_ >= 0) close(peer_bell_);
    fd_ = my_bell_ = peer_bell_ = -1;
    // our mapping goes now; JS's goes with its ArrayBuffer, when JS drops its views
    munmap(base_, size_);
    base_ = nullptr;
    hdr_ = nullptr;
    memory_.Reset();
  }

  Napi::Value Memory(const Napi::CallbackInfo &info) {
    if (memory_.IsEmpty()) return info.Env().Null();
    return memory_.Value();
  }
  Napi::Value DoorbellFd(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), my_bell_); }
  Napi::Value NifpOffset(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), static_cast<double>(layout_.nifp_ofs[end_]));
  }
  Napi::Value Created(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), created_); }

  std::string path_;
  uint32_t end_ = 0;
  int fd_ = -1, my_bell_ = -1, peer_bell_ = -1;
  uint8_t *base_ = nullptr;
  uint64_t size_ = 0;
  RegionHeader *hdr_ = nullptr;
  Layout layout_;
  bool created_ = false;
  RingState tx_[MAX_RINGS], rx_[MAX_RINGS];
  uint32_t fill_[MAX_RINGS] = {};
  uint32_t peer_released_[MAX_RINGS] = {};
  uint64_t tx_frames_ = 0, invalid_slots_ = 0, peer_errors_ = 0;
  Napi::Reference<Napi::ArrayBuffer> memory_;
};

}  // namespace

void InitPipe(Napi::Env env, Napi::Object exports) { exports.Set("Pipe", Pipe::Define(env)); }

}  // namespace nm
