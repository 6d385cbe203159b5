// The switch datapath: see switch_core.h.
#include "core/switch_core.h"

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>


#include <algorithm>
#include <cstring>

#include "core/clock.h"
#include "core/eventfd_check.h"
#include "core/offload.h"
#include "core/shared_bell.h"
#include "core/shm_atomic.h"

namespace nm {

const char *const SWITCH_COUNTER_NAMES[C_COUNT] = {
    "rxFrames",     "rxBytes",    "txFrames",   "txBytes",    "dropNoSpace",  "dropInvalid",
    "dropRunt",     "dropSamePort", "dropLookup", "dropNoPort", "dropOversize", "dropFrag",
    "dropClosed",   "flooded",    "badHead",    "kicks",        "dropStalled",  "floodCopies", "dropMonitor",
    "vnetPassed",   "vnetCsumCompleted", "vnetSegmented", "vnetSegments", "dropBadVnetHdr", "bellStuck",
    "detachedUnread", "holdShortened"};

namespace {
constexpr uint32_t FRAG_CAP = SWITCH_MAX_BATCH + NETMAP_MAX_FRAGS;
constexpr uint64_t NOTIFY_TAG = ~0ull;
// frames one DirectSink::send_direct call takes at most: half the default
// round (512 per ring). Each call costs a sink its fixed part (a VXLAN
// port: its lock, counters and the ring's publish and fences, which wait
// for the streamed slots); 64 cost the shortcut row 2% (bench/RESULTS.md,
// session 27). An AF_PACKET sink cuts it into sendmmsg batches of its own.
constexpr uint32_t kDirectBatch = 256;
// Buffers are prefetched this many slots ahead of the one being copied (as
// VALE prefetches the next batch's): a 60-byte frame's copy costs little
// beside the cache miss on a buffer the other process last touched.
constexpr uint32_t PREFETCH_AHEAD = 4;

// The slot PREFETCH_AHEAD on from slot i < n of an n-slot ring (n need not
// be a power of two; no divide unless it wraps).
inline uint32_t ahead_slot(uint32_t i, uint32_t n) {
  const uint32_t a = i + PREFETCH_AHEAD;
  return a < n ? a : a % n;
}

// The rx ring of a port with nrx rx rings that takes frames from source
// ring r: the same index, folded when that port has fewer (no divide when not).
inline uint32_t dest_ring(uint32_t r, uint32_t nrx) { return r < nrx ? r : r % nrx; }

// Exactly n bytes, n <= 64 with two overlapping fixed-size moves the compiler
// inlines (no call into libc's memmove for a minimum-size frame), longer
// with memcpy. Never reads or writes outside [src, src + n), [dst, dst + n).
inline void copy_frame(uint8_t *dst, const uint8_t *src, uint32_t n) {
#if defined(__x86_64__)
  // in registers: byte arrays here were spilled to the stack and read
  // back, four stores more per frame on the snapshot's path
  if (n > 32 && n <= 64) {
    const __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src));
    const __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + 16));
    const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + n - 32));
    const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + n - 16));
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst), a0);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + 16), a1);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + n - 32), b0);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + n - 16), b1);
    return;
  }
  if (n >= 16 && n <= 32) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + n - 16));
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst), a);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst + n - 16), b);
    return;
  }
#else
  if (n > 32 && n <= 64) {
    uint8_t a[32], b[32];
    __builtin_memcpy(a, src, 32);
    __builtin_memcpy(b, src + n - 32, 32);
    __builtin_memcpy(dst, a, 32);
    __builtin_memcpy(dst + n - 32, b, 32);
    return;
  }
  if (n >= 16 && n <= 32) {
    uint8_t a[16], b[16];
    __builtin_memcpy(a, src, 16);
    __builtin_memcpy(b, src + n - 16, 16);
    __builtin_memcpy(dst, a, 16);
    __builtin_memcpy(dst + n - 16, b, 16);
    return;
  }
#endif
  std::memcpy(dst, src, n);
}
constexpr uint64_t WAIT_FD_TAG = 1ull << 40;  // | fd: an in-line driver's fd (add_wait_fd)
}  // namespace

SwitchCore::SwitchCore(uint32_t batch, uint32_t header)
    : batch_(batch),
      header_(header),
      stride_((header + 7) & ~7u),
      ports_(new Port[SWITCH_MAX_PORTS]),
      hdr_(new uint8_t[static_cast<size_t>(SWITCH_MAX_BATCH) * ((header + 7) & ~7u)]()),
      offsets_(new uint32_t[SWITCH_MAX_BATCH]()),
      lens_(new uint16_t[SWITCH_MAX_BATCH]()),
      src_(new uint8_t[SWITCH_MAX_BATCH]()),
      dests_(new int16_t[SWITCH_MAX_BATCH]()),
      touch_of_(new uint16_t[SWITCH_MAX_BATCH]()),
      slot_of_(new uint32_t[SWITCH_MAX_BATCH]()),
      fstart_(new uint32_t[SWITCH_MAX_BATCH]()),
      fcount_(new uint32_t[SWITCH_MAX_BATCH]()),
      ftotal_(new uint32_t[SWITCH_MAX_BATCH]()),
      hoff_(new uint8_t[SWITCH_MAX_BATCH]()),
      scratch_(new uint8_t[SWITCH_MAX_FRAME]),
      fidx_(new uint32_t[FRAG_CAP]()),
      flen_(new uint16_t[FRAG_CAP]()),
      room_(new uint32_t[SWITCH_MAX_PORTS * MAX_RINGS]()),
      room_gen_(new uint32_t[SWITCH_MAX_PORTS * MAX_RINGS]()) {
  // the decision finds frame i's header at a fixed place
  for (uint32_t i = 0; i < SWITCH_MAX_BATCH; i++) offsets_[i] = i * stride_;
}

SwitchCore::~SwitchCore() = default;

Result<std::unique_ptr<SwitchCore>> SwitchCore::create(uint32_t batch, uint32_t header) {
  if (batch < 1 || batch > SWITCH_MAX_BATCH)
    return check_fail(EINVAL, "batch " + std::to_string(batch) + " out of range: use 1.." + std::to_string(SWITCH_MAX_BATCH));
  if (header < SWITCH_MIN_HEADER || header > SWITCH_MAX_HEADER)
    return check_fail(EINVAL, "header bytes " + std::to_string(header) + " out of range: use " +
                                  std::to_string(SWITCH_MIN_HEADER) + ".." + std::to_string(SWITCH_MAX_HEADER));
  std::unique_ptr<SwitchCore> c(new SwitchCore(batch, header));
  c->epfd_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!c->epfd_) return sys_fail("epoll_create1", "switch doorbell set");
  c->notify_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!c->notify_fd_) return sys_fail("eventfd", "switch notification doorbell");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = NOTIFY_TAG;
  if (epoll_ctl(c->epfd_.get(), EPOLL_CTL_ADD, c->notify_fd_.get(), &ev) < 0)
    return sys_fail("epoll_ctl", "switch notification doorbell");
  return c;
}

Result<SwitchPortInfo> SwitchCore::add_port(const LayoutParams &params, const std::string &name, bool lossless,
                                            int prepared_fd) {
  LayoutParams p = params;
  p.n_ifs = 1;  // a switch port is one netmap_if
  Result<Layout> lr = compute_layout(p);
  if (!lr) return std::move(lr).take_error();
  const Layout l = lr.value();
  // allocation happens outside the lock: a big region must not stall rounds
  unique_fd memfd;
  mapping mem;
  if (prepared_fd >= 0) {
    // a region prepared off the event loop (createRegionFdAsync): map a
    // duplicate; the caller keeps (and closes) its own descriptor
    memfd.reset(fcntl(prepared_fd, F_DUPFD_CLOEXEC, 0));
    if (!memfd) return sys_fail("fcntl", "dup prepared region");
    struct stat st;
    if (fstat(memfd.get(), &st) < 0) return sys_fail("fstat", "stat prepared region");
    if (static_cast<uint64_t>(st.st_size) != l.size)
      return check_fail(EINVAL, "prepared region has " + std::to_string(st.st_size) + " bytes, the layout needs " +
                                    std::to_string(l.size));
    Result<mapping> mr = mapping::map_shared(memfd.get(), l.size, "map prepared region");
    if (!mr) return std::move(mr).take_error();
    mem = std::move(mr.value());
  } else {
    std::string names[MAX_IFS] = {name, ""};
    Result<MemfdRegion> rr = create_memfd_region(("vale-ts:" + name).c_str(), l, names);
    if (!rr) return std::move(rr).take_error();
    memfd = std::move(rr.value().fd);
    mem = std::move(rr.value().map);
  }
  unique_fd sb(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!sb) return sys_fail("eventfd", "switch doorbell of " + name);
  unique_fd cb(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!cb) return sys_fail("eventfd", "client doorbell of " + name);

  std::lock_guard<std::recursive_mutex> g(mu_);
  if (in_round_) return check_fail(EDEADLK, "addPort called from inside the switch's lookup");
  if (down_) return check_fail(ESHUTDOWN, "the switch is shut down");
  uint32_t id = 0;
  while (id < SWITCH_MAX_PORTS && ports_[id].used) id++;
  if (id == SWITCH_MAX_PORTS) return check_fail(ENOSPC, "switch is full (254 ports, as NM_BDG_MAXPORTS)");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, sb.get(), &ev) < 0) return sys_fail("epoll_ctl", "doorbell of " + name);
  Port &ps = ports_[id];
  ps = Port{};
  ps.used = true;
  ps.lossless = lossless;
  ps.layout = l;
  ps.mem = std::move(mem);
  ps.memfd = std::move(memfd);
  ps.switch_bell = std::move(sb);
  ps.client_bell = std::move(cb);
  ps.start_client();
  active_.insert(std::upper_bound(active_.begin(), active_.end(), id), id);
  rebuild_scan();
  SwitchPortInfo info;
  info.id = id;
  info.memfd = ps.memfd.get();
  info.switch_bell = ps.switch_bell.get();
  info.client_bell = ps.client_bell.get();
  info.size = l.size;
  info.nifp_ofs = l.nifp_ofs[0];
  info.geometry = l.p;
  return info;
}

void SwitchCore::Port::start_client() {
  std::fill(std::begin(tx_hwcur), std::end(tx_hwcur), 0u);
  std::fill(std::begin(rx), std::end(rx), RxState{});
  std::fill(std::begin(bad_head), std::end(bad_head), UINT32_MAX);
  std::fill(std::begin(rx_dirty), std::end(rx_dirty), false);
  any_dirty = false;
  stalled = false;
  stall_freed = 0;
  full_since_ns = 0;
  shed = false;
  hold_freed = 0;
  held_seen_ns = 0;
  hold_level = 0;  // the departed client's slowness is not the next one's
  hold_cur_ns = hold_ns;
  hold_from_ns = 0;
  extra_bells.clear();  // the other registrations' (gone before a renew)
  bell_stuck = false;
  spurious = backoff_ms = 0;
  muted = false;
  muted_until_ns = 0;
  direct = nullptr;  // the next client's driver sets its own
  direct_q.clear();
  direct_iov.clear();
  direct_at.clear();
  direct_slots = 0;
  direct_gen = 0;
  direct_open = false;
}

void SwitchCore::count_closed(Port *p) {
  // frames the client queued but the switch never took are lost: count them
  // as collect_ring would have taken them, a chain of slots (NS_MOREFRAG)
  // as one frame, cut every NETMAP_MAX_FRAGS slots, an unfinished one too
  const uint32_t N = p->layout.p.tx_slots;
  for (uint32_t r = 0; r < p->layout.p.tx_rings; r++) {
    const uint32_t head = load_acquire(&p->atok(r)->head);
    if (head >= N) continue;
    const netmap_slot *s = ring_slots(p->ring(r));
    uint64_t n = 0;
    uint32_t frags = 0;  // slots of the frame counted last, while it goes on
    for (uint32_t i = p->tx_hwcur[r]; i != head; i = ring_next(i, N)) {
      if (frags == 0) n++;
      const uint16_t fl = s[i].flags;
      frags = (fl & NS_MOREFRAG) && frags + 1 < NETMAP_MAX_FRAGS ? frags + 1 : 0;
    }
    p->c[C_DROP_CLOSED] += n;
    p->c[C_RX_FRAMES] += n;
  }
}

Result<SwitchCounters> SwitchCore::remove_port(uint32_t id) {
  Port released;
  SwitchCounters last;
  {
    std::lock_guard<std::recursive_mutex> g(mu_);
    if (in_round_) return check_fail(EDEADLK, "removePort called from inside the switch's lookup");
    Port *p = port(id);
    if (!p) return check_fail(ENOENT, "no switch port " + std::to_string(id));
    count_closed(p);
    last = p->c;
    if (p->is_monitor && p->monitor_of >= 0) {
      Port &w = ports_[p->monitor_of];
      for (auto *v : {&w.mon_rx, &w.mon_tx})
        v->erase(std::remove_if(v->begin(), v->end(), [id](const Port::MonitorRef &m) { return m.id == id; }), v->end());
    }
    // monitors of this port stay open and see nothing more
    for (auto *v : {&p->mon_rx, &p->mon_tx})
      for (const Port::MonitorRef &m : *v) ports_[m.id].monitor_of = -1;
    if (!p->muted) epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, p->switch_bell.get(), nullptr);
    rang_.erase(std::remove(rang_.begin(), rang_.end(), id), rang_.end());
    active_.erase(std::remove(active_.begin(), active_.end(), id), active_.end());
    rebuild_scan();
    released = std::move(*p);
    *p = Port{};
  }
  // unmapped and closed here, outside the lock (the Port destructor)
  return last;
}

void SwitchCore::count_unread(Port *p) {
  // delivered but not released: from the client's head as published, when
  // it is one it could have set (else what it released last, as the rounds
  // use), counted in frames as delivered: a chain of slots (NS_MOREFRAG) is
  // one. The flags are the client's to rewrite, which moves its own count
  // between none and one per slot, no further.
  const uint32_t n = p->layout.p.rx_slots;
  for (uint32_t rr = 0; rr < p->layout.p.rx_rings; rr++) {
    const RxState &st = p->rx[rr];
    const uint32_t k = p->layout.p.tx_rings + rr;
    const uint32_t head = load_acquire(&p->atok(k)->head);
    const netmap_slot *s = ring_slots(p->ring(k));
    bool more = false;
    for (uint32_t i = st.head_ok(head, n) ? head : st.released; i != st.hwtail; i = ring_next(i, n)) {
      more = (s[i].flags & NS_MOREFRAG) != 0;
      if (!more) p->c[C_DETACHED_UNREAD]++;
    }
    if (more) p->c[C_DETACHED_UNREAD]++;  // a last slot the client made a chain's
  }
}

Result<SwitchPortInfo> SwitchCore::renew_port(uint32_t id, const std::string &name) {
  Layout l;
  {
    std::lock_guard<std::recursive_mutex> g(mu_);
    if (in_round_) return check_fail(EDEADLK, "renewPort called from inside the switch's lookup");
    Port *p = port(id);
    if (!p) return check_fail(ENOENT, "no switch port " + std::to_string(id));
    if (p->is_monitor) return check_fail(EINVAL, "port " + std::to_string(id) + " is a monitor: it is not renewed");
    l = p->layout;
  }
  // made outside the lock, as add_port's: rounds go on meanwhile
  std::string names[MAX_IFS] = {name, ""};
  Result<MemfdRegion> rr = create_memfd_region(("vale-ts:" + name).c_str(), l, names);
  if (!rr) return std::move(rr).take_error();
  unique_fd sb(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!sb) return sys_fail("eventfd", "switch doorbell of " + name);
  unique_fd cb(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!cb) return sys_fail("eventfd", "client doorbell of " + name);

  // the old region and bells, released after the lock (munmap of a big region takes a while)
  mapping old_mem;
  unique_fd old_fd, old_sb, old_cb;
  SwitchPortInfo info;
  {
    std::lock_guard<std::recursive_mutex> g(mu_);
    if (in_round_) return check_fail(EDEADLK, "renewPort called from inside the switch's lookup");
    if (down_) return check_fail(ESHUTDOWN, "the switch is shut down");
    Port *p = port(id);
    // the port went (or another took its id) while the region was made
    if (!p || p->is_monitor || p->layout.size != l.size || std::memcmp(&p->layout.p, &l.p, sizeof l.p) != 0)
      return check_fail(ENOENT, "switch port " + std::to_string(id) + " changed while its region was renewed");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, sb.get(), &ev) < 0) return sys_fail("epoll_ctl", "doorbell of " + name);
    // The departed client's tx frames are not taken from here on: the
    // caller ran a round first where it could (Switch.renewPort, as
    // removePort does), so what the client sent while it held the port went
    // on; what is left is counted as for a removed port. Taking it later
    // would let a client that left keep sending as the port.
    count_closed(p);
    count_unread(p);
    // the client keeps the old bell's file: it must leave the epoll set by
    // name (closing our descriptor would not take it out)
    if (!p->muted) epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, p->switch_bell.get(), nullptr);
    rang_.erase(std::remove(rang_.begin(), rang_.end(), id), rang_.end());
    old_mem = std::move(p->mem);
    old_fd = std::move(p->memfd);
    old_sb = std::move(p->switch_bell);
    old_cb = std::move(p->client_bell);
    p->mem = std::move(rr.value().map);
    p->memfd = std::move(rr.value().fd);
    p->switch_bell = std::move(sb);
    p->client_bell = std::move(cb);
    // as add_port starts it; counters and settings stay (the old bell left
    // the epoll set above, muted or not, and the new one is in it)
    p->start_client();
    // a sleeping switch asked every client for kicks (arm_all): the fresh
    // CSB must ask too, or the next client's first frames wake nobody
    if (armed_) {
      for (uint32_t r = 0; r < l.p.tx_rings; r++) store_release(&p->ktoa(r)->kern_need_kick, 1);
      for (uint32_t r = 0; r < l.p.rx_rings; r++)
        store_release(&p->ktoa(l.p.tx_rings + r)->kern_need_kick, armed_held_ ? 1 : 0);
    }
    // the scan array points at the clients' heads (and parks on receivers)
    if (std::find(active_.begin(), active_.end(), id) != active_.end()) rebuild_scan();
    info.id = id;
    info.memfd = p->memfd.get();
    info.switch_bell = p->switch_bell.get();
    info.client_bell = p->client_bell.get();
    info.size = l.size;
    info.nifp_ofs = l.nifp_ofs[0];
    info.geometry = l.p;
  }
  return info;
}

void SwitchCore::shutdown() {
  std::unique_ptr<Port[]> gone;
  {
    std::lock_guard<std::recursive_mutex> g(mu_);
    if (down_ || in_round_) return;
    down_ = true;
    active_.clear();
    scan_.clear();
    scan_of_.clear();
    rang_.clear();
    hooks_.clear();
    wait_fds_.clear();
    quietable_in_set_ = 0;
    dirty_.clear();
    touched_.clear();
    dropped_.clear();
    gone = std::move(ports_);
    for (auto *b : {&offsets_, &slot_of_, &fstart_, &fcount_, &ftotal_, &fidx_, &room_, &room_gen_}) b->reset();
    hdr_.reset();
    hoff_.reset();
    scratch_.reset();
    lens_.reset();
    src_.reset();
    dests_.reset();
    touch_of_.reset();
    flen_.reset();
    epfd_.reset();
    notify_fd_.reset();
  }
  // regions unmapped and doorbells closed here, outside the lock
}

#define WITH_PORT(id)                                                                 \
  std::lock_guard<std::recursive_mutex> g(mu_);                                                 \
  Port *p = port(id);                                                                 \
  if (!p) return check_fail(ENOENT, "no switch port " + std::to_string(id));

Status SwitchCore::set_lossless(uint32_t id, bool on) {
  WITH_PORT(id);
  p->lossless = on;
  return Ok{};
}

Status SwitchCore::set_attached(uint32_t id, bool on) {
  WITH_PORT(id);
  p->attached = on;
  if (on && p->bell_stuck) {
    // a persistent port's new client: the bell's last holder broke it
    // (blocking, counter full); mend the file, which is ours too
    set_nonblocking(p->client_bell.get());
    drain_bell(p->client_bell.get());
    p->bell_stuck = false;
  }
  return Ok{};
}

Status SwitchCore::set_stalled(uint32_t id, bool on) {
  WITH_PORT(id);
  p->stalled = on;
  p->stall_freed = 0;
  return Ok{};
}

Status SwitchCore::count_hold_shortened(uint32_t id) {
  WITH_PORT(id);
  p->c[C_HOLD_SHORTENED]++;
  return Ok{};
}

Status SwitchCore::set_hold_us(uint32_t id, uint32_t hold_us) {
  WITH_PORT(id);
  p->hold_ns = static_cast<int64_t>(hold_us) * 1000;
  p->hold_cur_ns = p->hold_ns;
  p->hold_level = 0;
  p->full_since_ns = 0;
  p->shed = false;
  p->hold_freed = 0;
  return Ok{};
}

Status SwitchCore::set_monitor(uint32_t id, uint32_t watched, bool rx, bool tx) {
  WITH_PORT(id);
  if (in_round_) return check_fail(EDEADLK, "setMonitor called from inside the switch's lookup");
  Port *w = port(watched);
  if (!w || w->is_monitor) return check_fail(ENOENT, "no switch port " + std::to_string(watched) + " to monitor");
  if (id == watched || p->is_monitor) return check_fail(EINVAL, "port " + std::to_string(id) + " cannot become a monitor");
  if (!rx && !tx) return check_fail(EINVAL, "a monitor watches rx, tx or both");
  const uint32_t rings = (rx ? 1u : 0u) + (tx ? 1u : 0u);
  if (p->layout.p.rx_rings < rings)
    return check_fail(EINVAL, "a monitor of both directions needs 2 rx rings, it has " + std::to_string(p->layout.p.rx_rings));
  // out of the forwarding set and of the doorbell set: nothing is taken from
  // a monitor and no sender waits for one
  if (!p->muted) epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, p->switch_bell.get(), nullptr);
  p->muted = true;
  rang_.erase(std::remove(rang_.begin(), rang_.end(), id), rang_.end());
  active_.erase(std::remove(active_.begin(), active_.end(), id), active_.end());
  rebuild_scan();
  p->is_monitor = true;
  p->monitor_of = static_cast<int32_t>(watched);
  if (rx) w->mon_rx.push_back({id, 0});
  if (tx) w->mon_tx.push_back({id, rx ? 1u : 0u});
  return Ok{};
}

Status SwitchCore::set_vnet_hdr_len(uint32_t id, uint32_t len) {
  WITH_PORT(id);
  if (len != 0 && len != 10 && len != 12)
    return check_fail(EINVAL, "virtio-net header length " + std::to_string(len) + " is not one of 0, 10, 12");
  if (in_round_) return check_fail(EDEADLK, "setVnetHdrLen called from inside the switch's lookup");
  p->vnet = static_cast<uint8_t>(len);
  return Ok{};
}

Status SwitchCore::set_direct(uint32_t id, DirectSink *sink, int region_fd) {
  WITH_PORT(id);
  if (in_round_) return check_fail(EDEADLK, "set_direct called from inside a round");
  if (p->is_monitor) return check_fail(EINVAL, "switch port " + std::to_string(id) + " is a monitor");
  if (sink && region_fd >= 0) {
    struct stat a{}, b{};
    if (::fstat(region_fd, &a) < 0) return sys_fail("fstat", "the driver's region");
    if (::fstat(p->memfd.get(), &b) < 0) return sys_fail("fstat", "switch port " + std::to_string(id) + "'s region");
    if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
      return check_fail(EINVAL, "switch port " + std::to_string(id) + " is not the port this driver serves (another region): pass the driver's own port index");
  }
  p->direct = sink;
  if (sink) {
    // take_direct's batch (kDirectBatch frames): no allocation per round
    p->direct_q.reserve(kDirectBatch);
    p->direct_at.reserve(kDirectBatch + 1);
    p->direct_iov.reserve(kDirectBatch * 2 + NETMAP_MAX_FRAGS + 2);
  }
  return Ok{};
}

void SwitchCore::clear_direct(uint32_t id, const DirectSink *sink) {
  std::lock_guard<std::recursive_mutex> g(mu_);
  Port *p = port(id);
  // between rounds (the mutex): nothing is queued for it
  if (p && p->direct == sink) p->direct = nullptr;
}

Result<uint32_t> SwitchCore::vnet_hdr_len(uint32_t id) {
  WITH_PORT(id);
  return static_cast<uint32_t>(p->vnet);
}

Status SwitchCore::set_extra_bells(uint32_t id, std::vector<int> fds) {
  WITH_PORT(id);
  if (in_round_) return check_fail(EDEADLK, "setExtraBells called from inside the switch's lookup");
  p->extra_bells = std::move(fds);
  return Ok{};
}

Result<SwitchCounters> SwitchCore::counters(uint32_t id) {
  WITH_PORT(id);
  return p->c;
}

Result<uint8_t *> SwitchCore::port_base(uint32_t id) {
  WITH_PORT(id);
  return p->base();
}

Result<std::pair<uint64_t, uint64_t>> SwitchCore::occupancy(uint32_t id) {
  WITH_PORT(id);
  const uint32_t nt = p->layout.p.tx_slots, nr = p->layout.p.rx_slots;
  auto dist = [](uint32_t from, uint32_t to, uint32_t n) -> uint64_t {
    return from >= n || to >= n ? 0 : (to + n - from) % n;
  };
  uint64_t tx = 0, rx = 0;
  // the client's heads are read as published; the switch's cursors are its own
  for (uint32_t r = 0; r < p->layout.p.tx_rings; r++) tx += dist(p->tx_hwcur[r], load_acquire(&p->atok(r)->head), nt);
  for (uint32_t r = 0; r < p->layout.p.rx_rings; r++)
    rx += dist(load_acquire(&p->atok(p->layout.p.tx_rings + r)->head), p->rx[r].hwtail, nr);
  return std::make_pair(tx, rx);
}
#undef WITH_PORT

uint32_t SwitchCore::port_count() {
  std::lock_guard<std::recursive_mutex> g(mu_);
  return static_cast<uint32_t>(active_.size());
}

// ---- collect --------------------------------------------------------------

// Reads up to max frames from tx ring r of port id into the batch at n.
// Each slot is read once; invalid slots and over-long chains are counted and
// skipped. Returns the new batch size.
uint32_t SwitchCore::collect_ring(uint32_t id, uint32_t r, uint32_t n, uint32_t max) {
  Port *p = &ports_[id];
  const uint32_t N = p->layout.p.tx_slots;
  const uint32_t head = load_acquire(&p->atok(r)->head);
  if (head >= N) {
    if (p->bad_head[r] != head) p->c[C_BAD_HEAD]++;
    p->bad_head[r] = head;
    return n;
  }
  uint32_t i = p->tx_hwcur[r];
  if (i == head) return n;
  netmap_slot *s = ring_slots(p->ring(r));
  const uint32_t bsz = p->layout.p.buf_size;
  const uint32_t t = static_cast<uint32_t>(touched_.size());
  uint32_t nf = n == 0 ? 0 : fstart_[n - 1] + fcount_[n - 1];
  uint32_t scanned = 0;
  const uint32_t n0 = n;
  const uint32_t d0 = static_cast<uint32_t>(dropped_.size());
  // a frame is one slot, or a chain of slots with NS_MOREFRAG on all but
  // the last (netmap's multi-slot frames). The batch's fragments share
  // fidx_/flen_: a frame starts only if a longest chain still fits, or
  // chains on many rings (each ring's quota counts its slots, not the
  // batch's) would run past them; the rest waits for the next round
  while (i != head && n - n0 < max && scanned < max && nf + NETMAP_MAX_FRAGS <= FRAG_CAP) {
    const uint32_t first = i, f0 = nf;
    bool ok = true, complete = false;
    uint32_t total = 0;
    while (i != head) {
      const uint32_t idx = s[i].buf_idx;
      const uint16_t len = s[i].len;
      const uint16_t fl = s[i].flags;
      {
        // the snapshot below reads this slot's buffer: start loading the
        // one PREFETCH_AHEAD slots on (published or not: a valid index, or
        // no load; that slot is read and checked again in its turn)
        const uint32_t ai = s[ahead_slot(i, N)].buf_idx;
        if (p->buf_ok(ai)) __builtin_prefetch(p->buf(ai), 0);
      }
      if (!p->buf_ok(idx) || len > bsz) ok = false;
      fidx_[nf] = idx;
      flen_[nf] = len;
      nf++;
      total += len;
      i = ring_next(i, N);
      if (!(fl & NS_MOREFRAG)) {
        complete = true;
        break;
      }
      if (nf - f0 == NETMAP_MAX_FRAGS) break;  // chain too long: dropped below
    }
    const uint32_t frags = nf - f0;
    if (!complete && frags < NETMAP_MAX_FRAGS) {
      // the rest of the frame is not published yet: take it next time
      i = first;
      nf = f0;
      ScanRing &sr = scan_[p->scan_at + r];
      sr.partial_head = head;
      sr.partial_at = first;
      break;
    }
    scanned += frags;
    if (!complete) {
      dropped_.push_back(Dropped{first, static_cast<uint8_t>(C_DROP_FRAG)});
      nf = f0;
    } else if (!ok || total > p->vnet + SWITCH_MAX_FRAME) {
      dropped_.push_back(Dropped{first, static_cast<uint8_t>(C_DROP_INVALID)});
      nf = f0;
    } else {
      // the snapshot: what the decision reads and what is delivered in place
      // of the client's bytes, from the end of the port's virtio-net header
      // (a frame shorter than that is a runt: no bytes for the decision)
      const uint32_t hs = p->vnet;
      const uint32_t h = total > hs ? std::min<uint32_t>(total - hs, header_) : 0;
      uint8_t *snap = &hdr_[static_cast<size_t>(n) * stride_];
      if (frags == 1 && hs == 0) {
        copy_frame(snap, p->buf(fidx_[f0]), h);  // one slot (the usual frame): no walk
      } else {
        for (uint32_t f = f0, pos = 0, want = hs, got = 0; got < h; pos += flen_[f], f++) {
          if (want >= pos + flen_[f]) continue;
          const uint32_t take = std::min(h - got, pos + flen_[f] - want);
          copy_frame(snap + got, p->buf(fidx_[f]) + (want - pos), take);
          got += take;
          want += take;
        }
      }
      hoff_[n] = static_cast<uint8_t>(hs);
      lens_[n] = static_cast<uint16_t>(h);
      src_[n] = static_cast<uint8_t>(id);
      touch_of_[n] = static_cast<uint16_t>(t);
      slot_of_[n] = first;
      fstart_[n] = f0;
      fcount_[n] = frags;
      ftotal_[n] = total;
      n++;
    }
  }
  if (i != p->tx_hwcur[r])
    touched_.push_back(Touched{static_cast<uint8_t>(id), static_cast<uint8_t>(r), false, i, 0, p->tx_hwcur[r], d0,
                               static_cast<uint32_t>(dropped_.size())});
  return n;
}

void SwitchCore::rebuild_scan() {
  scan_.clear();
  scan_of_.clear();
  for (uint32_t id : active_) {
    Port &p = ports_[id];
    scan_of_.push_back(static_cast<uint32_t>(scan_.size()));
    p.scan_at = static_cast<uint32_t>(scan_.size());
    for (uint32_t r = 0; r < p.layout.p.tx_rings; r++)
      scan_.push_back(ScanRing{&p.atok(r)->head, p.tx_hwcur[r], p.tx_hwcur[r], p.layout.p.tx_slots,
                               static_cast<uint8_t>(id), static_cast<uint8_t>(r)});
  }
  scan_of_.push_back(static_cast<uint32_t>(scan_.size()));
}

// One batch across every port's tx rings. It starts at the port after the
// one that came first with frames last time, so the first place (which a
// full receiver ring favours) rotates among the ports that send, and N
// senders into one receiver get ~1/N each whatever idle ports lie between.
//
// An idle ring costs its scan_ entry and its client's head: every head is
// read first, in one tight loop, so the cache misses on the ports' CSBs
// (one page per port) overlap instead of coming one after another, and
// collect_ring() (which reads the Port and re-reads the head) runs only for
// rings whose head moved, or is impossible and must be counted there.
uint32_t SwitchCore::collect() {
  touched_.clear();
  dropped_.clear();
  parked_any_ = false;
  parked_on_ = -1;
  park_due_ns_ = 0;
  blocked_on_ = -1;
  const uint32_t np = static_cast<uint32_t>(active_.size());
  if (np == 0) return 0;
  ScanRing *const sc = scan_.data();
  const uint32_t ns = static_cast<uint32_t>(scan_.size());
  for (uint32_t j = 0; j < ns; j++) sc[j].seen = load_relaxed(sc[j].head);
  int64_t now = 0;  // read once, only when a parked ring has a bound to check
  const uint32_t start =
      static_cast<uint32_t>(std::lower_bound(active_.begin(), active_.end(), rr_) - active_.begin()) % np;
  uint32_t n = 0;
  bool first = true;
  for (uint32_t k = 0, a = start; k < np; k++, a = a + 1 == np ? 0 : a + 1) {
    const uint32_t before = n;
    for (uint32_t j = scan_of_[a], e = scan_of_[a + 1]; j < e; j++) {
      if (sc[j].seen == sc[j].cur) continue;  // nothing published since the last round
      if (sc[j].park >= 0 && still_parked(sc[j], now)) continue;
      const uint32_t left = SWITCH_MAX_BATCH - n;
      if (left == 0) break;
      uint32_t most = std::min(batch_, left);
      if (sc[j].quota) {
        most = std::min(most, sc[j].quota);
        sc[j].quota = 0;
      }
      n = collect_ring(sc[j].port, sc[j].ring, n, most);
    }
    if (first && n > before) {
      first = false;
      rr_ = active_[a] + 1;  // next round starts after this port
    }
    if (n == SWITCH_MAX_BATCH) break;
  }
  blocked_on_ = parked_on_;
  return n;
}

// A parked ring stays out of the batch while its receiver's rx ring is as
// full as when the ring stopped: the same receiver state would stop the
// same frame again. Everything that could let it go is read afresh (never a
// deadline remembered from the stop), so a changed bound, a stall, a detach
// or a head the receiver moved (even to a bad value, which the round then
// counts) unparks it. A head moved by fewer than SWITCH_HOLD_QUANTUM slots
// lets the ring send what fits and park again with the same due time: the
// hold clock runs on, so a receiver trickling slots keeps a ring parked no
// longer than its bound.
bool SwitchCore::still_parked(ScanRing &s, int64_t &now) {
  Port *d = port(static_cast<uint32_t>(s.park));
  const uint32_t head = d ? load_acquire(&d->atok(d->layout.p.tx_rings + s.park_rr)->head) : 0;
  bool keep = d && d->attached && !d->is_monitor && head == s.park_rel;
  // the room it freed (a head outside the ring: no quota, the round sorts it out)
  s.quota = d && head != s.park_rel && head < d->layout.p.rx_slots ? ring_dist(head, s.park_rel, d->layout.p.rx_slots) + 1 : 0;
  if (keep && s.park_lossless) {
    keep = !d->stalled;
    if (keep && parked_on_ < 0) parked_on_ = s.park;
  } else if (d && !s.park_lossless) {
    // a sender held back by d until now, whether it stays parked or not
    // (hold_back: a hold is over only when nobody was, for a bound)
    if (now == 0) now = mono_ns();
    if (now - d->held_seen_ns > d->hold_ns / SWITCH_HOLD_SLOW_DIV) d->hold_from_ns = now;
    d->held_seen_ns = now;
  }
  if (keep && !s.park_lossless) {
    const int64_t bound = hold_bound_ns(d, s.park_flood);
    keep = !d->shed && bound > 0 && d->full_since_ns != 0;
    if (keep) {
      const int64_t due = d->full_since_ns + bound;
      if (now == 0) now = mono_ns();
      keep = now < due;
      if (keep && (park_due_ns_ == 0 || due < park_due_ns_)) park_due_ns_ = due;
    }
  }
  if (!keep) {
    s.park = -1;
    return false;
  }
  parked_any_ = true;
  return true;
}

// After a round: a ring stopped by a full receiver waits parked on it.
void SwitchCore::park(const Touched &t, ScanRing &s) {
  if (t.block_port < 0) return;
  s.park = t.block_port;
  s.park_rr = t.block_rr;
  s.park_flood = t.block_flood;
  // a lossless sender stops only for a receiver not stalled
  s.park_lossless = ports_[t.port].lossless;
  // the head the stop was decided on (refresh_room read it this round)
  s.park_rel = ports_[t.block_port].rx[t.block_rr].released;
}

int SwitchCore::held_due_ms() {
  std::lock_guard<std::recursive_mutex> g(mu_);
  if (park_due_ns_ == 0) return -1;
  const int64_t left = park_due_ns_ - mono_ns();
  return left <= 0 ? 0 : static_cast<int>((left + 999999) / 1000000);
}

// ---- deliver --------------------------------------------------------------

// The clock is read only here, when a copy found no room: never on a round
// that delivers everything.
// How long a copy for d may wait for room (ns, 0: not at all): the port's
// bound, and for a flood at most the switch's (set_flood_hold_us).
int64_t SwitchCore::hold_bound_ns(const Port *d, bool flood) const {
  if (!flood) return d->hold_cur_ns;
  const int64_t flood_ns = flood_hold_ns_.load(std::memory_order_relaxed);
  return flood_ns == 0 ? 0 : std::min(d->hold_cur_ns, flood_ns);
}

void SwitchCore::shorten_hold(Port *d, int64_t now) {
  if (d->hold_level >= SWITCH_HOLD_LEVELS) return;
  d->hold_level++;
  d->hold_level_ns = now;
  d->hold_cur_ns = d->hold_level == SWITCH_HOLD_LEVELS ? 0 : d->hold_ns >> d->hold_level;
  d->c[C_HOLD_SHORTENED]++;
}

// Not on a fast hold: a receiver alternating fast and slow holds would win
// back at once what each slow one cost it. By time, a hostile receiver at
// the bottom holds its senders at most hold_ns >> (SWITCH_HOLD_LEVELS - 1)
// per hold_ns (one level back, shed again).
void SwitchCore::relax_hold(Port *d, int64_t now) {
  const int64_t since = now - d->hold_level_ns;
  if (since < d->hold_ns) return;
  const int64_t back = since / d->hold_ns;
  d->hold_level = back >= d->hold_level ? 0 : static_cast<uint8_t>(d->hold_level - back);
  d->hold_level_ns += back * d->hold_ns;
  d->hold_cur_ns = d->hold_ns >> d->hold_level;
}

bool SwitchCore::hold_back(Port *d, bool flood) {
  if (d->hold_ns == 0 || !d->attached || d->shed) return false;
  int64_t bound = hold_bound_ns(d, flood);
  if (bound == 0 && d->hold_level == 0) return false;  // floods never wait (flood bound 0)
  const int64_t now = mono_ns();
  if (d->hold_level) {
    relax_hold(d, now);
    bound = hold_bound_ns(d, flood);
    if (bound == 0) return false;  // shortened down to dropping at once
  }
  // no sender held back by it for a whole bound: the last hold ended with
  // the traffic (the receiver took what there was), not with a quantum
  // released; this full ring starts a new one. A receiver trickling slots
  // has a sender parked on it all along (still_parked sees it each round).
  if (d->full_since_ns != 0 && now - d->held_seen_ns > d->hold_ns) d->full_since_ns = 0;
  if (now - d->held_seen_ns > d->hold_ns / SWITCH_HOLD_SLOW_DIV) d->hold_from_ns = now;
  d->held_seen_ns = now;
  if (d->full_since_ns == 0) {
    d->full_since_ns = now;
    d->hold_from_ns = now;
    d->hold_freed = 0;
    return true;
  }
  const int64_t waited = now - d->full_since_ns;
  // a flood past its bound drops its copy, and so every later flood's
  // until the clock restarts (a quantum released); the port is shed only
  // past its own bound
  if (waited < d->hold_cur_ns) return waited < bound;
  // not a quantum released in the whole bound: stop waiting for it until it
  // releases one, and wait less next time
  d->shed = true;
  d->full_since_ns = 0;
  d->hold_freed = 0;
  shorten_hold(d, now);
  return false;
}

uint32_t *SwitchCore::room(uint32_t d, uint32_t rr) {
  const uint32_t k = d * MAX_RINGS + rr;
  if (room_gen_[k] != gen_) {
    room_gen_[k] = gen_;
    room_[k] = 0;
  }
  return &room_[k];
}

// Reads the client's rx head (validated) and computes the room in ring rr.
bool SwitchCore::refresh_room(Port *d, uint32_t rr, uint32_t *room) {
  RxState &st = d->rx[rr];
  const uint32_t N = d->layout.p.rx_slots;
  uint32_t rel = load_acquire(&d->atok(d->layout.p.tx_rings + rr)->head);
  uint32_t &bad = d->bad_head[d->layout.p.tx_rings + rr];
  if (!st.head_ok(rel, N)) {
    if (bad != rel) d->c[C_BAD_HEAD]++;
    bad = rel;
    rel = st.released;
  }
  if (rel != st.released) {
    // a stalled receiver is waited for again once it has taken a quantum
    // (the stall rule's rate, stall-watch.ts), not at any one slot: else a
    // receiver taking a slot just after each stall would hold a lossless
    // sender, and its floods, a whole stall bound per frame
    if (d->stalled) {
      d->stall_freed += ring_dist(rel, st.released, N);
      if (d->stall_freed >= SWITCH_HOLD_QUANTUM) d->stalled = false;
    }
    // bounded backpressure wants a rate: the hold clock restarts (and a
    // shed port is waited for again) only once SWITCH_HOLD_QUANTUM slots
    // were released since it started, not at any one slot, which would let
    // a receiver freeing a slot per bound hold its senders and every flood
    // on the switch to that pace
    if (d->full_since_ns != 0 || d->shed) {
      d->hold_freed += ring_dist(rel, st.released, N);
      if (d->hold_freed >= SWITCH_HOLD_QUANTUM) {
        // a hold (not a shed, which shortened already) that kept a sender
        // waiting more than a quarter of the bound for its quantum: up to
        // the last time one was seen held, not the clock (not read here),
        // from the last gap (hold_from_ns), so a pause does not count
        if (d->full_since_ns != 0 && d->held_seen_ns - d->hold_from_ns > d->hold_ns / SWITCH_HOLD_SLOW_DIV)
          shorten_hold(d, d->held_seen_ns);
        d->shed = false;
        d->full_since_ns = 0;
        d->hold_freed = 0;
      }
    }
  }
  st.released = rel;
  *room = ring_dist(rel == 0 ? N - 1 : rel - 1, st.hwtail, N);
  // slots kept for this round's direct sends (take_direct) are not free:
  // else a round taking more than the ring holds would, should the kernel
  // push them all back, place them past the client's head
  if (rr == 0 && d->direct_slots) *room = *room > d->direct_slots ? *room - d->direct_slots : 0;
  return *room > 0;
}

void SwitchCore::copy_out(uint32_t k, uint32_t off, uint32_t n, uint8_t *out) const {
  const Port *p = &ports_[src_[k]];
  const uint32_t ov0 = hoff_[k], ov1 = ov0 + lens_[k];
  const uint8_t *snap = &hdr_[static_cast<size_t>(k) * stride_];
  const uint32_t fend = fstart_[k] + fcount_[k];
  uint32_t f = fstart_[k], fpos = 0;
  while (n > 0 && f < fend) {
    const uint32_t fl = flen_[f];
    if (off >= fpos + fl) {
      fpos += fl;
      f++;
      continue;
    }
    uint32_t take = std::min(n, fpos + fl - off);
    const uint8_t *from = p->buf(fidx_[f]) + (off - fpos);
    if (off < ov1 && off + take > ov0) {
      if (off < ov0) {
        take = ov0 - off;  // the client's bytes up to the snapshot
      } else {
        take = std::min(take, ov1 - off);
        from = snap + (off - ov0);
      }
    }
    std::memcpy(out, from, take);
    out += take;
    off += take;
    n -= take;
  }
}

void SwitchCore::prepare_offload(uint32_t k) {
  if (off_k_ == k && off_gen_ == gen_) return;
  off_k_ = k;
  off_gen_ = gen_;
  const uint32_t hs = hoff_[k];
  copy_out(k, 0, hs, off_hdr_);
  const VnetHdr h = vnet_hdr_read(off_hdr_);
  const bool gso = (h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN)) != VNET_GSO_NONE;
  off_work_ = gso || (h.flags & VNET_F_NEEDS_CSUM);
  off_err_ = 0;
  off_segs_ = 0;
  off_len_ = ftotal_[k] - hs;
  if (!off_work_) return;
  // the frame, once, out of the client's reach: offsets in the header are
  // checked against this copy, which nobody else can change meanwhile
  copy_out(k, hs, off_len_, scratch_.get());
  if (gso) {
    off_segs_ = gso_segment_count(h, scratch_.get(), off_len_);
    if (off_segs_ == 0) off_err_ = static_cast<uint8_t>(OffloadError::BadHeaders);
  } else {
    off_err_ = static_cast<uint8_t>(complete_csum(h, scratch_.get(), off_len_));
  }
}

uint32_t SwitchCore::slots_needed(uint32_t k, const Port *d) {
  const uint32_t hs = hoff_[k], hd = d->vnet, bs = d->slot_fill();
  if (hs == hd) return fcount_[k];
  if (hs > 0 && hd == 0) {
    prepare_offload(k);
    if (off_err_) return 0;
    if (off_segs_) return off_segs_;
  }
  return static_cast<uint32_t>((hd + ftotal_[k] - hs + bs - 1) / bs);
}

namespace {
// Segments of a GSO frame written straight into a receiver's rx slots, whose
// buffers were checked beforehand.
class RxSlotSink final : public SegmentSink {
 public:
  RxSlotSink(uint8_t *const *bufs, uint32_t n, uint16_t *lens) : bufs_(bufs), n_(n), lens_(lens) {}
  uint8_t *next(size_t len) override {
    if (used_ == n_) return nullptr;
    lens_[used_] = static_cast<uint16_t>(len);
    return bufs_[used_++];
  }
  uint32_t used() const { return used_; }

 private:
  uint8_t *const *bufs_;
  uint32_t n_;
  uint16_t *lens_;
  uint32_t used_ = 0;
};
}  // namespace

// A copy between ports whose virtio-net header lengths differ.
bool SwitchCore::deliver_converted(Port *d, uint32_t rr, uint32_t k, uint32_t *room) {
  const uint32_t hs = hoff_[k], hd = d->vnet, bs = d->slot_fill();
  if (ftotal_[k] < hs) {
    // shorter than its own virtio-net header (a runt, which only a /t
    // monitor is sent): no header to convert, no frame after it
    d->c[C_DROP_BAD_VNET]++;
    return true;
  }
  bool offload = false;
  if (hs > 0 && hd == 0) {
    prepare_offload(k);
    if (off_err_) {
      d->c[off_err_ == static_cast<uint8_t>(OffloadError::SegmentTooLong) ? C_DROP_OVERSIZE : C_DROP_BAD_VNET]++;
      return true;
    }
    offload = off_work_;
  }
  const bool segmenting = offload && off_segs_ > 0;
  const uint32_t need = slots_needed(k, d);
  // a chain is at most NETMAP_MAX_FRAGS slots; segments, each a frame, at
  // most what the ring can ever hold
  if ((!segmenting && need > NETMAP_MAX_FRAGS) || need >= d->layout.p.rx_slots) {
    d->c[C_DROP_OVERSIZE]++;
    return true;
  }
  if (*room < need) {
    refresh_room(d, rr, room);
    if (*room < need) return false;
  }
  RxState &st = d->rx[rr];
  const uint32_t N = d->layout.p.rx_slots;
  netmap_slot *rs = ring_slots(d->ring(d->layout.p.tx_rings + rr));
  // GSO copies may take more slots than a chain; at most a ring's worth
  std::vector<uint8_t *> &to = conv_bufs_;
  std::vector<uint16_t> &lens = conv_lens_;
  to.resize(need);
  lens.resize(need);
  for (uint32_t f = 0, j = st.hwtail; f < need; f++, j = ring_next(j, N)) {
    const uint32_t idx = rs[j].buf_idx;
    if (!d->buf_ok(idx)) {
      d->c[C_DROP_INVALID]++;  // the client broke its own rx slot
      return true;
    }
    to[f] = d->buf(idx);
  }
  uint64_t bytes = 0;
  uint32_t frames = 1;
  bool chain = true;
  if (segmenting) {
    RxSlotSink sink(to.data(), need, lens.data());
    SegmentResult r = gso_segment(vnet_hdr_read(off_hdr_), scratch_.get(), off_len_, bs, sink);
    if (r.err != OffloadError::None) {
      d->c[r.err == OffloadError::SegmentTooLong ? C_DROP_OVERSIZE : C_DROP_BAD_VNET]++;
      return true;
    }
    frames = r.segments;
    chain = false;
    for (uint32_t f = 0; f < frames; f++) bytes += lens[f];
    d->c[C_VNET_SEGMENTED]++;
    d->c[C_VNET_SEGMENTS] += frames;
  } else {
    // header (the sender's, trimmed or zero-extended) then the frame,
    // filling each slot before the next
    uint8_t hdr[12] = {};
    if (hs > 0 && hd > 0) {
      copy_out(k, 0, std::min(hs, hd), hdr);
      if (hd == 12) hdr[10] = 1;  // num_buffers: the frame is in one piece
    }
    const uint32_t body = ftotal_[k] - hs;
    const uint8_t *flat = offload ? scratch_.get() : nullptr;  // checksummed already
    uint32_t done = 0;
    for (uint32_t f = 0; f < need; f++) {
      uint32_t put = 0;
      if (f == 0 && hd > 0) {
        std::memcpy(to[0], hdr, hd);
        put = hd;
      }
      const uint32_t take = std::min(bs - put, body - done);
      if (flat) std::memcpy(to[f] + put, flat + done, take);
      else copy_out(k, hs + done, take, to[f] + put);
      done += take;
      lens[f] = static_cast<uint16_t>(put + take);
    }
    bytes = hd + body;
    if (offload) d->c[C_VNET_CSUM]++;
  }
  const uint32_t used = chain ? need : frames;
  for (uint32_t f = 0; f < used; f++) {
    netmap_slot *slot = &rs[st.hwtail];
    slot->len = lens[f];
    slot->flags = chain && f + 1 < used ? NS_MOREFRAG : 0;
    st.hwtail = ring_next(st.hwtail, N);
  }
  *room -= used;
  if (!d->any_dirty) {
    d->any_dirty = true;
    dirty_.push_back(static_cast<uint32_t>(d - ports_.get()));
  }
  d->rx_dirty[rr] = true;
  d->c[C_TX_FRAMES] += frames;
  d->c[C_TX_BYTES] += bytes;
  // a monitor sees the frame as it was sent (its own header length is 0: a
  // header-carrying frame reaches it completed or segmented, like any
  // header-less port)
  if (__builtin_expect(!d->mon_rx.empty(), 0)) mirror(d->mon_rx, k);
  return true;
}

// One copy of batch frame k into port d's rx ring rr, one rx slot per
// fragment, the snapshot's bytes in place of the client's. False when there
// is no room for all of them.
bool SwitchCore::deliver(Port *d, uint32_t rr, uint32_t k, uint32_t *room) {
  // taken for a direct send: counted once its fate is known (flush_direct),
  // as sent or as put into the ring, never also as a drop
  if (d->direct && take_direct(d, rr, k, room)) return true;
  if (hoff_[k] != d->vnet) return deliver_converted(d, rr, k, room);
  const uint32_t frags = fcount_[k];
  if (frags >= d->layout.p.rx_slots) {
    // more slots than the ring can ever have free: waiting for room would
    // hold the sender (a lossless one for good) and shed the receiver
    d->c[C_DROP_OVERSIZE]++;
    return true;
  }
  if (*room < frags) {
    refresh_room(d, rr, room);
    if (*room < frags) return false;
  }
  if (!place(d, rr, k)) return true;
  *room -= frags;
  count_delivered(d, k);
  return true;
}

void SwitchCore::prefetch_rx(const Port *d, const RxState &st, const netmap_slot *rs, uint32_t N) {
  // the next copies' buffers, loading while this one is written
  const uint32_t ai = rs[ahead_slot(st.hwtail, N)].buf_idx;
  if (d->buf_ok(ai)) __builtin_prefetch(d->buf(ai), 1);
}

bool SwitchCore::place_small(Port *d, RxState &st, netmap_slot *rs, uint32_t N, uint32_t k) {
  prefetch_rx(d, st, rs, N);
  netmap_slot *slot = &rs[st.hwtail];
  const uint32_t idx = slot->buf_idx;
  const uint16_t len = lens_[k];
  if (!d->buf_ok(idx)) {
    d->c[C_DROP_INVALID]++;  // the client broke its own rx slot
    return false;
  }
  if (len > d->layout.p.buf_size) {
    d->c[C_DROP_OVERSIZE]++;
    return false;
  }
  copy_frame(d->buf(idx), &hdr_[static_cast<size_t>(k) * stride_], len);
  slot->len = len;
  slot->flags = 0;
  st.hwtail = ring_next(st.hwtail, N);
  return true;
}

void SwitchCore::mark_dirty(Port *d, uint32_t rr) {
  if (!d->any_dirty) {
    d->any_dirty = true;
    dirty_.push_back(static_cast<uint32_t>(d - ports_.get()));
  }
  d->rx_dirty[rr] = true;
}

bool SwitchCore::place(Port *d, uint32_t rr, uint32_t k) {
  const uint32_t frags = fcount_[k], f0 = fstart_[k];
  RxState &st = d->rx[rr];
  const uint32_t N = d->layout.p.rx_slots;
  netmap_slot *rs = ring_slots(d->ring(d->layout.p.tx_rings + rr));
  if (is_small(k)) {
    // one slot, all of it in the snapshot (a frame up to the header size
    // without a virtio-net header): one small copy, no walk over fragments
    if (!place_small(d, st, rs, N, k)) return false;
  } else {
    prefetch_rx(d, st, rs, N);
    uint32_t dst_idx[NETMAP_MAX_FRAGS];
    for (uint32_t f = 0, j = st.hwtail; f < frags; f++, j = ring_next(j, N)) {
      dst_idx[f] = rs[j].buf_idx;
      if (!d->buf_ok(dst_idx[f])) {
        // the client broke its own rx slot: the copy is lost, counted there
        d->c[C_DROP_INVALID]++;
        return false;
      }
      if (flen_[f0 + f] > d->layout.p.buf_size) {
        d->c[C_DROP_OVERSIZE]++;
        return false;
      }
    }
    if (frags == 1 && hoff_[k] == 0) {
      // one slot longer than the snapshot (a big frame): the whole frame in
      // one copy from the client's buffer, then the snapshot over its start,
      // so the bytes delivered are still the ones the decision read. One
      // long aligned copy and a short one, against copy_out's walk and two
      // copies (the snapshot's, then the rest from an offset): 1514 B 1->1
      // 110-116 -> 102-105 ns per frame (bench/RESULTS.md, session 10)
      uint8_t *out = d->buf(dst_idx[0]);
      std::memcpy(out, ports_[src_[k]].buf(fidx_[f0]), flen_[f0]);
      copy_frame(out, &hdr_[static_cast<size_t>(k) * stride_], lens_[k]);
      netmap_slot *slot = &rs[st.hwtail];
      slot->len = flen_[f0];
      slot->flags = 0;
      st.hwtail = ring_next(st.hwtail, N);
    } else {
      for (uint32_t f = 0, pos = 0; f < frags; f++) {
        netmap_slot *slot = &rs[st.hwtail];
        const uint16_t len = flen_[f0 + f];
        copy_out(k, pos, len, d->buf(dst_idx[f]));
        pos += len;
        slot->len = len;
        slot->flags = f + 1 < frags ? NS_MOREFRAG : 0;
        st.hwtail = ring_next(st.hwtail, N);
      }
    }
  }
  mark_dirty(d, rr);
  return true;
}

void SwitchCore::count_delivered(Port *d, uint32_t k) {
  count_delivered_run(d, 1, ftotal_[k]);
  // what d receives, to its monitors (/r): the one test an unwatched port pays
  if (__builtin_expect(!d->mon_rx.empty(), 0)) mirror(d->mon_rx, k);
}

void SwitchCore::count_delivered_run(Port *d, uint32_t frames, uint64_t bytes) {
  d->c[C_TX_FRAMES] += frames;
  d->c[C_TX_BYTES] += bytes;
  if (d->vnet) d->c[C_VNET_PASSED] += frames;
}

uint32_t SwitchCore::place_run(Port *d, uint32_t rr, uint32_t k, uint32_t m, uint32_t *room) {
  RxState &st = d->rx[rr];
  netmap_slot *const rs = ring_slots(d->ring(d->layout.p.tx_rings + rr));
  const uint32_t N = d->layout.p.rx_slots;
  uint32_t delivered = 0, slots = 0;
  uint64_t bytes = 0;
  for (uint32_t j = k; j < k + m; j++) {
    // a broken rx slot: that copy is lost, counted by place()
    if (!(is_small(j) ? place_small(d, st, rs, N, j) : place(d, rr, j))) continue;
    delivered++;
    slots += fcount_[j];
    bytes += ftotal_[j];
  }
  *room -= slots;
  if (delivered) mark_dirty(d, rr);
  count_delivered_run(d, delivered, bytes);
  return delivered;
}


void SwitchCore::direct_begin(Port *d, uint32_t rr, uint32_t *room) {
  if (d->direct_gen == gen_) return;
  // the round's first frame for d: direct only while nothing waits in its
  // rx ring (frames sent now must not overtake those)
  RxState &st = d->rx[rr];
  d->direct_gen = gen_;
  refresh_room(d, rr, room);
  d->direct_open = rr == 0 && st.hwtail == st.released && d->direct->direct_wanted();
}

void SwitchCore::append_direct(Port *d, uint32_t k, uint32_t *room) {
  if (d->direct_q.empty()) direct_ports_.push_back(static_cast<uint32_t>(d - ports_.get()));
  // frame k's bytes as copy_out would copy them, as iovecs built now (the
  // frame's arrays are hot): the client's buffers, the decision's
  // snapshot where it covers them
  std::vector<iovec> &iov = d->direct_iov;
  d->direct_at.push_back(static_cast<uint32_t>(iov.size()));
  const Port *p = &ports_[src_[k]];
  const uint32_t frags = fcount_[k], f0 = fstart_[k];
  const uint32_t ov0 = hoff_[k], ov1 = ov0 + lens_[k];
  uint8_t *const snap = &hdr_[static_cast<size_t>(k) * stride_];
  for (uint32_t f = f0, fend = f0 + frags, pos = 0; f < fend; pos += flen_[f], f++) {
    uint8_t *b = p->buf(fidx_[f]);
    const uint32_t lo = pos, hi = pos + flen_[f];
    if (hi <= ov0 || lo >= ov1) {
      if (hi > lo) iov.push_back(iovec{b, hi - lo});
      continue;
    }
    // the snapshot [ov0, ov1) lies in this fragment's range at most once
    // over the whole frame: its bytes replace the client's there
    if (lo < ov0) iov.push_back(iovec{b, ov0 - lo});
    const uint32_t s0 = std::max(lo, ov0), s1 = std::min(hi, ov1);
    iov.push_back(iovec{snap + (s0 - ov0), s1 - s0});
    if (hi > ov1) iov.push_back(iovec{b + (ov1 - lo), hi - ov1});
  }
  d->direct_q.push_back(k);
  d->direct_slots += frags;
  *room -= frags;
  // a full batch leaves now: the sink's fixed cost per call is spread, and
  // its iovecs stay bounded
  if (d->direct_q.size() >= kDirectBatch || iov.size() > kDirectBatch * 2) flush_direct(d, 0);
}

bool SwitchCore::direct_fits(Port *d, uint32_t rr, uint32_t k, uint32_t *room) {
  const uint32_t frags = fcount_[k], f0 = fstart_[k];
  // (ring 0 only: flush_direct puts push-backs there)
  bool ok = d->direct_open && rr == 0 && hoff_[k] == d->vnet && frags < d->layout.p.rx_slots;
  if (ok && *room < frags) refresh_room(d, rr, room);
  ok = ok && *room >= frags;
  // the slots it keeps must take the frame should the kernel push it back:
  // each fragment fits a buffer. Whether a kept slot's buffer index is
  // sound is place()'s to check then, as for any copy (a broken one makes
  // the pushed-back frame dropInvalid, as it would have made the copy)
  for (uint32_t f = 0; ok && f < frags; f++) ok = flen_[f0 + f] <= d->layout.p.buf_size;
  return ok;
}

bool SwitchCore::take_direct(Port *d, uint32_t rr, uint32_t k, uint32_t *room) {
  direct_begin(d, rr, room);
  if (!direct_fits(d, rr, k, room)) {
    // this frame goes into the ring (or is dropped or held): those taken
    // before it go first, and no later one may pass it
    if (!d->direct_q.empty()) flush_direct(d, 0);  // they were all taken for ring 0
    d->direct_open = false;
    return false;
  }
  append_direct(d, k, room);
  return true;
}

uint32_t SwitchCore::forward_run(Touched &t, Port *p, uint32_t k, uint32_t n) {
  const int16_t dst = dests_[k];
  uint32_t d;
  if (dst >= 0) {
    d = static_cast<uint32_t>(dst);
    if (d == t.port || d >= SWITCH_MAX_PORTS || !ports_[d].used || ports_[d].is_monitor) return 0;
  } else if (dst == DEST_FLOOD && !t.no_flood_run) {
    flood_list(t);
    if (t.f1 - t.f0 != 1) return flood_run(t, p, k, n);
    d = flood_dests_[t.f0].id;
  } else {
    return 0;
  }
  Port *dp = &ports_[d];
  // monitors' copies (either end) are the frame-by-frame way's
  if (!p->mon_tx.empty() || !dp->mon_rx.empty()) return 0;
  const uint32_t rr = dest_ring(t.ring, dp->layout.p.rx_rings);
  uint32_t *const rm = room(d, rr);
  const uint16_t ti = touch_of_[k];
  const uint32_t N = dp->layout.p.rx_slots;
  uint32_t m = 0;
  uint64_t bytes = 0;
  // each frame as deliver() would take it; the first that it would not
  // copy or send at once (no room: held or dropped; a header to convert;
  // a chain longer than the ring; a push-back), a runt, or one from another
  // ring or for another destination ends the run, and goes the
  // frame-by-frame way
  auto more = [&](uint32_t j) { return j < n && dests_[j] == dst && touch_of_[j] == ti && lens_[j] >= SWITCH_MIN_HEADER; };
  if (dp->direct) {
    if (rr != 0) return 0;  // take_direct's: push-backs go to ring 0
    direct_begin(dp, rr, rm);
  }
  // (closed: deliver() would copy each into the ring, as for any port; the
  // frames taken for a send were flushed when it closed)
  if (dp->direct && !dp->direct_open && !dp->direct_q.empty()) return 0;
  if (dp->direct && dp->direct_open) {
    // (direct_fits also ends it when a flush's push-back closed the port)
    for (uint32_t j = k; more(j) && direct_fits(dp, rr, j, rm); j++) {
      bytes += ftotal_[j];
      m++;
      append_direct(dp, j, rm);  // counted as delivered when sent (flush_direct)
    }
  } else {
    // as many as fit the room now, then placed in one go
    uint32_t need = 0;
    for (uint32_t j = k; more(j); j++) {
      const uint32_t frags = fcount_[j];
      if (hoff_[j] != dp->vnet || frags >= N) break;
      if (*rm < need + frags && (refresh_room(dp, rr, rm), *rm < need + frags)) break;
      need += frags;
      bytes += ftotal_[j];
      m++;
    }
    place_run(dp, rr, k, m, rm);
  }
  // what forward() and flood() (with its one copy) count per frame
  if (m) {
    if (dst == DEST_FLOOD) {
      p->c[C_FLOODED] += m;
      p->c[C_FLOOD_COPIES] += m;
    }
    p->c[C_RX_FRAMES] += m;
    p->c[C_RX_BYTES] += bytes;
  }
  return m;
}

uint32_t SwitchCore::flood_run(Touched &t, Port *p, uint32_t k, uint32_t n) {
  const FloodDest *const fb = flood_dests_.data() + t.f0, *const fe = flood_dests_.data() + t.f1;
  // what only the frame-by-frame way does: no other port (dropNoPort),
  // monitors' copies, a DirectSink's send, a header to convert, a ring too
  // small for one slot. The list stands for the round: so does the answer
  bool ok = fb != fe && p->mon_tx.empty();
  for (const FloodDest *f = fb; ok && f != fe; f++)
    ok = !f->dp->direct && f->dp->mon_rx.empty() && f->dp->vnet == p->vnet && f->dp->layout.p.rx_slots > 1;
  if (!ok) {
    t.no_flood_run = true;
    return 0;
  }
  // all or nothing, as flood(): at most as many as every port has room for
  // now. A port without room, which may hold the sender or lose its copy,
  // makes the rest of the round the frame-by-frame way's (and the scan
  // below is bounded by the room, not the batch: a receiver freeing a few
  // slots at a time costs a few frames' scan per run)
  uint32_t cap = n - k;
  for (const FloodDest *f = fb; cap && f != fe; f++) {
    if (*f->room < cap) refresh_room(f->dp, f->rr, f->room);
    cap = std::min(cap, *f->room);
  }
  // the run: one-slot frames flooded from t's ring
  const uint16_t ti = touch_of_[k];
  uint32_t m = 0;
  for (uint32_t j = k; m < cap && dests_[j] == DEST_FLOOD && touch_of_[j] == ti && lens_[j] >= SWITCH_MIN_HEADER && fcount_[j] == 1; j++) m++;
  if (m == 0) {
    if (cap == 0) t.no_flood_run = true;
    return 0;
  }
  uint64_t bytes = 0;
  for (uint32_t j = k; j < k + m; j++) bytes += ftotal_[j];
  // port by port: each gets the run's copies in order, as frame by frame
  for (const FloodDest *f = fb; f != fe; f++) place_run(f->dp, f->rr, k, m, f->room);
  p->c[C_FLOODED] += m;
  p->c[C_FLOOD_COPIES] += static_cast<uint64_t>(m) * static_cast<uint64_t>(fe - fb);
  p->c[C_RX_FRAMES] += m;
  p->c[C_RX_BYTES] += bytes;
  return m;
}

void SwitchCore::flush_direct(Port *d, uint32_t rr) {
  uint32_t *rm = room(static_cast<uint32_t>(d - ports_.get()), rr);
  const std::vector<uint32_t> &q = d->direct_q;
  const uint32_t m = static_cast<uint32_t>(q.size());
  d->direct_at.push_back(static_cast<uint32_t>(d->direct_iov.size()));
  const uint32_t done = std::min(d->direct->send_direct(d->direct_iov.data(), d->direct_at.data(), m), m);
  // sent: their kept slots are free again, and they count as delivered
  uint32_t slots = 0;
  if (__builtin_expect(d->mon_rx.empty(), 1)) {
    uint64_t bytes = 0;
    for (uint32_t j = 0; j < done; j++) {
      slots += fcount_[q[j]];
      bytes += ftotal_[q[j]];
    }
    count_delivered_run(d, done, bytes);
  } else {
    for (uint32_t j = 0; j < done; j++) {
      slots += fcount_[q[j]];
      count_delivered(d, q[j]);
    }
  }
  *rm += slots;
  d->direct_slots -= slots;
  // pushed back: into the ring, in order, in the slots kept for them (no
  // later frame of the round may go direct past them). A kept slot the
  // client broke since counts the frame there (dropInvalid), not as delivered
  for (uint32_t j = done; j < m; j++) {
    if (place(d, rr, q[j])) count_delivered(d, q[j]);
    d->direct_slots -= fcount_[q[j]];
  }
  if (done < m) d->direct_open = false;
  d->direct_q.clear();
  d->direct_iov.clear();
  d->direct_at.clear();
  d->direct_slots = 0;
}

// A copy of batch frame k into each monitor's ring; a full ring drops the
// copy (dropMonitor): a monitor never holds anything back.
void SwitchCore::mirror(const std::vector<Port::MonitorRef> &mons, uint32_t k) {
  for (const Port::MonitorRef &m : mons) {
    Port *mp = &ports_[m.id];
    if (!deliver(mp, m.ring, k, room(m.id, m.ring))) mp->c[C_DROP_MONITOR]++;
  }
}

// All or nothing: a flood is never delivered twice. A lossless sender waits
// for every attached receiver not declared stalled; any other sender for the
// receivers whose bounded backpressure holds it (a receiver whose bound ran
// out is shed and no longer waited for). The destinations (every other port,
// with its rx ring and room cache entry) are listed once per source ring and
// round; per frame and port the check is a few loads and a compare, and a
// receiver with room enough costs no read of its ring.
void SwitchCore::flood_list(Touched &t) {
  if (t.f0 != UINT32_MAX) return;
  t.f0 = static_cast<uint32_t>(flood_dests_.size());
  for (uint32_t d : active_) {
    if (d == t.port) continue;
    Port *dp = &ports_[d];
    const uint32_t rr = dest_ring(t.ring, dp->layout.p.rx_rings);
    flood_dests_.push_back(FloodDest{dp, room(d, rr), d, rr});
  }
  t.f1 = static_cast<uint32_t>(flood_dests_.size());
}

bool SwitchCore::flood(Touched &t, Port *p, uint32_t k) {
  flood_list(t);
  const FloodDest *const fb = flood_dests_.data() + t.f0, *const fe = flood_dests_.data() + t.f1;
  for (const FloodDest *f = fb; f != fe; f++) {
    Port *dp = f->dp;
    if (!dp->attached) continue;
    // ports that would not hold it back cost no room check here
    if (p->lossless ? dp->stalled : (dp->hold_ns == 0 || dp->shed)) continue;
    const uint32_t need = hoff_[k] == dp->vnet ? fcount_[k] : slots_needed(k, dp);
    // a copy that can never fit is dropped (dropOversize) below, not waited for
    if (*f->room >= need || need >= dp->layout.p.rx_slots) continue;
    refresh_room(dp, f->rr, f->room);
    if (*f->room < need && (p->lossless ? !dp->stalled : hold_back(dp, true))) {
      if (p->lossless) blocked_on_ = static_cast<int32_t>(f->id);
      t.block_port = static_cast<int16_t>(f->id);
      t.block_rr = static_cast<uint8_t>(f->rr);
      t.block_flood = true;
      return false;
    }
  }
  if (fb == fe) {
    // nobody else on the switch: the frame goes nowhere, and says so
    p->c[C_DROP_NO_PORT]++;
    return true;
  }
  p->c[C_FLOODED]++;
  p->c[C_FLOOD_COPIES] += static_cast<uint64_t>(fe - fb);
  for (const FloodDest *f = fb; f != fe; f++) {
    Port *dp = f->dp;
    if (!deliver(dp, f->rr, k, f->room)) dp->c[dp->stalled && p->lossless ? C_DROP_STALLED : C_DROP_NO_SPACE]++;
  }
  return true;
}

// Delivers the batch by dests[], in batch order (so per source ring order is
// kept), then advances and publishes each source ring that had something and
// each destination rx ring that got something, once.
void SwitchCore::forward(uint32_t n, RoundResult *res) {
  gen_++;
  if (gen_ == 0) {  // wrapped: forget every cached room, and the offload copy
    std::fill(room_gen_.get(), room_gen_.get() + SWITCH_MAX_PORTS * MAX_RINGS, 0u);
    gen_ = 1;
    off_k_ = UINT32_MAX;  // else a frame of round 1, 2^32 rounds ago, could pass for this one
    for (uint32_t i = 0; i < SWITCH_MAX_PORTS; i++) ports_[i].direct_gen = 0;  // likewise a direct_open of then
  }
  flood_dests_.clear();
  for (uint32_t k = 0; k < n; k++) {
    Touched &t = touched_[touch_of_[k]];
    if (t.stopped) continue;  // its ring is waiting for room: taken again next round
    Port *p = &ports_[t.port];
    {
      // a run of frames for one port, taken in one loop (forward_run)
      const int16_t dk = dests_[k];
      if (dk == DEST_FLOOD ? !t.no_flood_run : dk >= 0) {
        if (const uint32_t m = forward_run(t, p, k, n)) {
          res->moved += m;
          k += m - 1;
          continue;
        }
      }
    }
    const uint32_t src_id = t.port;
    const uint32_t r = t.ring;
    const int16_t dst = dests_[k];
    const uint32_t len = ftotal_[k];
    if (lens_[k] < 14) {
      p->c[C_DROP_RUNT]++;
    } else if (dst >= 0) {
      const uint32_t d = static_cast<uint32_t>(dst);
      if (d == src_id) {
        p->c[C_DROP_SAME_PORT]++;
      } else if (d >= SWITCH_MAX_PORTS || !ports_[d].used || ports_[d].is_monitor) {
        p->c[C_DROP_NO_PORT]++;
      } else {
        Port *dp = &ports_[d];
        const uint32_t rr = dest_ring(r, dp->layout.p.rx_rings);
        if (!deliver(dp, rr, k, room(d, rr))) {
          if (p->lossless && dp->attached && !dp->stalled) {
            t.stopped = true;
            t.stop_slot = slot_of_[k];
            t.block_port = static_cast<int16_t>(d);
            t.block_rr = static_cast<uint8_t>(rr);
            res->blocked = true;
            blocked_on_ = static_cast<int32_t>(d);
            continue;
          }
          // bounded backpressure: the frame and those behind it in its
          // ring wait for the next rounds (other rings go on)
          if (!p->lossless && hold_back(dp, false)) {
            t.stopped = true;
            t.stop_slot = slot_of_[k];
            t.block_port = static_cast<int16_t>(d);
            t.block_rr = static_cast<uint8_t>(rr);
            res->blocked = true;
            continue;
          }
          dp->c[dp->stalled ? C_DROP_STALLED : C_DROP_NO_SPACE]++;
        }
      }
    } else if (dst == DEST_FLOOD) {
      if (!flood(t, p, k)) {
        t.stopped = true;
        t.stop_slot = slot_of_[k];
        res->blocked = true;
        continue;
      }
    } else if (dst == DEST_SAME_PORT) {
      p->c[C_DROP_SAME_PORT]++;
    } else {
      p->c[C_DROP_LOOKUP]++;
    }
    // what p sent, to its monitors (/t), once per frame taken
    if (__builtin_expect(!p->mon_tx.empty(), 0)) mirror(p->mon_tx, k);
    p->c[C_RX_FRAMES]++;
    p->c[C_RX_BYTES] += len;
    res->moved++;
  }
  // frames taken for a direct send leave now, while the senders' slots
  // they are read from are still the switch's
  for (uint32_t id : direct_ports_) {
    Port *d = &ports_[id];
    if (!d->direct_q.empty()) flush_direct(d, 0);
  }
  direct_ports_.clear();
  // advance each source ring: to the end of its scan, or to the frame that
  // could not be delivered (lossless)
  for (const Touched &t : touched_) {
    Port *p = &ports_[t.port];
    const uint32_t N = p->layout.p.tx_slots;
    const uint32_t newcur = t.stopped ? t.stop_slot : t.end;
    if (t.stopped) park(t, scan_[p->scan_at + t.ring]);
    // skipped frames the ring now moves past are counted; those after a
    // lossless stop are scanned again next round and counted then
    const uint32_t passed = ring_dist(newcur, t.start, N);
    for (uint32_t j = t.d0; j < t.d1; j++)
      if (ring_dist(dropped_[j].slot, t.start, N) < passed) p->c[dropped_[j].counter]++;
    // a ring held back at its first frame freed no room: the cursors stand,
    // and a sender sleeping for room would be woken for nothing (once per
    // round while the receiver stays full)
    if (passed == 0) continue;
    p->tx_hwcur[t.ring] = newcur;
    scan_[p->scan_at + t.ring].cur = newcur;
    nm_csb_ktoa *kt = p->ktoa(t.ring);
    store_release(&kt->hwcur, newcur);
    store_release(&kt->hwtail, newcur == 0 ? N - 1 : newcur - 1);
    full_fence();
    nm_csb_atok *a = p->atok(t.ring);
    if (load_relaxed(&a->appl_need_kick) && exchange(&a->appl_need_kick, 0)) kick_client(p);
  }
  touched_.clear();
  publish_rx();
}

void SwitchCore::kick_client(Port *p) {
  // the client holds these bells' files: a stuck one (shared_bell.h) held
  // the switch for one watchdog tick and is not rung again
  if (!p->bell_stuck) {
    if (ring_bell(p->client_bell.get())) {
      p->c[C_KICKS]++;
    } else {
      p->bell_stuck = true;
      p->c[C_BELL_STUCK]++;
    }
  }
  for (int &fd : p->extra_bells)
    if (fd >= 0 && !ring_bell(fd)) {
      fd = -1;
      p->c[C_BELL_STUCK]++;
    }
}

// Publishes new rx tails and wakes receivers that asked for it.
void SwitchCore::publish_rx() {
  for (uint32_t id : dirty_) {
    Port &d = ports_[id];
    d.any_dirty = false;
    bool kick = false;
    for (uint32_t rr = 0; rr < d.layout.p.rx_rings; rr++) {
      if (!d.rx_dirty[rr]) continue;
      d.rx_dirty[rr] = false;
      const uint32_t k = d.layout.p.tx_rings + rr;
      store_release(&d.ktoa(k)->hwtail, d.rx[rr].hwtail);
      full_fence();
      nm_csb_atok *a = d.atok(k);
      if (load_relaxed(&a->appl_need_kick) && exchange(&a->appl_need_kick, 0)) kick = true;
    }
    if (kick) kick_client(&d);
  }
  dirty_.clear();
}

// ---- sleep and wake -------------------------------------------------------

uint32_t SwitchCore::pending_locked() {
  // from the scan array: no Port is read (this runs before every sleep)
  uint32_t n = 0;
  for (const ScanRing &s : scan_) {
    const uint32_t head = load_acquire(s.head);
    if (head == s.partial_head && s.cur == s.partial_at) continue;  // an unfinished chain, nothing else
    if (head < s.slots) n += ring_dist(head, s.cur, s.slots);
  }
  return n;
}

bool SwitchCore::held_room_freed_locked() {
  for (uint32_t id : active_) {
    Port &p = ports_[id];
    if (p.full_since_ns == 0 && static_cast<int32_t>(id) != blocked_on_) continue;
    const uint32_t N = p.layout.p.rx_slots;
    for (uint32_t rr = 0; rr < p.layout.p.rx_rings; rr++) {
      const RxState &st = p.rx[rr];
      const uint32_t rel = load_acquire(&p.atok(p.layout.p.tx_rings + rr)->head);
      // a head the client could not have set legitimately is no progress
      // (else a hostile client would keep the switch awake)
      if (rel != st.released && st.head_ok(rel, N)) return true;
    }
  }
  return false;
}

bool SwitchCore::arm_all(bool rx_too) {
  std::lock_guard<std::recursive_mutex> g(mu_);
  // in-line drivers first: one with work pending keeps the switch awake
  wake_within_ns_.store(0, std::memory_order_relaxed);
  uint64_t within = 0;
  if (!down_ && !unquiet_wait_fds_locked()) return false;
  if (!down_ && !hooks_.empty()) {
    bool idle = true;
    const bool timed = timed_waits_.load(std::memory_order_relaxed);
    for (RoundHook *h : hooks_) {
      h->set_timed_wait(timed);
      idle = h->arm() && idle;
    }
    if (!idle) {
      for (RoundHook *h : hooks_) h->disarm();
      return false;
    }
    for (RoundHook *h : hooks_)
      if (uint64_t w = h->wake_within_ns(); w && (!within || w < within)) within = w;
  }
  for (uint32_t id : active_) {
    Port &p = ports_[id];
    for (uint32_t r = 0; r < p.layout.p.tx_rings; r++) store_release(&p.ktoa(r)->kern_need_kick, 1);
    for (uint32_t rr = 0; rr < p.layout.p.rx_rings; rr++)
      store_release(&p.ktoa(p.layout.p.tx_rings + rr)->kern_need_kick, rx_too ? 1 : 0);
  }
  // the client reads kern_need_kick after publishing: re-check after asking
  full_fence();
  // held frames are pending by definition: what a held-back sleep must
  // re-check is room. A receiver that released its slots between the round
  // and the request above saw no request and will not kick; sleeping now
  // would wait for the guard timer (10 ms) with the ring empty on both ends
  if (rx_too && held_room_freed_locked()) {
    wide_.held_rechecks++;
  } else if (rx_too || pending_locked() == 0) {
    armed_held_ = rx_too;
    armed_ = true;
    wake_within_ns_.store(within, std::memory_order_relaxed);
    return true;
  }
  for (uint32_t id : active_) {
    Port &p = ports_[id];
    for (uint32_t k = 0; k < p.layout.rings_per_if(); k++) store_release(&p.ktoa(k)->kern_need_kick, 0);
  }
  for (RoundHook *h : hooks_) h->disarm();
  return false;
}

void SwitchCore::disarm_all() {
  std::lock_guard<std::recursive_mutex> g(mu_);
  wake_within_ns_.store(0, std::memory_order_relaxed);
  armed_ = false;
  for (uint32_t id : active_) {
    Port &p = ports_[id];
    for (uint32_t k = 0; k < p.layout.rings_per_if(); k++) store_relaxed(&p.ktoa(k)->kern_need_kick, 0);
  }
  // drain only the doorbells that rang: O(rung), not O(ports)
  epoll_event evs[64];
  bool held = armed_held_;
  armed_held_ = false;
  for (;;) {
    int n = epoll_wait(epfd_.get(), evs, 64, 0);
    if (n <= 0) break;
    held = false;  // something rang: not a timeout
    for (int i = 0; i < n; i++) {
      const uint64_t tag = evs[i].data.u64;
      if (tag != NOTIFY_TAG && (tag & WAIT_FD_TAG)) {
        const int wfd = static_cast<int>(tag & 0xffffffffu);
        for (WaitFd &w : wait_fds_)
          if (w.fd == wfd) w.hook->fd_ready(w.fd);
        continue;
      }
      int fd = tag == NOTIFY_TAG ? notify_fd_.get() : tag < SWITCH_MAX_PORTS && ports_[tag].used ? ports_[tag].switch_bell.get() : -1;
      if (fd >= 0 && tag != NOTIFY_TAG && std::find(rang_.begin(), rang_.end(), tag) == rang_.end())
        rang_.push_back(static_cast<uint32_t>(tag));
      // one read empties an eventfd; never a blocking one: the client
      // holds the bell's file and may have cleared O_NONBLOCK on it
      if (fd >= 0) drain_bell(fd);
    }
    if (n < 64) break;
  }
  if (held) wide_.held_timeouts++;
  moved_since_wake_ = 0;
  for (RoundHook *h : hooks_) {
    h->disarm();
    h->woke();
  }
}

Status SwitchCore::add_round_hook(RoundHook *h) {
  std::lock_guard<std::recursive_mutex> g(mu_);
  if (in_round_) return check_fail(EDEADLK, "add_round_hook called from inside a round");
  if (down_) return check_fail(ESHUTDOWN, "the switch is shut down");
  if (std::find(hooks_.begin(), hooks_.end(), h) == hooks_.end()) hooks_.push_back(h);
  return Ok{};
}

void SwitchCore::remove_round_hook(RoundHook *h) {
  std::lock_guard<std::recursive_mutex> g(mu_);
  hooks_.erase(std::remove(hooks_.begin(), hooks_.end(), h), hooks_.end());
  for (auto it = wait_fds_.begin(); it != wait_fds_.end();) {
    if (it->hook == h) {
      if (epfd_ && it->in_set) epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, it->fd, nullptr);
      if (it->off_while_busy && it->in_set) quietable_in_set_--;
      it = wait_fds_.erase(it);
    } else {
      ++it;
    }
  }
}

bool SwitchCore::watch_wait_fd_locked(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = WAIT_FD_TAG | static_cast<uint32_t>(fd);
  return epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

Status SwitchCore::add_wait_fd(RoundHook *h, int fd, bool off_while_busy) {
  std::lock_guard<std::recursive_mutex> g(mu_);
  if (down_ || !epfd_) return check_fail(ESHUTDOWN, "the switch is shut down");
  if (fd < 0) return check_fail(EBADF, "add_wait_fd: bad fd");
  if (!watch_wait_fd_locked(fd)) return sys_fail("epoll_ctl", "an in-line driver's fd");
  wait_fds_.push_back(WaitFd{fd, h, off_while_busy, true});
  if (off_while_busy) quietable_in_set_++;
  return Ok{};
}

void SwitchCore::quiet_wait_fds_locked() {
  bool any = false;
  for (WaitFd &w : wait_fds_) {
    if (!w.off_while_busy || !w.in_set) continue;
    // ENOENT: not in the set after all, which is what we want
    if (epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, w.fd, nullptr) == 0 || errno == ENOENT) {
      w.in_set = false;
      quietable_in_set_--;
      any = true;
    }
  }
  if (any) wide_.wait_fds_quieted++;
}

bool SwitchCore::unquiet_wait_fds_locked() {
  moved_since_wake_ = 0;
  bool all = true;
  for (WaitFd &w : wait_fds_) {
    if (w.in_set || !w.off_while_busy) continue;
    // level-triggered: an fd added back while readable is reported by the
    // next epoll_wait, so a frame that came while it was out still wakes
    if (watch_wait_fd_locked(w.fd) || errno == EEXIST) {
      w.in_set = true;
      quietable_in_set_++;
    } else {
      all = false;  // out of epoll memory: no sleep without it, retried next arm
    }
  }
  return all;
}

void SwitchCore::remove_wait_fd(int fd) {
  std::lock_guard<std::recursive_mutex> g(mu_);
  for (auto it = wait_fds_.begin(); it != wait_fds_.end(); ++it)
    if (it->fd == fd) {
      if (epfd_ && it->in_set) epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
      if (it->off_while_busy && it->in_set) quietable_in_set_--;
      wait_fds_.erase(it);
      return;
    }
}

void SwitchCore::note_wakeup(bool useful) {
  std::lock_guard<std::recursive_mutex> g(mu_);
  if (rang_.empty()) return;  // woken by a timer or notify(), not a client
  wide_.wakeups++;
  if (!useful) wide_.spurious_wakeups++;
  for (uint32_t id : rang_) {
    Port *p = port(id);
    if (!p) continue;
    if (useful) {
      p->spurious = p->backoff_ms = 0;
      continue;
    }
    if (++p->spurious < SWITCH_SPURIOUS_LIMIT || p->muted) continue;
    p->spurious = 0;
    p->backoff_ms = std::min(SWITCH_BACKOFF_MAX_MS, p->backoff_ms ? p->backoff_ms * 2 : SWITCH_BACKOFF_MIN_MS);
    if (epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, p->switch_bell.get(), nullptr) < 0) continue;
    p->muted = true;
    p->muted_until_ns = mono_ns() + static_cast<int64_t>(p->backoff_ms) * 1000000;
    wide_.doorbell_backoffs++;
  }
  rang_.clear();
}

bool SwitchCore::hooks_batching() {
  std::lock_guard<std::recursive_mutex> g(mu_);
  for (RoundHook *h : hooks_)
    if (h->batching()) return true;
  return false;
}

int SwitchCore::backoff_due() {
  std::lock_guard<std::recursive_mutex> g(mu_);
  int64_t next = -1;
  const int64_t now = mono_ns();
  for (uint32_t id : active_) {
    Port &p = ports_[id];
    if (!p.muted) continue;
    if (p.muted_until_ns <= now) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = id;
      // on failure it stays muted and is retried at the next sleep
      if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, p.switch_bell.get(), &ev) == 0) {
        p.muted = false;
        continue;
      }
      p.muted_until_ns = now + 1000000;
    }
    const int64_t left = p.muted_until_ns - now;
    if (next < 0 || left < next) next = left;
  }
  // an in-line hook's bound on this sleep (a send to retry): the loop
  // datapath sleeps in whole ms; the thread's wait() honours the ns itself
  if (const uint64_t w = wake_within_ns_.load(std::memory_order_relaxed); w && w < 1'000'000'000 && (next < 0 || static_cast<int64_t>(w) < next)) next = static_cast<int64_t>(w);
  return next < 0 ? -1 : static_cast<int>((next + 999999) / 1000000);
}

int SwitchCore::wait(int timeout_ms) {
  epoll_event ev;
  // an in-line hook left its guest's kicks off while frames stream: its
  // bound (µs) replaces a longer timeout (kick batching, docs/vhost-user.md)
  const uint64_t within = wake_within_ns_.load(std::memory_order_relaxed);
  if (within && within < 1'000'000'000 && (timeout_ms < 0 || static_cast<uint64_t>(timeout_ms) * 1'000'000 > within)) {
    const timespec ts{0, static_cast<long>(within)};
    int n = epoll_pwait2(epfd_.get(), &ev, 1, &ts, nullptr);
    if (n < 0 && errno == ENOSYS) n = epoll_wait(epfd_.get(), &ev, 1, 1);  // before Linux 5.11: 1 ms
    if (n < 0) return errno == EINTR ? 0 : -1;
    return n;
  }
  int n = epoll_wait(epfd_.get(), &ev, 1, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -1;
  return n;
}

void SwitchCore::notify() {
  uint64_t one = 1;
  ssize_t w = write(notify_fd_.get(), &one, sizeof one);
  (void)w;
}

}  // namespace nm
