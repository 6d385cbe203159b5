#include "core/port_pump.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/clock.h"
#include "core/region.h"
#include "core/switch_core.h"

namespace nm {

const char *ctr_name(Ctr c) {
  switch (c) {
    case Ctr::InFrames: return "inFrames";
    case Ctr::InBytes: return "inBytes";
    case Ctr::OutFrames: return "outFrames";
    case Ctr::OutBytes: return "outBytes";
    case Ctr::OutDirect: return "outDirect";
    case Ctr::OffloadCsumCompleted: return "offloadCsumCompleted";
    case Ctr::OffloadSegmented: return "offloadSegmented";
    case Ctr::OffloadSegments: return "offloadSegments";
    case Ctr::DropTooLong: return "dropTooLong";
    case Ctr::DropBadLength: return "dropBadLength";
    case Ctr::DropTruncated: return "dropTruncated";
    case Ctr::DropForeignSender: return "dropForeignSender";
    case Ctr::PeerPathLookups: return "peerPathLookups";
    case Ctr::DropBadVnetHdr: return "dropBadVnetHdr";
    case Ctr::DropOffloadBadCsumOffsets: return "dropOffloadBadCsumOffsets";
    case Ctr::DropOffloadBadGsoType: return "dropOffloadBadGsoType";
    case Ctr::DropOffloadBadHeaders: return "dropOffloadBadHeaders";
    case Ctr::DropOffloadBadGsoSize: return "dropOffloadBadGsoSize";
    case Ctr::DropOffloadSegmentTooLong: return "dropOffloadSegmentTooLong";
    case Ctr::DropLinkDown: return "dropLinkDown";
    case Ctr::DropBadSlot: return "dropBadSlot";
    case Ctr::LinkErrors: return "linkErrors";
    case Ctr::Connects: return "connects";
    case Ctr::Disconnects: return "disconnects";
    case Ctr::RefusedConnections: return "refusedConnections";
    case Ctr::Wakeups: return "wakeups";
    case Ctr::Count_: break;
  }
  return "unknown";
}

PortPump::PortPump(PortClient pc, std::string label) : label_(std::move(label)), pc_(std::move(pc)) {}

// The in-line datapath (start_in_line): the thread's loop body cut at the
// switch's round. The switch calls it from the thread running its rounds,
// with its mutex held, so nothing else touches the driver's rings then.
struct PortPump::InLine final : RoundHook, DirectSink {
  explicit InLine(PortPump &p) : p(p) {}

  // The link's fds wait in `inner` (rebuilt whenever they change, so that a
  // closed fd's registration cannot outlive it), which waits in `outer`, the
  // one fd the switch's epoll set holds for this driver (registered once:
  // no call back into the switch from a round).
  Status open() {
    outer.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!outer) return sys_fail("epoll_create1", p.label_ + ": in-line wait set");
    return Ok{};
  }

  // frames from the link into the port's tx ring: collected this round
  void before_collect() override {
    p.tx_starved_ = false;
    (void)p.link_in();
    p.flush_tx();
  }

  // what the switch delivered this round -> the link
  uint32_t after_forward() override {
    const uint32_t moved = p.link_out();
    p.flush_tx();
    // A switch kept busy by other ports never sleeps, so never reports the
    // link's fds: look at them without waiting now and then (a socket that
    // became readable or writable, a peer's bell), and run the idle timer's
    // work when it is due. Not every round (a syscall): every kLookMinNs
    // while looks find something, backing off to kLookMaxNs while they
    // find nothing (a quiet link costs a busy switch ~5k syscalls/s).
    // A round that collected nothing (the switch polling before it sleeps)
    // looks at once: a datagram that came meanwhile is taken in the next
    // round, not after the polling ends or the look's period.
    const int64_t now = mono_ns();
    if (now >= next_look_ns || spinning) {
      spinning = false;
      look_ns = look() ? kLookMinNs : std::min(look_ns * 2, kLookMaxNs);
      next_look_ns = now + look_ns;
      if (due_ns && now >= due_ns) {
        due_ns = 0;
        p.on_idle_timeout();
      }
    }
    return moved;
  }

  // The thread's idle test: false while link_in or link_out has work it can
  // do now; else the link's fds (link_wants) into the wait set and a timed
  // wake for idle_timeout_ms.
  bool arm() override {
    armed = false;
    bool again = false;
    const bool room = p.room_to_go_on(again);
    if (again) return false;
    // a look after link_in found its link readable: link_wants would leave
    // that fd out (it reads until EAGAIN first), and nothing would wake us
    if (room && p.link_in_ready()) return false;
    const uint8_t *b;
    uint32_t l;
    if (!p.out_blocked_ && p.rx_peek(b, l)) return false;
    wants.clear();
    p.link_wants(wants, room, p.out_blocked_);
    if (!watch()) return false;  // out of epoll memory (looked at again next round), or a closed fd
    const int t = p.idle_timeout_ms();
    if (t == 0) {
      p.on_idle_timeout();
      return false;
    }
    // the switch takes bounds under a second (wake_within_ns); a longer
    // timeout is run in steps: woken early, the next arm asks for the rest
    wake_ns = t > 0 ? std::min<uint64_t>(static_cast<uint64_t>(t) * 1'000'000, kMaxWakeNs) : 0;
    due_ns = t > 0 ? mono_ns() + static_cast<int64_t>(t) * 1'000'000 : 0;
    armed = true;
    return true;
  }

  void nothing_collected() override { spinning = true; }
  bool direct_wanted() override { return p.link_direct_wanted(); }
  uint32_t send_direct(const iovec *iov, const uint32_t *at, uint32_t n) override { return p.link_direct(iov, at, n); }
  void disarm() override {}
  uint64_t wake_within_ns() const override { return armed ? wake_ns : 0; }

  void woke() override {
    if (!armed) return;
    armed = false;
    p.count(Ctr::Wakeups);
    next_look_ns = 0;  // what woke the switch may be ours: fd_ready told, or the timer
    look_ns = kLookMinNs;
    if (due_ns && mono_ns() >= due_ns) {
      due_ns = 0;
      p.on_idle_timeout();
    }
  }

  void fd_ready(int fd) override {
    if (fd == outer.get()) look();
  }

  // link_event for every fd of the wait set that is ready now; whether any was
  bool look() {
    if (!inner) return false;
    epoll_event ev[16];
    const int n = ::epoll_wait(inner.get(), ev, 16, 0);
    for (int i = 0; i < n; i++) p.link_event(ev[i].data.fd, ev[i].events);
    return n > 0;
  }

  // `wants` into the wait set: the same fds and events as last time keep the
  // set as it is, unless the driver said its fds changed; else a new one
  bool watch() {
    // one entry per fd (a socket may be asked for POLLIN and POLLOUT apart)
    std::sort(wants.begin(), wants.end(), [](const Want &a, const Want &b) { return a.fd < b.fd; });
    size_t k = 0;
    for (size_t i = 0; i < wants.size(); i++) {
      if (k && wants[k - 1].fd == wants[i].fd) {
        wants[k - 1].events |= wants[i].events;
      } else {
        wants[k++] = wants[i];
      }
    }
    wants.resize(k);
    const bool same = inner && epoch == p.fds_epoch_ && wants.size() == set.size() &&
                      std::equal(wants.begin(), wants.end(), set.begin(), [](const Want &a, const Want &b) { return a.fd == b.fd && a.events == b.events; });
    if (same) return true;
    unique_fd fresh(::epoll_create1(EPOLL_CLOEXEC));
    if (!fresh) return false;
    bool gone = false;
    for (const Want &w : wants) {
      epoll_event ev{};
      // POLLIN/POLLOUT are EPOLLIN/EPOLLOUT; errors and hang-ups come anyway
      ev.events = w.events & (EPOLLIN | EPOLLOUT);
      ev.data.fd = w.fd;
      if (::epoll_ctl(fresh.get(), EPOLL_CTL_ADD, w.fd, &ev) < 0) {
        if (errno == ENOMEM || errno == ENOSPC) return false;
        // a closed fd: what poll() says of it, for the driver to act on
        p.link_event(w.fd, POLLNVAL);
        gone = true;
      }
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (::epoll_ctl(outer.get(), EPOLL_CTL_ADD, fresh.get(), &ev) < 0) return false;
    if (inner) (void)::epoll_ctl(outer.get(), EPOLL_CTL_DEL, inner.get(), nullptr);
    inner = std::move(fresh);
    set = wants;
    epoch = p.fds_epoch_;
    return !gone;  // the driver acted on a closed fd: a round before any sleep
  }

  static constexpr int64_t kLookMinNs = 20'000, kLookMaxNs = 200'000;
  static constexpr uint64_t kMaxWakeNs = 999'000'000;
  PortPump &p;
  unique_fd outer, inner;
  std::vector<Want> wants, set;  // what link_wants asked for; what `inner` holds
  uint64_t epoch = 0;            // p.fds_epoch_ when `inner` was built
  bool armed = false;            // the last arm() let the switch sleep
  uint64_t wake_ns = 0;          // ... for at most this long (idle_timeout_ms)
  int64_t due_ns = 0;            // when on_idle_timeout is due (0: not asked)
  int64_t next_look_ns = 0;      // the next look at the fds in a busy switch
  int64_t look_ns = kLookMinNs;  // ... this long after the last
  bool spinning = false;         // this round collected nothing: look now
};

PortPump::~PortPump() { stop(); }

Status PortPump::start_in_line(std::shared_ptr<SwitchCore> core, int switch_port) {
  if (!core) return check_fail(EINVAL, label_ + ": start_in_line without a switch");
  auto h = std::make_unique<InLine>(*this);
  if (Status st = h->open(); !st) return st;
  // the link's fds from the start: a switch busy from the first round on
  // would otherwise have nothing to look at until it first sleeps
  link_wants(h->wants, true, false);
  if (!h->watch()) return sys_fail("epoll_ctl", label_ + ": in-line wait set for the link's fds");
  if (Status st = core->add_wait_fd(h.get(), h->outer.get()); !st) return st;
  if (Status st = core->add_round_hook(h.get()); !st) {
    core->remove_round_hook(h.get());
    return st;
  }
  if (switch_port >= 0) {
    if (Status st = core->set_direct(static_cast<uint32_t>(switch_port), h.get(), pc_.region_fd()); !st) {
      core->remove_round_hook(h.get());
      return st;
    }
    direct_port_ = switch_port;
  }
  core_ = std::move(core);
  hook_ = std::move(h);
  started_ = true;
  core_->notify();  // a first round: frames may wait on the link already
  return Ok{};
}

Status PortPump::start() {
  stop_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop_fd_) return sys_fail("eventfd", label_ + ": driver stop signal");
  started_ = true;
  thread_ = std::thread([this] { run(); });
  return Ok{};
}

void PortPump::stop() {
  if (!started_) return;
  started_ = false;
  if (hook_) {
    // between rounds (the switch's mutex): no frame is queued for us after
    if (direct_port_ >= 0) core_->clear_direct(static_cast<uint32_t>(direct_port_), hook_.get());
    direct_port_ = -1;
    // waits for the round in progress: no hook call after this
    core_->remove_round_hook(hook_.get());
    flush_tx();
    hook_.reset();
    core_.reset();
    return;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(stop_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

std::vector<std::pair<const char *, uint64_t>> PortPump::counters() const {
  std::vector<std::pair<const char *, uint64_t>> v;
  for (size_t i = 0; i < ctr_.size(); i++) v.emplace_back(ctr_name(static_cast<Ctr>(i)), ctr_[i].load(std::memory_order_relaxed));
  return v;
}

void PortPump::log(const std::string &line) const { std::fprintf(stderr, "vale-ts: %s: %s\n", label_.c_str(), line.c_str()); }

void PortPump::log_limited(LogLimit &l, const std::string &line) const {
  const int64_t now = mono_ns();
  if (now < l.next_ns) {
    l.suppressed++;
    return;
  }
  l.next_ns = now + 1'000'000'000;
  if (l.suppressed == 0) return log(line);
  log(line + " (and " + std::to_string(l.suppressed) + " more like it in the last second, not logged)");
  l.suppressed = 0;
}

uint32_t PortPump::tx_room() {
  uint32_t room = pc_.tx_space(0);
  if (room == 0) {
    pc_.txsync(0);
    tx_unsynced_ = 0;
    room = pc_.tx_space(0);
  }
  // a slot whose buffer index the region does not back is no room at all
  if (room > 0 && !tx_buf()) room = 0;
  if (room == 0) tx_starved_ = true;
  return room;
}

bool PortPump::tx_room_for(uint32_t n) {
  if (pc_.tx_space(0) < n) {
    pc_.txsync(0);
    tx_unsynced_ = 0;
  }
  const bool ok = pc_.tx_space(0) >= n && tx_buf();
  tx_need_ = ok ? 1 : n;
  return ok;
}

uint8_t *PortPump::tx_buf() {
  netmap_ring *g = pc_.tx_ring(0);
  if (g->head >= g->num_slots) return nullptr;
  return pc_.slot_buf(ring_slots(g)[g->head]);
}

uint8_t *PortPump::tx_buf_at(uint32_t k) {
  netmap_ring *g = pc_.tx_ring(0);
  const uint32_t n = g->num_slots;
  if (g->head >= n || k >= n) return nullptr;
  const uint32_t i = g->head + k >= n ? g->head + k - n : g->head + k;
  return pc_.slot_buf(ring_slots(g)[i]);
}

void PortPump::tx_push(uint32_t len, bool more) {
  netmap_ring *g = pc_.tx_ring(0);
  netmap_slot &s = ring_slots(g)[g->head];
  s.len = static_cast<uint16_t>(len);
  s.flags = more ? NS_MOREFRAG : 0;
  g->head = g->cur = ring_next(g->head, g->num_slots);
  tx_unsynced_++;
  if (!more) count_datapath(Ctr::InFrames);
  count_datapath(Ctr::InBytes, len);
}

bool PortPump::tx_chain(const uint8_t *frame, size_t len) {
  const size_t bs = slot_fill();
  const size_t n = len == 0 ? 1 : (len + bs - 1) / bs;
  netmap_ring *g = pc_.tx_ring(0);
  if (n > NETMAP_MAX_FRAGS || n >= g->num_slots) {
    count(Ctr::DropTooLong);
    return true;
  }
  if (!tx_room_for(static_cast<uint32_t>(n))) return false;
  // every buffer of the chain checked before the first is published
  netmap_slot *slots = ring_slots(g);
  uint8_t *to[NETMAP_MAX_FRAGS];
  for (size_t j = 0, i = g->head; j < n; j++, i = ring_next(static_cast<uint32_t>(i), g->num_slots)) {
    to[j] = pc_.slot_buf(slots[i]);
    if (!to[j]) {
      count(Ctr::DropBadSlot);
      return true;
    }
  }
  for (size_t j = 0, off = 0; j < n; j++) {
    const size_t take = std::min(bs, len - off);
    if (to[j] != frame + off) std::memcpy(to[j], frame + off, take);
    off += take;
    tx_push(static_cast<uint32_t>(take), j + 1 < n);
  }
  return true;
}

bool PortPump::room_to_go_on(bool &again) {
  const uint32_t need = tx_need_;
  const bool starved = tx_starved_;
  const bool room = need > 1 ? tx_room_for(need) : tx_room() > 0;
  // the frame that waited fits now (the sync saw the switch's progress);
  // likewise a link_in that stopped on a full ring while the switch freed
  // slots since: its link is still marked readable, so link_wants would not
  // ask for it, and nothing else would wake the driver
  again = room && (need > 1 || starved);
  return room;
}

void PortPump::flush_tx() {
  if (tx_unsynced_) {
    pc_.txsync(0);
    tx_unsynced_ = 0;
  }
  if (rx_popped_) {
    pc_.rxsync(rx_ring_);
    rx_popped_ = 0;
  }
}

bool PortPump::rx_peek(const uint8_t *&buf, uint32_t &len) {
  const uint32_t nrx = pc_.rx_rings();
  if (nrx == 0) return false;
  for (uint32_t tries = 0; tries < 2 * nrx + 1;) {
    netmap_ring *g = pc_.rx_ring(rx_ring_);
    const uint32_t n = g->num_slots;
    if (g->head >= n) g->head = g->cur = 0;  // our own index, never the switch's: reset a bad one
    if (g->head != g->tail) {
      const netmap_slot &s = ring_slots(g)[g->head];
      const uint8_t *b = pc_.slot_buf(s);
      if (!b || s.len > pc_.buf_size() || s.len == 0) {
        count(Ctr::DropBadSlot);
        rx_pop();
        continue;
      }
      buf = b;
      len = s.len;
      return true;
    }
    pc_.rxsync(rx_ring_);
    rx_popped_ = 0;
    tries++;
    if (g->head != g->tail) continue;
    rx_ring_ = rx_ring_ + 1 == nrx ? 0 : rx_ring_ + 1;
  }
  return false;
}

bool PortPump::rx_peek_chain(iovec *iov, uint32_t max, uint32_t &slots, size_t &len) {
  const uint8_t *b;
  uint32_t l;
  while (rx_peek(b, l)) {
    netmap_ring *g = pc_.rx_ring(rx_ring_);
    const uint32_t N = g->num_slots;
    uint32_t i = g->head, n = 0;
    size_t total = 0;
    bool bad = false, complete = false;
    // the switch publishes a chain whole: every slot of it is before tail
    while (n < max && i != g->tail) {
      const netmap_slot &s = ring_slots(g)[i];
      const uint8_t *sb = pc_.slot_buf(s);
      if (!sb || s.len > pc_.buf_size()) bad = true;
      else iov[n] = {const_cast<uint8_t *>(sb), s.len};
      n++;
      total += s.len;
      i = ring_next(i, N);
      if (!(s.flags & NS_MOREFRAG)) {
        complete = true;
        break;
      }
    }
    if (bad || !complete) {
      count(Ctr::DropBadSlot);
      for (uint32_t j = 0; j < n; j++) rx_pop();
      continue;
    }
    slots = n;
    len = total;
    return true;
  }
  return false;
}

void PortPump::rx_prefetch(uint32_t k) const {
  netmap_ring *g = pc_.rx_ring(rx_ring_);
  const uint32_t n = g->num_slots, h = g->head, t = g->tail;
  if (h >= n || t >= n || k >= n) return;
  if (ring_dist(t, h, n) <= k) return;  // not published (yet)
  const uint32_t i = h + k >= n ? h + k - n : h + k;
  if (const uint8_t *b = pc_.slot_buf(ring_slots(g)[i])) __builtin_prefetch(b, 0);
}

void PortPump::rx_pop() {
  netmap_ring *g = pc_.rx_ring(rx_ring_);
  g->head = g->cur = ring_next(g->head, g->num_slots);
  if (++rx_popped_ >= 64) {
    pc_.rxsync(rx_ring_);
    rx_popped_ = 0;
  }
}

void PortPump::count_offload_drop(OffloadError e) {
  count(Ctr::DropBadVnetHdr);
  switch (e) {
    case OffloadError::BadCsumOffsets: count(Ctr::DropOffloadBadCsumOffsets); break;
    case OffloadError::BadGsoType: count(Ctr::DropOffloadBadGsoType); break;
    case OffloadError::BadHeaders: count(Ctr::DropOffloadBadHeaders); break;
    case OffloadError::BadGsoSize: count(Ctr::DropOffloadBadGsoSize); break;
    case OffloadError::SegmentTooLong: count(Ctr::DropOffloadSegmentTooLong); break;
    case OffloadError::None:
    case OffloadError::NoRoom: break;
  }
}

namespace {
// Segments straight into the port's tx slots.
class TxSink final : public SegmentSink {
 public:
  TxSink(uint8_t *(*buf)(void *), void (*push)(void *, uint32_t), void *self, size_t cap)
      : buf_(buf), push_(push), self_(self), cap_(cap) {}
  uint8_t *next(size_t len) override {
    if (pending_) push_(self_, pending_len_);
    pending_ = false;
    if (len > cap_) return nullptr;
    uint8_t *b = buf_(self_);
    if (!b) return nullptr;
    pending_ = true;
    pending_len_ = static_cast<uint32_t>(len);
    return b;
  }
  void finish() {
    if (pending_) push_(self_, pending_len_);
    pending_ = false;
  }

 private:
  uint8_t *(*buf_)(void *);
  void (*push_)(void *, uint32_t);
  void *self_;
  size_t cap_;
  bool pending_ = false;
  uint32_t pending_len_ = 0;
};
}  // namespace

bool PortPump::ingest_vnet(const VnetHdr &h, uint8_t *frame, size_t len, bool in_slot) {
  if ((h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN)) == VNET_GSO_NONE) {
    if (len > slot_fill()) {
      count(Ctr::DropTooLong);
      return true;
    }
    if (h.flags & VNET_F_NEEDS_CSUM) {
      OffloadError e = complete_csum(h, frame, len);
      if (e != OffloadError::None) {
        count_offload_drop(e);
        return true;
      }
      count(Ctr::OffloadCsumCompleted);
    }
    if (!in_slot) {
      if (tx_room() == 0) return false;
      std::memcpy(tx_buf(), frame, len);
    }
    tx_push(static_cast<uint32_t>(len));
    return true;
  }
  const uint32_t n = gso_segment_count(h, frame, len);
  // never room for all of it: a ring smaller than one GSO frame's segments
  if (n >= pc_.tx_ring(0)->num_slots) {
    count_offload_drop(OffloadError::SegmentTooLong);
    return true;
  }
  if (n > 0 && !tx_room_for(n)) return false;
  TxSink sink([](void *s) { return static_cast<PortPump *>(s)->tx_buf(); },
              [](void *s, uint32_t l) { static_cast<PortPump *>(s)->tx_push(l); }, this, slot_fill());
  SegmentResult r = gso_segment(h, frame, len, slot_fill(), sink);
  if (r.err != OffloadError::None) {
    // parse errors come before any segment; NoRoom (room was checked, so a tx
    // slot with a bad buffer index part way) leaves the segments already
    // pushed delivered and the rest counted
    if (r.err == OffloadError::NoRoom) count(Ctr::DropBadSlot);
    else count_offload_drop(r.err);
    return true;
  }
  sink.finish();
  count(Ctr::OffloadSegmented);
  count(Ctr::OffloadSegments, r.segments);
  return true;
}

void PortPump::run() {
  std::vector<Want> wants;
  std::vector<pollfd> pfds;
  for (;;) {
    tx_starved_ = false;
    uint32_t moved = link_out();
    moved += link_in();
    flush_tx();
    // Between rounds, one look without waiting: a stop, and after a busy
    // round with the send side blocked, what that side waits on (no room_in:
    // only its fds). A link kept busy (its input never pauses) never reaches
    // the poll below, the only other place a blocked send side hears it may
    // go on: its frames would wait in the rx ring for as long as the input lasts
    pfds.clear();
    pfds.push_back({stop_fd_.get(), POLLIN, 0});
    if (moved && out_blocked_) {
      wants.clear();
      link_wants(wants, false, true);
      for (const Want &w : wants) pfds.push_back({w.fd, static_cast<short>(w.events), 0});
    }
    if (::poll(pfds.data(), pfds.size(), 0) > 0) {
      if (pfds[0].revents) break;
      for (size_t i = 1; i < pfds.size(); i++)
        if (pfds[i].revents) link_event(pfds[i].fd, static_cast<uint32_t>(pfds[i].revents));
    }
    if (moved) continue;
    // idle: ask for a kick, then look once more (no lost wakeup). Room is
    // room for what link_in waits on: a frame that needs several slots
    // (tx_need_) asks for a kick while fewer are free, however many are
    const uint32_t need = tx_need_;
    bool again = false;
    const bool room = room_to_go_on(again);
    if (again) continue;
    // frames for a link that cannot take them are no reason to wake: the
    // link's own fd (or, for VXLAN, the shortcut ring's bell) ends this wait
    pc_.arm(!out_blocked_, !room);
    const uint8_t *b;
    uint32_t l;
    const bool rx_ready = !out_blocked_ && rx_peek(b, l);
    if (rx_ready || (!room && (need > 1 ? tx_room_for(need) : tx_room() > 0))) {
      pc_.disarm();
      continue;
    }
    wants.clear();
    link_wants(wants, room, out_blocked_);
    pfds.clear();
    pfds.push_back({stop_fd_.get(), POLLIN, 0});
    pfds.push_back({pc_.wait_fd(), POLLIN, 0});
    for (const Want &w : wants) pfds.push_back({w.fd, static_cast<short>(w.events), 0});
    int r = ::poll(pfds.data(), pfds.size(), idle_timeout_ms());
    pc_.disarm();
    count(Ctr::Wakeups);
    if (r < 0) {
      if (errno == EINTR) continue;
      log(std::string("poll failed: ") + std::strerror(errno) + "; driver stopped");
      break;
    }
    if (r == 0) {
      on_idle_timeout();
      continue;
    }
    if (pfds[0].revents) break;
    if (pfds[1].revents) pc_.drain_bell();
    for (size_t i = 2; i < pfds.size(); i++)
      if (pfds[i].revents) link_event(pfds[i].fd, static_cast<uint32_t>(pfds[i].revents));
  }
  flush_tx();
}

}  // namespace nm
