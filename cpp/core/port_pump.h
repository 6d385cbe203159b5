// The common half of a port driver that moves frames between a vale-ts port
// (its client side, nm::PortClient) and file descriptors: a TAP device, a
// QEMU socket netdev. One thread per port sleeps in epoll on the port's
// doorbell and the link's fds, and moves frames in batches in both
// directions:
//
//   link -> switch: the subclass reads frames into the port's tx slots
//                   (tx_buf / tx_push), one txsync per batch;
//   switch -> link: the subclass writes frames out of the port's rx slots
//                   (rx_peek / rx_pop), one rxsync per batch.
//
// Backpressure rather than loss inside the switch: when the port's tx ring is
// full the thread stops reading the link (the link's own queue fills and the
// kernel or QEMU holds or drops there); when the link cannot take more it
// stops draining the rx ring (the switch then drops for the port, counted
// there). Every frame the driver itself gives up on is counted under a named
// reason (counters()).
#pragma once

#include <poll.h>
#include <sys/uio.h>

#include <array>
#include <memory>
#include <cerrno>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/fd.h"
#include "core/offload.h"
#include "core/port_client.h"
#include "core/result.h"

namespace nm {

class SwitchCore;

// A driver's counters: names as `vale-ctl-ts --stats` shows them.
enum class Ctr : uint8_t {
  InFrames,   // link -> switch, frames written to the port's tx ring
  InBytes,
  OutFrames,  // switch -> link
  OutBytes,
  OutDirect,  // of OutFrames: handed over by the switch from the senders' buffers (in-line, link_direct)
  OffloadCsumCompleted,  // NEEDS_CSUM frames finished on the way in
  OffloadSegmented,      // GSO frames cut on the way in
  OffloadSegments,       // frames those became
  DropTooLong,           // longer than the port's buffer: never truncated
  DropBadLength,         // a stream length prefix of 0 or beyond any frame (connection closed)
  DropTruncated,         // stream: a frame the peer's end of stream (or a read error) cut short
  DropForeignSender,     // dgram: a datagram from a socket other than the configured peer
  PeerPathLookups,       // dgram: a sender name spelled unlike the peer path, resolved (its cache missed)
  DropBadVnetHdr,        // offload impossible: see the offload* drop reasons below
  DropOffloadBadCsumOffsets,
  DropOffloadBadGsoType,
  DropOffloadBadHeaders,
  DropOffloadBadGsoSize,
  DropOffloadSegmentTooLong,
  DropLinkDown,          // the link refused a frame (TAP down, no peer connected, peer gone)
  DropBadSlot,           // a slot in the port's rx ring with an impossible buffer index or length
  LinkErrors,            // read/write errors on the link other than EAGAIN
  Connects,              // socket netdevs: connections accepted or made
  Disconnects,
  RefusedConnections,    // socket netdevs: a second peer while one is connected (closed at once)
  Wakeups,
  Count_
};
const char *ctr_name(Ctr c);

class PortPump {
 public:
  virtual ~PortPump();
  PortPump(const PortPump &) = delete;
  PortPump &operator=(const PortPump &) = delete;

  // Starts the thread. Call once, after the subclass opened its link.
  Status start();
  // Or, instead of start(): runs the datapath in `core`'s own rounds (a
  // SwitchCore RoundHook, OVS-DPDK's PMD model, as in-line AF_PACKET ports
  // do) with no thread: no doorbell, wakeup or context switch between the
  // switch and this driver per burst. link_in runs before the switch
  // collects, link_out after it forwarded; the link's fds wait in an epoll
  // set of the driver's own, itself one fd in the switch's set. `core` must
  // be the switch whose port this driver serves. switch_port >= 0 (that
  // port's index, checked against the driver's region): the switch may hand
  // the driver frames straight from the senders' buffers (link_direct)
  // while the port's rx ring is empty, one copy fewer per frame.
  Status start_in_line(std::shared_ptr<SwitchCore> core, int switch_port = -1);
  bool in_line() const { return hook_ != nullptr; }
  // Stops and joins the thread (in-line: leaves the switch's rounds, after
  // the round in progress). Idempotent; the destructor calls it.
  void stop();

  std::vector<std::pair<const char *, uint64_t>> counters() const;

 protected:
  PortPump(PortClient pc, std::string label);

  // What the link wants to wait on now: fds and EPOLLIN/EPOLLOUT bits.
  struct Want {
    int fd;
    uint32_t events;
  };
  virtual void link_wants(std::vector<Want> &w, bool room_in, bool pending_out) = 0;
  // Called with what epoll reported for one of the link's fds (accepts, hangups).
  virtual void link_event(int fd, uint32_t events) = 0;
  // Moves frames from the link into the tx ring while there is room; returns
  // how many (0: nothing readable or no room).
  virtual uint32_t link_in() = 0;
  // Moves frames from the rx ring to the link; returns how many left the
  // ring (sent or dropped). Sets out_blocked_ when the link would block.
  virtual uint32_t link_out() = 0;
  // In-line with a switch port (start_in_line): the switch's frames [0, n)
  // straight from the senders' buffers (DirectSink::send_direct: frame i
  // is iov[at[i]] .. iov[at[i + 1] - 1], valid only during the call).
  // Returns how many it took (sent or counted dropped), in order; the rest
  // go into the rx ring and reach link_out. link_direct_wanted is asked at
  // each round's first frame for the port: false, none go this way.
  virtual bool link_direct_wanted() { return false; }
  virtual uint32_t link_direct(const iovec *, const uint32_t *, uint32_t) { return 0; }
  // Whether link_in has input it can take now that its link_wants would not
  // ask to be told about again (a queue it marked readable, from a
  // link_event since its last read): the in-line hook does not let the
  // switch sleep on it. (The thread calls link_in again after every event.)
  virtual bool link_in_ready() const { return false; }
  // epoll timeout when idle (ms, -1: none): a client socket retrying.
  virtual int idle_timeout_ms() { return -1; }
  virtual void on_idle_timeout() {}

  // ---- the port side, for subclasses (driver thread only) ----
  // Free tx slots now (syncs when the ring looks full).
  uint32_t tx_room();
  // Whether `n` tx slots are free now, syncing first when fewer look free
  // (the ring's tail is only as fresh as the last sync). When not, the
  // thread sleeps until the switch frees slots: link_in is not called for
  // room again before there are `n` (a frame that needs a chain of slots,
  // or a GSO frame's segments, waits whole rather than spinning or sleeping
  // through the switch's progress).
  bool tx_room_for(uint32_t n);
  // The next free tx slot's buffer (tx_room() > 0 first).
  uint8_t *tx_buf();
  // Publishes the next tx slot with `len` bytes (≤ slot_fill()); `more`: the
  // frame goes on in the next slot (NS_MOREFRAG), counted once at its end.
  void tx_push(uint32_t len, bool more = false);
  // Publishes a frame longer than one buffer as a chain of NS_MOREFRAG
  // slots (netmap's multi-slot frames): a frame with its virtio-net header,
  // a GSO super-frame, that the switch carries whole. Returns false when the
  // ring has no room for all of it yet (nothing pushed); a frame that could
  // never fit (more than NETMAP_MAX_FRAGS slots) is counted as DropTooLong.
  bool tx_chain(const uint8_t *frame, size_t len);
  // The buffer of the k-th free tx slot after the next (k < tx_room()), for
  // a batched read that fills several slots before pushing them; nullptr when
  // the region does not back its buffer index.
  uint8_t *tx_buf_at(uint32_t k);
  // The oldest frame in the rx rings, or false when none (syncs when empty).
  // Bad slots are dropped and counted here.
  bool rx_peek(const uint8_t *&buf, uint32_t &len);
  void rx_pop();
  // A cache hint for the frame `k` slots after the one rx_peek gives, if the
  // switch has published it (no index is changed, nothing is validated).
  void rx_prefetch(uint32_t k) const;
  // The oldest frame as all its slots (a chain of NS_MOREFRAG slots and its
  // last): up to `max` iovecs, `slots` of them used, `len` bytes in all.
  // A chain with a bad slot, or longer than `max`, is dropped (DropBadSlot).
  // rx_pop() each of its slots after.
  bool rx_peek_chain(iovec *iov, uint32_t max, uint32_t &slots, size_t &len);
  uint32_t buf_size() const { return pc_.buf_size(); }
  // Bytes one tx slot may carry: buf_size(), less one on 64 KiB buffers
  // (a slot's len is 16 bits). What a writer reads or copies into one slot.
  uint32_t slot_fill() const { return nm::slot_fill(pc_.buf_size()); }

  // A frame with a virtio-net header read from the link: finishes its
  // checksum or segments it into tx slots. `frame` may be the tx slot's own
  // buffer (in_slot: it is pushed in place) or a scratch buffer.
  // Returns false when there was no room for all its segments (nothing
  // pushed; retry when there is room), true when delivered or dropped.
  bool ingest_vnet(const VnetHdr &h, uint8_t *frame, size_t len, bool in_slot);

  // The loop every datagram-per-syscall link_out shares: hands each rx frame
  // to send(buf, len) (a syscall's result: -1 with errno on failure) until
  // `batch` frames, EAGAIN (sets out_blocked_) or an empty ring. EINTR
  // retries the frame; another error drops it as DropLinkDown, and
  // on_error(errno) may count more. Returns the frames that left the ring.
  template <class Send, class OnError>
  uint32_t send_rx_frames(uint32_t batch, Send send, OnError on_error) {
    uint32_t moved = 0;
    const uint8_t *b;
    uint32_t l;
    while (moved < batch && !out_blocked_ && rx_peek(b, l)) {
      const SendOutcome o = account_send(send(b, l), l, on_error);
      if (o == SendOutcome::Retry) continue;
      if (o == SendOutcome::Blocked) break;
      rx_pop();
      moved++;
    }
    return moved;
  }

  // What one send's result (a syscall's: -1 with errno on failure) means for
  // the frame of `len` bytes at the head of the rx ring: Retry it (EINTR),
  // Blocked (EAGAIN: out_blocked_ set, the frame stays), or Done: counted as
  // sent, or dropped as DropLinkDown after on_error(errno) counted more.
  enum class SendOutcome { Retry, Blocked, Done };
  template <class OnError>
  SendOutcome account_send(ssize_t r, size_t len, OnError on_error) {
    if (r < 0) {
      const int e = errno;
      if (e == EINTR) return SendOutcome::Retry;
      if (e == EAGAIN) {
        out_blocked_ = true;
        return SendOutcome::Blocked;
      }
      count(Ctr::DropLinkDown);
      on_error(e);
    } else {
      count(Ctr::OutFrames);
      count(Ctr::OutBytes, len);
    }
    return SendOutcome::Done;
  }

  void count(Ctr c, uint64_t n = 1) { ctr_[static_cast<size_t>(c)].fetch_add(n, std::memory_order_relaxed); }
  // For a counter only the port's datapath writes (its driver thread, or the
  // switch's rounds in-line: one thread at a time): a plain load and store,
  // no locked add, which on x86 also waits for every earlier store to leave
  // the store buffer. Per frame on tx_push's path that was 5% of the
  // receiving vale-ts's CPU on the shortcut benchmark (bench/RESULTS.md,
  // session 27). Readers on other threads still load whole values.
  static void add_one_writer(std::atomic<uint64_t> &a, uint64_t n) { a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void count_datapath(Ctr c, uint64_t n = 1) { add_one_writer(ctr_[static_cast<size_t>(c)], n); }
  // One line on stderr, the daemon's log, naming the port.
  void log(const std::string &line) const;
  // log() for what a peer can repeat at will (connect and close in a loop):
  // the first line, then at most one a second, saying how many were not
  // logged meanwhile. What it reports is counted as well; the log only names it.
  struct LogLimit {
    int64_t next_ns = 0;
    uint64_t suppressed = 0;
  };
  void log_limited(LogLimit &l, const std::string &line) const;

  // Whether the fds link_wants reports may have changed identity since it
  // last ran (one closed, another perhaps opened under the same number): the
  // in-line epoll set is then built afresh at the next sleep. A closed fd
  // whose file lives on elsewhere (an eventfd the peer holds too) stays
  // registered under its old number; a fresh set is the only way to drop it.
  void link_fds_changed() { fds_epoch_++; }

  bool out_blocked_ = false;
  std::string label_;

 private:
  struct InLine;  // the RoundHook of start_in_line (port_pump.cc)
  void run();
  // Before a sleep: whether the tx ring has room for what link_in waits on
  // (syncing); `again`: link_in can go on now, so no sleep
  bool room_to_go_on(bool &again);
  void flush_tx();
  void count_offload_drop(OffloadError e);

  PortClient pc_;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Ctr::Count_)> ctr_{};
  unique_fd stop_fd_, ep_;
  std::thread thread_;
  bool started_ = false;
  uint32_t tx_unsynced_ = 0;  // pushed since the last txsync
  uint32_t tx_need_ = 1;      // tx slots link_in needs to go on (tx_room_for)
  bool tx_starved_ = false;   // tx_room() found no room during this turn
  uint32_t rx_popped_ = 0;    // popped since the last rxsync
  uint32_t rx_ring_ = 0;      // the rx ring being drained
  uint64_t fds_epoch_ = 0;    // link_fds_changed() calls
  std::shared_ptr<SwitchCore> core_;  // in-line: the switch whose rounds run this driver
  int direct_port_ = -1;              // in-line: the switch port whose frames link_direct takes
  std::unique_ptr<InLine> hook_;
};

}  // namespace nm
