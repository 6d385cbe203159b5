// See device.h. Layout of what the program maps (mmap of an emulated fd):
//
//   [0, memsize)                      the port's region (vale-ts memfd or the
//                                     pipe's file), rings and buffers where
//                                     netmap's layout puts them
//   [memsize, memsize + OVERLAY_SIZE) this process's netmap_ifs, one 512-byte
//                                     slot per registration on that region
//
// netmap gives every registration its own netmap_if, whose ring_ofs[] is zero
// for the rings it did not bind (libnetmap finds first/last ring that way,
// and pkt-gen -p N relies on it). vale-ts shares one netmap_if per port, so
// the preload writes a netmap_if per registration into a small memfd of its
// own, mapped right after the region; nr_offset points there and its
// ring_ofs[] reach back into the region. Every mapping of one region in this
// process includes the same overlay, so libnetmap may reuse one mapping for
// all registrations with the same nr_mem_id, as it does.
#include "preload/device.h"

#include <algorithm>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "abi/netmap_abi.h"
#include "core/clock.h"
#include "core/pipe.h"
#include "core/port_client.h"
#include "core/region.h"
#include "core/shm_atomic.h"
#include "preload/sys.h"
#include "preload/vale_control.h"

namespace nmpre {

using namespace nm;

std::atomic<int> g_open_fds{0};
std::atomic<int> g_ep_sets{0};

namespace {

constexpr uint64_t NIFP_SLOT = 512;
constexpr uint32_t OVERLAY_SLOTS = 64;
constexpr uint64_t OVERLAY_SIZE = NIFP_SLOT * OVERLAY_SLOTS;
static_assert(sizeof(netmap_if) + sizeof(int64_t) * 2 * MAX_RINGS <= NIFP_SLOT);
static_assert(OVERLAY_SIZE % 4096 == 0);
constexpr uint16_t NM_BDG_NOPORT = 255;

std::mutex g_mu;  // registration, close and epoll bookkeeping; never the sync path

// Set while this thread does the library's own work under g_mu: the core it
// links closes the library's fds with close(), which the wrapper lets
// through only then (see dev_close).
thread_local int t_lib = 0;
struct Lib {
  std::lock_guard<std::mutex> lk{g_mu};
  Lib() { t_lib++; }
  ~Lib() { t_lib--; }
  Lib(const Lib &) = delete;
  Lib &operator=(const Lib &) = delete;
};

// The library's own fds (regions, doorbells, control sockets, epoll fds)
// live high and are marked in the table: see own_fd.
std::atomic<int> g_internal{0};
int own_fd(int fd);
void close_own(int fd);

void say(const std::string &msg) {
  const std::string line = "vale-ts-netmap: " + msg + "\n";
  const ssize_t r = write(2, line.data(), line.size());
  (void)r;
}

// A core error as one line: what, the errno's text for a failed call, the fix.
std::string describe(const SysError &e) {
  std::string s = e.what;
  if (e.syscall) s += std::string(": ") + e.syscall + ": " + std::strerror(e.err);
  if (!e.hint.empty()) s += " (" + e.hint + ")";
  return s;
}

int fail(int err, const std::string &msg) {
  if (!msg.empty()) say(msg);
  errno = err;
  return -1;
}

// ---- regions as this process maps them ---------------------------------
struct Region {
  dev_t dev = 0;
  ino_t ino = 0;
  uint16_t mem_id = 0;
  uint64_t memsize = 0;
  int map_fd = -1;      // what the program's mmap maps at [0, memsize)
  int overlay_fd = -1;  // the per-registration netmap_ifs
  uint8_t *overlay = nullptr;
  uint64_t used = 0;  // overlay slots in use (bit i)
  int refs = 0;
};
std::vector<Region *> g_regions;  // under g_mu
uint16_t g_next_mem_id = 2;       // 1 is netmap's global allocator; never handed out

Region *region_get(int fd_of_file, uint64_t memsize, std::string *err, int *errn) {
  struct stat st;
  if (fstat(fd_of_file, &st) < 0) {
    *errn = errno;
    *err = std::string("fstat: ") + std::strerror(errno);
    return nullptr;
  }
  for (Region *r : g_regions)
    if (r->dev == st.st_dev && r->ino == st.st_ino) {
      if (r->memsize != memsize) break;  // replaced under the same inode? treat as new below
      r->refs++;
      return r;
    }
  auto *r = new Region;
  r->dev = st.st_dev;
  r->ino = st.st_ino;
  r->memsize = memsize;
  // a description of our own, so the program's mappings never hold the pipe's OFD locks
  const std::string self = "/proc/self/fd/" + std::to_string(fd_of_file);
  r->map_fd = own_fd(sys::open(self.c_str(), O_RDWR | O_CLOEXEC));
  r->overlay_fd = own_fd(static_cast<int>(syscall(SYS_memfd_create, "vale-ts-netmap-nifp", MFD_CLOEXEC)));
  if (r->map_fd < 0 || r->overlay_fd < 0 || ftruncate(r->overlay_fd, OVERLAY_SIZE) < 0) {
    *errn = errno;
    *err = std::string("cannot set up the mapping: ") + std::strerror(errno);
    if (r->map_fd >= 0) close_own(r->map_fd);
    if (r->overlay_fd >= 0) close_own(r->overlay_fd);
    delete r;
    return nullptr;
  }
  void *m = sys::mmap(nullptr, OVERLAY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->overlay_fd, 0);
  if (m == MAP_FAILED) {
    *errn = errno;
    *err = std::string("mmap: ") + std::strerror(errno);
    close_own(r->map_fd);
    close_own(r->overlay_fd);
    delete r;
    return nullptr;
  }
  r->overlay = static_cast<uint8_t *>(m);
  r->mem_id = g_next_mem_id++;
  if (g_next_mem_id < 2) g_next_mem_id = 2;
  r->refs = 1;
  g_regions.push_back(r);
  return r;
}

void region_put(Region *r) {
  if (--r->refs > 0) return;
  for (size_t i = 0; i < g_regions.size(); i++)
    if (g_regions[i] == r) {
      g_regions.erase(g_regions.begin() + static_cast<long>(i));
      break;
    }
  munmap(r->overlay, OVERLAY_SIZE);
  close_own(r->overlay_fd);
  close_own(r->map_fd);
  delete r;
}

// ---- pipe ends, shared by this process's registrations of one end ---------
// netmap lets x{0-0 and x{0-1 be registered separately (pkt-gen -p 2); the
// end is one PipeEnd (one OFD lock, one doorbell), each registration binds
// its rings of it.
struct SharedPipe {
  std::string path;
  uint32_t end = 0;
  std::optional<PipeEnd> pe;  // cpp/core/pipe: the same end a Node process opens
  uint32_t tx_bound = 0, rx_bound = 0;  // rings held by registrations (bit r)
  int refs = 0;
};
std::vector<SharedPipe *> g_pipes;  // under g_mu

void pipe_put(SharedPipe *sp) {
  if (--sp->refs > 0) return;
  for (size_t i = 0; i < g_pipes.size(); i++)
    if (g_pipes[i] == sp) {
      g_pipes.erase(g_pipes.begin() + static_cast<long>(i));
      break;
    }
  delete sp;  // ~PipeEnd releases the end
}

// ---- one registration ---------------------------------------------------

struct Port {
  bool is_pipe = false;
  std::string name;
  Region *region = nullptr;
  uint32_t slot = 0;
  uint8_t *base = nullptr;  // our own mapping, for the sync
  uint64_t mapped = 0;
  Layout layout;
  uint32_t iface = 0;
  uint32_t tx_lo = 0, tx_hi = 0, rx_lo = 0, rx_hi = 0;  // bound rings, [lo, hi)
  bool txpoll = true;
  bool rxpoll = false;
  int wait_fd = -1;  // the doorbell poll sleeps on (owned by client or sp)
  int hup_fd = -1;
  // vale-ts
  int conn = -1;
  PortClient client;  // cpp/core/port_client: region, doorbells, CSB sync
  std::atomic<bool> hung{false};
  PortClient::Shadow tx[MAX_RINGS], rx[MAX_RINGS];
  // pipes
  SharedPipe *sp = nullptr;
  uint32_t tx_mask = 0, rx_mask = 0;  // the rings this registration holds of sp
  std::atomic<uint64_t> reinits{0};  // ring reinits (see reinit())
  Port *prev_live = nullptr, *next_live = nullptr;  // in g_live, for fork_child

  netmap_ring *ring(uint32_t k) const { return reinterpret_cast<netmap_ring *>(base + layout.ring_ofs[iface][k]); }
  nm_csb_atok *atok(uint32_t k) const { return reinterpret_cast<nm_csb_atok *>(base + layout.csb_entry(iface, k)); }
  nm_csb_ktoa *ktoa(uint32_t k) const {
    return reinterpret_cast<nm_csb_ktoa *>(base + layout.csb_entry(iface, k) + sizeof(nm_csb_atok));
  }

  ~Port() {
    if (is_pipe) {
      if (sp) {
        sp->tx_bound &= ~tx_mask;
        sp->rx_bound &= ~rx_mask;
        pipe_put(sp);
      }
    } else {
      if (conn >= 0) close_own(conn);  // the switch sees EOF and releases the port
      // client closes the region and doorbells and unmaps
    }
  }
};

// Every registration until released, orphans of a close that another
// thread's call still holds included (fork_child unmaps them all). Under g_mu.
Port *g_live = nullptr;
void live_add(Port *p) {
  p->next_live = g_live;
  if (g_live) g_live->prev_live = p;
  g_live = p;
}
void live_remove(Port *p) {
  if (p->prev_live) p->prev_live->next_live = p->next_live;
  else if (g_live == p) g_live = p->next_live;
  if (p->next_live) p->next_live->prev_live = p->prev_live;
}

// netmap's answer to an impossible head/cur ("ring reinit"): the ring is
// put back as the last sync left it (the caller does that from its own
// record, never from words in the region), the first time with a line on
// stderr as netmap logs it, and poll reports POLLERR. Returns false.
bool reinit(Port *p, uint32_t k) {
  if (p->reinits.fetch_add(1, std::memory_order_relaxed) == 0)
    say(p->name + ": ring " + std::to_string(k) +
        ": head or cur out of range, ring put back as the last sync left it (netmap's ring reinit)");
  return false;
}

// txsync/rxsync of one ring of a vale-ts port, over the CSB
// (docs/control-protocol.md), with netmap's checks of head and cur.
bool vale_sync(Port *p, uint32_t k, PortClient::Shadow &s) {
  if (p->client.sync_checked(k, s)) return true;
  netmap_ring *r = p->ring(k);
  store_release(&r->head, s.head);
  store_release(&r->cur, s.head);
  store_release(&r->tail, s.tail);
  return reinit(p, k);
}

bool pipe_sync_tx(Port *p, uint32_t r) {
  if (p->sp->pe->tx_sync(r) >= 0) return true;
  p->sp->pe->reset_ring(true, r);
  return reinit(p, r);
}

bool pipe_sync_rx(Port *p, uint32_t r) {
  if (p->sp->pe->rx_sync(r) >= 0) return true;
  p->sp->pe->reset_ring(false, r);
  return reinit(p, p->layout.p.tx_rings + r);
}

// false when a ring had to be reinitialised
bool txsync(Port *p) {
  bool ok = true;
  for (uint32_t r = p->tx_lo; r < p->tx_hi; r++) ok &= p->is_pipe ? pipe_sync_tx(p, r) : vale_sync(p, r, p->tx[r]);
  return ok;
}

bool rxsync(Port *p) {
  const uint32_t T = p->layout.p.tx_rings;
  bool ok = true;
  for (uint32_t r = p->rx_lo; r < p->rx_hi; r++) ok &= p->is_pipe ? pipe_sync_rx(p, r) : vale_sync(p, T + r, p->rx[r]);
  return ok;
}

// A pipe registration of some of the end's rings (NR_REG_ONE_NIC, one
// thread per ring) sleeps on the doorbell of the whole end, which the other
// rings' registrations read too: one of them can drain a kick meant for this
// one between this one's last check and its sleep. Such a sleep is cut into
// short slices, each followed by a fresh check, so a stolen kick costs at
// most a slice instead of a hang.
bool shares_bell(const Port *p) {
  return p->is_pipe && (p->tx_hi - p->tx_lo < p->layout.p.tx_rings || p->rx_hi - p->rx_lo < p->layout.p.rx_rings);
}
constexpr long kSharedBellSliceNs = 1000000;

// netmap_poll for one registration: the implicit syncs, then what is ready.
short port_check(Port *p, short events) {
  const short want_tx = events & (POLLOUT | POLLWRNORM);
  const short want_rx = events & (POLLIN | POLLRDNORM);
  short rev = 0;
  if (p->txpoll || want_tx) {
    if (!txsync(p)) rev |= POLLERR;
    if (want_tx)
      for (uint32_t r = p->tx_lo; r < p->tx_hi; r++) {
        const netmap_ring *g = p->ring(r);
        // cur, not head, as netmap_poll: a program moves cur ahead of head
        // to sleep until the switch frees more slots (tail passes cur)
        if (g->cur != g->tail) rev |= want_tx;
      }
  }
  if (want_rx || p->rxpoll) {
    if (!rxsync(p)) rev |= POLLERR;
    const uint32_t T = p->layout.p.tx_rings;
    if (want_rx)
      for (uint32_t r = p->rx_lo; r < p->rx_hi; r++) {
        const netmap_ring *g = p->ring(T + r);
        if (g->cur != g->tail) rev |= want_rx;
      }
  }
  if (p->hung.load(std::memory_order_relaxed)) rev |= POLLERR | POLLHUP;
  return rev;
}

// Ask the other side for a kick on the rings we are about to sleep on.
void need_kick(Port *p, uint32_t k, uint32_t on) {
  if (p->is_pipe) store_release(&p->atok(k)->appl_need_kick, on);
  else p->client.need_kick(k, on != 0);
}

void arm(Port *p, short events, uint32_t on) {
  const uint32_t T = p->layout.p.tx_rings;
  if (events & (POLLIN | POLLRDNORM))
    for (uint32_t r = p->rx_lo; r < p->rx_hi; r++) need_kick(p, T + r, on);
  if (events & (POLLOUT | POLLWRNORM))
    for (uint32_t r = p->tx_lo; r < p->tx_hi; r++) need_kick(p, r, on);
  if (on) full_fence();
}

void drain(int fd) {
  char buf[512];
  while (read(fd, buf, sizeof buf) > 0) {
  }
}

// ---- the fd table: fd -> emulated fd, lock-free lookups -----------------
struct EpSet;
// One open("/dev/netmap"): what netmap calls the file, shared by every fd
// dup'ed from it (they share the registration, as in netmap).
struct NmFd {
  int fd = -1;   // the fd open() returned
  int refs = 1;  // fds in the table pointing here (under g_mu)
  // refs plus the calls in flight that use this file (pin/unpin): the
  // registration, and the fds and mappings it owns, go when both are gone,
  // so a close in one thread never frees what another thread's sync, poll
  // or epoll_wait is using (the kernel keeps a file alive for a call too)
  std::atomic<int> uses{1};
  std::atomic<Port *> port{nullptr};  // set once registered (release), read lock-free (acquire)
  // In a fork child: the fd was registered in the parent, which keeps the
  // registration (its ring state lives in the parent's memory, not in a
  // kernel both share); the child holds nothing of it (see fork_child).
  bool inherited = false;
};
struct Slot {
  std::atomic<NmFd *> nm{nullptr};
  std::atomic<EpSet *> ep{nullptr};
  // threads between reading nm/ep and counting themselves in its `uses`,
  // by the phase they started in: unpublish() flips the phase and waits for
  // the old one to empty before the table's own reference is dropped, so a
  // hot sync loop on the fd cannot keep a close waiting
  std::atomic<uint32_t> pin_phase{0};
  std::atomic<int> pinning[2] = {0, 0};
  std::atomic<bool> internal{false};  // one of the library's own fds
};
constexpr int CHUNK = 1024;
constexpr int NCHUNKS = 1024;  // fds below 1 << 20
std::atomic<Slot *> g_chunks[NCHUNKS];

Slot *slot_of(int fd, bool create) {
  if (fd < 0 || fd >= CHUNK * NCHUNKS) return nullptr;
  std::atomic<Slot *> &c = g_chunks[fd / CHUNK];
  Slot *s = c.load(std::memory_order_acquire);
  if (!s && create) {  // under g_mu
    s = new Slot[CHUNK];
    c.store(s, std::memory_order_release);
  }
  return s ? &s[fd % CHUNK] : nullptr;
}

// The entry for fd, not to be dereferenced without g_mu or a pin.
NmFd *lookup(int fd) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0) return nullptr;
  Slot *s = slot_of(fd, false);
  return s ? s->nm.load(std::memory_order_acquire) : nullptr;
}

// A reference to what slot s names (nm or ep), taken without a lock: the
// slot's pinning count keeps unpublish() from returning, and so the table's
// reference from being dropped, between the load and the increment.
// The phase is read again after counting in: a thread stalled between the
// two through a whole close (which did not see its count), a new open of
// the number and the start of its close (which waits on the other phase)
// would otherwise take a reference to an entry that close then frees.
template <class T>
T *pin_slot(Slot *s, std::atomic<T *> Slot::*which) {
  if (!s || !(s->*which).load(std::memory_order_relaxed)) return nullptr;  // the common miss: no RMW
  for (;;) {
    const uint32_t phase = s->pin_phase.load(std::memory_order_seq_cst);
    std::atomic<int> &c = s->pinning[phase & 1];
    c.fetch_add(1, std::memory_order_seq_cst);
    if (s->pin_phase.load(std::memory_order_seq_cst) != phase) {  // an unpublish began meanwhile: count in anew
      c.fetch_sub(1, std::memory_order_release);
      continue;
    }
    T *v = (s->*which).load(std::memory_order_seq_cst);
    if (v) v->uses.fetch_add(1, std::memory_order_relaxed);  // the slot's reference keeps it above 0
    c.fetch_sub(1, std::memory_order_release);
    return v;
  }
}

NmFd *pin(int fd) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0) return nullptr;
  return pin_slot(slot_of(fd, false), &Slot::nm);
}

// Under g_mu: slot s no longer names what it did; returns once no thread
// can still be taking a reference to that through s (a few instructions,
// never a blocking call, so the wait is short). A reader counted in the new
// phase read the phase after the store and so loads null; one that read the
// old phase but counts itself only after the wait below also loads null.
template <class T>
void unpublish(Slot *s, std::atomic<T *> Slot::*which) {
  (s->*which).store(nullptr, std::memory_order_seq_cst);
  const uint32_t old = s->pin_phase.fetch_add(1, std::memory_order_seq_cst) & 1;
  while (s->pinning[old].load(std::memory_order_seq_cst) != 0) sched_yield();
}

void release_port(Port *p);
void nm_destroy_locked(NmFd *f) {
  if (Port *p = f->port.load(std::memory_order_relaxed)) release_port(p);
  delete f;
}
void nm_unref_locked(NmFd *f) {
  if (f->uses.fetch_sub(1, std::memory_order_acq_rel) == 1) nm_destroy_locked(f);
}
void unpin(NmFd *f) {
  if (f->uses.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  Lib lk;  // the last reference: every fd of it was closed while this call ran
  nm_destroy_locked(f);
}
// a call's reference, dropped when it returns
struct Pinned {
  NmFd *f;
  explicit Pinned(NmFd *v) : f(v) {}
  ~Pinned() {
    if (f) unpin(f);
  }
  Pinned(const Pinned &) = delete;
  Pinned &operator=(const Pinned &) = delete;
};

// Where the library's own fds go: high, out of the way of a program that
// dup2()s onto small numbers or assumes its next fd is the lowest free one
// (what preloads such as libvma do), and inside the table.
int high_fd_base() {
  static const int base = [] {
    rlimit rl{};
    uint64_t lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    if (lim > static_cast<uint64_t>(CHUNK) * NCHUNKS) lim = static_cast<uint64_t>(CHUNK) * NCHUNKS;
    return static_cast<int>(lim >= 8192 ? 4096 : lim / 2);
  }();
  return base;
}

// Under g_mu: fd (a new fd of the library's) moved high and marked as the
// library's, so that the program's close, dup2 and closefrom leave it alone
// (dev_close, dev_dup, dev_close_range). Where no high number is free it
// stays where it is, marked all the same. -1 stays -1.
int own_fd(int fd) {
  if (fd < 0) return fd;
  const int hi = static_cast<int>(syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, high_fd_base()));
  if (hi >= 0) {
    sys::close(fd);
    fd = hi;
  }
  if (Slot *s = slot_of(fd, true)) {
    s->internal.store(true, std::memory_order_release);
    g_internal.fetch_add(1);
  }
  return fd;
}

// Under g_mu: the number goes back to the program before the fd is closed.
void disown_fd(int fd) {
  Slot *s = slot_of(fd, false);
  if (s && s->internal.exchange(false, std::memory_order_acq_rel)) g_internal.fetch_sub(1);
}
void close_own(int fd) {
  if (fd < 0) return;
  disown_fd(fd);
  sys::close(fd);
}

// ---- epoll sets holding emulated fds -------------------------------------
struct EpEntry {
  int fd;
  uint32_t events;
  epoll_data_t data;
  int watched_wait = -1, watched_hup = -1;  // fds of ours added to `q`
};
struct EpSet {
  int epfd = -1;
  int q = -1;  // our epoll: the program's epfd plus the doorbells of its emulated fds
  std::vector<EpEntry> entries;
  std::atomic<uint32_t> gen{0};  // a fresh g_ep_gen on every change (under g_mu)
  std::atomic<int> uses{1};      // the table's reference plus the epoll_waits in flight, as NmFd's
};
void ep_destroy_locked(EpSet *e) {
  close_own(e->q);
  delete e;
}
void ep_unpin(EpSet *e) {
  if (e->uses.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  Lib lk;  // the program closed its epoll fd while this call waited on it
  ep_destroy_locked(e);
}
// One counter for every set, so a set allocated where a closed one was never
// repeats a generation a thread may still have a snapshot of.
std::atomic<uint32_t> g_ep_gen{0};
void ep_changed(EpSet *e) { e->gen.store(g_ep_gen.fetch_add(1) + 1, std::memory_order_release); }

// What epoll_wait needs of a set's emulated members, copied per thread so
// that the wait reads it without a lock; rebuilt (under g_mu) when the set's
// generation moves on or a member registered since.
struct EpMember {
  int fd;
  uint32_t events;
  epoll_data_t data;
};
struct EpSnapshot {
  const EpSet *set = nullptr;
  uint32_t gen = 0;
  bool complete = false;  // every member was registered when copied
  std::vector<EpMember> m;  // all of them: epoll has no limit on a set
  size_t next = 0;          // where the next collect starts (see collect)
};
thread_local EpSnapshot t_ep;
// this thread's references to the members during one epoll_wait (kept to
// reuse their storage)
thread_local std::vector<NmFd *> t_ep_pins;
thread_local std::vector<Port *> t_ep_ports;
constexpr uint64_t EP_USER_SET = ~0ULL;
constexpr uint64_t EP_HUP_BIT = 1ULL << 32;

// Under g_mu: entry j leaves set e. The doorbell and control socket it
// watched in `q` may be another member's too (a dup of its fd, another
// registration of one pipe end): `q` holds each fd once, so the members
// that share one are marked unwatched, for the next snapshot to add it
// again under one of them; else their wakeups would go unseen.
void ep_erase(EpSet *e, size_t j) {
  const EpEntry gone = e->entries[j];
  e->entries.erase(e->entries.begin() + static_cast<long>(j));
  if (gone.watched_wait >= 0) sys::epoll_ctl(e->q, EPOLL_CTL_DEL, gone.watched_wait, nullptr);
  if (gone.watched_hup >= 0) sys::epoll_ctl(e->q, EPOLL_CTL_DEL, gone.watched_hup, nullptr);
  for (EpEntry &en : e->entries)
    if ((gone.watched_wait >= 0 && en.watched_wait == gone.watched_wait) ||
        (gone.watched_hup >= 0 && en.watched_hup == gone.watched_hup))
      en.watched_wait = en.watched_hup = -1;
  ep_changed(e);
}

void ep_forget_fd(int fd) {  // under g_mu: fd is closing
  for (auto &chunk : g_chunks) {
    Slot *s = chunk.load(std::memory_order_acquire);
    if (!s) continue;
    for (int i = 0; i < CHUNK; i++) {
      EpSet *e = s[i].ep.load(std::memory_order_acquire);
      if (!e) continue;
      for (size_t j = 0; j < e->entries.size(); j++)
        if (e->entries[j].fd == fd) {
          ep_erase(e, j);
          break;
        }
    }
  }
}

// ---- names --------------------------------------------------------------
bool is_pipe_name(const std::string &n) { return n.find_first_of("{}") != std::string::npos; }
bool is_vale_name(const std::string &n) { return n.compare(0, 4, "vale") == 0 && n.find(':') != std::string::npos; }

// encodeURIComponent, then '%' -> '_': the region file name pipe.ts gives a pipe
std::string pipe_path(const std::string &nr_name, std::string *id_out) {
  const size_t b = nr_name.find_first_of("{}");
  const std::string parent = nr_name.substr(0, b), id = nr_name.substr(b + 1);
  *id_out = id;
  const std::string key = parent + "|" + id;
  std::string enc;
  static const char hex[] = "0123456789ABCDEF";
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || std::strchr("-_.!~*'()", c)) {
      enc += c;
    } else {
      enc += '_';
      enc += hex[u >> 4];
      enc += hex[u & 15];
    }
  }
  const char *dir = std::getenv("NETMAP_PIPE_DIR");
  return std::string(dir && *dir ? dir : "/dev/shm") + "/" + PIPE_FILE_PREFIX + enc;
}

// ---- registration -------------------------------------------------------
struct RegWant {
  std::string name;
  uint32_t mode = NR_REG_ALL_NIC;
  uint32_t ring = 0;
  uint64_t flags = 0;
};

// checks the register modes and flags that no vale-ts port or pipe has
int check_mode(RegWant *w) {
  switch (w->mode) {
    case NR_REG_DEFAULT: w->mode = NR_REG_ALL_NIC; return 0;
    case NR_REG_ALL_NIC: case NR_REG_ONE_NIC: case NR_REG_NULL: return 0;
    case NR_REG_SW: case NR_REG_NIC_SW: case NR_REG_ONE_SW:
      return fail(EINVAL, w->name + ": VALE ports and pipes have no host rings: register all rings or one (NR_REG_ALL_NIC, NR_REG_ONE_NIC)");
    case NR_REG_PIPE_MASTER: case NR_REG_PIPE_SLAVE:
      // the legacy spelling of NAME{N / NAME}N
      w->name += (w->mode == NR_REG_PIPE_MASTER ? "{" : "}") + std::to_string(w->ring);
      w->mode = NR_REG_ALL_NIC;
      w->ring = 0;
      return 0;
    default:
      return fail(EINVAL, w->name + ": unknown register mode " + std::to_string(w->mode));
  }
}

uint32_t clamp_rings(uint32_t v) { return v > MAX_RINGS ? MAX_RINGS : v; }
uint32_t clamp_slots(uint32_t v) { return v > MAX_SLOTS ? MAX_SLOTS : v < MIN_SLOTS ? 0 : v; }

int bind_rings(Port *p, const RegWant &w) {
  const uint32_t T = p->layout.p.tx_rings, R = p->layout.p.rx_rings;
  if (w.mode == NR_REG_ONE_NIC) {
    if (w.ring >= T && w.ring >= R)
      return fail(EINVAL, w.name + ": ring " + std::to_string(w.ring) + " does not exist (the port has " +
                              std::to_string(T) + " tx / " + std::to_string(R) + " rx rings)");
    // netmap's rule: a direction without that ring binds its ring 0
    const uint32_t t = w.ring < T ? w.ring : 0, r = w.ring < R ? w.ring : 0;
    p->tx_lo = std::min(t, T);
    p->tx_hi = std::min(t + 1, T);
    p->rx_lo = std::min(r, R);
    p->rx_hi = std::min(r + 1, R);
  } else if (w.mode == NR_REG_NULL) {
    p->tx_lo = p->tx_hi = p->rx_lo = p->rx_hi = 0;
  } else {
    p->tx_lo = 0, p->tx_hi = T, p->rx_lo = 0, p->rx_hi = R;
  }
  if (w.flags & NR_RX_RINGS_ONLY) p->tx_lo = p->tx_hi = 0;
  if (w.flags & NR_TX_RINGS_ONLY) p->rx_lo = p->rx_hi = 0;
  p->txpoll = !(w.flags & NR_NO_TX_POLL);
  p->rxpoll = (w.flags & NR_DO_RX_POLL) != 0;
  if (!p->is_pipe) {  // a pipe end keeps its own (cpp/core/pipe)
    for (uint32_t r = 0; r < T; r++) p->tx[r] = p->client.shadow(r);
    for (uint32_t r = 0; r < R; r++) p->rx[r] = p->client.shadow(T + r);
  }
  return 0;
}

// Two registrations of one pipe end in this process may not share a ring.
int claim_pipe_rings(Port *p) {
  if (!p->is_pipe) return 0;
  uint32_t tx = 0, rx = 0;
  for (uint32_t r = p->tx_lo; r < p->tx_hi; r++) tx |= 1u << r;
  for (uint32_t r = p->rx_lo; r < p->rx_hi; r++) rx |= 1u << r;
  if ((tx & p->sp->tx_bound) || (rx & p->sp->rx_bound))
    return fail(EBUSY, p->name + ": a ring it binds is already registered by this process (bind each ring once: NAME-0, NAME-1, ...)");
  p->sp->tx_bound |= tx;
  p->sp->rx_bound |= rx;
  p->tx_mask = tx;
  p->rx_mask = rx;
  return 0;
}

int register_vale(Port *p, const RegWant &w, const nmreq_register *body) {
  ControlError ce;
  p->conn = own_fd(vale_connect(&ce));
  if (p->conn < 0) return fail(ce.err, "cannot register " + w.name + ": " + ce.message);
  std::string conf;
  auto field = [&conf](const char *k, uint32_t v) {
    if (!v) return;
    conf += (conf.empty() ? "" : ",") + std::string("\"") + k + "\":" + std::to_string(v);
  };
  field("txRings", clamp_rings(body->nr_tx_rings));
  field("rxRings", clamp_rings(body->nr_rx_rings));
  field("txSlots", clamp_slots(body->nr_tx_slots));
  field("rxSlots", clamp_slots(body->nr_rx_slots));
  std::string req = "{\"op\":\"register\",\"name\":" + json_quote(w.name) + ",\"nrMode\":" + std::to_string(w.mode) +
                    ",\"ringId\":" + std::to_string(w.ring) + ",\"flags\":" + std::to_string(w.flags & 0xffffffffu) +
                    ",\"conf\":{" + conf + "}";
  // vale-ts's backpressure mode, which netmap's VALE does not have: asked
  // for by the environment, since no netmap request can say it
  const char *lossless = std::getenv("VALE_TS_LOSSLESS");
  if (lossless && *lossless && std::strcmp(lossless, "0") != 0) req += ",\"lossless\":true";
  if (body->nr_extra_bufs)
    req += ",\"extraBufs\":" + std::to_string(body->nr_extra_bufs > MAX_EXTRA_BUFS ? MAX_EXTRA_BUFS : body->nr_extra_bufs);
  req += "}";
  JVal reply;
  std::vector<int> fds;
  const bool ok = vale_request(p->conn, req, &reply, &fds, &ce);
  if (!ok || fds.size() != 3) {
    for (int f : fds) sys::close(f);
    if (ok) ce = {EPROTO, "vale-ts sent " + std::to_string(fds.size()) + " fds with its register reply, not 3"};
    return fail(ce.err, "cannot register " + w.name + ": " + ce.message);
  }
  p->hup_fd = p->conn;
  uint64_t memsize = 0, nifp = 0;
  const bool sizes = reply.get_u64("memsize", REGION_HEADER_SIZE, 0xffffffffULL, &memsize) &&
                     reply.get_u64("nifpOffset", 0, memsize, &nifp);
  // the client owns the three fds from here, also on failure
  Result<PortClient> c = PortClient::attach(unique_fd(own_fd(fds[0])), unique_fd(own_fd(fds[1])), unique_fd(own_fd(fds[2])));
  if (!sizes) return fail(EPROTO, "cannot register " + w.name + ": vale-ts's register reply lacks memsize/nifpOffset");
  if (!c) return fail(EPROTO, "cannot register " + w.name + ": vale-ts's region is invalid: " + describe(c.error()));
  p->client = std::move(c).value();
  p->layout = p->client.layout();
  if (p->client.mapped_size() < memsize || p->layout.size > memsize || p->layout.nifp_ofs[0] != nifp)
    return fail(EPROTO, "cannot register " + w.name + ": vale-ts's region does not match its reply (memsize " +
                            std::to_string(memsize) + ", netmap_if at " + std::to_string(nifp) + ")");
  p->base = p->client.base();
  p->mapped = p->client.mapped_size();
  p->wait_fd = p->client.wait_fd();
  p->iface = 0;
  std::string err;
  int errn = 0;
  p->region = region_get(p->client.region_fd(), memsize, &err, &errn);
  if (!p->region) return fail(errn, "cannot register " + w.name + ": " + err);
  return 0;
}

int register_pipe(Port *p, const RegWant &w, const nmreq_register *body) {
  p->is_pipe = true;
  std::string id;
  const std::string path = pipe_path(w.name, &id);
  if (id.empty()) return fail(EINVAL, w.name + ": pipe suffix without an id: write NAME{ID or NAME}ID");
  const uint32_t end = w.name.find('}') != std::string::npos ? 1 : 0;
  LayoutParams lp;
  lp.n_ifs = 2;
  // a pipe end's tx ring feeds the peer's rx ring: counts and sizes must match
  uint32_t rings = clamp_rings(body->nr_tx_rings > body->nr_rx_rings ? body->nr_tx_rings : body->nr_rx_rings);
  uint32_t slots = clamp_slots(body->nr_tx_slots ? body->nr_tx_slots : body->nr_rx_slots);
  lp.tx_rings = lp.rx_rings = rings ? rings : 1;
  lp.tx_slots = lp.rx_slots = slots ? slots : DEFAULT_SLOTS;
  lp.extra_bufs = body->nr_extra_bufs > MAX_EXTRA_BUFS ? MAX_EXTRA_BUFS : body->nr_extra_bufs;
  Result<Layout> lw = compute_layout(lp);
  if (!lw.ok()) return fail(EINVAL, w.name + ": " + lw.error().what);
  const Layout want = *lw;
  std::string err;
  for (SharedPipe *sp : g_pipes)
    if (sp->path == path && sp->end == end) p->sp = sp;
  if (p->sp) {
    p->sp->refs++;
  } else {
    Result<PipeEnd> pe = PipeEnd::open(path, end, want, w.name);
    if (!pe) return fail(pe.error().err, "cannot open pipe " + w.name + ": " + describe(pe.error()));
    auto *sp = new SharedPipe;
    sp->path = path;
    sp->end = end;
    sp->refs = 1;
    sp->pe.emplace(std::move(pe).value());
    g_pipes.push_back(sp);
    p->sp = sp;
  }
  PipeEnd &pe = *p->sp->pe;
  p->base = pe.base();
  p->mapped = pe.size();
  p->layout = pe.layout();
  p->iface = end;
  p->wait_fd = pe.doorbell_fd();
  int errn = 0;
  p->region = region_get(pe.region_fd(), pe.size(), &err, &errn);
  if (!p->region) return fail(errn, "cannot open pipe " + w.name + ": " + err);
  return 0;
}

// the registration's own netmap_if, in the overlay slot
void write_nifp(Port *p, bool extra_bufs) {
  Region *r = p->region;
  const auto *src = reinterpret_cast<const netmap_if *>(p->base + p->layout.nifp_ofs[p->iface]);
  auto *dst = reinterpret_cast<netmap_if *>(r->overlay + p->slot * NIFP_SLOT);
  std::memset(dst, 0, NIFP_SLOT);
  std::memcpy(dst->ni_name, src->ni_name, sizeof dst->ni_name);
  dst->ni_version = NETMAP_API;
  dst->ni_flags = src->ni_flags;
  dst->ni_tx_rings = p->layout.p.tx_rings;
  dst->ni_rx_rings = p->layout.p.rx_rings;
  dst->ni_bufs_head = extra_bufs ? src->ni_bufs_head : 0;
  const int64_t me = static_cast<int64_t>(r->memsize + p->slot * NIFP_SLOT);
  auto *ofs = reinterpret_cast<int64_t *>(reinterpret_cast<uint8_t *>(dst) + sizeof(netmap_if));
  const uint32_t T = p->layout.p.tx_rings;
  for (uint32_t k = p->tx_lo; k < p->tx_hi; k++) ofs[k] = static_cast<int64_t>(p->layout.ring_ofs[p->iface][k]) - me;
  for (uint32_t k = p->rx_lo; k < p->rx_hi; k++)
    ofs[T + k] = static_cast<int64_t>(p->layout.ring_ofs[p->iface][T + k]) - me;
}

// NETMAP_REQ_REGISTER on an emulated fd; 0 or -1 with errno (and a message)
int do_register(NmFd *f, RegWant w, nmreq_register *body) {
  if (f->port.load(std::memory_order_relaxed))
    return fail(EBUSY, w.name + ": this fd is already registered (open /dev/netmap again for another port)");
  if (f->inherited)
    return fail(EBUSY, w.name + ": this fd was registered before fork() by the parent (open /dev/netmap again in the child)");
  if (check_mode(&w) < 0) return -1;
  if (w.flags & (NR_MONITOR_TX | NR_MONITOR_RX | NR_ZCOPY_MON))
    return fail(EOPNOTSUPP, w.name + ": monitor ports (/t /r /z) are not supported by vale-ts");
  auto *p = new Port;
  p->name = w.name;
  const int rc = is_pipe_name(w.name) ? register_pipe(p, w, body) : register_vale(p, w, body);
  if (rc < 0 || bind_rings(p, w) < 0 || claim_pipe_rings(p) < 0) {
    const int e = errno;
    if (p->region) region_put(p->region);
    delete p;
    errno = e;
    return -1;
  }
  Region *r = p->region;
  if (body->nr_mem_id && body->nr_mem_id != r->mem_id) {
    region_put(r);
    delete p;
    return fail(EINVAL, w.name + ": memory id " + std::to_string(body->nr_mem_id) + " was asked, but this port's memory is " +
                            std::to_string(r->mem_id) + " (every vale-ts port and pipe has its own): drop @" +
                            std::to_string(body->nr_mem_id));
  }
  uint32_t slot = 0;
  while (slot < OVERLAY_SLOTS && (r->used & (1ULL << slot))) slot++;
  if (slot == OVERLAY_SLOTS) {
    region_put(r);
    delete p;
    return fail(ENOMEM, w.name + ": more than 64 registrations on one port in this process");
  }
  r->used |= 1ULL << slot;
  p->slot = slot;
  write_nifp(p, body->nr_extra_bufs != 0);
  body->nr_offset = r->memsize + slot * NIFP_SLOT;
  body->nr_memsize = r->memsize + OVERLAY_SIZE;
  body->nr_tx_slots = p->layout.p.tx_slots;
  body->nr_rx_slots = p->layout.p.rx_slots;
  body->nr_tx_rings = static_cast<uint16_t>(p->layout.p.tx_rings);
  body->nr_rx_rings = static_cast<uint16_t>(p->layout.p.rx_rings);
  body->nr_host_tx_rings = body->nr_host_rx_rings = 0;
  body->nr_mem_id = r->mem_id;
  body->nr_extra_bufs = body->nr_extra_bufs ? p->layout.p.extra_bufs : 0;
  live_add(p);
  f->port.store(p, std::memory_order_release);  // what a lock-free reader finds is complete
  return 0;
}

void release_port(Port *p) {  // under g_mu
  live_remove(p);
  Region *r = p->region;
  if (r) {
    r->used &= ~(1ULL << p->slot);
    region_put(r);
  }
  delete p;
}

// ---- names the preload does not serve -------------------------------------
// A NIC (netmap:eth0): the real device if there is one, else netmap's ENXIO.
int real_device(const std::string &name) {
  const int fd = sys::open("/dev/netmap", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    fail(ENXIO, name + ": not a VALE port (valeX:Y) or pipe (NAME{N, NAME}N), which is all the preload serves, and "
                       "there is no netmap kernel module to pass it to (/dev/netmap: " + std::strerror(e) + ")");
    return -1;
  }
  return fd;
}

// Registers through the real device and turns the emulated fd into it:
// every fd dup'ed from it too, since they are one open file, which netmap
// registers once for all of them.
int pass_register(NmFd *f, unsigned long req, void *arg, const std::string &name) {
  if (f->port.load(std::memory_order_acquire) || f->inherited)
    return fail(EBUSY, name + ": this fd is already registered (open /dev/netmap again for another port)");
  const int real = real_device(name);
  if (real < 0) return -1;
  if (sys::ioctl(real, req, arg) < 0) {
    const int e = errno;
    sys::close(real);
    errno = e;
    return -1;
  }
  Lib lk;
  int rc = 0, e = 0, moved = 0;
  for (auto &chunk : g_chunks) {
    Slot *c = chunk.load(std::memory_order_acquire);
    for (int i = 0; c && i < CHUNK; i++) {
      if (c[i].nm.load(std::memory_order_relaxed) != f) continue;
      const int fd = static_cast<int>((&chunk - g_chunks) * CHUNK + i);
      const long fl = syscall(SYS_fcntl, fd, F_GETFD);
      unpublish(&c[i], &Slot::nm);
      g_open_fds.fetch_sub(1);
      ep_forget_fd(fd);
      f->refs--;
      nm_unref_locked(f);  // the slot's reference; the caller's pin keeps f
      moved++;
      // from here on this fd of the program's is the kernel's netmap fd
      if (sys::dup3(real, fd, fl >= 0 && (fl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0 && rc == 0) rc = -1, e = errno;
    }
  }
  sys::close(real);
  if (moved == 0) return fail(EBADF, "");  // every fd of it was closed meanwhile
  errno = e;
  return rc;
}

int pass_other(unsigned long req, void *arg, const std::string &name) {
  const int real = real_device(name);
  if (real < 0) return -1;
  const int rc = sys::ioctl(real, req, arg);
  const int e = errno;
  sys::close(real);
  errno = e;
  return rc;
}

// ---- VALE requests ----------------------------------------------------------
int vale_op(const std::string &req, JVal *reply, const char *action, const std::string &name) {
  ControlError ce;
  if (!vale_request_once(req, reply, &ce)) {
    // valectl prints its own line with strerror; ours says why
    return fail(ce.err, std::string("failed to ") + action + " " + name + ": " + ce.message);
  }
  return 0;
}

int vale_list(nmreq_header *h, nmreq_vale_list *body, const std::string &name) {
  JVal reply;
  if (!name.empty()) {
    if (name.compare(0, 4, "vale") != 0) return fail(EINVAL, "");
    ControlError ce;
    if (vale_request_once("{\"op\":\"list\",\"name\":" + json_quote(name) + "}", &reply, &ce)) {
      const JVal *ports = reply.get("ports");
      uint64_t b = 0, pi = 0;
      if (!ports || ports->type != JVal::ARR || ports->arr.empty() || !ports->arr[0].get_u64("bridgeIndex", 0, 0xffff, &b) ||
          !ports->arr[0].get_u64("portIndex", 0, 0xffffffff, &pi))
        return fail(EPROTO, "vale-ts sent a malformed list reply");
      body->nr_bridge_idx = static_cast<uint16_t>(b);
      body->nr_port_idx = static_cast<uint32_t>(pi);
      return 0;
    }
    if (ce.err != ENXIO || ce.message.find("not running") != std::string::npos)
      return fail(ce.err, "failed to list " + name + ": " + ce.message);
    // no such port: netmap answers NM_BDG_NOPORT if the switch exists, else ENOENT
    const std::string sw = name.substr(0, name.find(':'));
    JVal st;
    if (!vale_request_once("{\"op\":\"stats\",\"switch\":" + json_quote(sw) + "}", &st, &ce)) {
      errno = ce.err == ENXIO ? ENOENT : ce.err;
      return -1;
    }
    const JVal *sws = st.get("switches");
    uint64_t b = 0;
    if (!sws || sws->type != JVal::ARR || sws->arr.empty() || !sws->arr[0].get_u64("bridgeIndex", 0, 0xffff, &b))
      return fail(EPROTO, "vale-ts sent a malformed stats reply");
    body->nr_bridge_idx = static_cast<uint16_t>(b);
    body->nr_port_idx = NM_BDG_NOPORT;
    return 0;
  }
  // enumeration: the first port at or after (nr_bridge_idx, nr_port_idx)
  if (vale_op("{\"op\":\"list\"}", &reply, "list", "all") < 0) return -1;
  const JVal *ports = reply.get("ports");
  if (!ports || ports->type != JVal::ARR) return fail(EPROTO, "vale-ts sent a malformed list reply");
  const uint64_t want = (static_cast<uint64_t>(body->nr_bridge_idx) << 32) | body->nr_port_idx;
  const JVal *best = nullptr;
  uint64_t best_key = ~0ULL;
  for (const JVal &pt : ports->arr) {
    uint64_t b = 0, pi = 0;
    if (!pt.get_u64("bridgeIndex", 0, 0xffff, &b) || !pt.get_u64("portIndex", 0, 0xffffffff, &pi) || !pt.get_str("name"))
      return fail(EPROTO, "vale-ts sent a malformed port listing");
    const uint64_t key = (b << 32) | pi;
    if (key >= want && key < best_key) best = &pt, best_key = key;
  }
  if (!best) {
    errno = ENOENT;
    return -1;
  }
  const std::string &n = *best->get_str("name");
  std::memset(h->nr_name, 0, sizeof h->nr_name);
  std::memcpy(h->nr_name, n.c_str(), n.size() < sizeof h->nr_name - 1 ? n.size() : sizeof h->nr_name - 1);
  body->nr_bridge_idx = static_cast<uint16_t>(best_key >> 32);
  body->nr_port_idx = static_cast<uint32_t>(best_key);
  return 0;
}

bool geometry(const JVal &r, uint64_t *memsize, uint64_t *txr, uint64_t *rxr, uint64_t *txs, uint64_t *rxs) {
  return r.get_u64("memsize", 0, ~0ULL, memsize) && r.get_u64("txRings", 1, 0xffff, txr) &&
         r.get_u64("rxRings", 1, 0xffff, rxr) && r.get_u64("txSlots", 1, 0xffffffff, txs) &&
         r.get_u64("rxSlots", 1, 0xffffffff, rxs);
}

int port_info(NmFd *f, const std::string &name, nmreq_port_info_get *body) {
  Port *p = f->port.load(std::memory_order_acquire);
  if (p && (name.empty() || name == p->name)) {
    body->nr_memsize = p->region->memsize + OVERLAY_SIZE;
    body->nr_tx_slots = p->layout.p.tx_slots;
    body->nr_rx_slots = p->layout.p.rx_slots;
    body->nr_tx_rings = static_cast<uint16_t>(p->layout.p.tx_rings);
    body->nr_rx_rings = static_cast<uint16_t>(p->layout.p.rx_rings);
    body->nr_host_tx_rings = body->nr_host_rx_rings = 0;
    body->nr_mem_id = p->region->mem_id;
    return 0;
  }
  if (is_pipe_name(name))
    return fail(EOPNOTSUPP, name + ": information on a pipe is available on the fd that registered it");
  JVal reply;
  if (vale_op("{\"op\":\"info\",\"name\":" + json_quote(name) + "}", &reply, "obtain info for", name) < 0) return -1;
  uint64_t ms, txr, rxr, txs, rxs, mid = 0;
  if (!geometry(reply, &ms, &txr, &rxr, &txs, &rxs)) return fail(EPROTO, "vale-ts sent a malformed info reply");
  reply.get_u64("memId", 0, 0xffff, &mid);
  body->nr_memsize = ms + OVERLAY_SIZE;
  body->nr_tx_slots = static_cast<uint32_t>(txs);
  body->nr_rx_slots = static_cast<uint32_t>(rxs);
  body->nr_tx_rings = static_cast<uint16_t>(txr);
  body->nr_rx_rings = static_cast<uint16_t>(rxr);
  body->nr_host_tx_rings = body->nr_host_rx_rings = 0;
  // the id this process would give that memory is decided when it registers
  body->nr_mem_id = static_cast<uint16_t>(mid);
  return 0;
}

int vale_newif(const std::string &name, nmreq_vale_newif *body) {
  std::string conf;
  auto field = [&conf](const char *k, uint32_t v) {
    if (v) conf += (conf.empty() ? "" : ",") + std::string("\"") + k + "\":" + std::to_string(v);
  };
  field("txRings", clamp_rings(body->nr_tx_rings));
  field("rxRings", clamp_rings(body->nr_rx_rings));
  field("txSlots", clamp_slots(body->nr_tx_slots));
  field("rxSlots", clamp_slots(body->nr_rx_slots));
  if (!is_vale_name(name))
    return fail(EINVAL, "create " + name + ": vale-ts creates persistent ports on a switch: name it valeX:" + name);
  JVal reply;
  if (vale_op("{\"op\":\"create\",\"name\":" + json_quote(name) + ",\"conf\":{" + conf + "}}", &reply, "create", name) < 0)
    return -1;
  uint64_t ms, txr, rxr, txs, rxs, mid = 0;
  if (!geometry(reply, &ms, &txr, &rxr, &txs, &rxs)) return fail(EPROTO, "vale-ts sent a malformed create reply");
  reply.get_u64("memId", 0, 0xffff, &mid);
  body->nr_tx_slots = static_cast<uint32_t>(txs);
  body->nr_rx_slots = static_cast<uint32_t>(rxs);
  body->nr_tx_rings = static_cast<uint16_t>(txr);
  body->nr_rx_rings = static_cast<uint16_t>(rxr);
  body->nr_mem_id = static_cast<uint16_t>(mid);
  return 0;
}

int simple_op(const char *op, const char *action, const std::string &name, const char *extra, uint32_t *port_index) {
  JVal reply;
  if (vale_op(std::string("{\"op\":\"") + op + "\",\"name\":" + json_quote(name) + extra + "}", &reply, action, name) < 0)
    return -1;
  uint64_t pi = 0;
  if (port_index && reply.get_u64("portIndex", 0, 0xffffffff, &pi)) *port_index = static_cast<uint32_t>(pi);
  return 0;
}

// Options chained to a request: vale-ts implements none of netmap's
// (extmem, CSB, offsets, kloop), so each is marked EOPNOTSUPP as netmap
// marks the ones it does not know, and the request fails.
int refuse_options(nmreq_header *h) {
  int n = 0;
  for (auto *o = reinterpret_cast<nmreq_option *>(static_cast<uintptr_t>(h->nr_options)); o && n < 16;
       o = reinterpret_cast<nmreq_option *>(static_cast<uintptr_t>(o->nro_next)), n++)
    o->nro_status = EOPNOTSUPP;
  if (n == 0) return 0;
  errno = EOPNOTSUPP;
  return -1;
}

int ctrl(NmFd *f, nmreq_header *h) {
  if (!h) return fail(EFAULT, "");
  if (h->nr_version < NETMAP_MIN_API || h->nr_version > NETMAP_MAX_API)
    return fail(EINVAL, "API mismatch: the program speaks netmap API " + std::to_string(h->nr_version) +
                            ", the preload " + std::to_string(NETMAP_API));
  const std::string name(h->nr_name, strnlen(h->nr_name, sizeof h->nr_name));
  void *body = reinterpret_cast<void *>(static_cast<uintptr_t>(h->nr_body));
  const bool served = name.empty() || is_vale_name(name) || is_pipe_name(name);
  switch (h->nr_reqtype) {
    case NETMAP_REQ_REGISTER: {
      if (!body) return fail(EFAULT, "");
      if (!served) return pass_register(f, NIOCCTRL, h, name);
      if (refuse_options(h) < 0) return -1;
      auto *b = static_cast<nmreq_register *>(body);
      // all 16 bits, as netmap reads them: NETMAP_RING_MASK is the legacy nmreq's
      RegWant w{name, b->nr_mode, b->nr_ringid, b->nr_flags};
      Lib lk;
      return do_register(f, w, b);
    }
    case NETMAP_REQ_PORT_INFO_GET:
      if (!body) return fail(EFAULT, "");
      if (!served) return pass_other(NIOCCTRL, h, name);
      return port_info(f, name, static_cast<nmreq_port_info_get *>(body));
    case NETMAP_REQ_VALE_LIST:
      if (!body) return fail(EFAULT, "");
      return vale_list(h, static_cast<nmreq_vale_list *>(body), name);
    case NETMAP_REQ_VALE_NEWIF:
      if (!body) return fail(EFAULT, "");
      return vale_newif(name, static_cast<nmreq_vale_newif *>(body));
    case NETMAP_REQ_VALE_DELIF:
      return simple_op("remove", "remove", name, "", nullptr);
    case NETMAP_REQ_VALE_ATTACH: {
      auto *b = static_cast<nmreq_vale_attach *>(body);
      const bool host = b && b->reg.nr_mode == NR_REG_NIC_SW;
      return simple_op("attach", "attach", name, host ? ",\"hostStack\":true" : "", b ? &b->port_index : nullptr);
    }
    case NETMAP_REQ_VALE_DETACH: {
      auto *b = static_cast<nmreq_vale_detach *>(body);
      return simple_op("detach", "detach", name, "", b ? &b->port_index : nullptr);
    }
    case NETMAP_REQ_VALE_POLLING_ENABLE:
    case NETMAP_REQ_VALE_POLLING_DISABLE:
      return fail(EOPNOTSUPP, name + ": vale-ts has no kernel polling threads (the switch polls on its own)");
    case NETMAP_REQ_PORT_HDR_GET:
      if (!body) return fail(EFAULT, "");
      static_cast<nmreq_port_hdr *>(body)->nr_hdr_len = 0;  // vale-ts ports carry no virtio-net header
      return 0;
    case NETMAP_REQ_PORT_HDR_SET:
      if (!body) return fail(EFAULT, "");
      if (static_cast<nmreq_port_hdr *>(body)->nr_hdr_len == 0) return 0;
      return fail(EINVAL, name + ": vale-ts ports carry no virtio-net header (only length 0 is accepted)");
    case NETMAP_REQ_POOLS_INFO_GET:
    case NETMAP_REQ_SYNC_KLOOP_START:
    case NETMAP_REQ_SYNC_KLOOP_STOP:
    case NETMAP_REQ_CSB_ENABLE:
      return fail(EOPNOTSUPP, name + ": request " + std::to_string(h->nr_reqtype) + " is not supported under vale-ts");
    default:
      return fail(EINVAL, "");
  }
}

// legacy NIOCREGIF / NIOCGINFO (struct nmreq)
int legacy(NmFd *f, unsigned long req, nmreq *r) {
  if (!r) return fail(EFAULT, "");
  const std::string name(r->nr_name, strnlen(r->nr_name, sizeof r->nr_name));
  const bool served = name.empty() || is_vale_name(name) || is_pipe_name(name) ||
                      (r->nr_flags & NR_REG_MASK) == NR_REG_PIPE_MASTER || (r->nr_flags & NR_REG_MASK) == NR_REG_PIPE_SLAVE;
  if (!served) return req == NIOCREGIF ? pass_register(f, req, r, name) : pass_other(req, r, name);
  if (r->nr_cmd != 0)
    return fail(EOPNOTSUPP, name + ": legacy VALE commands (nr_cmd " + std::to_string(r->nr_cmd) +
                                ") are not supported: use NIOCCTRL, as valectl does");
  if (req == NIOCGINFO) {
    nmreq_port_info_get pi{};
    if (port_info(f, name, &pi) < 0) return -1;
    r->nr_memsize = static_cast<uint32_t>(pi.nr_memsize);
    r->nr_tx_slots = pi.nr_tx_slots;
    r->nr_rx_slots = pi.nr_rx_slots;
    r->nr_tx_rings = pi.nr_tx_rings;
    r->nr_rx_rings = pi.nr_rx_rings;
    r->nr_arg2 = pi.nr_mem_id;
    return 0;
  }
  RegWant w{name, r->nr_flags & NR_REG_MASK, 0, 0};
  uint64_t flags = 0;
  if (w.mode == NR_REG_DEFAULT) {  // the oldest form: ring id bits say it
    if (r->nr_ringid & NETMAP_SW_RING) w.mode = NR_REG_SW;
    else if (r->nr_ringid & NETMAP_HW_RING) w.mode = NR_REG_ONE_NIC;
    else w.mode = NR_REG_ALL_NIC;
  }
  w.ring = r->nr_ringid & NETMAP_RING_MASK;
  if (r->nr_ringid & NETMAP_NO_TX_POLL) flags |= NR_NO_TX_POLL;
  if (r->nr_ringid & NETMAP_DO_RX_POLL) flags |= NR_DO_RX_POLL;
  w.flags = flags | (r->nr_flags & ~static_cast<uint64_t>(NR_REG_MASK));
  nmreq_register b{};
  b.nr_tx_slots = r->nr_tx_slots;
  b.nr_rx_slots = r->nr_rx_slots;
  b.nr_tx_rings = r->nr_tx_rings;
  b.nr_rx_rings = r->nr_rx_rings;
  b.nr_mem_id = r->nr_arg2;
  b.nr_extra_bufs = r->nr_arg3;
  {
    Lib lk;
    if (do_register(f, w, &b) < 0) return -1;
  }
  r->nr_offset = static_cast<uint32_t>(b.nr_offset);
  r->nr_memsize = static_cast<uint32_t>(b.nr_memsize);
  r->nr_tx_slots = b.nr_tx_slots;
  r->nr_rx_slots = b.nr_rx_slots;
  r->nr_tx_rings = b.nr_tx_rings;
  r->nr_rx_rings = b.nr_rx_rings;
  r->nr_arg2 = b.nr_mem_id;
  r->nr_arg3 = b.nr_extra_bufs;
  return 0;
}

// A timeout as a deadline on mono_ns() (ns, -1: none): null, or one too
// long to count in int64 nanoseconds, is none; false for one the kernel
// refuses with EINVAL (a negative part, tv_nsec past a second).
bool deadline_of(const timespec *t, int64_t *deadline) {
  *deadline = -1;
  if (!t) return true;
  if (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000L) return false;
  const int64_t now = mono_ns();
  if (t->tv_sec < (INT64_MAX - now) / 1000000000LL - 1) *deadline = now + t->tv_sec * 1000000000LL + t->tv_nsec;
  return true;
}

// The time left before `deadline` (ns, -1: none) as a timespec for ppoll.
const timespec *left(int64_t deadline, timespec *ts) {
  if (deadline < 0) return nullptr;
  int64_t d = deadline - mono_ns();
  if (d < 0) d = 0;
  ts->tv_sec = d / 1000000000LL;
  ts->tv_nsec = d % 1000000000LL;
  return ts;
}

constexpr nfds_t STACK_FDS = 256;


// Drops what the table holds for fd (an emulated fd, an epoll set of ours);
// the kernel fd itself is the caller's to close. Under g_mu.
bool forget_locked(Slot *s, int fd) {
  NmFd *f = s->nm.load(std::memory_order_acquire);
  EpSet *e = s->ep.load(std::memory_order_acquire);
  if (f) {
    unpublish(s, &Slot::nm);
    g_open_fds.fetch_sub(1);
    ep_forget_fd(fd);
    // the registration goes with the last fd that refers to it, or after
    // the last call still using it
    f->refs--;
    nm_unref_locked(f);
  }
  if (e) {
    unpublish(s, &Slot::ep);
    g_ep_sets.fetch_sub(1);
    if (e->uses.fetch_sub(1, std::memory_order_acq_rel) == 1) ep_destroy_locked(e);
  }
  return f || e;
}

// newfd, a kernel dup of an emulated fd, becomes one too, sharing its file.
int adopt_locked(int newfd, NmFd *f) {
  Slot *s = slot_of(newfd, true);
  if (!s) {
    sys::close(newfd);
    return fail(EMFILE, "dup: fd beyond the preload's table (1048576 fds)");
  }
  f->refs++;
  f->uses.fetch_add(1, std::memory_order_relaxed);
  s->nm.store(f, std::memory_order_release);
  g_open_fds.fetch_add(1);
  return newfd;
}

// The process the table belongs to: set at the first open, renewed in a
// fork child by fork_child (see shared_child).
std::atomic<pid_t> g_pid{0};

// fork: the registrations stay with the parent, which alone releases them,
// and the child keeps none of the library's fds or mappings: vale-ts sees
// the EOF of a port's control connection when the parent lets go even while
// a child lives, also for a record the parent was closing at fork while
// another of its threads still used it (no thread is left here to finish
// that close). The child keeps the program's fds: an inherited emulated fd
// stays in the table, registered in the parent (see inherited_fail).
// The lock is held across fork so that the child's copy of the table is
// consistent. The child may be one of a multithreaded process: only
// atomics, plain stores and raw syscalls below, nothing allocated or freed;
// what the parent's records hold stays allocated here, never used again.
void fork_prepare() { g_mu.lock(); }
void fork_parent() { g_mu.unlock(); }

// An epoll set's own epoll is an open file the child shares with the
// parent (what the child's epoll_ctl on it did would change the parent's
// wait): the child's set gets a fresh one under the same number, which
// watches the program's epoll fd and none of the parent's doorbells.
void fork_renew_ep(EpSet *e) {
  int q = static_cast<int>(syscall(SYS_epoll_create1, EPOLL_CLOEXEC));
  if (q >= 0 && q != e->q) {
    const int moved = static_cast<int>(syscall(SYS_dup3, q, e->q, O_CLOEXEC));
    syscall(SYS_close, q);
    q = moved < 0 ? -1 : e->q;
  }
  e->q = q;  // -1 when out of fds: its waits fail with EBADF
  if (q >= 0) {
    slot_of(q, false)->internal.store(true, std::memory_order_release);  // its number was ours already
    g_internal.fetch_add(1);
    epoll_event uev{};
    uev.events = EPOLLIN;
    uev.data.u64 = EP_USER_SET;
    syscall(SYS_epoll_ctl, q, EPOLL_CTL_ADD, e->epfd, &uev);
  }
  for (EpEntry &en : e->entries) en.watched_wait = en.watched_hup = -1;
  e->uses.store(1, std::memory_order_relaxed);
  ep_changed(e);  // a thread's copy of the set may name the parent's registrations: renew it
}

void fork_child() {
  const int saved = errno;
  g_pid.store(static_cast<pid_t>(syscall(SYS_getpid)), std::memory_order_relaxed);
  // the library's mappings of the parent's regions (the program's own stay)
  for (Port *p = g_live; p; p = p->next_live)
    if (!p->is_pipe && p->base) syscall(SYS_munmap, p->base, p->mapped);
  for (SharedPipe *sp : g_pipes)
    if (sp->pe && sp->pe->base()) syscall(SYS_munmap, sp->pe->base(), sp->pe->size());
  for (Region *r : g_regions) syscall(SYS_munmap, r->overlay, OVERLAY_SIZE);
  // a registration in the child starts afresh: a region of its own (the
  // overlay's netmap_ifs are per process), a pipe end of its own
  g_live = nullptr;
  g_regions.clear();  // keeps its storage: no allocator call
  g_pipes.clear();
  for (auto &chunk : g_chunks) {
    Slot *s = chunk.load(std::memory_order_acquire);
    if (!s) continue;
    for (int i = 0; i < CHUNK; i++) {
      // the parent's other threads, and the calls they had in flight, are
      // not in the child: only the table holds references here
      s[i].pinning[0].store(0, std::memory_order_relaxed);
      s[i].pinning[1].store(0, std::memory_order_relaxed);
      // the library's fds, the parent's registrations' and the orphans'
      // alike (control sockets, regions, doorbells, epoll fds)
      if (s[i].internal.exchange(false, std::memory_order_acq_rel))
        syscall(SYS_close, static_cast<int>((&chunk - g_chunks) * CHUNK + i));
      if (NmFd *f = s[i].nm.load(std::memory_order_acquire)) {
        f->uses.store(f->refs, std::memory_order_relaxed);
        if (f->port.exchange(nullptr)) f->inherited = true;
      }
    }
  }
  g_internal.store(0);
  for (auto &chunk : g_chunks) {
    Slot *s = chunk.load(std::memory_order_acquire);
    for (int i = 0; s && i < CHUNK; i++)
      if (EpSet *e = s[i].ep.load(std::memory_order_acquire)) fork_renew_ep(e);
  }
  g_mu.unlock();
  errno = saved;
}

// A child that shares this process's memory without the fork handlers
// having run (vfork(), a clone() with CLONE_VM) closes and dups in its own
// fd table only: the table is the parent's and must stay as it is.
bool shared_child() {
  const pid_t p = g_pid.load(std::memory_order_relaxed);
  return p != 0 && static_cast<pid_t>(syscall(SYS_getpid)) != p;
}

int inherited_fail(int fd) {
  return fail(ENXIO, "fd " + std::to_string(fd) +
                         " was registered before fork(): the registration stays with the parent (netmap's ring "
                         "state lives in that process here); open /dev/netmap and register again in the child");
}

}  // namespace

bool is_netmap_fd(int fd) { return lookup(fd) != nullptr; }

int dev_open(int flags) {
  const int fd = eventfd(0, EFD_NONBLOCK | ((flags & O_CLOEXEC) ? EFD_CLOEXEC : 0));
  if (fd < 0) return -1;
  Lib lk;
  Slot *s = slot_of(fd, true);
  if (!s) {
    sys::close(fd);
    return fail(EMFILE, "fd beyond the preload's table (1048576 fds)");
  }
  static bool atfork = false;
  if (!atfork) {
    g_pid.store(getpid(), std::memory_order_relaxed);
    atfork = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
  }
  auto *f = new NmFd;
  f->fd = fd;
  s->nm.store(f, std::memory_order_release);
  g_open_fds.fetch_add(1);
  return fd;
}


// an epoll set of ours outlives the last emulated fd it held: its fd's
// close and dups must still drop it, or a new epoll fd with its number
// would be taken for it; and the library's own fds outlive both while a
// call still uses a closed registration
static bool tracking() {
  return g_open_fds.load(std::memory_order_relaxed) != 0 || g_ep_sets.load(std::memory_order_relaxed) != 0 ||
         g_internal.load(std::memory_order_relaxed) != 0;
}

static bool is_internal(Slot *s) { return s && s->internal.load(std::memory_order_acquire); }

int dev_opened(int fd) {
  if (fd < 0 || t_lib == 0) return fd;
  return own_fd(fd);  // the core, opening a file for the library (a pipe end's region, doorbells)
}

bool dev_close(int fd, int *rc) {
  if (!tracking()) return false;
  Slot *s = slot_of(fd, false);
  if (is_internal(s)) {
    if (t_lib) {  // the core closing a file of the library's: the number is free again
      disown_fd(fd);
      return false;
    }
    // not an fd the program opened: as the kernel answers for one it has not
    *rc = fail(EBADF, "");
    return true;
  }
  if (!s || (!s->nm.load(std::memory_order_acquire) && !s->ep.load(std::memory_order_acquire))) return false;
  if (shared_child()) return false;  // a vfork child's close: its copy only
  Lib lk;
  if (!forget_locked(s, fd)) return false;
  *rc = sys::close(fd);
  return true;
}

bool dev_dup(int oldfd, int newfd, int flags, int *rc) {
  if (!tracking()) return false;
  Slot *so = slot_of(oldfd, false), *sn = newfd >= 0 ? slot_of(newfd, false) : nullptr;
  if (newfd != oldfd && is_internal(sn)) {  // would close a file of the library's under it
    *rc = fail(EBADF, "");
    return true;
  }
  const bool old_ours = so && so->nm.load(std::memory_order_acquire);
  const bool new_ours = sn && (sn->nm.load(std::memory_order_acquire) || sn->ep.load(std::memory_order_acquire));
  if (!old_ours && !new_ours) return false;
  if (newfd == oldfd) return false;  // dup2(fd, fd): nothing changes; dup3 says EINVAL
  if (shared_child()) return false;  // a vfork child's dup: its fd table only
  Lib lk;
  const int r = newfd < 0 ? static_cast<int>(syscall(SYS_fcntl, oldfd, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, -newfd - 1))
                          : sys::dup3(oldfd, newfd, flags);
  if (r < 0) return *rc = -1, true;
  // the kernel closed what newfd was: so do we
  if (Slot *t = slot_of(r, false)) forget_locked(t, r);
  NmFd *f = so ? so->nm.load(std::memory_order_acquire) : nullptr;
  *rc = f ? adopt_locked(r, f) : r;
  return true;
}

int dev_close_range(unsigned first, unsigned last, int flags) {
  auto kernel = [flags](unsigned a, unsigned b) { return static_cast<int>(syscall(SYS_close_range, a, b, flags)); };
  // a vfork child's closefrom before exec: its fd table only, the
  // library's fds in it too (they are close-on-exec anyway)
  if (!tracking() || first > last || shared_child()) return kernel(first, last);
  Lib lk;
  const unsigned top = static_cast<unsigned>(CHUNK * NCHUNKS - 1);
  const unsigned end = last > top ? top : last;
  // the kernel closes the runs between the library's own fds
  unsigned from = first;
  int rc = 0, e = 0;
  for (unsigned fd = first; fd <= end; fd++) {
    Slot *chunk = g_chunks[fd / CHUNK].load(std::memory_order_acquire);
    if (!chunk) {  // nothing of ours in this chunk
      fd |= CHUNK - 1;
      continue;
    }
    Slot *s = &chunk[fd % CHUNK];
    if (is_internal(s)) {
      if (fd > from && kernel(from, fd - 1) < 0 && rc == 0) rc = -1, e = errno;
      from = fd + 1;
    } else if (!(flags & CLOSE_RANGE_CLOEXEC)) {
      forget_locked(s, static_cast<int>(fd));
    }
  }
  if (from <= last && kernel(from, last) < 0 && rc == 0) rc = -1, e = errno;
  if (rc < 0) errno = e;
  return rc;
}

int dev_ioctl(int fd, unsigned long req, void *arg) {
  const Pinned pin_(pin(fd));
  NmFd *f = pin_.f;
  if (!f) return sys::ioctl(fd, req, arg);
  Port *p = f->port.load(std::memory_order_acquire);
  if (req == NIOCTXSYNC || req == NIOCRXSYNC) {
    if (!p) return f->inherited ? inherited_fail(fd) : fail(ENXIO, "");
    if (req == NIOCTXSYNC) txsync(p);
    else rxsync(p);
    return 0;
  }
  if (req == NIOCCTRL) return ctrl(f, static_cast<nmreq_header *>(arg));
  if (req == NIOCREGIF || req == NIOCGINFO) return legacy(f, req, static_cast<nmreq *>(arg));
  return sys::ioctl(fd, req, arg);
}

void *dev_mmap(int fd, void *addr, size_t len, int prot, int flags, off_t off) {
  const Pinned pin_(pin(fd));
  NmFd *f = pin_.f;
  Port *p = f ? f->port.load(std::memory_order_acquire) : nullptr;
  if (f && f->inherited) {
    inherited_fail(fd);
    return MAP_FAILED;
  }
  if (!p) {
    errno = f ? EINVAL : EBADF;
    return MAP_FAILED;
  }
  Region *r = p->region;
  const uint64_t total = r->memsize + OVERLAY_SIZE;
  if (off != 0 || len == 0 || len > total) {
    say(p->name + ": mmap must start at offset 0 and cover at most nr_memsize (" + std::to_string(total) + ") bytes");
    errno = EINVAL;
    return MAP_FAILED;
  }
  void *res = sys::mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)), -1, 0);
  if (res == MAP_FAILED) return MAP_FAILED;
  auto *base = static_cast<uint8_t *>(res);
  const size_t first = len < r->memsize ? len : r->memsize;
  if (sys::mmap(base, first, prot, MAP_SHARED | MAP_FIXED, r->map_fd, 0) == MAP_FAILED ||
      (len > r->memsize &&
       sys::mmap(base + r->memsize, len - r->memsize, prot, MAP_SHARED | MAP_FIXED, r->overlay_fd, 0) == MAP_FAILED)) {
    const int e = errno;
    munmap(base, len);
    errno = e;
    return MAP_FAILED;
  }
  return base;
}

int dev_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0 || !fds) return sys::ppoll(fds, n, timeout, mask);
  // the kernel's view of the set: ours replaced by our doorbells, plus the
  // control sockets whose EOF says vale-ts went away, one per entry at most:
  // room for n of them, not `mine`, since another thread may register an
  // fd of the set while this one loops
  pollfd stack[STACK_FDS];
  Port *stack_ports[STACK_FDS];
  NmFd *stack_pins[STACK_FDS];
  std::unique_ptr<pollfd[]> heap;
  std::unique_ptr<Port *[]> heap_ports;
  std::unique_ptr<NmFd *[]> heap_pins;
  pollfd *k = stack;
  Port **ports = stack_ports;
  NmFd **pins = stack_pins;
  if (n > STACK_FDS / 2) {  // a set this large is beyond netmap's usual single fd
    // the kernel's bound, checked before 2 * n is computed or allocated: past
    // RLIMIT_NOFILE poll() is EINVAL; memory it cannot have is ENOMEM, as
    // the kernel's, not an abort (this library has no exceptions)
    struct rlimit rl {};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && n > rl.rlim_cur) {
      errno = EINVAL;
      return -1;
    }
    heap.reset(new (std::nothrow) pollfd[2 * n]);
    heap_ports.reset(new (std::nothrow) Port *[n]);
    heap_pins.reset(new (std::nothrow) NmFd *[n]);
    if (!heap || !heap_ports || !heap_pins) {
      errno = ENOMEM;
      return -1;
    }
    k = heap.get();
    ports = heap_ports.get();
    pins = heap_pins.get();
  }
  // the emulated fds of the set, held for the whole call: another thread's
  // close leaves their registrations (and doorbells) alive until it returns
  // and the fds a fork child inherited registered: POLLERR, as netmap_poll
  // answers for an fd without a registration (never a sleep on them)
  nfds_t mine = 0, gone = 0;
  for (nfds_t i = 0; i < n; i++) {
    pins[i] = pin(fds[i].fd);
    if (pins[i] && pins[i]->port.load(std::memory_order_acquire)) mine++;
    else if (pins[i] && pins[i]->inherited) gone++;
  }
  struct Unpin {
    NmFd **v;
    nfds_t n;
    ~Unpin() {
      for (nfds_t i = 0; i < n; i++)
        if (v[i]) unpin(v[i]);
    }
  } unpin_all{pins, n};
  if (mine == 0 && gone == 0) return sys::ppoll(fds, n, timeout, mask);
  auto inherited = [&](nfds_t i) { return !ports[i] && pins[i] && pins[i]->inherited; };
  int64_t deadline;
  if (!deadline_of(timeout, &deadline)) return fail(EINVAL, "");
  for (;;) {
    int ready = 0;
    for (nfds_t i = 0; i < n; i++) {
      ports[i] = pins[i] ? pins[i]->port.load(std::memory_order_acquire) : nullptr;
      fds[i].revents = 0;
      if (ports[i]) {
        fds[i].revents = port_check(ports[i], fds[i].events);
        if (fds[i].revents) ready++;
      } else if (inherited(i)) {
        fds[i].revents = POLLERR;
        ready++;
      }
    }
    if (!ready) {
      for (nfds_t i = 0; i < n; i++)
        if (ports[i]) arm(ports[i], fds[i].events, 1);
      for (nfds_t i = 0; i < n; i++)
        if (ports[i]) {
          fds[i].revents = port_check(ports[i], fds[i].events);
          if (fds[i].revents) ready++;
        }
    }
    // the common case, netmap's own fds only and one ready: no syscall at all
    if (ready && mine + gone == n) return ready;
    nfds_t m = 0;
    for (nfds_t i = 0; i < n; i++) {
      if (ports[i]) k[i] = {ready ? -1 : ports[i]->wait_fd, POLLIN, 0};
      else if (inherited(i)) k[i] = {-1, 0, 0};
      else k[i] = {fds[i].fd, fds[i].events, 0};
    }
    for (nfds_t i = 0; i < n; i++)
      if (ports[i] && ports[i]->hup_fd >= 0 && !ready) k[n + m++] = {ports[i]->hup_fd, POLLIN, 0};
    timespec zero{0, 0}, ts, slice{0, kSharedBellSliceNs};
    const timespec *to = ready ? &zero : left(deadline, &ts);
    bool sliced = false;
    if (!ready)
      for (nfds_t i = 0; i < n && !sliced; i++)
        if (ports[i] && shares_bell(ports[i]) && (!to || to->tv_sec > 0 || to->tv_nsec > kSharedBellSliceNs)) {
          to = &slice;
          sliced = true;
        }
    const int rc = sys::ppoll(k, n + m, to, ready ? nullptr : mask);
    const int e = errno;
    if (!ready)
      for (nfds_t i = 0; i < n; i++)
        if (ports[i]) arm(ports[i], fds[i].events, 0);
    if (rc < 0) {
      errno = e;
      return -1;
    }
    int count = 0;
    for (nfds_t i = 0; i < n; i++) {
      if (!ports[i]) {
        if (!inherited(i)) fds[i].revents = k[i].revents;
        if (fds[i].revents) count++;
        continue;
      }
      if (!ready && (k[i].revents & POLLIN)) drain(k[i].fd);
    }
    if (!ready) {
      m = 0;
      for (nfds_t i = 0; i < n; i++)
        if (ports[i] && ports[i]->hup_fd >= 0) {
          if (k[n + m].revents) ports[i]->hung.store(true, std::memory_order_relaxed);
          m++;
        }
      for (nfds_t i = 0; i < n; i++)
        if (ports[i]) fds[i].revents = port_check(ports[i], fds[i].events);
    }
    for (nfds_t i = 0; i < n; i++)
      if (ports[i] && fds[i].revents) count++;
    if (count || ready || (rc == 0 && !sliced)) return count;
    if (deadline >= 0 && mono_ns() >= deadline) return 0;
    // woken with nothing for the caller (a stale kick), or a slice of a
    // shared doorbell's sleep passed: check and sleep again
  }
}

int dev_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  NmFd *f = lookup(fd);
  if (!f) return sys::epoll_ctl(epfd, op, fd, ev);
  Lib lk;
  Slot *s = slot_of(epfd, true);
  if (!s) return fail(EBADF, "");
  EpSet *set = s->ep.load(std::memory_order_acquire);
  if (!set) {
    if (fcntl(epfd, F_GETFD) < 0) return -1;
    set = new EpSet;
    set->epfd = epfd;
    set->q = own_fd(static_cast<int>(syscall(SYS_epoll_create1, EPOLL_CLOEXEC)));
    epoll_event uev{};
    uev.events = EPOLLIN;
    uev.data.u64 = EP_USER_SET;
    if (set->q < 0 || sys::epoll_ctl(set->q, EPOLL_CTL_ADD, epfd, &uev) < 0) {
      const int e = errno;
      close_own(set->q);
      delete set;
      errno = e;
      return -1;
    }
    ep_changed(set);
    s->ep.store(set, std::memory_order_release);
    g_ep_sets.fetch_add(1);
  }
  size_t j = 0;
  while (j < set->entries.size() && set->entries[j].fd != fd) j++;
  const bool found = j < set->entries.size();
  switch (op) {
    case EPOLL_CTL_ADD:
      if (found) return fail(EEXIST, "");
      if (!ev) return fail(EFAULT, "");
      set->entries.push_back({fd, ev->events, ev->data});
      ep_changed(set);
      return 0;
    case EPOLL_CTL_MOD:
      if (!found) return fail(ENOENT, "");
      if (!ev) return fail(EFAULT, "");
      set->entries[j].events = ev->events;
      set->entries[j].data = ev->data;
      ep_changed(set);
      return 0;
    case EPOLL_CTL_DEL:
      if (!found) return fail(ENOENT, "");
      ep_erase(set, j);
      return 0;
    default:
      return fail(EINVAL, "");
  }
}

bool dev_epoll_wait(int epfd, struct epoll_event *out, int max, const struct timespec *timeout, const sigset_t *mask,
                    int *rc) {
  if (g_open_fds.load(std::memory_order_relaxed) == 0) return false;
  // the set and its emulated members are held for the whole call: another
  // thread's close of one of them, or of epfd, frees nothing this call uses
  EpSet *set = pin_slot(slot_of(epfd, false), &Slot::ep);
  if (!set) return false;
  struct Release {
    EpSet *set;
    size_t pinned;
    ~Release() {
      for (size_t i = 0; i < pinned; i++)
        if (t_ep_pins[i]) unpin(t_ep_pins[i]);
      ep_unpin(set);
    }
  } held{set, 0};
  if (max <= 0) {
    errno = EINVAL;
    *rc = -1;
    return true;
  }
  EpSnapshot &sn = t_ep;
  for (;;) {
    if (sn.set != set || sn.gen != set->gen.load(std::memory_order_acquire) || !sn.complete) {
      Lib lk;
      sn.set = set;
      sn.gen = set->gen.load(std::memory_order_relaxed);
      sn.complete = true;
      sn.m.clear();
      sn.next = 0;
      for (EpEntry &en : set->entries) {
        NmFd *f = lookup(en.fd);
        Port *p = f ? f->port.load(std::memory_order_acquire) : nullptr;
        if (!p) {
          // inherited registered from the parent: EPOLLERR (see collect)
          if (f && f->inherited) sn.m.push_back({en.fd, en.events, en.data});
          else sn.complete = false;  // look again once it has registered
          continue;
        }
        if (en.watched_wait != p->wait_fd) {
          epoll_event w{};
          w.events = EPOLLIN;
          w.data.u64 = static_cast<uint64_t>(en.fd);
          if (en.watched_wait >= 0) sys::epoll_ctl(set->q, EPOLL_CTL_DEL, en.watched_wait, nullptr);
          sys::epoll_ctl(set->q, EPOLL_CTL_ADD, p->wait_fd, &w);
          en.watched_wait = p->wait_fd;
          if (p->hup_fd >= 0) {
            w.data.u64 = static_cast<uint64_t>(en.fd) | EP_HUP_BIT;
            sys::epoll_ctl(set->q, EPOLL_CTL_ADD, p->hup_fd, &w);
            en.watched_hup = p->hup_fd;
          }
        }
        sn.m.push_back({en.fd, en.events, en.data});
      }
    }
    // this call's references to the members; if the set changed meanwhile, a
    // member may have been closed and its number reused: copy it again
    const size_t nmem = sn.m.size();
    if (t_ep_pins.size() < nmem) {
      t_ep_pins.resize(nmem);
      t_ep_ports.resize(nmem);
    }
    for (size_t i = 0; i < nmem; i++) {
      t_ep_pins[i] = pin(sn.m[i].fd);
      t_ep_ports[i] = t_ep_pins[i] ? t_ep_pins[i]->port.load(std::memory_order_acquire) : nullptr;
    }
    held.pinned = nmem;
    if (sn.gen == set->gen.load(std::memory_order_acquire)) break;
    for (size_t i = 0; i < nmem; i++)
      if (t_ep_pins[i]) unpin(t_ep_pins[i]);
    held.pinned = 0;
    sn.complete = false;
  }
  Port *const *ports = t_ep_ports.data();
  const EpMember *members = sn.m.data();
  const int nm = static_cast<int>(sn.m.size());
  if (nm == 0) return false;
  int64_t deadline;
  if (!deadline_of(timeout, &deadline)) {
    *rc = fail(EINVAL, "");
    return true;
  }
  // from where the last one stopped, as the kernel's ready list rotates:
  // with fewer events asked than members ready, every member gets its turn
  auto collect = [&](int *count) {
    for (int k = 0; k < nm && *count < max; k++) {
      const size_t i = (sn.next + static_cast<size_t>(k)) % static_cast<size_t>(nm);
      // a fork child's inherited fd: EPOLLERR, as dev_ppoll's POLLERR
      const bool gone = !ports[i] && t_ep_pins[i] && t_ep_pins[i]->inherited;
      if (!ports[i] && !gone) continue;
      const short rev = gone ? POLLERR : port_check(ports[i], static_cast<short>(members[i].events & 0xffff));
      if (rev) {
        out[*count].events = static_cast<uint32_t>(rev);
        out[*count].data = members[i].data;
        (*count)++;
        if (*count == max) sn.next = i + 1;
      }
    }
  };
  for (;;) {
    int count = 0;
    collect(&count);
    if (!count) {
      for (int i = 0; i < nm; i++)
        if (ports[i]) arm(ports[i], static_cast<short>(members[i].events), 1);
      collect(&count);
    }
    if (!count) {
      epoll_event got[66];
      const int gmax = nm + 1 < 66 ? nm + 1 : 66;
      timespec ts;
      const timespec *t = left(deadline, &ts);
      const int64_t left_ms = t ? t->tv_sec * 1000 + (t->tv_nsec + 999999) / 1000000 : -1;
      int ms = left_ms > INT_MAX ? INT_MAX : static_cast<int>(left_ms);  // a longer wait loops
      for (int i = 0; i < nm; i++)
        if (ports[i] && shares_bell(ports[i]) && (ms < 0 || ms > 1)) ms = 1;  // see shares_bell()
      const int r = sys::epoll_pwait(set->q, got, gmax, ms, mask);
      const int e = errno;
      for (int i = 0; i < nm; i++)
        if (ports[i]) arm(ports[i], static_cast<short>(members[i].events), 0);
      if (r < 0) {
        errno = e;
        *rc = -1;
        return true;
      }
      for (int i = 0; i < r; i++) {
        const uint64_t d = got[i].data.u64;
        if (d == EP_USER_SET) continue;
        const int fd = static_cast<int>(d & 0xffffffffu);
        for (int j = 0; j < nm; j++) {
          if (members[j].fd != fd || !ports[j]) continue;
          if (d & EP_HUP_BIT) ports[j]->hung.store(true, std::memory_order_relaxed);
          else drain(ports[j]->wait_fd);
        }
      }
      collect(&count);
    }
    if (count < max) {
      const int r = sys::epoll_pwait(epfd, out + count, max - count, 0, nullptr);
      if (r > 0) count += r;
    }
    if (count || (deadline >= 0 && mono_ns() >= deadline)) {
      *rc = count;
      return true;
    }
  }
}

}  // namespace nmpre
