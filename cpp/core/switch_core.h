// The switch's datapath, without N-API: it plays the kernel for every port's
// rings (the CSB model). One round walks every port's tx rings, collects one
// batch across all of them (validated, each frame tagged with its source
// port), snapshots the header bytes the forwarding decision may read into
// switch-private memory, hands the batch to that decision (TypeScript, via
// the N-API binding) and delivers it: every destination rx ring is filled
// and published once per round, and rings that had nothing are not touched.
//
// The decision reads only the snapshot, and the delivered frame starts with
// the snapshot, so a client that rewrites its buffer after the switch took
// the frame cannot make the switch deliver something it did not decide on.
//
// Every value read from a port's region is the client's and may be hostile:
// head indices, buffer indices and lengths are read once, checked against
// the layout the switch itself computed (never the header in shared memory),
// and a bad slot is dropped and counted.
//
// Sleep and wake cost O(1) calls: every switch doorbell is in one epoll set
// (one fd for the event loop or a datapath thread to wait on), and kick
// requests of all ports are armed and withdrawn in one call.
//
// Thread safety: every public member takes the core's mutex, so a datapath
// thread can run rounds while another thread adds and removes ports or reads
// counters; a round holds the mutex for its whole duration (decision
// included), which bounds how long a control call waits. The mutex is
// recursive so a decision may read counters; calls that change ports fail
// with EDEADLK when made from inside a decision.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <sys/uio.h>

#include "core/fd.h"
#include "core/region.h"
#include "core/result.h"

namespace nm {

constexpr uint32_t SWITCH_MAX_PORTS = 254;  // NM_BDG_MAXPORTS
constexpr uint32_t SWITCH_MAX_BATCH = 4096;
// bytes of each frame the decision sees (and the switch snapshots)
constexpr uint32_t SWITCH_MIN_HEADER = 14;
constexpr uint32_t SWITCH_MAX_HEADER = 2048;
constexpr uint32_t SWITCH_DEFAULT_HEADER = 128;
constexpr int16_t DEST_DROP = -1;
constexpr int16_t DEST_FLOOD = -2;
constexpr int16_t DEST_SAME_PORT = -3;
// Bounded backpressure's rate (set_hold_us): slots a full receiver must
// release per hold bound for its senders to keep waiting, counted over
// every release since the hold began, so a small ring (rx_slots is the
// client's choice, down to 2) does not lower it. A batch: what one NAPI
// poll of a Linux driver takes (its default weight); a receiver draining in
// batches frees that many in one go.
constexpr uint32_t SWITCH_HOLD_QUANTUM = 64;
// The bound adapts to the receiver (set_hold_us): a hold whose quantum took
// more than 1/SWITCH_HOLD_SLOW_DIV of the configured bound, or that ran out
// (shed), halves the port's bound for the next holds, down to 0 (drop at
// once) after SWITCH_HOLD_LEVELS halvings; each configured bound of time
// without another gives one halving back. A quarter: the slow receivers
// bounded backpressure is for release a quantum far sooner (pkt-gen-ts
// slower than its sender: 10-20 us; a receiver preempted on a loaded
// 2-core machine: ~300 us of the default 2 ms, DEFAULT_HOLD_US; a guest
// without a turn for 100 ms, of an in-line vhost-user port's 1 s), and one
// slow hold (a guest paused for most of a second) only halves the next
// bound. A receiver freeing a quantum just inside each bound no longer
// holds its senders (their frames for everyone) to a quantum per bound.
constexpr uint32_t SWITCH_HOLD_SLOW_DIV = 4;
constexpr uint8_t SWITCH_HOLD_LEVELS = 5;
// Longest frame after its virtio-net header (a GSO super-frame fits).
constexpr uint32_t SWITCH_MAX_FRAME = 65535;

// per-port counters; the order is the JS-visible order (SWITCH_COUNTER_NAMES)
enum SwitchCounter {
  C_RX_FRAMES,       // frames taken from the port's tx rings
  C_RX_BYTES,
  C_TX_FRAMES,       // frames delivered into the port's rx rings
  C_TX_BYTES,
  C_DROP_NO_SPACE,   // copies to this port lost: its rx ring was full
  C_DROP_INVALID,    // slots from this port with a bad buffer index or length
  C_DROP_RUNT,       // frames from this port under 14 bytes
  C_DROP_SAME_PORT,  // destination was the source (never reflected)
  C_DROP_LOOKUP,     // the lookup function said drop (or threw)
  C_DROP_NO_PORT,    // the lookup named a port that does not exist, or a flood found no other port
  C_DROP_OVERSIZE,   // copies to this port larger than its buffers
  C_DROP_FRAG,       // a fragment chain longer than NETMAP_MAX_FRAGS slots
  C_DROP_CLOSED,     // frames left in the port's tx rings when it went away
  C_FLOODED,         // frames from this port sent to all others
  C_BAD_HEAD,        // impossible indices the client published (each new value once)
  C_KICKS,           // doorbell writes to this port's client
  C_DROP_STALLED,    // copies to this port lost while it was declared stalled (lossless senders)
  C_FLOOD_COPIES,    // copies made of this port's flooded frames, one per other port (each delivered or dropped)
  C_DROP_MONITOR,    // a monitor port: copies lost because its rx ring was full (the watched port never waits)
  // virtio-net headers, counted at the receiving port (see set_vnet_hdr_len)
  C_VNET_PASSED,     // copies delivered with the sender's header untouched (both ports declare the same length)
  C_VNET_CSUM,       // copies whose L4 checksum the switch completed (header-carrying sender, header-less receiver)
  C_VNET_SEGMENTED,  // GSO copies the switch cut into frames for this header-less receiver
  C_VNET_SEGMENTS,   // frames those became (each also in txFrames)
  C_DROP_BAD_VNET,   // copies whose header asked for what cannot be done (bad offsets, GSO type, headers, gso_size)
  C_BELL_STUCK,      // doorbells of this port's client that stopped taking kicks (made blocking and filled: shared_bell.h)
  // frames delivered (in txFrames) that a persistent port's departed client
  // never read: they went with its region (renew_port). Not a drop*: each
  // copy was delivered once, and conservation counts it there.
  C_DETACHED_UNREAD,
  // times this port's hold bound was halved: a hold that needed more than
  // a quarter of its bound for its quantum, or ran out (set_hold_us)
  C_HOLD_SHORTENED,
  C_COUNT
};
extern const char *const SWITCH_COUNTER_NAMES[C_COUNT];
using SwitchCounters = std::array<uint64_t, C_COUNT>;

// What the caller needs to hand a new port to a client.
struct SwitchPortInfo {
  uint32_t id = 0;
  int memfd = -1;        // the region (owned by the core)
  int switch_bell = -1;  // the client kicks this (owned by the core)
  int client_bell = -1;  // the switch kicks this (owned by the core)
  uint64_t size = 0;
  uint64_t nifp_ofs = 0;
  // the geometry laid out (defaults applied), as the region header says
  LayoutParams geometry;
};

// The decision's view of one batch. Frame i's first lens[i] bytes (at most
// the header size) are at hdr + offsets[i]; src[i] is its source port; the
// decision writes dests[i]: a port index, DEST_FLOOD, DEST_DROP or
// DEST_SAME_PORT.
struct LookupBatch {
  const uint8_t *hdr;
  const uint32_t *offsets;
  const uint16_t *lens;
  const uint8_t *src;
  int16_t *dests;
  uint32_t count;
};

// Frames the switch moves after a wakeup before it takes its off_while_busy
// wait fds out of the epoll set (add_wait_fd): a ping or an ACK-clocked burst
// does not pay two epoll_ctl calls per sleep, a stream does once.
constexpr uint64_t WAIT_FD_QUIET_FRAMES = 128;

// Switch-wide counters (not per port).
struct SwitchWideCounters {
  // rounds run, each a collect, decision and delivery (one that finds
  // nothing counts too: a switch spinning without progress shows here, a
  // sleeping one does not)
  uint64_t rounds = 0;
  uint64_t wakeups = 0;            // times a doorbell woke the sleeping switch
  uint64_t spurious_wakeups = 0;   // wakeups whose first round found nothing to do
  uint64_t doorbell_backoffs = 0;  // times a port's doorbell was ignored for a while
  // sleeps with frames held back for a full receiver (arm_all(true)) that
  // ended without any doorbell: the guard timer, not the receiver's kick
  uint64_t held_timeouts = 0;
  // arm_all(true) found that a receiver holding frames back had freed room
  // after the round looked: the switch ran another round instead of sleeping
  // (the receiver could not have seen the kick request yet)
  uint64_t held_rechecks = 0;
  // times a streaming switch took its in-line sockets out of its epoll set
  // (add_wait_fd's off_while_busy), each put back before the next sleep
  uint64_t wait_fds_quieted = 0;
};

// A doorbell that woke the switch for nothing this many times in a row is
// ignored for a while: 1 ms, doubling up to 100 ms while it goes on.
constexpr uint32_t SWITCH_SPURIOUS_LIMIT = 8;
constexpr uint32_t SWITCH_BACKOFF_MIN_MS = 1;
constexpr uint32_t SWITCH_BACKOFF_MAX_MS = 100;

// Result of one round.
struct RoundResult {
  uint32_t moved = 0;    // frames consumed from tx rings
  bool blocked = false;  // a lossless sender is waiting for rx room somewhere
  bool decided = true;   // false when the decision failed (its batch was dropped)
};

// A port driver whose datapath runs in the switch's own round (OVS-DPDK's
// PMD model) instead of a thread of its own: no doorbell between it and the
// switch, no wakeup or context switch per burst. The core calls it from the
// thread running rounds, with the core's mutex held: before_collect() moves
// what the driver's source queued into its port's tx rings (collected in the
// same round), after_forward() moves the port's rx rings on (returns frames
// moved: progress, as a round's moved count). arm() before the switch sleeps
// (ask the source for notifications, re-check; false: work is pending, do
// not sleep), disarm() after it woke. fd_ready(fd) for a readable fd the
// driver added with add_wait_fd (read it once: the core only reports it).
// None of them may call back into the core.
class RoundHook {
 public:
  virtual ~RoundHook() = default;
  virtual void before_collect() = 0;
  virtual uint32_t after_forward() = 0;
  virtual bool arm() = 0;
  virtual void disarm() = 0;
  virtual void fd_ready(int fd) = 0;
  // Kick batching (optional). Before arm(): whether this sleep can be bounded
  // by a timer (true only when the rounds' thread sleeps in wait(), which
  // honours it). After an arm() that let the switch sleep: a bound in ns
  // (0: none) for a hook that left its source's notifications off.
  // woke(): after the switch's sleep (disarm_all), not after an arm that
  // failed; what moved before it counts towards the next batching decision.
  virtual void set_timed_wait(bool) {}
  virtual uint64_t wake_within_ns() const { return 0; }
  virtual void woke() {}
  // Whether the next arm() will ask for a timed sleep (its source streams):
  // the rounds' thread then skips its busy-poll window, whose yields starve
  // it behind busy pollers; the hook's batched sleep polls instead.
  virtual bool batching() const { return false; }
  // Called before after_forward() in a round that collected no frame (the
  // switch polls before it sleeps): a hook whose link only a syscall can
  // look at may look now, the thread spinning anyway.
  virtual void nothing_collected() {}
};

// A receiving port whose in-line driver can send a frame straight from the
// sender's buffers (AF_PACKET's sendmmsg, which copies it into an skb
// anyway): the switch then skips its copy into the port's rx ring. Frames
// go this way only while that ring is empty, so none overtakes a frame
// waiting there; what the kernel pushes back goes into the ring after all,
// in order, in slots the switch kept for it. Counters, monitor copies and
// backpressure are the ring's: the frame counts as delivered (txFrames, a
// /r monitor's copy) once it is handed to the kernel or put into the ring
// at the end of the round; a pushed-back frame whose kept slot the client
// broke meanwhile counts only as dropInvalid, as a copy would.
class DirectSink {
 public:
  virtual ~DirectSink() = default;
  // Sends frames [0, n) in order: frame i is iov[at[i]] .. iov[at[i + 1] - 1].
  // Returns how many it consumed (sent, or refused by the kernel and counted
  // as the driver's drop); fewer than n: the kernel pushed back, and the
  // rest go into the rx ring. Called in a round, the core's mutex held;
  // must not call back into the core.
  virtual uint32_t send_direct(const iovec *iov, const uint32_t *at, uint32_t n) = 0;
  // Asked at the round's first frame for the port (the core's mutex held):
  // false sends none of this round's frames direct, they go into the rx
  // ring. For a driver whose direct path serves only some destinations (a
  // VXLAN port's shortcut rings): while none is up, a round builds no
  // iovecs only for send_direct to push them all back.
  virtual bool direct_wanted() { return true; }
};

class SwitchCore {
 public:
  // batch: most frames taken from one tx ring per round (fairness quantum);
  // header: bytes of each frame snapshotted for the decision.
  static Result<std::unique_ptr<SwitchCore>> create(uint32_t batch, uint32_t header);
  ~SwitchCore();
  SwitchCore(const SwitchCore &) = delete;
  SwitchCore &operator=(const SwitchCore &) = delete;

  // prepared_fd >= 0: a region prepared off the event loop (its size is
  // checked against the layout); the core maps a duplicate, the caller keeps
  // and closes its own descriptor. -1: the core creates the region.
  Result<SwitchPortInfo> add_port(const LayoutParams &params, const std::string &name, bool lossless,
                                  int prepared_fd = -1);
  // Releases every port, the batch arrays and the core's descriptors now, not
  // when the last wrapper is garbage collected (a switch that goes leaves
  // nothing). Afterwards rounds do nothing and add_port fails (ESHUTDOWN);
  // whoever exposed the batch arrays must have stopped using them.
  void shutdown();
  // Counts what the client queued but the switch never took (dropClosed),
  // releases the region and doorbells, returns the final counters.
  Result<SwitchCounters> remove_port(uint32_t id);
  // A persistent port whose last client left gets a fresh region (rings as
  // add_port lays them out) and fresh doorbells: the departed client may
  // keep its mapping and descriptors, and must not see or write the next
  // client's frames, nor ring its bells. What it left on its tx rings is
  // counted as remove_port counts it (dropClosed), what it never read on
  // rx as detachedUnread; the port's counters and settings stay. Extra
  // bells (their holders are gone) are dropped. `name` names the region
  // (its netmap_if) as add_port's did. Not for a monitor.
  Result<SwitchPortInfo> renew_port(uint32_t id, const std::string &name);
  Status set_lossless(uint32_t id, bool on);
  Status set_attached(uint32_t id, bool on);
  // The switch's clock says this receiver has blocked a lossless sender for
  // longer than the bound: until it has released SWITCH_HOLD_QUANTUM rx
  // slots since (as a shed port), copies to it that find its ring full are
  // dropped (dropStalled) instead of waited for. Not at any one slot: the
  // sender would wait a whole stall bound again for each slot it takes.
  Status set_stalled(uint32_t id, bool on);
  // The stall rule (stall-watch.ts) halved port `id`'s stall bound, as
  // bounded backpressure halves a hold bound: counted in its holdShortened.
  Status count_hold_shortened(uint32_t id);
  // Bounded backpressure (the default; 0 turns it off for this port): when
  // port `id`'s rx ring is full, senders' frames for it stay in their tx
  // rings and are retried on later rounds, as long as the receiver keeps
  // up a rate: SWITCH_HOLD_QUANTUM slots released per hold_us. The hold
  // clock starts when a copy first finds the ring full and restarts only
  // once a quantum was released since (slots counted over every release,
  // whatever the ring's size). Past hold_us without one the port is shed:
  // copies to it are dropped (dropNoSpace) until it has released a
  // quantum. A receiver that frees a slot just before each bound no longer
  // holds its senders (head-of-line: their frames for everyone) to a frame
  // per bound: it holds them at most a bound per quantum it takes. A hold
  // in which no sender was held back for a whole bound (the receiver took
  // what there was and the traffic paused) is over: the next full ring
  // starts a new one, so pauses between bursts do not count as holding.
  // A port without a client never holds anyone back. The bound in force
  // adapts (SWITCH_HOLD_SLOW_DIV): a receiver that keeps its senders
  // waiting most of a bound per quantum gets a shorter one, so one that
  // frees exactly a quantum per bound is shed, and its senders go on.
  // Setting the bound starts it afresh.
  Status set_hold_us(uint32_t id, uint32_t hold_us);
  // The longest a flood waits for any one full receiver (µs; the switch's
  // own bound, default 2000). A port whose hold is longer (an in-line guest
  // port's) holds back only the frames addressed to it for the rest: one
  // slow receiver must not stall every broadcast on the switch for its
  // whole bound. Past it the flood's copy to that port is dropped
  // (dropNoSpace), and so is every later flood's at once, without waiting,
  // until the hold clock restarts (a quantum released): floods wait for a
  // slow receiver at most a flood bound per SWITCH_HOLD_QUANTUM slots it
  // takes. The port is not shed, its unicast senders still wait.
  // Atomic: the rounds' thread reads it.
  void set_flood_hold_us(uint32_t hold_us) { flood_hold_ns_.store(static_cast<int64_t>(hold_us) * 1000, std::memory_order_relaxed); }
  // Makes port `id` (just added, no client yet) a monitor of port `watched`,
  // as netmap's valeX:Y/r, /t, /rt: its rx ring 0 gets a copy of every frame
  // delivered to `watched` (rx), the next ring (or ring 0 without rx) a copy
  // of every frame taken from `watched`'s tx rings (tx). A monitor is no
  // longer a switch port: never collected from, flooded to or named by the
  // decision, and never waited for (a full ring drops the copy into its
  // dropMonitor). The watched port pays one branch per frame while it has
  // no monitor.
  Status set_monitor(uint32_t id, uint32_t watched, bool rx, bool tx);
  // The virtio-net header length the port's frames carry, both ways (0, 10
  // or 12: NETMAP_REQ_PORT_HDR_SET's values). The lookup sees the frame
  // after it. Between ports that declare different lengths the switch
  // converts each copy: a header-carrying sender's checksum is completed and
  // its GSO frame segmented for a header-less receiver (cpp/core/offload.h),
  // a header-less sender's frame gets a zero header, and 10 <-> 12 keeps the
  // first 10 bytes (num_buffers = 1). Equal lengths: copied untouched.
  Status set_vnet_hdr_len(uint32_t id, uint32_t len);
  // Port id's in-line driver sends frames straight from the senders'
  // buffers (DirectSink); nullptr, or another client, ends it. clear_direct
  // only ends sink's own (the id may be another port's by then).
  // region_fd >= 0: the driver's own mapping of its port's region; set_direct
  // refuses an id whose region is another file (the id came from JS: a
  // wrong one would hand the driver another port's frames).
  Status set_direct(uint32_t id, DirectSink *sink, int region_fd = -1);
  void clear_direct(uint32_t id, const DirectSink *sink);
  Result<uint32_t> vnet_hdr_len(uint32_t id);
  // The port whose full rx ring stopped a lossless sender in the last round, or -1.
  int32_t blocked_on() {
    std::lock_guard<std::recursive_mutex> g(mu_);
    return blocked_on_;
  }
  // Milliseconds (rounded up) until the first hold bound of a ring parked in
  // the last round runs out, -1 if none: a sleeping switch wakes by then to
  // drop what the bound no longer holds.
  int held_due_ms();
  // Doorbells of further registrations sharing the port, kicked with its own
  // (not owned by the core).
  Status set_extra_bells(uint32_t id, std::vector<int> fds);
  Result<SwitchCounters> counters(uint32_t id);
  Result<uint8_t *> port_base(uint32_t id);
  // Frames waiting in the port's rings now: published by the client on tx
  // and not yet taken (tx_queued), delivered on rx and not yet released
  // (rx_queued). A head outside the ring counts as nothing queued.
  Result<std::pair<uint64_t, uint64_t>> occupancy(uint32_t id);
  uint32_t port_count();

  // One round: collect, decide (decide(batch) -> false when it failed), deliver.
  template <class Decide>
  RoundResult round(Decide &&decide) {
    std::lock_guard<std::recursive_mutex> g(mu_);
    RoundResult r;
    if (in_round_ || down_) return r;  // a decision that asked for a round, or shut down
    in_round_ = true;
    wide_.rounds++;
    struct Leave {
      bool &f;
      ~Leave() { f = false; }
    } leave{in_round_};
    for (RoundHook *h : hooks_) h->before_collect();
    const uint32_t n = collect();
    r.blocked = parked_any_;
    if (n == 0 && touched_.empty()) {
      for (RoundHook *h : hooks_) {
        h->nothing_collected();
        r.moved += h->after_forward();
      }
      note_streaming_locked(r.moved);
      return r;
    }
    if (n > 0) {
      LookupBatch b{hdr_.get(), offsets_.get(), lens_.get(), src_.get(), dests_.get(), n};
      if (!decide(b)) {
        for (uint32_t i = 0; i < n; i++) dests_[i] = DEST_DROP;
        r.decided = false;
      }
    }
    forward(n, &r);
    for (RoundHook *h : hooks_) r.moved += h->after_forward();
    note_streaming_locked(r.moved);
    return r;
  }

  // In-line drivers (RoundHook). remove_round_hook also drops the hook's
  // wait fds; once it returned the core never calls the hook again (a round
  // in progress has finished).
  Status add_round_hook(RoundHook *h);
  void remove_round_hook(RoundHook *h);
  // An fd (a guest's kick eventfd) whose readability wakes the sleeping
  // switch; disarm_all() hands it to h->fd_ready. Remove before closing it.
  // off_while_busy: the fd leaves the epoll set once the switch streams
  // (WAIT_FD_QUIET_FRAMES moved since it woke) and is back before it sleeps.
  // For a socket whose every received frame would otherwise run epoll's
  // callback, under a lock, on the sending CPU (a packet ring's
  // sk_data_ready); an fd added back that is readable wakes the switch at
  // once, so nothing that arrived meanwhile waits.
  Status add_wait_fd(RoundHook *h, int fd, bool off_while_busy = false);
  void remove_wait_fd(int fd);

  // Before sleeping: ask every client for a kick when it publishes tx frames
  // (and, when rx_too, when it frees rx room: lossless backpressure), then
  // re-check. Returns false, with every request withdrawn, when something
  // arrived meanwhile (the caller must not sleep).
  bool arm_all(bool rx_too);
  // After waking: withdraw every kick request and drain the doorbells that rang.
  void disarm_all();
  // The epoll set of every switch doorbell (readable when one rang).
  int wait_fd() const { return epfd_.get(); }
  // After the first round following a wakeup: whether it found work. A
  // doorbell that keeps waking the switch for nothing (a client flooding it)
  // is taken out of the set for a while; frames its port publishes meanwhile
  // still move whenever the switch runs.
  void note_wakeup(bool useful);
  // Before sleeping: listens again to doorbells whose backoff is over.
  // Returns ms until the next one is due (the sleep's bound), -1 if none;
  // also bounded by an in-line hook's wake_within_ns (a retry it asked for).
  int backoff_due();
  // any round hook batching (RoundHook::batching): no busy poll before the next sleep
  bool hooks_batching();
  SwitchWideCounters wide_counters() {
    std::lock_guard<std::recursive_mutex> g(mu_);
    return wide_;
  }
  // Blocks up to timeout_ms (-1: forever) until a doorbell or notify() rings.
  // Returns how many rang (0: timed out or interrupted), -1 on an error.
  int wait(int timeout_ms);
  // The rounds' thread sleeps in wait() (a datapath thread), which bounds a
  // sleep by what an in-line hook asks (RoundHook::wake_within_ns); set once,
  // when a datapath thread attaches (the only caller of wait()).
  void set_timed_waits() { timed_waits_.store(true, std::memory_order_relaxed); }
  // Wakes wait() from another thread.
  void notify();
  // Arrays the decision reads and writes (stable for the core's lifetime).
  uint8_t *header_area() const { return hdr_.get(); }
  size_t header_area_size() const { return static_cast<size_t>(SWITCH_MAX_BATCH) * stride_; }
  uint32_t *offsets() const { return offsets_.get(); }
  uint16_t *lens() const { return lens_.get(); }
  uint8_t *sources() const { return src_.get(); }
  int16_t *dests() const { return dests_.get(); }
  uint32_t header_bytes() const { return header_; }

 private:
  struct RxState {
    uint32_t hwtail = 0;    // next slot the switch fills
    uint32_t released = 0;  // client's head as last validated
    // A head the client may legitimately set on an n-slot ring: inside the
    // ring, between what it released last and what we delivered (anything
    // else is a hostile or broken client: no room, and no reason to wake).
    bool head_ok(uint32_t head, uint32_t n) const { return head < n && ring_dist(head, released, n) <= ring_dist(hwtail, released, n); }
  };
  // A port's state is of four kinds. Its settings: used, lossless,
  // attached, hold_ns, vnet, layout, the monitors watching it (mon_rx,
  // mon_tx) and whether it is one (is_monitor, monitor_of). Its region and
  // doorbells (mem, memfd, switch_bell, client_bell; scan_at follows its
  // place in scan_). Its counters (c). And the state of the client using
  // its rings: start_client's list. A persistent port's next client
  // (renew_port) keeps the settings and counters, gets a fresh region, and
  // starts the client state afresh.
  struct Port {
    bool used = false;
    bool lossless = false;
    bool attached = true;  // a client holds the port: only then can backpressure from it end
    // an attached receiver that stopped draining for longer than the switch's
    // stall bound: lossless senders no longer wait for it (set_stalled), until
    // it has released SWITCH_HOLD_QUANTUM slots since (stall_freed)
    bool stalled = false;
    uint32_t stall_freed = 0;
    // bounded backpressure (set_hold_us): the bound, since when the full rx
    // ring has held a sender back without releasing SWITCH_HOLD_QUANTUM
    // slots (0: it has not), whether the bound ran out (copies dropped until
    // it releases a quantum), and the slots released since either began;
    // when a sender was last seen held back by it (a copy held, or a ring
    // still parked on it): a hold nobody took part in for a whole bound is
    // over, so a pause in the traffic does not count as holding
    int64_t hold_ns = 0;
    // the bound in force: hold_ns halved hold_level times (0 at
    // SWITCH_HOLD_LEVELS), and when it was last halved (a level comes back
    // per hold_ns since). A new client starts at level 0.
    int64_t hold_cur_ns = 0;
    uint8_t hold_level = 0;
    int64_t hold_level_ns = 0;
    // since when senders have been seen held with no gap of a quarter
    // bound (the switch not running, or nobody sending): what a slow hold
    // is measured from, so neither counts as the receiver's slowness
    int64_t hold_from_ns = 0;
    int64_t full_since_ns = 0;
    bool shed = false;
    uint32_t hold_freed = 0;
    int64_t held_seen_ns = 0;
    uint8_t vnet = 0;  // virtio-net header length (set_vnet_hdr_len)
    Layout layout;
    mapping mem;
    unique_fd memfd, switch_bell, client_bell;
    std::vector<int> extra_bells;  // -1: stuck (shared_bell.h), no longer rung
    bool bell_stuck = false;       // client_bell stuck: no longer rung
    // monitors watching this port: copies of what it receives (mon_rx) and
    // sends (mon_tx) go to rx ring `ring` of monitor port `id`
    struct MonitorRef {
      uint32_t id;
      uint32_t ring;
    };
    std::vector<MonitorRef> mon_rx, mon_tx;
    bool is_monitor = false;  // this port is a monitor (not in active_)
    int32_t monitor_of = -1;  // the port it watches, -1 once that port is gone
    uint32_t tx_hwcur[MAX_RINGS] = {};
    uint32_t scan_at = 0;  // its first tx ring's entry in scan_ (while in active_)
    // last impossible head seen per ring (tx, then rx): badHead counts each
    // publication once, not every round that reads it again
    uint32_t bad_head[2 * MAX_RINGS];
    RxState rx[MAX_RINGS];
    SwitchCounters c{};
    bool rx_dirty[MAX_RINGS] = {};
    bool any_dirty = false;
    // doorbell backoff: spurious wakeups in a row, the backoff in force, and
    // (muted) until when the doorbell is out of the epoll set
    uint32_t spurious = 0, backoff_ms = 0;
    bool muted = false;
    int64_t muted_until_ns = 0;
    // DirectSink (set_direct): the frames taken for it this round (batch
    // indices, in order), the rx slots kept for them should the kernel push
    // back, and whether this round may still send direct (its rx ring was
    // empty at the round's first frame and no frame has gone into it since)
    DirectSink *direct = nullptr;
    std::vector<uint32_t> direct_q;
    // their bytes as send_direct takes them: frame i is direct_iov[direct_at[i]] ..
    std::vector<iovec> direct_iov;
    std::vector<uint32_t> direct_at;
    uint32_t direct_slots = 0;
    uint32_t direct_gen = 0;
    bool direct_open = false;

    // The client state as a client finds it, for add_port and renew_port
    // alike: cursors, held-back and stall clocks, bad heads, doorbell
    // backoff, its other registrations' bells. One list, so a departed
    // client's state (a hold it ran out, a ring position in its region)
    // cannot outlive it into the next client's by being left off one of
    // two; a field added to Port belongs here unless it is of the other
    // kinds above. Not while the port is in dirty_ (only rounds fill it).
    void start_client();

    uint8_t *base() const { return mem.data(); }
    netmap_ring *ring(uint32_t k) const { return reinterpret_cast<netmap_ring *>(base() + layout.ring_ofs[0][k]); }
    nm_csb_atok *atok(uint32_t k) const { return reinterpret_cast<nm_csb_atok *>(base() + layout.csb_entry(0, k)); }
    nm_csb_ktoa *ktoa(uint32_t k) const {
      return reinterpret_cast<nm_csb_ktoa *>(base() + layout.csb_entry(0, k) + sizeof(nm_csb_atok));
    }
    uint8_t *buf(uint32_t idx) const {
      return base() + layout.buf_pool_ofs + static_cast<uint64_t>(idx) * layout.p.buf_size;
    }
    bool buf_ok(uint32_t idx) const { return idx >= 2 && idx < layout.num_bufs; }
    // bytes a converted copy puts in one rx slot
    uint32_t slot_fill() const { return nm::slot_fill(layout.p.buf_size); }
  };
  // One tx ring that collect() visits, in active_ order: what it needs to
  // tell an idle ring from one with frames without touching the Port (a
  // cache line of the switch's own memory plus the client's head).
  struct ScanRing {
    const uint32_t *head;  // the client's tx head in its CSB entry
    uint32_t cur;          // == ports_[port].tx_hwcur[ring], kept in step
    uint32_t seen;         // head as read at the start of this round
    uint32_t slots;        // the ring's size
    uint8_t port;
    uint8_t ring;
    // Parked: the ring's next frame is held back by a full receiver (port
    // park, its rx ring park_rr, whose head was park_rel). collect() leaves
    // the ring alone until that receiver releases a slot, its hold bound
    // runs out or its state changes (still_parked), instead of copying and
    // deciding the same held frames again every round: that repeated work
    // was half the rounds' frames on the vhost-user benchmark and took CPU
    // from the very receiver the switch waits for (bench/RESULTS.md,
    // session 14).
    int16_t park = -1;
    uint8_t park_rr = 0;
    bool park_flood = false;     // a flood waits (the switch's flood bound applies)
    bool park_lossless = false;  // a lossless sender waits (no bound: the stall bound)
    uint32_t park_rel = 0;
    // The ring ends in a chain whose last slot is not published yet
    // (NS_MOREFRAG on the head's slot): while the client's head stays at
    // partial_head and the switch's cursor at partial_at, the slots between
    // are no frame to wait for, and the switch may sleep (the client kicks
    // when it publishes the rest); else every sleep would be refused for
    // them and the switch would poll for as long as the client likes.
    uint32_t partial_head = UINT32_MAX;
    uint32_t partial_at = UINT32_MAX;
    // after unparking: collect only what the receiver made room for, plus
    // the frame that will stop the ring again (0: the batch). A receiver
    // that drains a few slots at a time would otherwise have the whole
    // batch collected and decided again for each few it takes.
    uint32_t quota = 0;
  };
  // A source tx ring that contributed to the batch (or had slots to skip).
  struct Touched {
    uint8_t port;
    uint8_t ring;
    bool stopped;       // lossless backpressure stopped it at stop_slot
    uint32_t end;       // slot after the last one scanned
    uint32_t stop_slot;
    uint32_t start;     // tx_hwcur when the scan began
    uint32_t d0, d1;    // its entries in dropped_
    // its flood destinations in flood_dests_, built at its first flooded
    // frame of the round (f0 == UINT32_MAX: none yet)
    uint32_t f0 = UINT32_MAX, f1 = 0;
    // the receiver that stopped it (and its rx ring), parked on after the round
    int16_t block_port = -1;
    uint8_t block_rr = 0;
    bool block_flood = false;
    // its floods cannot take forward_run's way (no other port, a monitor,
    // a DirectSink, a header to convert): known after its first flood
    // (flood_run), or once a port had no room for a run
    bool no_flood_run = false;
  };
  // One destination of a flood from one source ring: what the per-frame
  // room check and copy need, worked out once per round (the ring index
  // and the room cache entry), not per frame and port.
  struct FloodDest {
    Port *dp;
    uint32_t *room;
    uint32_t id;
    uint32_t rr;
  };
  // A frame collect() skipped (invalid or an over-long chain). It is counted
  // when the ring advances past it: a lossless stop before it means the
  // next round scans it again, and it must be counted once.
  struct Dropped {
    uint32_t slot;
    uint8_t counter;
  };

  SwitchCore(uint32_t batch, uint32_t header);
  Port *port(uint32_t id) { return id < SWITCH_MAX_PORTS && ports_ && ports_[id].used ? &ports_[id] : nullptr; }
  uint32_t collect();
  uint32_t collect_ring(uint32_t id, uint32_t r, uint32_t n, uint32_t max);
  void forward(uint32_t n, RoundResult *r);
  // Floods frame k of source ring t (all or nothing); false when it must
  // wait (the ring stops there).
  bool flood(Touched &t, Port *p, uint32_t k);
  // t's flood destinations (every other port) in flood_dests_, listed at
  // its first flooded frame of the round
  void flood_list(Touched &t);
  uint32_t *room(uint32_t d, uint32_t rr);
  bool refresh_room(Port *d, uint32_t rr, uint32_t *room);
  bool deliver(Port *d, uint32_t rr, uint32_t k, uint32_t *room);
  // deliver's copy of frame k into d's rx ring at its tail (room checked
  // by the caller); false: a broken rx slot (counted), nothing written
  bool place(Port *d, uint32_t rr, uint32_t k);
  // Frame k is one slot whose bytes are all in the snapshot (no virtio-net
  // header): place_small's case, one small copy.
  bool is_small(uint32_t k) const { return fcount_[k] == 1 && hoff_[k] == 0 && lens_[k] == flen_[fstart_[k]]; }
  // place() of such a frame into d's ring (st, its slots rs, N of them),
  // without marking the ring dirty (mark_dirty: once per run)
  bool place_small(Port *d, RxState &st, netmap_slot *rs, uint32_t N, uint32_t k);
  void mark_dirty(Port *d, uint32_t rr);
  // the buffer PREFETCH_AHEAD slots past d's next rx slot (st, rs, N)
  void prefetch_rx(const Port *d, const RxState &st, const netmap_slot *rs, uint32_t N);
  // what deliver counts for a copy delivered (or a direct send's frame sent or placed)
  void count_delivered(Port *d, uint32_t k);
  // count_delivered's counters for `frames` copies of `bytes` in all (a
  // run's, added once; the caller sees to monitors' copies)
  void count_delivered_run(Port *d, uint32_t frames, uint64_t bytes);
  // frames k .. k + m - 1 copied into d's ring rr, which has room for them
  // (*room, less what they take), the ring looked up once and marked dirty
  // once, counted as delivered; returns the copies made (a broken rx slot
  // loses its copy, counted by place())
  uint32_t place_run(Port *d, uint32_t rr, uint32_t k, uint32_t m, uint32_t *room);
  // deliver's first step for a port with a DirectSink: true when frame k is
  // taken for a direct send (its slots kept); false: deliver goes on as for
  // any port, after the frames taken so far were sent (order)
  bool take_direct(Port *d, uint32_t rr, uint32_t k, uint32_t *room);
  // take_direct's parts: the round's first look at d (whether it may send
  // direct), and frame k queued for the send (its iovecs built, its slots
  // kept), flushed when a batch is full
  void direct_begin(Port *d, uint32_t rr, uint32_t *room);
  // whether frame k can be taken for d's direct send now (its room
  // refreshed if short): take_direct's test, and a run's
  bool direct_fits(Port *d, uint32_t rr, uint32_t k, uint32_t *room);
  void append_direct(Port *d, uint32_t k, uint32_t *room);
  // forward()'s fast path: frames k.. (of n) from t's ring that all go to
  // one port (unicast, or a flood whose only other port it is), with no
  // monitor at either end: copied (or taken for a DirectSink's send) in
  // one loop, with what forward(), flood() and deliver() count per frame
  // added once. Returns how many (0: frame k goes the frame-by-frame way,
  // which handles whatever ends a run: room, a header to convert, a
  // push-back, a runt)
  uint32_t forward_run(Touched &t, Port *p, uint32_t k, uint32_t n);
  // forward_run's for a flood to several ports: one-slot frames, as many as
  // every other port has room for, copied port by port (each gets them in
  // order); 0 when the frame-by-frame way must take frame k
  uint32_t flood_run(Touched &t, Port *p, uint32_t k, uint32_t n);
  // sends d's frames taken this round; the kernel's push-back into the ring
  void flush_direct(Port *d, uint32_t rr);
  // A copy for d found its rx ring full: true when the sender should wait
  // (bounded backpressure), false when the copy is to be dropped.
  bool hold_back(Port *d, bool flood);
  int64_t hold_bound_ns(const Port *d, bool flood) const;
  // A slow hold or a shed at `now`: d's bound halves (hold_shortened).
  void shorten_hold(Port *d, int64_t now);
  // The levels d earned back by `now` (a configured bound each).
  void relax_hold(Port *d, int64_t now);
  std::atomic<int64_t> flood_hold_ns_{2'000'000};
  void mirror(const std::vector<Port::MonitorRef> &mons, uint32_t k);
  // Slots one copy of batch frame k takes in d's rx ring (0: it will be
  // dropped without taking any).
  uint32_t slots_needed(uint32_t k, const Port *d);
  // Frame k's bytes [off, off + n), the decision's snapshot in place of the
  // client's buffer where it covers them.
  void copy_out(uint32_t k, uint32_t off, uint32_t n, uint8_t *out) const;
  // For a header-carrying frame k going to a header-less port: its header,
  // and (when it asks for offload work) the frame gathered and checksummed
  // once, whatever the number of receivers.
  void prepare_offload(uint32_t k);
  bool deliver_converted(Port *d, uint32_t rr, uint32_t k, uint32_t *room);
  void publish_rx();
  void kick_client(Port *p);
  uint32_t pending_locked();
  // arm_all(true)'s re-check: a receiver the last round held frames back
  // for (full rx ring) has released slots since
  bool held_room_freed_locked();
  void count_closed(Port *p);
  void count_unread(Port *p);
  // After every change of active_ (or of a port's rings' mapping).
  void rebuild_scan();

  std::recursive_mutex mu_;
  bool in_round_ = false;
  bool down_ = false;  // shutdown() ran
  const uint32_t batch_;   // per tx ring per round
  const uint32_t header_;  // bytes snapshotted per frame
  const uint32_t stride_;  // header rounded up for alignment
  std::unique_ptr<Port[]> ports_;
  std::vector<uint32_t> active_;  // ids in use, ascending: floods and rounds cost O(ports in use)
  std::vector<ScanRing> scan_;    // every tx ring of active_, port by port
  std::vector<uint32_t> scan_of_; // active_[k]'s rings are scan_[scan_of_[k] .. scan_of_[k + 1])
  std::vector<uint32_t> dirty_;   // ports whose rx rings got frames this round
  std::vector<uint32_t> direct_ports_;  // ports with frames taken for a direct send this round
  std::vector<Touched> touched_;  // source rings of this round
  std::vector<Dropped> dropped_;  // frames skipped by this round's collect
  std::vector<FloodDest> flood_dests_;  // this round's, see Touched::f0
  uint32_t rr_ = 0;               // the next round starts at the first port id >= this
  int32_t blocked_on_ = -1;       // see blocked_on()
  // parked rings (ScanRing::park): whether the last collect() left one
  // waiting, the lossless receiver it waits on, and the earliest time a
  // hold bound runs out (0: none), which bounds the switch's sleep
  bool parked_any_ = false;
  int32_t parked_on_ = -1;
  int64_t park_due_ns_ = 0;
  bool still_parked(ScanRing &s, int64_t &now);
  void park(const Touched &t, ScanRing &s);
  std::vector<RoundHook *> hooks_;                       // in-line drivers (add_round_hook)
  std::atomic<bool> timed_waits_{false};                 // a thread sleeps in wait(): hooks may batch
  std::atomic<uint64_t> wake_within_ns_{0};              // the hooks' bound on the next wait() (ns, 0: none)
  struct WaitFd {
    int fd;
    RoundHook *hook;
    bool off_while_busy;  // add_wait_fd's
    bool in_set;          // in epfd_ now
  };
  std::vector<WaitFd> wait_fds_;                         // their fds (add_wait_fd)
  uint32_t quietable_in_set_ = 0;                        // off_while_busy fds in epfd_ (0: nothing to take out)
  uint64_t moved_since_wake_ = 0;                        // frames the rounds moved since the switch last woke
  // between an arm_all that let the switch sleep and the disarm_all after
  // it: a round then (Switch.removePort's, on a sleeping event-loop switch)
  // must leave the fds in the set, since no arm_all puts them back before
  // the sleep it is in
  bool armed_ = false;
  // streaming: take the off_while_busy fds out of the epoll set
  void note_streaming_locked(uint32_t moved) {
    if (moved == 0 || quietable_in_set_ == 0 || armed_) return;
    moved_since_wake_ += moved;
    if (moved_since_wake_ >= WAIT_FD_QUIET_FRAMES) quiet_wait_fds_locked();
  }
  void quiet_wait_fds_locked();
  // a wait fd into epfd_ (level-triggered EPOLLIN, tagged WAIT_FD_TAG | fd)
  bool watch_wait_fd_locked(int fd);
  // before sleeping: every wait fd back in the epoll set (false: one could not be)
  bool unquiet_wait_fds_locked();
  std::vector<uint32_t> rang_;    // ports whose doorbell rang since the last note_wakeup()
  SwitchWideCounters wide_;
  bool armed_held_ = false;  // the last arm_all() asked for rx-room kicks (frames held back)
  unique_fd epfd_, notify_fd_;
  // the batch, as the decision sees it
  std::unique_ptr<uint8_t[]> hdr_;
  std::unique_ptr<uint32_t[]> offsets_;
  std::unique_ptr<uint16_t[]> lens_;
  std::unique_ptr<uint8_t[]> src_;
  std::unique_ptr<int16_t[]> dests_;
  // per batch frame: source ring (index into touched_), first slot, fragments
  std::unique_ptr<uint16_t[]> touch_of_;
  std::unique_ptr<uint32_t[]> slot_of_, fstart_, fcount_, ftotal_;
  std::unique_ptr<uint8_t[]> hoff_;  // the source's header length when collected (where the snapshot starts)
  // prepare_offload's frame: valid for batch frame off_k_ of round off_gen_
  std::unique_ptr<uint8_t[]> scratch_;
  uint32_t off_k_ = UINT32_MAX, off_gen_ = 0, off_len_ = 0, off_segs_ = 0;
  bool off_work_ = false;      // the header asks for a checksum or segmentation
  uint8_t off_err_ = 0;        // OffloadError of the checksum, or of the GSO count
  uint8_t off_hdr_[12] = {};   // the sender's header bytes
  std::vector<uint8_t *> conv_bufs_;  // deliver_converted's receiver buffers
  std::vector<uint16_t> conv_lens_;
  // every fragment of the batch, as read once from the client's tx ring
  std::unique_ptr<uint32_t[]> fidx_;
  std::unique_ptr<uint16_t[]> flen_;
  // rx room per destination ring, valid when room_gen_ matches gen_
  std::unique_ptr<uint32_t[]> room_, room_gen_;
  uint32_t gen_ = 0;
};

}  // namespace nm
