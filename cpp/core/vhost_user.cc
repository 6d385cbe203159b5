#include "core/vhost_user.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/eventfd_check.h"
#include "core/shared_bell.h"
#include "core/offload.h"
#include "core/recv_fds.h"
#include "core/shm_atomic.h"

namespace nm {
namespace {

// ---- protocol numbers (QEMU docs/interop/vhost-user.rst; docs/vhost-user.md) ----
enum Request : uint32_t {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
};
constexpr uint32_t FLAG_VERSION = 0x1, FLAG_VERSION_MASK = 0x3, FLAG_REPLY = 0x4, FLAG_NEED_REPLY = 0x8;
constexpr uint64_t VRING_IDX_MASK = 0xff, VRING_NOFD_MASK = 0x100;
constexpr uint32_t MAX_REGIONS = 8;       // VHOST_MEMORY_MAX_NREGIONS
constexpr uint32_t MAX_PAYLOAD = 4096;    // the largest we accept; SET_MEM_TABLE with 8 regions is 264
constexpr uint32_t MAX_QUEUE_SIZE = 32768;  // split virtqueues: a power of 2 up to 32768
constexpr uint32_t MAX_INDIRECT = 1024;   // descriptors in one indirect table
// Buffers (descriptors) in one chain, and in all the chains of one frame
// together (mergeable RX buffers): QEMU's VIRTQUEUE_MAX_SIZE and vhost-net's
// UIO_MAXIOV. Linux and DPDK drivers use at most a few dozen. Without it a
// guest's chain could be as long as its table (32768) and a frame's chains
// as many as its queue: 32768 chains of 32768 empty buffers each, gathered
// for one frame, were 16 GiB of segment list (std::bad_alloc: vale-ts
// aborted), and 2^30 descriptor reads for each pass that tried again.
constexpr size_t MAX_CHAIN = 1024;
constexpr uint64_t MAX_GSO_FRAME = 65536 + 64;  // a TSO frame: 64 KiB of IP packet plus link headers
constexpr auto MSG_DEADLINE = std::chrono::milliseconds(500);  // a message's header and payload, together

// virtio feature bits
constexpr uint64_t bit(unsigned b) { return uint64_t{1} << b; }
constexpr unsigned F_CSUM = 0, F_GUEST_CSUM = 1, F_GUEST_TSO4 = 7, F_GUEST_TSO6 = 8, F_HOST_TSO4 = 11, F_HOST_TSO6 = 12, F_MRG_RXBUF = 15, F_MQ = 22, F_INDIRECT = 28, F_EVENT_IDX = 29, F_PROTOCOL_FEATURES = 30,
                   F_VERSION_1 = 32;
constexpr unsigned PF_MQ = 0, PF_REPLY_ACK = 3;

// split virtqueue layout
constexpr uint16_t DESC_F_NEXT = 1, DESC_F_WRITE = 2, DESC_F_INDIRECT = 4;
constexpr uint16_t AVAIL_F_NO_INTERRUPT = 1, USED_F_NO_NOTIFY = 1;
struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == 16);

struct MsgHeader {
  uint32_t request, flags, size;
};

inline uint16_t load16(const uint8_t *p) { return __atomic_load_n(reinterpret_cast<const uint16_t *>(p), __ATOMIC_ACQUIRE); }
inline void store16(uint8_t *p, uint16_t v) { __atomic_store_n(reinterpret_cast<uint16_t *>(p), v, __ATOMIC_RELEASE); }
inline void store16_relaxed(uint8_t *p, uint16_t v) { __atomic_store_n(reinterpret_cast<uint16_t *>(p), v, __ATOMIC_RELAXED); }
inline void store32_relaxed(uint8_t *p, uint32_t v) { __atomic_store_n(reinterpret_cast<uint32_t *>(p), v, __ATOMIC_RELAXED); }

enum class Drop { None, BadDescriptor, ChainLoop, TooLong, OutOfMemoryTable, BadHead };

// Kick batching (the driver thread, a front-end sending or refilling
// steadily): after a wake that moved at least BATCH_TRIGGER frames (a
// burst, not a ping: DPDK sends 32 at a time), the
// thread sleeps asking the guest for a kick only once BATCH_FRAMES more
// entries wait (EVENT_IDX: avail_event that far ahead; without it, for no
// kick: DPDK's virtio-user does not negotiate it) and the switch for no rx
// doorbell, with BATCH_WAIT as the bound, NIC interrupt moderation's
// frame count and timer. Each sleep and wake costs two context switches and
// an epoll_wait, the kick an eventfd write and read, the doorbell a write:
// bench/RESULTS.md (session 10) measured these as most of vale-ts's CPU per
// frame at 32-frame bursts. A wake that finds fewer frames than
// BATCH_TRIGGER (sparse traffic, a ping) goes back to a kick per entry and
// no timer, so latency is only added while frames stream, and by at most
// BATCH_WAIT.
constexpr uint16_t BATCH_FRAMES = 64;
constexpr uint32_t BATCH_TRIGGER = 16;
constexpr long BATCH_WAIT_NS = 100'000;
// In-line (the switch's own sleep) the bound is shorter. There the sleep is
// the guests' CPU time (the switch, at a higher priority than the pinned
// front-ends, takes the CPU back from one of them when it wakes), and the
// measured rate fell with the sleep: at 60 B, 2 CPUs, the switch at nice
// -10, 1.48 Mpps asking for 100 µs, 1.70 for 50, 1.75-1.90 for 25, 1.87-2.0
// for 20 and less (bench/RESULTS.md session 12). The kernel's timer slack
// (50 µs for a normal thread) lengthens the sleep past what is asked; a
// sleep held to 5 µs (slack 1 µs) took the guests' CPU and fell to 0.3
// Mpps, so this is not made shorter.
constexpr long INLINE_BATCH_WAIT_NS = 20'000;

// epoll keys
constexpr uint64_t K_STOP = 1ull << 32, K_LISTEN = 2ull << 32, K_CONN = 3ull << 32, K_BELL = 4ull << 32,
                   K_KICK = 5ull << 32;

struct Seg {
  uint64_t addr;
  uint32_t len;
};

// The front-end's kick and call fds must be eventfds: a kick is read when
// epoll says its fd is readable, and a pipe or socket at EOF is readable
// forever (the port's thread, or in-line the switch, would never sleep
// again); a call is written on the datapath, and a write into a full pipe
// blocks (the port's thread, or in-line the switch's, for good, and stop()
// with it). Both are checked (eventfd_check) when they arrive and made
// non-blocking. The front-end shares their files and may clear O_NONBLOCK
// again: kicks are read with drain_bell and calls written with ring_bell
// (core/shared_bell.h), which neither wait nor, for a filled counter, wait
// for more than a watchdog tick.

// Guest memory must live in RAM-backed files (memfd, tmpfs, hugetlbfs): on
// any other filesystem a page fault on the datapath waits for that
// filesystem, which on FUSE is a process the front-end may run. A memfd the
// front-end could still shrink (vale-ts would then fault on a page past the
// new end: SIGBUS) gets F_SEAL_SHRINK here, as QEMU's memory-backend-memfd
// does itself by default. Files that take no seals (hugetlbfs, /dev/shm, a
// memfd made without MFD_ALLOW_SEALING) can still shrink: the SIGBUS guard
// below catches the faults (docs/vhost-user.md, Limits). *page: the file's
// page size (hugetlbfs: its huge page size), what the guard replaces.
std::string memory_file_check(int fd, size_t *page) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) < 0) return std::string("fstatfs failed: ") + std::strerror(errno);
  const size_t small = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  *page = static_cast<size_t>(fs.f_bsize);
  if (*page < small || (*page & (*page - 1))) *page = small;
  if (fs.f_type != TMPFS_MAGIC && fs.f_type != HUGETLBFS_MAGIC) {
    char magic[32];
    std::snprintf(magic, sizeof magic, "0x%lx", static_cast<unsigned long>(fs.f_type));
    return std::string("its file is on a filesystem (magic ") + magic +
           ") that is not RAM-backed: back the guest's memory with memory-backend-memfd or a file on tmpfs or hugetlbfs";
  }
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals >= 0 && !(seals & F_SEAL_SHRINK) && !(seals & F_SEAL_SEAL) && ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
    return std::string("cannot seal its memfd against shrinking: ") + std::strerror(errno);
  return {};
}

// ---- the SIGBUS guard ----
// A front-end can shrink a file that takes no seals (tmpfs, hugetlbfs, a memfd
// made without MFD_ALLOW_SEALING) after SET_MEM_TABLE, or hand a sparse file
// on a full tmpfs: the next access to such a page raises SIGBUS in whichever
// thread touched it (in-line, the switch's datapath; else the port's thread),
// and that killed the whole process, every port of every switch. Every
// mapping of guest memory is registered here while it exists; a process-wide
// SIGBUS handler that finds the faulting address in one replaces the page
// (the file's page size: huge pages whole) with anonymous zeros and returns,
// so the interrupted load or copy completes on zeros (no longjmp across C++
// frames), and sets the port's flag: the datapath then counts the frame in
// hand (dropGuestMemoryFault), stops the port and hangs up on the front-end.
// Any other SIGBUS goes to the handler that was there before (ASan's, or the
// default action: a core, as without the guard).
//
// The handler reads the registry with atomics only (no lock, no allocation).
// A slot is a seqlock: a writer (under guard_mu) makes seq odd, writes, makes
// it even again; the handler uses a slot only when seq was even and unchanged
// around its reads, so a slot being rewritten never matches by accident. A
// range is registered after its mmap and unregistered before its munmap, and
// a port's mappings are only replaced or unmapped with its datapath stopped
// (dp_mu in-line, the port's own thread otherwise), so a fault is never in a
// range going away.
constexpr size_t GUARD_SLOTS = 1024;  // 8 regions per port (16 while SET_MEM_TABLE swaps): 64+ ports
struct GuardSlot {
  std::atomic<uint32_t> seq{0};
  std::atomic<uintptr_t> start{0};
  std::atomic<size_t> len{0};  // 0: free
  std::atomic<size_t> page{0};
  std::atomic<std::atomic<uint32_t> *> flag{nullptr};
};
GuardSlot guard_slots[GUARD_SLOTS];
std::mutex guard_mu;                 // registering and unregistering only
struct sigaction guard_prev {};      // what SIGBUS did before the guard: written before it is installed
static_assert(std::atomic<uintptr_t>::is_always_lock_free && std::atomic<size_t>::is_always_lock_free &&
              std::atomic<std::atomic<uint32_t> *>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);

void guard_handler(int sig, siginfo_t *si, void *ctx) {
  if (si && si->si_code == BUS_ADRERR) {  // a page the file no longer backs (a fault, not a kill)
    const uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
    for (GuardSlot &s : guard_slots) {
      const uint32_t q = s.seq.load(std::memory_order_acquire);
      if (q & 1) continue;
      const uintptr_t start = s.start.load(std::memory_order_relaxed);
      const size_t len = s.len.load(std::memory_order_relaxed), page = s.page.load(std::memory_order_relaxed);
      std::atomic<uint32_t> *flag = s.flag.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.seq.load(std::memory_order_relaxed) != q || len == 0 || !flag || a < start || a - start >= len) continue;
      const uintptr_t at = a & ~(page - 1);
      const int saved = errno;
      // the raw system call: async-signal-safe, and not a sanitizer's interceptor
      const long m = ::syscall(SYS_mmap, at, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      errno = saved;
      if (m != static_cast<long>(at)) break;  // not replaced: fall through to a crash, as without the guard
      flag->store(1, std::memory_order_release);
      return;  // the faulting instruction runs again, on the zero page
    }
  }
  // not guest memory: whatever handled SIGBUS before (ASan's report), or its default action
  if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
    if (guard_prev.sa_flags & SA_SIGINFO) guard_prev.sa_sigaction(sig, si, ctx);
    else guard_prev.sa_handler(sig);
    return;
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  // a fault repeats when this returns, now with the default action (a core at
  // the faulting instruction); a SIGBUS sent by kill() would not: raise it
  if (!si || si->si_code <= 0) ::raise(sig);
}

void guard_install() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::sigaction(SIGBUS, nullptr, &guard_prev);  // read before ours is in: the handler may run at once
    struct sigaction sa {};
    sa.sa_sigaction = guard_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;  // ONSTACK: an alternate stack if the thread has one (ASan's)
    ::sigaction(SIGBUS, &sa, nullptr);
    // the handler is this library's code: never unloaded now (Node closes an
    // addon loaded only by a worker thread when that worker ends)
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void *>(&guard_handler), &info) && info.dli_fname)
      ::dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  });
}

// One registered range of guest memory (RAII): unregistered when destroyed or reset.
class GuardedRange {
 public:
  GuardedRange() = default;
  GuardedRange(GuardedRange &&o) noexcept : slot_(std::exchange(o.slot_, nullptr)) {}
  GuardedRange &operator=(GuardedRange &&o) noexcept {
    if (this != &o) {
      reset();
      slot_ = std::exchange(o.slot_, nullptr);
    }
    return *this;
  }
  GuardedRange(const GuardedRange &) = delete;
  GuardedRange &operator=(const GuardedRange &) = delete;
  ~GuardedRange() { reset(); }

  // false when every slot is taken
  static bool add(const void *start, size_t len, size_t page, std::atomic<uint32_t> *flag, GuardedRange *out) {
    guard_install();
    std::lock_guard<std::mutex> g(guard_mu);
    for (GuardSlot &s : guard_slots) {
      if (s.len.load(std::memory_order_relaxed)) continue;
      write(s, reinterpret_cast<uintptr_t>(start), len, page, flag);
      out->reset();
      out->slot_ = &s;
      return true;
    }
    return false;
  }
  void reset() {
    if (!slot_) return;
    std::lock_guard<std::mutex> g(guard_mu);
    write(*slot_, 0, 0, 0, nullptr);
    slot_ = nullptr;
  }

 private:
  static void write(GuardSlot &s, uintptr_t start, size_t len, size_t page, std::atomic<uint32_t> *flag) {
    const uint32_t q = s.seq.load(std::memory_order_relaxed);
    s.seq.store(q + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    s.start.store(start, std::memory_order_relaxed);
    s.len.store(len, std::memory_order_relaxed);
    s.page.store(page, std::memory_order_relaxed);
    s.flag.store(flag, std::memory_order_relaxed);
    s.seq.store(q + 2, std::memory_order_release);
  }
  GuardSlot *slot_ = nullptr;
};

struct Region {
  uint64_t gpa = 0, size = 0, uva = 0;
  uint8_t *host = nullptr;
  mapping map;
  GuardedRange guard;  // after map: unregistered before the munmap
};

struct Vq {
  uint32_t num = 0;
  bool addr_set = false;
  uint64_t desc_ua = 0, avail_ua = 0, used_ua = 0;
  uint8_t *desc = nullptr, *avail = nullptr, *used = nullptr;
  uint16_t last_avail = 0, last_used = 0, signalled_used = 0;
  bool signalled_valid = false;
  unique_fd kick, call, err;
  bool started = false, enabled = false, broken = false;
  // RX: the last pass left a frame waiting here for buffers, having seen
  // the guest's avail index at starved_at; only an index past it can help
  bool starved = false;
  uint16_t starved_at = 0;
};

}  // namespace

struct VhostUserPort::Impl final : RoundHook {
  VhostUserPort &self;
  // in-line mode (start() with a core): the switch whose rounds run the
  // datapath, and the lock that keeps the control thread's reconfiguration
  // (SET_MEM_TABLE, SET_VRING_*, disconnect) out of a round: the round only
  // try-locks it and skips the port while a message is handled
  SwitchCore *core = nullptr;
  std::mutex dp_mu;
  // in-line kick batching (the round's thread only): frames moved since the
  // switch last woke, whether its sleep can take a timer, the bound asked for
  uint32_t inl_moved = 0;
  bool inl_timed = false;
  uint64_t inl_wake_ns = 0;
  bool tx_blocked = false, rx_starved = false;  // the last round's
  uint32_t inl_pre_rx = 0;  // frames before_collect moved to the guest: after_forward reports them
  PortClient pc;
  VhostUserCounters &c;
  unique_fd epfd, listen_fd, conn;
  // set by the SIGBUS guard when it replaced a faulting page of this port's
  // guest memory (before mem: the regions name it while registered)
  std::atomic<uint32_t> mem_fault{0};
  bool fault_hungup = false;  // the datapath shut the socket down for it (under dp_mu in-line)
  bool fault_logged = false;  // logged once per port: a front-end reconnecting does not fill the log
  std::vector<Region> mem;
  std::vector<Vq> vqs;
  uint64_t features = 0, proto = 0;
  bool features_set = false;
  uint32_t hdr_len = 10;
  std::vector<Seg> segs;       // one chain's segments (scratch)
  std::vector<uint32_t> chain_ends;  // RX: segs index where each chain ends
  std::vector<uint16_t> chain_heads;
  std::vector<Seg> rx_all;     // RX: the segments of every chain of one frame
  std::vector<uint8_t> gso_buf = std::vector<uint8_t>(VNET_HDR_LEN + MAX_GSO_FRAME);  // TX: a frame longer than a buffer, whole

  Impl(VhostUserPort &s, PortClient p) : self(s), pc(std::move(p)), c(s.counters_) {
    vqs.resize(2 * s.cfg_.queue_pairs);
    segs.reserve(256);
  }

  // ---------------------------------------------------------------- memory
  // Host address of [gpa, gpa+len) when it lies inside one region.
  uint8_t *gpa_host(uint64_t gpa, uint64_t len) const {
    for (const Region &r : mem)
      if (gpa >= r.gpa && gpa - r.gpa < r.size && len <= r.size - (gpa - r.gpa)) return r.host + (gpa - r.gpa);
    return nullptr;
  }
  uint8_t *uva_host(uint64_t uva, uint64_t len) const {
    for (const Region &r : mem)
      if (uva >= r.uva && uva - r.uva < r.size && len <= r.size - (uva - r.uva)) return r.host + (uva - r.uva);
    return nullptr;
  }
  // The largest piece of guest memory starting at gpa (up to len), or nullptr.
  uint8_t *gpa_piece(uint64_t gpa, uint64_t len, uint64_t *piece) const {
    for (const Region &r : mem)
      if (gpa >= r.gpa && gpa - r.gpa < r.size) {
        *piece = std::min<uint64_t>(len, r.size - (gpa - r.gpa));
        return r.host + (gpa - r.gpa);
      }
    return nullptr;
  }

  void set_error(const std::string &e) {
    std::lock_guard<std::mutex> g(self.info_mu_);
    self.info_.last_error = e;
  }
  void publish_info() {
    std::lock_guard<std::mutex> g(self.info_mu_);
    self.info_.connected = static_cast<bool>(conn);
    self.info_.features = features;
    self.info_.protocol_features = proto;
    uint32_t n = 0;
    for (const Vq &q : vqs) n += ready(q);
    self.info_.running_queues = n;
  }

  // ------------------------------------------------------------ virtqueues
  bool enabled(const Vq &q) const { return q.enabled || !(features & bit(F_PROTOCOL_FEATURES)); }
  bool ready(const Vq &q) const { return q.started && enabled(q) && q.desc && !q.broken && !mem.empty() && !mem_faulted(); }
  // One relaxed load: the guard replaced a page of this port's memory with zeros since it was mapped.
  bool mem_faulted() const { return mem_fault.load(std::memory_order_relaxed) != 0; }

  // After a pass (and where the control thread touched the rings): a fault
  // the guard caught stops every queue (ready()) and hangs up on the
  // front-end. The socket is shut down rather than closed here: in-line this
  // is the switch's thread, and the connection is the control thread's, which
  // reads EOF and disconnects (disconnect() names the fault).
  bool check_fault() {
    if (!mem_faulted()) return false;
    if (!fault_hungup && conn) ::shutdown(conn.get(), SHUT_RDWR);
    fault_hungup = true;
    return true;
  }
  bool has(unsigned f) const { return (features & bit(f)) != 0; }

  // Points the queue into the current memory table; false if its rings are not all inside one region each.
  bool translate(Vq &q) {
    q.desc = q.avail = q.used = nullptr;
    if (!q.addr_set || q.num == 0 || mem.empty()) return true;  // not yet: checked again when they come
    uint64_t n = q.num;
    uint8_t *d = uva_host(q.desc_ua, 16 * n), *a = uva_host(q.avail_ua, 6 + 2 * n), *u = uva_host(q.used_ua, 6 + 8 * n);
    if (!d || !a || !u) return false;
    q.desc = d;
    q.avail = a;
    q.used = u;
    return true;
  }

  // A front-end that restarts a ring on a back-end that never saw it (DPDK's
  // virtio-user after our restart) may send base 0 with its rings mid-way: as
  // DPDK's vhost does, trust the used index in memory, the one value both
  // sides agree on (every chain before it was completed).
  void resync_base(Vq &q) {
    if (!q.used) return;
    uint16_t u = load16(q.used + 2);
    if (u != q.last_used) {
      q.last_used = q.last_avail = u;
      q.signalled_valid = false;
    }
  }

  void mark_broken(Vq &q) {
    if (!q.broken) c.queuesBroken++;
    q.broken = true;
  }

  // Walks the chain at `head` into segs. Device-writable descriptors iff
  // `write`; at most `limit` buffers (MAX_CHAIN, or what is left of it for
  // a frame's further chains).
  Drop walk(const Vq &q, uint16_t head, bool write, size_t limit = MAX_CHAIN) {
    segs.clear();
    if (head >= q.num) return Drop::BadHead;
    const uint8_t *table = q.desc;
    uint32_t table_n = q.num, idx = head, count = 0;
    bool indirect = false;
    for (;;) {
      if (++count > table_n) return Drop::ChainLoop;
      Desc d;
      std::memcpy(&d, table + 16 * static_cast<size_t>(idx), sizeof d);  // one read: the guest may rewrite it
      if (d.flags & DESC_F_INDIRECT) {
        if (indirect || !has(F_INDIRECT) || (d.flags & DESC_F_NEXT) || d.len == 0 || d.len % 16 ||
            d.len / 16 > MAX_INDIRECT)
          return Drop::BadDescriptor;
        const uint8_t *t = gpa_host(d.addr, d.len);
        if (!t) return Drop::OutOfMemoryTable;
        table = t;
        table_n = d.len / 16;
        idx = 0;
        count = 0;
        indirect = true;
        continue;
      }
      if (((d.flags & DESC_F_WRITE) != 0) != write) return Drop::BadDescriptor;
      if (segs.size() >= limit) return Drop::TooLong;
      segs.push_back({d.addr, d.len});
      if (!(d.flags & DESC_F_NEXT)) return Drop::None;
      idx = d.next;
      if (idx >= table_n) return Drop::BadDescriptor;
    }
  }

  void count_drop(Drop d) {
    switch (d) {
      case Drop::BadDescriptor: c.dropBadDescriptor++; break;
      case Drop::ChainLoop: c.dropChainLoop++; break;
      case Drop::TooLong: c.dropChainTooLong++; break;
      case Drop::OutOfMemoryTable: c.dropOutOfMemoryTable++; break;
      case Drop::BadHead: c.dropBadDescriptor++; break;
      case Drop::None: break;
    }
  }

  void push_used(Vq &q, uint16_t head, uint32_t len) {
    uint8_t *e = q.used + 4 + 8 * static_cast<size_t>(q.last_used % q.num);
    store32_relaxed(e, head);
    store32_relaxed(e + 4, len);
    q.last_used++;
  }

  // Publishes the used index and interrupts the guest unless it asked not to be.
  void publish_used(Vq &q) {
    store16(q.used + 2, q.last_used);
    full_fence();  // the guest writes used_event, then reads used->idx: the mirror of ours
    bool call;
    if (has(F_EVENT_IDX)) {
      uint16_t ev = load16(q.avail + 4 + 2 * static_cast<size_t>(q.num));
      uint16_t nw = q.last_used, old = q.signalled_used;
      call = !q.signalled_valid || static_cast<uint16_t>(nw - ev - 1) < static_cast<uint16_t>(nw - old);
      q.signalled_used = nw;
      q.signalled_valid = true;
    } else {
      call = !(load16(q.avail) & AVAIL_F_NO_INTERRUPT);
    }
    if (call && q.call) {
      if (ring_bell(q.call.get())) {
        c.calls++;
      } else {
        // the front-end made its call fd blocking and filled it: it held
        // this thread one watchdog tick, and gets no more interrupts
        q.call.reset();
        c.callStuck++;
      }
    }
  }

  // Avail entries waiting, or -1 (queue broken) when the index is impossible.
  int pending(Vq &q) {
    uint16_t idx = load16(q.avail + 2);
    uint16_t n = static_cast<uint16_t>(idx - q.last_avail);
    if (n > q.num) {
      c.dropBadIndex++;
      mark_broken(q);
      return -1;
    }
    return n;
  }

  // Prefetches (touches nothing) what the frames after avail entry q.last_avail
  // will need, so that the cache lines the guest's CPU wrote cross over
  // while this frame is copied, not one after the other (each crossing cost
  // ~190 ns between two vCPUs in bench/RESULTS.md; DPDK's vhost prefetches
  // the same way): the descriptor two entries ahead and the first buffer of the
  // chain one entry ahead. Only addresses inside the guest's memory table
  // are prefetched; the frames themselves are walked and checked as before.
  void prefetch_ahead(const Vq &q, int p, bool write) const {
    if (p > 2) {
      uint16_t h = load16(q.avail + 4 + 2 * static_cast<size_t>(static_cast<uint16_t>(q.last_avail + 2) % q.num));
      if (h < q.num) __builtin_prefetch(q.desc + 16 * static_cast<size_t>(h));
    }
    if (p > 1) {
      uint16_t h = load16(q.avail + 4 + 2 * static_cast<size_t>(static_cast<uint16_t>(q.last_avail + 1) % q.num));
      if (h >= q.num) return;
      Desc d;
      std::memcpy(&d, q.desc + 16 * static_cast<size_t>(h), sizeof d);
      if ((d.flags & DESC_F_INDIRECT) || d.len == 0) return;
      const uint64_t n = std::min<uint64_t>(d.len, 128);
      const uint8_t *b = gpa_host(d.addr, n);
      if (!b) return;
      if (write) {
        __builtin_prefetch(b, 1);
        if (n > 64) __builtin_prefetch(b + 64, 1);
      } else {
        __builtin_prefetch(b, 0);
        if (n > 64) __builtin_prefetch(b + 64, 0);
      }
    }
  }

  // Prefetches (touches nothing) the next n avail entries' descriptors, then
  // the first buffer lines they point at, before a batch is walked: the
  // guest's CPU wrote them, and each crossing to this CPU is a cache miss
  // (perf, bench/RESULTS.md session 10: the first read of each frame's
  // header was 12% of vale-ts's samples). Issued together the misses
  // overlap; one frame ahead (prefetch_ahead) they mostly did not. Like
  // prefetch_ahead, only addresses inside the memory table are prefetched.
  static constexpr int BATCH_PREFETCH = 16;
  void prefetch_batch(const Vq &q, int n, bool write) const {
    n = std::min(n, BATCH_PREFETCH);
    uint16_t heads[BATCH_PREFETCH];
    for (int k = 0; k < n; k++) {
      heads[k] = load16(q.avail + 4 + 2 * static_cast<size_t>(static_cast<uint16_t>(q.last_avail + k) % q.num));
      if (heads[k] < q.num) __builtin_prefetch(q.desc + 16 * static_cast<size_t>(heads[k]));
    }
    for (int k = 0; k < n; k++) {
      if (heads[k] >= q.num) continue;
      Desc d;
      std::memcpy(&d, q.desc + 16 * static_cast<size_t>(heads[k]), sizeof d);
      if ((d.flags & DESC_F_INDIRECT) || d.len == 0) continue;
      const uint8_t *b = gpa_host(d.addr, std::min<uint64_t>(d.len, 64));
      if (!b) continue;
      if (write) __builtin_prefetch(b, 1);
      else __builtin_prefetch(b, 0);
    }
  }

  // Walks bytes [at, at + n) of the chain segments segs[from, to), calling fn(host, len)
  // on each piece of host memory they map to, in order; false if any byte lies outside
  // guest memory or the segments end first.
  template <class Fn>
  bool each_piece(size_t from, size_t to, uint64_t at, uint64_t n, Fn &&fn) const {
    for (size_t i = from; i < to && n; i++) {
      uint64_t a = segs[i].addr, left = segs[i].len;
      if (at >= left) {
        at -= left;
        continue;
      }
      a += at;
      left -= at;
      at = 0;
      while (left && n) {
        uint64_t piece;
        uint8_t *h = gpa_piece(a, std::min(left, n), &piece);
        if (!h) return false;
        fn(h, piece);
        n -= piece;
        a += piece;
        left -= piece;
      }
    }
    return n == 0;
  }

  // Copies n bytes of the current chain (segs) from byte `at` into dst; false if any byte lies outside guest memory.
  bool gather(uint64_t at, uint8_t *dst, uint64_t n) const {
    return each_piece(0, segs.size(), at, n, [&dst](const uint8_t *h, uint64_t piece) {
      std::memcpy(dst, h, piece);
      dst += piece;
    });
  }

  // The header asks only for what was negotiated: NEEDS_CSUM needs CSUM, each GSO type its HOST_ feature.
  bool negotiated(const VnetHdr &h) const {
    if ((h.flags & VNET_F_NEEDS_CSUM) && !has(F_CSUM)) return false;
    switch (h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN)) {
      case VNET_GSO_NONE: return true;
      case VNET_GSO_TCPV4: return has(F_HOST_TSO4);
      case VNET_GSO_TCPV6: return has(F_HOST_TSO6);
      default: return false;
    }
  }

  // Every field of a guest's TX header checked against the frame it came
  // with (a copy the guest cannot touch any more), before the frame reaches
  // a port that will act on it: the receiving kernel or guest trusts these
  // offsets. Fields a driver must not set are cleared.
  OffloadError check_guest_hdr(VnetHdr &h, const uint8_t *frame, uint64_t len) const {
    // DATA_VALID and RSC_INFO are the device's to set (virtio 1.1 5.1.6.2.1):
    // passed on, DATA_VALID would make a receiver skip checking the checksum
    h.flags &= VNET_F_NEEDS_CSUM;
    const uint8_t g = h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN);
    if (g == VNET_GSO_NONE) {
      h.gso_size = 0;
      h.gso_type = VNET_GSO_NONE;
    } else {
      if (h.gso_size == 0) return OffloadError::BadGsoSize;
      // the headers must parse as the GSO type says (what a header-less receiver's segmentation needs too)
      if (gso_segment_count(h, frame, len) == 0) return OffloadError::BadHeaders;
    }
    // inside the frame, and not into the headers the lookup decides on
    if ((h.flags & VNET_F_NEEDS_CSUM) && !csum_offsets_ok(h, frame, len)) return OffloadError::BadCsumOffsets;
    if (h.hdr_len > len) h.hdr_len = static_cast<uint16_t>(len);  // a hint: never past the frame
    return OffloadError::None;
  }

  void count_offload_drop(OffloadError e) {
    switch (e) {
      case OffloadError::BadCsumOffsets: c.dropOffloadBadCsumOffsets++; break;
      case OffloadError::BadGsoType: c.dropOffloadNotNegotiated++; break;
      case OffloadError::BadHeaders: c.dropOffloadBadHeaders++; break;
      case OffloadError::BadGsoSize: c.dropOffloadBadGsoSize++; break;
      case OffloadError::SegmentTooLong: c.dropOffloadSegmentTooLong++; break;
      case OffloadError::NoRoom:
      case OffloadError::None: break;
    }
  }

  // Guest TX queue -> port tx ring. Returns frames moved (or dropped) so the loop knows it progressed.
  uint32_t guest_tx(Vq &q, uint32_t ring, uint32_t budget, bool *blocked) {
    netmap_ring *tr = pc.tx_ring(ring);
    uint32_t space = pc.tx_space(ring);
    if (space == 0) {
      pc.txsync(ring);
      space = pc.tx_space(ring);
    }
    int p = pending(q);
    if (p <= 0) return 0;
    uint32_t done = 0, moved = 0;
    uint64_t frames = 0, bytes = 0;  // counted once per batch: one atomic add each, not per frame
    const uint32_t bufsz = slot_fill(pc.buf_size());  // what one slot may carry
    prefetch_batch(q, std::min<int>(p, static_cast<int>(std::min(space, budget))), false);
    while (p > 0 && done < budget) {
      if (space == 0) {
        *blocked = true;
        break;
      }
      if (done % BATCH_PREFETCH == BATCH_PREFETCH - 1) prefetch_batch(q, p, false);  // the next ones (from this entry)
      prefetch_ahead(q, p, false);
      uint16_t head = load16(q.avail + 4 + 2 * static_cast<size_t>(q.last_avail % q.num));
      Drop d = walk(q, head, false);
      if (mem_faulted()) {
        // the entry or its chain was read from a page the guard zeroed: the
        // frame is lost, counted here; the port stops (check_fault)
        c.dropGuestMemoryFault++;
        break;
      }
      if (d == Drop::BadHead) {
        c.dropBadDescriptor++;
        mark_broken(q);  // no head to give back: the queue cannot go on
        break;
      }
      if (d == Drop::None) {
        uint64_t total = 0;
        for (const Seg &g : segs) total += g.len;
        uint8_t hb[VNET_HDR_LEN];
        VnetHdr h;
        const bool hdr_ok = total >= hdr_len + 14 && gather(0, hb, VNET_HDR_LEN);
        if (hdr_ok) h = vnet_hdr_read(hb);
        const bool gso = (h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN)) != VNET_GSO_NONE;
        const uint64_t len = total >= hdr_len ? total - hdr_len : 0;
        // the frame goes on with the 10-byte header the port declared (a
        // 12-byte one's num_buffers means nothing on the way out of a guest)
        const uint64_t flen = VNET_HDR_LEN + len;
        const uint32_t n = static_cast<uint32_t>((flen + bufsz - 1) / bufsz);
        if (total < hdr_len + 14) {
          c.dropShortFrame++;
        } else if (!hdr_ok) {
          c.dropOutOfMemoryTable++;
        } else if (len > (gso ? MAX_GSO_FRAME : bufsz)) {
          c.dropOversize++;
        } else if (!negotiated(h)) {
          c.dropOffloadNotNegotiated++;
        } else if (n > NETMAP_MAX_FRAGS || n >= tr->num_slots) {
          c.dropOversize++;  // buffers so small that a chain cannot hold the frame
        } else if (n > space) {
          // not consumed: the chain is walked again when the switch has drained the ring
          *blocked = true;
          break;
        } else {
          uint8_t *to[NETMAP_MAX_FRAGS];
          bool slots_ok = true;
          for (uint32_t j = 0, i = tr->head; j < n; j++, i = i + 1 == tr->num_slots ? 0 : i + 1)
            slots_ok &= (to[j] = pc.slot_buf(tr->slot[i])) != nullptr;
          // one contiguous copy (the slot itself for a frame that fits one), checked there:
          // the guest can no longer change what the checks read
          uint8_t *flat = n == 1 && slots_ok ? to[0] : gso_buf.data();
          if (!slots_ok) {
            c.dropBadSlot++;
          } else if (!gather(hdr_len, flat + VNET_HDR_LEN, len)) {
            c.dropOutOfMemoryTable++;
          } else if (mem_faulted()) {
            c.dropGuestMemoryFault++;  // header or body copied (in part) from zeroed pages: not passed on
            // h: the one copy of the header that every decision here reads (a
            // guest rewriting it meanwhile changes nothing), checked against the copied frame
          } else if (OffloadError e = check_guest_hdr(h, flat + VNET_HDR_LEN, len); e != OffloadError::None) {
            count_offload_drop(e);
          } else {
            vnet_hdr_write(h, flat);  // the checked header, not the guest's memory
            for (uint32_t j = 0, off = 0; j < n; j++) {
              const uint32_t take = static_cast<uint32_t>(std::min<uint64_t>(bufsz, flen - off));
              if (to[j] != flat + off) std::memcpy(to[j], flat + off, take);
              off += take;
              netmap_slot &s = tr->slot[tr->head];
              s.len = static_cast<uint16_t>(take);
              s.flags = j + 1 < n ? NS_MOREFRAG : 0;
              tr->head = tr->cur = tr->head + 1 == tr->num_slots ? 0 : tr->head + 1;
            }
            space -= n;
            moved += n;
            frames++;
            bytes += len;
            if (gso) c.offloadGsoPassed++;
            else if (h.flags & VNET_F_NEEDS_CSUM) c.offloadCsumPassed++;
          }
        }
      } else {
        count_drop(d);
      }
      push_used(q, head, 0);
      q.last_avail++;
      p--;
      done++;
      if (mem_faulted()) break;
    }
    if (done) publish_used(q);
    if (moved) pc.txsync(ring);
    if (frames) {
      c.fromGuestFrames.fetch_add(frames, std::memory_order_relaxed);
      c.fromGuestBytes.fetch_add(bytes, std::memory_order_relaxed);
    }
    return done;
  }

  // The RX queue frames go to: pair r's if it runs, else the first running one.
  Vq *rx_queue_for(uint32_t r) {
    uint32_t pairs = static_cast<uint32_t>(vqs.size() / 2);
    Vq &pref = vqs[2 * (r % pairs)];
    if (ready(pref)) return &pref;
    for (uint32_t i = 0; i < pairs; i++)
      if (ready(vqs[2 * i])) return &vqs[2 * i];
    return nullptr;
  }

  // Writes n bytes at src into the chain segments segs[from, to), starting at byte `at` of the chain.
  bool write_segs(size_t from, size_t to, uint64_t at, const uint8_t *src, uint64_t n) {
    return each_piece(from, to, at, n, [&src](uint8_t *h, uint64_t piece) {
      std::memcpy(h, src, piece);
      src += piece;
    });
  }

  // Fault: the guard zeroed a page of guest memory meanwhile (put_checked)
  enum class Put { Done, Dropped, Starved, Broken, Fault };

  // The common case of put_frame, without its gathering: the next avail
  // entry is one writable descriptor (no chain, not indirect) whose buffer,
  // inside one region of the memory table, holds the whole frame. The same
  // checks as walk() and the translation; anything else (or any failed
  // check) is left to the general path, which reads the entry again.
  bool put_one(Vq &q, const uint8_t *hdr10, const uint8_t *body, uint64_t blen, uint64_t need) {
    const uint16_t head = load16(q.avail + 4 + 2 * static_cast<size_t>(q.last_avail % q.num));
    if (head >= q.num) return false;
    Desc d;
    std::memcpy(&d, q.desc + 16 * static_cast<size_t>(head), sizeof d);  // one read: the guest may rewrite it
    if ((d.flags & (DESC_F_NEXT | DESC_F_INDIRECT)) || !(d.flags & DESC_F_WRITE) || d.len < need) return false;
    uint8_t *h = gpa_host(d.addr, need);
    if (!h) return false;
    uint8_t hdr[12] = {};
    std::memcpy(hdr, hdr10, VNET_HDR_LEN);
    if (hdr_len == 12) hdr[10] = 1;  // num_buffers, little-endian: one chain
    std::memcpy(h, hdr, hdr_len);
    std::memcpy(h + hdr_len, body, blen);
    push_used(q, head, static_cast<uint32_t>(need));
    q.last_avail++;
    used_any_ = true;
    rx_frames++;
    rx_bytes += blen;
    return true;
  }

  // One frame (its 10-byte header and body) into the guest's RX buffers:
  // chains gathered until they hold it (several only with MRG_RXBUF), none
  // consumed before all are there.
  Put put_frame(Vq &q, const uint8_t *hdr10, const uint8_t *body, uint64_t blen) {
    const bool mrg = has(F_MRG_RXBUF);
    const uint64_t need = hdr_len + blen;
    // the guest's avail index is read once per pass, not per frame (the
    // guest writes its cache line as it refills): again only when the
    // entries it announced run out, validated each time by pending()
    int p = rx_left >= 0 ? rx_left : pending(q);
    if (p < 0) return Put::Broken;
    if (p > 0 && put_one(q, hdr10, body, blen, need)) {
      rx_left = p - 1;
      return Put::Done;
    }
    bool reread = rx_left < 0;
    segs.clear();
    chain_ends.clear();
    chain_heads.clear();
    rx_all.clear();
    uint64_t cap = 0;
    uint16_t k = 0;
    while (cap < need && (mrg || k == 0)) {
      if (k >= p) {
        if (reread) break;
        reread = true;
        p = pending(q);
        if (p < 0) return Put::Broken;  // nothing consumed yet
        if (k >= p) break;
      }
      uint16_t head = load16(q.avail + 4 + 2 * static_cast<size_t>(static_cast<uint16_t>(q.last_avail + k) % q.num));
      Drop d = walk(q, head, true, MAX_CHAIN - rx_all.size());  // the frame's chains together: MAX_CHAIN buffers
      if (mem_faulted()) return Put::Fault;  // read from zeroed pages: nothing consumed, nothing counted yet
      if (d == Drop::BadHead) {
        c.dropBadDescriptor++;
        mark_broken(q);
        return Put::Broken;
      }
      if (d != Drop::None) {
        // the bad chain and those gathered before it go back empty; the frame is dropped (counted by reason)
        count_drop(d);
        for (uint16_t h0 : chain_heads) push_used(q, h0, 0);
        push_used(q, head, 0);
        q.last_avail = static_cast<uint16_t>(q.last_avail + k + 1);
        rx_left = p - (k + 1);
        used_any_ = true;
        return Put::Dropped;
      }
      uint64_t ccap = 0;
      for (const Seg &g : segs) ccap += g.len;
      if (!mrg && ccap < need) {
        c.dropRxBufferTooSmall++;
        rx_left = p;
        return Put::Dropped;  // the buffer stays for a smaller frame
      }
      rx_all.insert(rx_all.end(), segs.begin(), segs.end());
      chain_ends.push_back(static_cast<uint32_t>(rx_all.size()));
      chain_heads.push_back(head);
      cap += ccap;
      k++;
    }
    rx_left = p;
    if (cap < need) {
      // the frame waits until the guest adds buffers beyond those seen
      q.starved = true;
      q.starved_at = static_cast<uint16_t>(q.last_avail + p);
      return Put::Starved;
    }
    rx_left = p - k;
    segs.swap(rx_all);
    uint8_t hdr[12] = {};
    std::memcpy(hdr, hdr10, VNET_HDR_LEN);
    const uint16_t nbuf = static_cast<uint16_t>(chain_heads.size());
    if (hdr_len == 12) std::memcpy(hdr + 10, &nbuf, 2);
    uint64_t written = 0;
    bool ok = true;
    size_t from = 0;
    for (size_t i = 0; i < chain_heads.size(); i++) {
      size_t to = chain_ends[i];
      uint64_t ccap = 0;
      for (size_t j = from; j < to; j++) ccap += segs[j].len;
      uint64_t put = std::min(ccap, need - written), at = 0;
      // the header lies in the first chain's first bytes
      if (written < hdr_len) {
        uint64_t h = std::min<uint64_t>(hdr_len - written, put);
        ok = ok && write_segs(from, to, 0, hdr + written, h);
        at = h;
      }
      if (put > at) ok = ok && write_segs(from, to, at, body + (written + at - hdr_len), put - at);
      push_used(q, chain_heads[i], static_cast<uint32_t>(put));
      q.last_avail++;
      written += put;
      from = to;
    }
    used_any_ = true;
    if (!ok) {
      c.dropOutOfMemoryTable++;
      return Put::Dropped;
    }
    rx_frames++;  // added to the shared counters once per pass (guest_rx)
    rx_bytes += blen;
    return Put::Done;
  }

  // put_frame, then whether the guard zeroed a page of guest memory
  // meanwhile: a frame written there (or placed by chains read from there)
  // never reached the guest, and is the caller's to count as
  // dropGuestMemoryFault (Fault). One already dropped for another reason
  // stays counted as that.
  Put put_checked(Vq &q, const uint8_t *hdr10, const uint8_t *body, uint64_t blen) {
    const Put r = put_frame(q, hdr10, body, blen);
    if (r == Put::Dropped || !mem_faulted()) return r;
    if (r == Put::Done) {
      rx_frames--;
      rx_bytes -= blen;
    }
    return Put::Fault;
  }

  // Segments of a GSO frame for a guest that did not negotiate its GSO type,
  // delivered one by one; a frame part way through waits here for buffers.
  // Packed end to end (each at its offset): the sender chooses gso_size, and
  // a 64 KiB frame with gso_size 1 is 65000 segments of a header and a byte.
  // Before, each took a whole port buffer: 65000 x 2 KiB (130 MiB, kept) by
  // default, x 64 KiB (4 GiB) with 64 KiB buffers, from one frame.
  class FlatSink final : public SegmentSink {
   public:
    FlatSink(std::vector<uint8_t> &buf, std::vector<uint32_t> &offs, std::vector<uint32_t> &lens, size_t cap)
        : buf_(buf), offs_(offs), lens_(lens), cap_(cap) {}
    uint8_t *next(size_t len) override {
      if (len > cap_) return nullptr;
      const size_t at = used_;
      used_ += len;
      if (buf_.size() < used_) buf_.resize(used_);
      offs_.push_back(static_cast<uint32_t>(at));
      lens_.push_back(static_cast<uint32_t>(len));
      return buf_.data() + at;
    }

   private:
    std::vector<uint8_t> &buf_;
    std::vector<uint32_t> &offs_, &lens_;
    size_t cap_, used_ = 0;
  };
  std::vector<uint8_t> rx_flat = std::vector<uint8_t>(VNET_HDR_LEN + MAX_GSO_FRAME);
  std::vector<uint8_t> rx_seg_buf;
  std::vector<uint32_t> rx_seg_offs, rx_seg_lens;
  uint32_t rx_seg_next = 0;
  bool rx_seg_active = false;
  bool used_any_ = false;
  // within one guest_rx pass: avail entries known to wait (-1: read the
  // guest's index), frames and bytes delivered (counted at the pass's end)
  int rx_left = -1;
  uint64_t rx_frames = 0, rx_bytes = 0;

  // What the guest negotiated to receive: a GSO type needs its GUEST_TSO
  // feature (and GUEST_CSUM, which the spec makes it depend on).
  bool guest_takes_gso(uint8_t gso_type) const {
    if (!has(F_GUEST_CSUM) || (gso_type & VNET_GSO_ECN)) return false;  // GUEST_ECN is not offered
    return (gso_type == VNET_GSO_TCPV4 && has(F_GUEST_TSO4)) || (gso_type == VNET_GSO_TCPV6 && has(F_GUEST_TSO6));
  }

  // Port rx ring -> a guest RX queue. Frames come with the port's 10-byte
  // header (it declared one), longer ones as NS_MOREFRAG chains; each goes
  // to the guest with its header as the sender wrote it when the guest
  // negotiated what it asks for, else finished here (checksum filled in,
  // GSO segmented). *starved: frames wait for guest buffers.
  uint32_t guest_rx(uint32_t r, uint32_t budget, bool *starved) {
    netmap_ring *rr = pc.rx_ring(r);
    uint32_t avail = pc.rx_avail(r);
    if (avail == 0) {
      pc.rxsync(r);
      avail = pc.rx_avail(r);
      if (avail == 0) return 0;
    }
    Vq *qp = rx_queue_for(r);
    uint32_t done = 0;
    if (!qp) {
      // nobody to deliver to: counted, not left to go stale in the ring
      uint32_t frames = 0;
      for (uint32_t i = rr->head; i != rr->tail; i = i + 1 == rr->num_slots ? 0 : i + 1)
        frames += !(rr->slot[i].flags & NS_MOREFRAG);
      c.dropGuestNotReady += frames;
      rx_seg_active = false;
      rr->head = rr->cur = rr->tail;
      pc.rxsync(r);
      return avail;
    }
    Vq &q = *qp;
    const uint32_t bufsz = pc.buf_size();
    used_any_ = false;
    rx_left = -1;
    {
      // the batch's first frames (the switch's copies, another CPU's writes) and
      // the guest buffers they go to, in flight together (prefetch_batch); the
      // guest's index is only a hint here, put_frame checks it
      const uint32_t m = std::min<uint32_t>(avail, BATCH_PREFETCH);
      for (uint32_t j = 0, i = rr->head; j < m; j++, i = i + 1 == rr->num_slots ? 0 : i + 1)
        if (const uint8_t *b = pc.slot_buf(rr->slot[i])) __builtin_prefetch(b);
      const uint16_t w = static_cast<uint16_t>(load16(q.avail + 2) - q.last_avail);
      if (w <= q.num) prefetch_batch(q, std::min<int>(w, static_cast<int>(m)), true);
    }
    auto pop = [&](uint32_t n) {
      for (uint32_t j = 0; j < n; j++) rr->head = rr->cur = rr->head + 1 == rr->num_slots ? 0 : rr->head + 1;
      avail -= n;
      done++;
    };
    while (avail && done < budget) {
      // the frame's slots: the switch publishes a chain whole
      const uint8_t *piece[NETMAP_MAX_FRAGS];
      uint32_t plen[NETMAP_MAX_FRAGS];
      uint32_t n = 0;
      uint64_t total = 0;
      bool bad = false, complete = false;
      for (uint32_t i = rr->head; n < NETMAP_MAX_FRAGS && n < avail; i = i + 1 == rr->num_slots ? 0 : i + 1) {
        const netmap_slot &s = rr->slot[i];
        piece[n] = pc.slot_buf(s);
        plen[n] = s.len;
        if (!piece[n] || s.len > bufsz) bad = true;
        total += s.len;
        n++;
        if (!(s.flags & NS_MOREFRAG)) {
          complete = true;
          break;
        }
      }
      if (bad || !complete || total < VNET_HDR_LEN + 14) {
        c.dropBadSlot++;
        rx_seg_active = false;
        pop(n);
        continue;
      }
      if (total > rx_flat.size()) {
        c.dropOversize++;  // longer than any GSO frame
        rx_seg_active = false;
        pop(n);
        continue;
      }
      // one contiguous frame: the slot itself, or a copy of the chain
      uint8_t *flat;
      if (n == 1) {
        flat = const_cast<uint8_t *>(piece[0]);
      } else {
        flat = rx_flat.data();
        for (uint32_t j = 0, off = 0; j < n; off += plen[j], j++) std::memcpy(flat + off, piece[j], plen[j]);
      }
      // the next frame's slot (the switch's copy) and the guest buffers ahead
      if (avail > n) {
        uint32_t nx = rr->head + n;
        if (nx >= rr->num_slots) nx -= rr->num_slots;
        if (const uint8_t *b = pc.slot_buf(rr->slot[nx])) __builtin_prefetch(b);
      }
      if (rx_left > 0) prefetch_ahead(q, rx_left, true);
      VnetHdr h = vnet_hdr_read(flat);
      uint8_t *body = flat + VNET_HDR_LEN;
      const uint64_t blen = total - VNET_HDR_LEN;
      const uint8_t g = h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN);
      if (g != VNET_GSO_NONE && !guest_takes_gso(h.gso_type)) {
        if (!rx_seg_active) {
          rx_seg_offs.clear();
          rx_seg_lens.clear();
          FlatSink sink(rx_seg_buf, rx_seg_offs, rx_seg_lens, bufsz);
          SegmentResult sr = gso_segment(h, body, blen, bufsz, sink);
          if (sr.err != OffloadError::None) {
            count_offload_drop(sr.err == OffloadError::NoRoom ? OffloadError::SegmentTooLong : sr.err);
            pop(n);
            continue;
          }
          rx_seg_active = true;
          rx_seg_next = 0;
        }
        static const uint8_t zero_hdr[VNET_HDR_LEN] = {};
        Put res = Put::Done;
        while (rx_seg_next < rx_seg_lens.size()) {
          res = put_checked(q, zero_hdr, rx_seg_buf.data() + rx_seg_offs[rx_seg_next], rx_seg_lens[rx_seg_next]);
          if (res == Put::Starved || res == Put::Broken || res == Put::Fault) break;
          rx_seg_next++;  // delivered, or dropped and counted
        }
        if (res == Put::Fault) {
          c.dropGuestMemoryFault++;  // the frame; the port stops (check_fault)
          rx_seg_active = false;
          pop(n);
          break;
        }
        if (res == Put::Starved) {
          *starved = true;
          break;
        }
        if (res == Put::Broken) break;
        rx_seg_active = false;
        c.toGuestSegmented++;
        c.toGuestSegments += rx_seg_lens.size();
        pop(n);
        continue;
      }
      if ((h.flags & VNET_F_NEEDS_CSUM) && !has(F_GUEST_CSUM)) {
        if (OffloadError e = complete_csum(h, body, blen); e != OffloadError::None) {
          count_offload_drop(e);
          pop(n);
          continue;
        }
        h.flags &= static_cast<uint8_t>(~VNET_F_NEEDS_CSUM);
        c.toGuestCsumCompleted++;
      }
      if (!has(F_GUEST_CSUM)) h.flags &= static_cast<uint8_t>(~VNET_F_DATA_VALID);
      uint8_t hb[VNET_HDR_LEN];
      vnet_hdr_write(h, hb);
      Put res = put_checked(q, hb, body, blen);
      if (res == Put::Fault) {
        c.dropGuestMemoryFault++;  // the port stops (check_fault)
        pop(n);
        break;
      }
      if (res == Put::Starved) {
        *starved = true;
        break;
      }
      if (res == Put::Broken) break;
      if (res == Put::Done && g != VNET_GSO_NONE) c.toGuestGso++;
      pop(n);
    }
    if (used_any_) publish_used(q);
    if (rx_frames) {
      c.toGuestFrames.fetch_add(rx_frames, std::memory_order_relaxed);
      c.toGuestBytes.fetch_add(rx_bytes, std::memory_order_relaxed);
      rx_frames = rx_bytes = 0;
    }
    if (done) pc.rxsync(r);
    return done;
  }

  // One pass over every queue. Returns the frames moved (or dropped): 0 when nothing did.
  uint32_t pump(bool *tx_blocked, bool *rx_starved) {
    uint32_t moved = 0;
    *tx_blocked = *rx_starved = false;
    if (conn)
      for (size_t i = 1; i < vqs.size(); i += 2) {
        Vq &q = vqs[i];
        if (!ready(q)) continue;
        bool b = false;
        moved += guest_tx(q, static_cast<uint32_t>(i / 2) % pc.tx_rings(), 256, &b);
        *tx_blocked |= b;
      }
    clear_starved();
    for (uint32_t r = 0; r < pc.rx_rings(); r++) {
      bool s = false;
      moved += guest_rx(r, 256, &s);
      *rx_starved |= s;
    }
    check_fault();
    return moved;
  }

  // A pass over the rx rings starts: which RX queue starves is its to say.
  void clear_starved() {
    for (size_t i = 0; i < vqs.size(); i += 2) vqs[i].starved = false;
  }

  // Before sleeping: ask for kicks (EVENT_IDX: avail_event = last_avail) and check nothing slipped in.
  // batch > 0: the caller sleeps with a timer; with EVENT_IDX the kick comes
  // once that many entries wait (at most a quarter of the queue, so that a
  // front-end never fills it waiting for us), without it kicks stay off.
  bool work_pending(bool tx_blocked, bool rx_starved, uint16_t batch = 0) {
    bool any = false;
    for (size_t i = 0; i < vqs.size(); i++) {
      Vq &q = vqs[i];
      if (!ready(q)) continue;
      bool is_rx = (i % 2) == 0;
      // A queue where a frame waits for buffers: the entries it has are too
      // few, and only the guest adding more can help. Before, any avail
      // entry counted as work, so a guest with MRG_RXBUF that posted one
      // buffer too small for the frame and no more kept this thread (in-line,
      // the switch) polling at 100% CPU for as long as it liked.
      const bool starved = is_rx && rx_starved && q.starved;
      if (has(F_EVENT_IDX)) {
        // the front-end kicks when its avail index passes avail_event
        // (a queue of 1 or 2 entries: no batching, a kick per entry; q.num / 4
        // is 0 there, and 0 - 1 put avail_event 0xffff entries ahead, so the
        // guest never kicked and only the batching timer woke us)
        const uint16_t ahead = batch ? static_cast<uint16_t>(std::max<uint32_t>(1, std::min<uint32_t>(batch, q.num / 4)) - 1) : 0;
        const uint16_t seen = starved ? q.starved_at : q.last_avail;
        store16_relaxed(q.used + 4 + 8 * static_cast<size_t>(q.num), static_cast<uint16_t>(seen + ahead));
      } else if (batch) {
        // no kick threshold without EVENT_IDX: kicks stay off, the timer wakes us
        if (!(load16(q.used) & USED_F_NO_NOTIFY)) store16_relaxed(q.used, USED_F_NO_NOTIFY);
      } else if (load16(q.used) & USED_F_NO_NOTIFY) {
        // read from memory, not remembered: a back-end before us (vale-ts
        // restarted, the front-end kept its rings) may have left it set
        store16_relaxed(q.used, 0);
      }
      full_fence();
      // a TX queue waits for ring space, an RX queue matters only to frames
      // waiting for buffers, and then only the queue they wait at, once it has more
      const uint16_t idx = load16(q.avail + 2);
      if (is_rx ? starved && idx != q.starved_at : idx != q.last_avail && !tx_blocked) any = true;
    }
    return any;
  }

  // While polling: no kicks wanted. With EVENT_IDX that needs no write (the
  // guest kicks only when its avail index passes avail_event, which stays
  // where the last sleep put it); without it, used->flags says NO_NOTIFY.
  void notifications_off() {
    if (has(F_EVENT_IDX)) return;
    for (Vq &q : vqs)
      if (ready(q) && !(load16(q.used) & USED_F_NO_NOTIFY)) store16_relaxed(q.used, USED_F_NO_NOTIFY);
  }

  // ------------------------------------------------- in-line (RoundHook)
  // Called by the switch's round with its mutex held. The datapath's state
  // is only try-locked: while the control thread handles a message the
  // round skips this port, and the control thread wakes the switch after.

  // guest TX queues -> the port's tx ring, collected by this same round
  // Frames that waited in the port's rx ring for guest buffers go first: the
  // switch then sees the slots the guest has freed meanwhile before it
  // forwards. An in-line port's slots are released only in the switch's own
  // rounds, so otherwise the first round after a sleep found the ring as
  // full as before it, counted the sleep as time without a release, and
  // shed the port (dropNoSpace) once the sleep passed its hold, however
  // long ago the guest had made room.
  void before_collect() override {
    std::unique_lock<std::mutex> l(dp_mu, std::try_to_lock);
    if (!l) return;
    tx_blocked = false;
    if (!conn) return;
    if (rx_starved) {
      rx_starved = false;
      clear_starved();
      for (uint32_t r = 0; r < pc.rx_rings(); r++) {
        bool st = false;
        const uint32_t n = guest_rx(r, 256, &st);
        inl_pre_rx += n;
        inl_moved += n;
        rx_starved |= st;
      }
    }
    for (size_t i = 1; i < vqs.size(); i += 2) {
      Vq &q = vqs[i];
      if (!ready(q)) continue;
      bool b = false;
      inl_moved += guest_tx(q, static_cast<uint32_t>(i / 2) % pc.tx_rings(), 256, &b);
      tx_blocked |= b;
    }
    check_fault();
  }

  // what this round delivered to the port -> the guest's RX queues
  uint32_t after_forward() override {
    std::unique_lock<std::mutex> l(dp_mu, std::try_to_lock);
    if (!l) return 0;
    rx_starved = false;
    clear_starved();
    uint32_t moved = 0;
    for (uint32_t r = 0; r < pc.rx_rings(); r++) {
      bool st = false;
      moved += guest_rx(r, 256, &st);
      rx_starved |= st;
    }
    inl_moved += moved;
    moved += inl_pre_rx;
    inl_pre_rx = 0;
    check_fault();
    return moved;
  }

  void set_timed_wait(bool timed) override { inl_timed = timed; }
  uint64_t wake_within_ns() const override { return inl_wake_ns; }
  void woke() override { inl_moved = 0; }
  // the round's thread only, as inl_timed and inl_moved (no lock: conn is the control thread's)
  bool batching() const override { return inl_timed && inl_moved >= BATCH_TRIGGER; }

  // The switch is about to sleep: guest notifications on, then re-check.
  // Frames streaming (BATCH_TRIGGER or more moved since the last sleep) and
  // a sleep that takes a timer: kicks batched as in the thread mode (no kick
  // without EVENT_IDX, one per BATCH_FRAMES with it), BATCH_WAIT (INLINE_BATCH_WAIT here) the bound.
  bool arm() override {
    inl_wake_ns = 0;
    std::unique_lock<std::mutex> l(dp_mu, std::try_to_lock);
    if (!l) return true;  // the control thread notifies the switch when it is done
    const bool batched = inl_timed && conn && inl_moved >= BATCH_TRIGGER;
    bool again = false;
    for (uint32_t r = 0; r < pc.rx_rings(); r++) {
      pc.rxsync(r);
      if (pc.rx_avail(r) && !rx_starved) again = true;
    }
    if (conn && work_pending(tx_blocked, rx_starved, batched ? BATCH_FRAMES : 0)) again = true;
    check_fault();  // work_pending writes the rings: the control thread wakes on the socket
    if (!again) {
      c.wakeups.fetch_add(1, std::memory_order_relaxed);
      if (batched) {
        c.batchedSleeps.fetch_add(1, std::memory_order_relaxed);
        inl_wake_ns = INLINE_BATCH_WAIT_NS;
      }
    }
    return !again;
  }

  // Awake: the switch's rounds poll the queues, no kicks wanted.
  void disarm() override {
    inl_wake_ns = 0;
    std::unique_lock<std::mutex> l(dp_mu, std::try_to_lock);
    if (l && conn) notifications_off();
  }

  // A kick eventfd the switch saw readable: one read takes its whole count.
  void fd_ready(int fd) override { c.kicks.fetch_add(drain_bell(fd), std::memory_order_relaxed); }

  // The thread of an in-line port: the protocol only.
  void run_control(int stop_fd) {
    epoll_add(stop_fd, K_STOP);
    if (listen_fd) epoll_add(listen_fd.get(), K_LISTEN);
    if (self.cfg_.client) {
      std::lock_guard<std::mutex> g(dp_mu);
      try_connect();
    }
    core->notify();
    epoll_event evs[8];
    for (;;) {
      // conn changes only on this thread: read here without the lock
      int n = ::epoll_wait(epfd.get(), evs, 8, self.cfg_.client && !conn ? 1000 : -1);
      if (n < 0 && errno != EINTR) {
        set_error(std::string("epoll_wait: ") + std::strerror(errno));
        return;
      }
      bool conn_readable = false, listen_ready = false;
      for (int i = 0; i < n; i++) {
        uint64_t kind = evs[i].data.u64 & ~0xffffffffull;
        if (kind == K_STOP) return;
        if (kind == K_LISTEN) listen_ready = true;
        else if (kind == K_CONN) conn_readable = true;
      }
      {
        std::lock_guard<std::mutex> g(dp_mu);
        if (listen_ready) on_listen();
        handle_messages(conn_readable);
        maybe_reconnect();
      }
      core->notify();  // a queue may have started or changed: the switch looks at once
    }
  }

  // -------------------------------------------------------------- protocol
  void epoll_add(int fd, uint64_t key) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = key;
    ::epoll_ctl(epfd.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  void epoll_del(int fd) { ::epoll_ctl(epfd.get(), EPOLL_CTL_DEL, fd, nullptr); }

  // A kick eventfd wakes the switch (in-line) or this thread.
  void watch_kick(int fd, uint32_t qi) {
    if (!core) return epoll_add(fd, K_KICK | qi);
    if (Status s = core->add_wait_fd(this, fd); !s) set_error("cannot wait for the guest's kicks: " + s.error().what + ": " + std::strerror(s.error().err));
  }
  void unwatch_kick(int fd) {
    if (core) core->remove_wait_fd(fd);
    else epoll_del(fd);
  }

  void reset_queues() {
    for (Vq &q : vqs) {
      if (q.kick) unwatch_kick(q.kick.get());
      q = Vq{};
    }
  }

  void disconnect(std::string why) {
    if (!conn) return;
    if (mem_faulted()) {
      // whatever ended the connection (the datapath shut it down, or a message came first), this is why
      why = "guest memory faulted (SIGBUS): its file was shrunk under a mapped region (or is sparse on a full "
            "tmpfs); the page was replaced with zeros and the frames in flight dropped (dropGuestMemoryFault). "
            "Back guest memory with memory-backend-memfd (sealed against shrinking) or do not truncate its file";
      if (!fault_logged) {
        fault_logged = true;
        std::fprintf(stderr, "vale-ts: vhost-user %s: %s; front-end disconnected (logged once)\n", self.cfg_.path.c_str(), why.c_str());
      }
    }
    if (!why.empty()) {
      c.protocolErrors++;
      set_error(why);
    }
    epoll_del(conn.get());
    conn.reset();
    reset_queues();
    mem.clear();  // unregisters from the guard, then unmaps
    mem_fault.store(0, std::memory_order_relaxed);
    fault_hungup = false;
    rx_seg_active = false;  // what is left of a frame part way through is the next guest's no more
    features = proto = 0;
    features_set = false;
    c.disconnects++;
    publish_info();
  }

  void on_connected(unique_fd fd) {
    // a backstop: reads are bounded by the message's deadline (read_full); a
    // peer that does not read our replies is dropped after 0.5 s
    timeval tv{0, 500000};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int fl = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    conn = std::move(fd);
    epoll_add(conn.get(), K_CONN);
    c.connects++;
    publish_info();
  }

  // How a message read ended.
  enum class ReadEnd { Ok, Closed, Stopped, Late, TooManyFds };

  // Reads exactly n bytes of the message being read, collecting its fds, by
  // `deadline`: the whole message, not each read (with only the socket's
  // per-read timeout, a front-end sending a byte every 0.4 s held this
  // thread for half an hour per message, and with it stop(), which the
  // event loop waits for, and in-line the datapath's lock). A stop request
  // ends the read at once.
  ReadEnd read_full(void *p, size_t n, std::vector<unique_fd> *fds, std::chrono::steady_clock::time_point deadline) {
    uint8_t *b = static_cast<uint8_t *>(p);
    while (n) {
      const auto left_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left_ns <= 0) return ReadEnd::Late;
      pollfd pf[2] = {{conn.get(), POLLIN, 0}, {self.stop_fd_.get(), POLLIN, 0}};
      const int pr = ::poll(pf, 2, static_cast<int>((left_ns + 999'999) / 1'000'000));
      if (pr < 0 && errno == EINTR) continue;
      if (pr < 0) return ReadEnd::Closed;
      if (pf[1].revents) return ReadEnd::Stopped;  // left readable: the thread's loop sees it next
      if (pr == 0) return ReadEnd::Late;
      int flags = 0;
      ssize_t r = recv_with_fds<MAX_REGIONS>(conn.get(), b, n, *fds, flags);
      if (r <= 0) return ReadEnd::Closed;
      // no request carries more than MAX_REGIONS: more (in one read or over
      // several) are refused at once rather than held until the message ends
      if ((flags & MSG_CTRUNC) || fds->size() > MAX_REGIONS) return ReadEnd::TooManyFds;
      b += r;
      n -= static_cast<size_t>(r);
    }
    return ReadEnd::Ok;
  }

  bool send_reply(const MsgHeader &req, const void *payload, uint32_t size) {
    MsgHeader h{req.request, FLAG_VERSION | FLAG_REPLY, size};
    uint8_t out[sizeof h + 64];
    std::memcpy(out, &h, sizeof h);
    std::memcpy(out + sizeof h, payload, size);
    ssize_t w = ::send(conn.get(), out, sizeof h + size, MSG_NOSIGNAL);
    return w == static_cast<ssize_t>(sizeof h + size);
  }
  bool reply_u64(const MsgHeader &req, uint64_t v) { return send_reply(req, &v, sizeof v); }

  // Handles one message; false closes the connection (after set_error).
  bool on_message() {
    MsgHeader h;
    std::vector<unique_fd> fds;
    // a message's header and payload come together: the whole of it within MSG_DEADLINE
    const auto deadline = std::chrono::steady_clock::now() + MSG_DEADLINE;
    auto read_end = [&](ReadEnd e) -> std::string {
      switch (e) {
        case ReadEnd::Late: return "message not complete within 0.5 s";
        case ReadEnd::TooManyFds: return "front-end sent more fds than any request carries";
        default: return "";  // EOF, an error, or our own stop: an ordinary disconnect
      }
    };
    if (ReadEnd e = read_full(&h, sizeof h, &fds, deadline); e != ReadEnd::Ok) {
      disconnect(read_end(e));
      return false;
    }
    auto fail = [&](const std::string &why) {
      disconnect("request " + std::to_string(h.request) + ": " + why);
      return false;
    };
    if ((h.flags & FLAG_VERSION_MASK) != FLAG_VERSION) return fail("protocol version " + std::to_string(h.flags & 3) + ", only 1 exists");
    if (h.size > MAX_PAYLOAD) return fail("payload of " + std::to_string(h.size) + " bytes (at most " + std::to_string(MAX_PAYLOAD) + ")");
    std::array<uint8_t, MAX_PAYLOAD> pl{};
    if (h.size)
      if (ReadEnd e = read_full(pl.data(), h.size, &fds, deadline); e != ReadEnd::Ok) {
        if (e == ReadEnd::Stopped) {
          disconnect("");
          return false;
        }
        const std::string why = read_end(e);
        return fail(why.empty() ? "payload cut short" : why);
      }
    auto need = [&](uint32_t n) { return h.size >= n; };
    auto u64 = [&]() {
      uint64_t v;
      std::memcpy(&v, pl.data(), 8);
      return v;
    };
    auto vq_at = [&](uint32_t idx) -> Vq * { return idx < vqs.size() ? &vqs[idx] : nullptr; };
    auto nfds = [&](size_t n) { return fds.size() == n; };
    bool replied = false;
    switch (h.request) {
      case GET_FEATURES:
        if (!reply_u64(h, offered_features())) return fail("reply not sent");
        replied = true;
        break;
      case SET_FEATURES: {
        if (!need(8) || !nfds(0)) return fail("malformed");
        uint64_t f = u64();
        if (f & ~offered_features()) return fail("features 0x" + to_hex(f & ~offered_features()) + " were not offered");
        features = f;
        features_set = true;
        hdr_len = (has(F_VERSION_1) || has(F_MRG_RXBUF)) ? 12 : 10;
        break;
      }
      case GET_PROTOCOL_FEATURES:
        if (!reply_u64(h, offered_protocol_features())) return fail("reply not sent");
        replied = true;
        break;
      case SET_PROTOCOL_FEATURES: {
        if (!need(8) || !nfds(0)) return fail("malformed");
        uint64_t f = u64();
        if (f & ~offered_protocol_features()) return fail("protocol features 0x" + to_hex(f & ~offered_protocol_features()) + " were not offered");
        proto = f;
        break;
      }
      case GET_QUEUE_NUM:
        if (!reply_u64(h, self.cfg_.queue_pairs)) return fail("reply not sent");
        replied = true;
        break;
      case SET_OWNER:
        if (!nfds(0)) return fail("unexpected fds");
        break;
      case RESET_OWNER:
        reset_queues();
        break;
      case SET_MEM_TABLE: {
        std::string e = set_mem_table(pl.data(), h.size, fds);
        if (!e.empty()) return fail(e);
        break;
      }
      case SET_VRING_NUM:
      case SET_VRING_BASE:
      case SET_VRING_ENABLE: {
        if (!need(8) || !nfds(0)) return fail("malformed");
        uint32_t idx, num;
        std::memcpy(&idx, pl.data(), 4);
        std::memcpy(&num, pl.data() + 4, 4);
        Vq *q = vq_at(idx);
        if (!q) return fail("queue " + std::to_string(idx) + " does not exist (" + std::to_string(vqs.size()) + " queues)");
        if (h.request == SET_VRING_NUM) {
          if (num == 0 || num > MAX_QUEUE_SIZE || (num & (num - 1))) return fail("queue size " + std::to_string(num) + " is not a power of 2 up to 32768");
          q->num = num;
          if (!translate(*q)) return fail("queue " + std::to_string(idx) + "'s rings lie outside the memory table");
        } else if (h.request == SET_VRING_BASE) {
          if (num > 0xffff) return fail("ring base " + std::to_string(num) + " is not a 16-bit index");
          q->last_avail = q->last_used = static_cast<uint16_t>(num);
          q->signalled_valid = false;
          q->broken = false;
        } else {
          if (num > 1) return fail("enable must be 0 or 1");
          q->enabled = num == 1;
        }
        break;
      }
      case SET_VRING_ADDR: {
        if (!need(40) || !nfds(0)) return fail("malformed");
        uint32_t idx;
        std::memcpy(&idx, pl.data(), 4);
        Vq *q = vq_at(idx);
        if (!q) return fail("queue " + std::to_string(idx) + " does not exist");
        uint64_t d, u, a;
        std::memcpy(&d, pl.data() + 8, 8);
        std::memcpy(&u, pl.data() + 16, 8);
        std::memcpy(&a, pl.data() + 24, 8);
        if (d % 16 || a % 2 || u % 4) return fail("misaligned ring addresses");
        q->desc_ua = d;
        q->used_ua = u;
        q->avail_ua = a;
        q->addr_set = true;
        if (!translate(*q)) return fail("queue " + std::to_string(idx) + "'s rings lie outside the memory table");
        break;
      }
      case GET_VRING_BASE: {
        if (!need(8) || !nfds(0)) return fail("malformed");
        uint32_t idx;
        std::memcpy(&idx, pl.data(), 4);
        Vq *q = vq_at(idx);
        if (!q) return fail("queue " + std::to_string(idx) + " does not exist");
        // stop the ring; its state goes back to the front-end
        q->started = false;
        if (q->kick) unwatch_kick(q->kick.get());
        q->kick.reset();
        uint32_t st[2] = {idx, q->last_avail};
        if (!send_reply(h, st, sizeof st)) return fail("reply not sent");
        replied = true;
        break;
      }
      case SET_VRING_KICK:
      case SET_VRING_CALL:
      case SET_VRING_ERR: {
        if (!need(8)) return fail("malformed");
        uint64_t v = u64();
        Vq *q = vq_at(static_cast<uint32_t>(v & VRING_IDX_MASK));
        if (!q || (v & ~(VRING_IDX_MASK | VRING_NOFD_MASK))) return fail("bad queue index");
        bool nofd = v & VRING_NOFD_MASK;
        if (!nfds(nofd ? 0 : 1)) return fail("expected " + std::string(nofd ? "no fd" : "one fd"));
        unique_fd fd = nofd ? unique_fd() : std::move(fds[0]);
        if (fd && h.request != SET_VRING_ERR)  // (the err fd is never used)
          if (std::string e = eventfd_check(fd.get()); !e.empty()) return fail(std::string(h.request == SET_VRING_KICK ? "kick" : "call") + ": " + e);
        if (h.request == SET_VRING_KICK) {
          if (nofd) return fail("polling mode (no kick fd) is not supported");
          if (q->kick) unwatch_kick(q->kick.get());
          q->kick = std::move(fd);
          watch_kick(q->kick.get(), static_cast<uint32_t>(q - vqs.data()));
          q->started = true;
          if (!translate(*q)) return fail("queue's rings lie outside the memory table");
          resync_base(*q);
        } else if (h.request == SET_VRING_CALL) {
          q->call = std::move(fd);
        } else {
          q->err = std::move(fd);
        }
        break;
      }
      case SET_LOG_BASE:
      case SET_LOG_FD:
        return fail("dirty logging (migration) is not offered by vale-ts");
      default:
        return fail("not supported by vale-ts");
    }
    if (mem_faulted()) {
      // this message's handling (resync_base reads the used ring) or the
      // datapath meanwhile faulted on guest memory: disconnect() says so
      disconnect("");
      return false;
    }
    if (!replied && (h.flags & FLAG_NEED_REPLY) && (proto & bit(PF_REPLY_ACK)))
      if (!reply_u64(h, 0)) return fail("reply not sent");
    publish_info();
    return true;
  }

  static std::string to_hex(uint64_t v) {
    char b[20];
    std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(v));
    return b;
  }

  std::string set_mem_table(const uint8_t *p, uint32_t size, std::vector<unique_fd> &fds) {
    if (size < 8) return "malformed";
    uint32_t n;
    std::memcpy(&n, p, 4);
    if (n == 0 || n > MAX_REGIONS) return std::to_string(n) + " memory regions (1.." + std::to_string(MAX_REGIONS) + ")";
    if (size < 8 + 32 * n) return "memory table cut short";
    if (fds.size() != n) return std::to_string(fds.size()) + " fds for " + std::to_string(n) + " regions";
    std::vector<Region> next;
    next.reserve(n);
    for (uint32_t i = 0; i < n; i++) {
      Region r;
      uint64_t off;
      const uint8_t *e = p + 8 + 32 * i;
      std::memcpy(&r.gpa, e, 8);
      std::memcpy(&r.size, e + 8, 8);
      std::memcpy(&r.uva, e + 16, 8);
      std::memcpy(&off, e + 24, 8);
      std::string name = "region " + std::to_string(i);
      if (r.size == 0) return name + " is empty";
      if (r.gpa + r.size < r.gpa || r.uva + r.size < r.uva || off + r.size < off) return name + " wraps around";
      for (const Region &o : next) {
        if (r.gpa < o.gpa + o.size && o.gpa < r.gpa + r.size) return name + " overlaps another in guest memory";
        if (r.uva < o.uva + o.size && o.uva < r.uva + r.size) return name + " overlaps another in front-end addresses";
      }
      // the fd must really hold the range: touching a page past its end would be SIGBUS
      struct stat st {};
      if (::fstat(fds[i].get(), &st) < 0) return name + ": fstat failed";
      if (!S_ISREG(st.st_mode)) return name + ": its fd is not a memory file (memfd, hugetlbfs, shm)";
      size_t page = 0;
      if (std::string e = memory_file_check(fds[i].get(), &page); !e.empty()) return name + ": " + e;
      if (static_cast<uint64_t>(st.st_size) < off + r.size) return name + " reaches past the end of its fd";
      auto m = mapping::map_shared(fds[i].get(), off + r.size, name);
      if (!m) return name + ": mmap failed: " + std::strerror(m.error().err);
      r.map = std::move(m).value();
      if (!GuardedRange::add(r.map.data(), r.map.size(), page, &mem_fault, &r.guard))
        return name + ": the process maps " + std::to_string(GUARD_SLOTS) + " regions of guest memory already (every port's together)";
      r.host = r.map.data() + off;
      next.push_back(std::move(r));
    }
    // the rings point into the old table: retranslate, then the old mappings go
    mem.swap(next);
    for (Vq &q : vqs)
      if (!translate(q)) return "a queue's rings lie outside the new memory table";
    return {};
  }

  // --------------------------------------------------------------- sockets
  Result<unique_fd> make_unix(sockaddr_un *a) {
    const std::string &path = self.cfg_.path;
    if (path.empty() || path.size() >= sizeof a->sun_path)
      return check_fail(ENAMETOOLONG, "vhost-user socket path '" + path + "' is empty or longer than " + std::to_string(sizeof a->sun_path - 1) + " bytes");
    std::memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    std::memcpy(a->sun_path, path.data(), path.size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return sys_fail("socket", "vhost-user socket");
    return unique_fd(fd);
  }

  Status listen_on() {
    sockaddr_un a;
    auto s = make_unix(&a);
    if (!s) return std::move(s).take_error();
    const std::string &path = self.cfg_.path;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return check_fail(EEXIST, "vhost-user path " + path + " exists and is not a socket", "remove it or choose another path");
      // a socket file: stale (nobody accepts) or live (refuse)
      int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bool live = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
      if (probe >= 0) ::close(probe);
      if (live) return check_fail(EADDRINUSE, "another process listens on vhost-user socket " + path, "stop it or choose another path");
      ::unlink(path.c_str());
    }
    if (::bind(s->get(), reinterpret_cast<sockaddr *>(&a), sizeof a) < 0) {
      SysError e = sys_fail("bind", "vhost-user socket " + path);
      e.path = path;
      return e;
    }
    if (::listen(s->get(), 4) < 0) return sys_fail("listen", "vhost-user socket " + path);
    listen_fd = std::move(s).value();
    return Ok{};
  }

  void try_connect() {
    sockaddr_un a;
    auto s = make_unix(&a);
    if (!s) return;
    // non-blocking: a unix stream connect completes at once or fails with
    // EAGAIN when the listener's backlog is full. Blocking, a server at the
    // path that never accepts (anyone who can create the socket there) held
    // this thread in connect(), and with it stop(), which the event loop
    // waits for when the port is removed
    if (::connect(s->get(), reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
      on_connected(std::move(s).value());
    } else {
      const int e = errno;
      set_error("connecting to " + self.cfg_.path + ": " + std::strerror(e) +
                (e == EAGAIN ? " (its listen backlog is full: the front-end is not accepting)" : "") + " (retrying every second)");
    }
  }

  // client mode, no connection: one attempt a second (the thread's loop and
  // the in-line mode's message loop both call this)
  void maybe_reconnect() {
    if (!self.cfg_.client || conn) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_try < std::chrono::seconds(1)) return;
    last_try = now;
    try_connect();
  }

  void on_listen() {
    for (;;) {
      int fd = ::accept4(listen_fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      if (conn) {
        // one front-end at a time; the socket is its device
        ::close(fd);
        set_error("refused a second front-end while one is connected");
        continue;
      }
      on_connected(unique_fd(fd));
    }
  }

  void run(int stop_fd) {
    epoll_add(stop_fd, K_STOP);
    if (listen_fd) epoll_add(listen_fd.get(), K_LISTEN);
    epoll_add(pc.wait_fd(), K_BELL);
    if (self.cfg_.client) try_connect();
    pc.txsync(0);
    epoll_event evs[32];
    using clock = std::chrono::steady_clock;
    const auto poll_window = std::chrono::microseconds(self.cfg_.busy_poll_us);
    const auto backlog_window = std::chrono::microseconds(self.cfg_.backlog_poll_us);
    const bool timed = poll_window.count() || backlog_window.count();
    auto last_moved = clock::now();
    uint32_t idle_polls = 0, busy_passes = 0;
    uint32_t since_wake = 0;  // frames moved since the last sleep ended: kick batching's trigger
    for (;;) {
      bool txb = false, rxs = false;
      const uint32_t moved = pump(&txb, &rxs);
      since_wake += moved;
      int timeout;
      bool batched = false;
      if (moved) {
        idle_polls = 0;
        if (timed) last_moved = clock::now();
        // go on: the next pass finds what came meanwhile; the sockets and the
        // stop fd are looked at every 8th pass (a syscall each, and a kick or
        // a doorbell means nothing while we pass over the rings anyway)
        if (++busy_passes % 8) continue;
        timeout = 0;
      } else if (conn && timed &&
                 [&] {
                   const auto idle = clock::now() - last_moved;
                   // frames backlogged for a guest still draining its RX queue: its next
                   // freed entries are likely a few µs away
                   return idle < poll_window || (rxs && idle < backlog_window);
                 }()) {
        // polling: the guest's next burst is likely a few µs away; look at
        // the sockets and the stop fd only every 32nd empty pass
        if (++idle_polls % 32) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
          continue;
        }
        timeout = 0;
      } else {
        // sleep: ask the switch and the guest to wake us, then re-check (no
        // lost wakeup). Frames streaming (this wake moved a batch): kicks
        // and the rx doorbell batched, a timer bounds the wait (BATCH_FRAMES)
        batched = conn && pwait2_ok && since_wake >= BATCH_TRIGGER;
        pc.arm(!batched, txb);
        bool again = false;
        for (uint32_t r = 0; r < pc.rx_rings(); r++) {
          pc.rxsync(r);
          if (pc.rx_avail(r) && !rxs) again = true;
        }
        if (conn && work_pending(txb, rxs, batched ? BATCH_FRAMES : 0)) again = true;
        check_fault();  // the socket, shut down, wakes this epoll_wait
        timeout = again ? 0 : (self.cfg_.client && !conn ? 1000 : -1);
        if (timeout) {
          c.wakeups++;
          if (batched) c.batchedSleeps++;
        }
      }
      int n;
      if (batched && timeout) {
        const timespec ts{0, BATCH_WAIT_NS};
        n = ::epoll_pwait2(epfd.get(), evs, 32, &ts, nullptr);
        if (n < 0 && errno == ENOSYS) {
          // a kernel before 5.11: no µs timer, so no batching (kicks come
          // back on at the next sleep); this pass counts as a timeout
          pwait2_ok = false;
          n = 0;
        }
      } else {
        n = ::epoll_wait(epfd.get(), evs, 32, timeout);
      }
      if (timeout) since_wake = 0;
      pc.disarm();
      if (timeout && conn) {
        notifications_off();  // woken: poll until the window closes
        last_moved = clock::now();
      }
      if (n < 0 && errno != EINTR) {
        set_error(std::string("epoll_wait: ") + std::strerror(errno));
        return;
      }
      bool conn_readable = false;
      for (int i = 0; i < n; i++) {
        uint64_t k = evs[i].data.u64;
        uint64_t kind = k & ~0xffffffffull;
        if (kind == K_STOP) return;
        if (kind == K_LISTEN) on_listen();
        else if (kind == K_CONN) conn_readable = true;
        else if (kind == K_BELL) pc.drain_bell();
        else if (kind == K_KICK) {
          uint32_t qi = static_cast<uint32_t>(k & 0xffffffff);
          if (qi < vqs.size() && vqs[qi].kick) {
            // one read takes the eventfd's whole count (every kick since the last read) and resets it
            c.kicks += drain_bell(vqs[qi].kick.get());
          }
        }
      }
      // protocol messages after the datapath events of this round: a message may reset a queue
      handle_messages(conn_readable);
      maybe_reconnect();
    }
  }
  // The messages queued on the connection (64 at most before the datapath gets a turn).
  void handle_messages(bool conn_readable) {
    for (int budget = 0; conn_readable && conn && budget < 64; budget++) {
      if (!on_message() || !conn) break;
      uint8_t b;  // more messages queued already?
      ssize_t r = ::recv(conn.get(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
      if (r == 0) disconnect("");
      if (r <= 0) break;
    }
  }
  std::chrono::steady_clock::time_point last_try = std::chrono::steady_clock::now();
  bool pwait2_ok = true;  // epoll_pwait2 exists (kick batching's timer)
};

uint64_t VhostUserPort::offered_features() {
  // CSUM/HOST_TSO*: the guest may leave checksums and segmentation to us;
  // its frames go on with their header, finished only for ports that take
  // none (the switch core does that). GUEST_CSUM/GUEST_TSO*: the guest takes
  // partial checksums and GSO frames whole, delivered into mergeable buffers
  // (or a non-merging guest's big buffers); a guest without them gets frames
  // finished here.
  return bit(F_CSUM) | bit(F_HOST_TSO4) | bit(F_HOST_TSO6) | bit(F_GUEST_CSUM) | bit(F_GUEST_TSO4) | bit(F_GUEST_TSO6) | bit(F_VERSION_1) |
         bit(F_MRG_RXBUF) | bit(F_EVENT_IDX) | bit(F_INDIRECT) | bit(F_MQ) | bit(F_PROTOCOL_FEATURES);
}
uint64_t VhostUserPort::offered_protocol_features() { return bit(PF_MQ) | bit(PF_REPLY_ACK); }

Result<std::unique_ptr<VhostUserPort>> VhostUserPort::start(PortClient pc, VhostUserConfig cfg, std::shared_ptr<SwitchCore> core) {
  if (cfg.queue_pairs < 1 || cfg.queue_pairs > 8)
    return check_fail(EINVAL, "vhost-user queue pairs " + std::to_string(cfg.queue_pairs) + " (1..8)");
  if (pc.tx_rings() == 0 || pc.rx_rings() == 0) return check_fail(EINVAL, "vhost-user port needs a tx and an rx ring");
  guard_install();  // before any guest memory is mapped (the SIGBUS guard above)
  std::unique_ptr<VhostUserPort> p(new VhostUserPort());
  p->cfg_ = std::move(cfg);
  p->impl_ = std::make_unique<Impl>(*p, std::move(pc));
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return sys_fail("epoll_create1", "vhost-user port");
  p->impl_->epfd.reset(ep);
  int sfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sfd < 0) return sys_fail("eventfd", "vhost-user port");
  p->stop_fd_.reset(sfd);
  if (!p->cfg_.client) {
    Status s = p->impl_->listen_on();
    if (!s) return std::move(s).take_error();
  }
  Impl *impl = p->impl_.get();
  if (core) {
    p->core_ = std::move(core);
    impl->core = p->core_.get();
    impl->pc.txsync(0);
    Status s = p->core_->add_round_hook(impl);
    if (!s) return std::move(s).take_error();
    p->thread_ = std::thread([impl, sfd] { impl->run_control(sfd); });
    return p;
  }
  p->thread_ = std::thread([impl, sfd] { impl->run(sfd); });
  return p;
}

void VhostUserPort::stop() {
  if (stopped_) return;
  stopped_ = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(stop_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  // the switch never calls the driver again once this returned (and drops its kick fds)
  if (core_ && impl_) core_->remove_round_hook(impl_.get());
  if (impl_) {
    impl_->conn.reset();
    impl_->reset_queues();
    impl_->mem.clear();
    if (impl_->listen_fd) {
      impl_->listen_fd.reset();
      ::unlink(cfg_.path.c_str());
    }
  }
  std::lock_guard<std::mutex> g(info_mu_);
  info_.connected = false;
  info_.running_queues = 0;
}

VhostUserPort::~VhostUserPort() { stop(); }

VhostUserInfo VhostUserPort::info() const {
  std::lock_guard<std::mutex> g(info_mu_);
  return info_;
}

}  // namespace nm
