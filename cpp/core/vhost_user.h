// A vhost-user back-end that is the client of one vale-ts port: a guest's
// virtio-net device (QEMU, DPDK's virtio-user, any front-end speaking the
// vhost-user protocol, docs/vhost-user.md) on one side, the port's netmap
// rings (nm::PortClient) on the other. The datapath runs in-line in the
// switch's rounds (start() with the core) or, without a core, in the port's
// own thread beside the protocol: epoll on the unix socket, the guest's kick
// eventfds and the switch's doorbell.
//
// Frames cross the port with a 10-byte virtio-net header (the port declares
// it to the switch): a guest's checksum/TSO header goes on, checked, and the
// switch finishes the frame only for ports without a header; frames for the
// guest keep the sender's header when the guest negotiated what it asks for
// (GUEST_CSUM, GUEST_TSO4/6) and are finished here otherwise
// (docs/vhost-user.md).
//
// Everything the front-end sends is hostile input: message sizes, fd counts,
// memory regions (sizes, overlaps, the fd's real size), ring sizes and
// addresses, and at run time every descriptor (index, address, length, chain
// length, indirect tables) and every index in the avail ring. A bad chain is
// dropped and counted by reason; an avail index that cannot be right marks
// the queue broken until the front-end resets it; a protocol violation closes
// the connection. Guest memory is only touched through translations that were
// checked against the mapped regions.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/fd.h"
#include "core/port_client.h"
#include "core/result.h"
#include "core/switch_core.h"

namespace nm {

// The driver's counters, in the order the glue reports them. A name starting
// with `drop` is a drop reason (a frame or a guest buffer chain lost).
#define NM_VHOST_USER_COUNTERS(X)                                                                       \
  X(fromGuestFrames)      /* guest TX -> port tx ring */                                              \
  X(fromGuestBytes)                                                                                   \
  X(toGuestFrames)        /* port rx ring -> guest RX */                                              \
  X(toGuestBytes)                                                                                     \
  X(kicks)                /* guest notifications read */                                              \
  X(calls)                /* guest interrupts sent */                                                 \
  X(callStuck)            /* call fds made blocking and filled by the front-end: no longer written */ \
  X(wakeups)              /* times the thread slept and woke */                                       \
  X(batchedSleeps)        /* of those, sleeps with kicks and doorbells batched (a timer bounds them) */ \
  X(connects)                                                                                         \
  X(disconnects)                                                                                      \
  X(protocolErrors)       /* connections closed for a protocol violation */                           \
  X(queuesBroken)         /* queues stopped for an impossible avail index or head */                  \
  X(dropBadDescriptor)    /* index out of the table, wrong direction, nested/unnegotiated indirect */ \
  X(dropChainLoop)        /* chain longer than its table: a loop */                                   \
  X(dropChainTooLong)     /* chain (or a frame's RX chains together) past 1024 buffers */             \
  X(dropOutOfMemoryTable) /* buffer or indirect table outside every mapped region */                  \
  X(dropShortFrame)       /* chain shorter than the virtio-net header plus an Ethernet header */      \
  X(dropOversize)         /* frame longer than the port's buffers */                                  \
  X(dropRxBufferTooSmall) /* guest RX chain smaller than the frame (no MRG_RXBUF) */                  \
  X(dropGuestNotReady)    /* frames for the guest while no RX queue runs */                           \
  X(dropBadIndex)         /* avail index further than the queue size from the last one */            \
  X(dropBadSlot)          /* port ring slot with a bad buffer index or length */                      \
  X(dropGuestMemoryFault) /* frames in flight when guest memory faulted (SIGBUS: a truncated file); the front-end is disconnected */ \
  X(offloadCsumPassed)    /* guest frames with NEEDS_CSUM, passed on with their header */              \
  X(offloadGsoPassed)     /* guest TSO frames, passed on whole with their header */                   \
  X(toGuestGso)           /* GSO frames delivered whole (GUEST_TSO4/6 negotiated) */                  \
  X(toGuestCsumCompleted) /* NEEDS_CSUM frames for a guest without GUEST_CSUM: checksum filled in */   \
  X(toGuestSegmented)     /* GSO frames for a guest without the GUEST_TSO feature: segmented here */  \
  X(toGuestSegments)      /* the frames those became */                                               \
  X(dropOffloadNotNegotiated)  /* NEEDS_CSUM or a GSO type the features do not allow */               \
  X(dropOffloadBadCsumOffsets) /* csum_start/csum_offset outside the frame or into its L2/L3 headers or L4 ports */ \
  X(dropOffloadBadHeaders)     /* a TSO frame whose Ethernet/IP/TCP headers do not parse */           \
  X(dropOffloadBadGsoSize)     /* gso_size 0 */                                                       \
  X(dropOffloadSegmentTooLong) /* (to the guest) segments that do not fit a buffer */

struct VhostUserCounters {
#define NM_VHU_FIELD(n) std::atomic<uint64_t> n{0};
  NM_VHOST_USER_COUNTERS(NM_VHU_FIELD)
#undef NM_VHU_FIELD
};

struct VhostUserConfig {
  std::string path;
  bool client = false;        // connect to path (and reconnect) instead of listening on it
  uint32_t queue_pairs = 2;   // offered with VHOST_USER_PROTOCOL_F_MQ (1..8)
  // After the last frame moved, keep polling the guest's queues and the
  // port's rings this long (µs) with guest notifications off before asking
  // for kicks and sleeping (vhost-net's busyloop_timeout, DPDK's PMD loop):
  // a front-end that sends bursts every few µs is then served in large
  // batches without a kick, a wakeup and a context switch per burst. 0:
  // sleep as soon as a pass finds nothing (the default: on a machine whose
  // CPUs the guests' own pollers keep busy, polling here takes CPU from them
  // and lost throughput in bench/RESULTS.md's vhost-user section).
  uint32_t busy_poll_us = 0;
  // While frames wait in the port's rx ring for guest RX buffers (the
  // guest's RX queue is full), poll that queue for freed entries this long
  // (µs) after the last progress instead of asking the guest for a kick and
  // sleeping: a polling front-end that drains its queue refills it at once,
  // without a kick (a syscall on the guest's side), a wakeup and a context
  // switch per refill; when it stops draining (descheduled) the driver
  // sleeps after the window. 0: sleep at once (the default). Ignored in-line.
  uint32_t backlog_poll_us = 0;
};

// What the back-end is doing, for listings.
struct VhostUserInfo {
  bool connected = false;
  uint64_t features = 0;           // negotiated virtio features
  uint64_t protocol_features = 0;  // negotiated protocol features
  uint32_t running_queues = 0;     // virtqueues started and enabled
  std::string last_error;          // the last protocol violation or connection failure
};

class VhostUserPort {
 public:
  // Binds (server mode) before returning so that a bad path is the caller's
  // error; then runs the thread. Takes the port client.
  //
  // With `core` (the switch the port belongs to), the datapath runs in-line
  // in the switch's rounds (a SwitchCore RoundHook, OVS-DPDK's PMD model):
  // the guest's queues are drained into the port's tx ring just before the
  // switch collects, the port's rx ring into the guest just after it
  // forwards, and the guest's kick eventfds sit in the switch's own epoll
  // set. No driver thread and no doorbell on the datapath: the thread only
  // speaks the protocol, and holds the datapath's lock while a message
  // reconfigures (the switch skips the port meanwhile). busy_poll_us is then
  // the switch's to decide (its own --busy-poll) and ignored here.
  // Without `core`: one thread per port runs protocol and datapath.
  static Result<std::unique_ptr<VhostUserPort>> start(PortClient pc, VhostUserConfig cfg,
                                                      std::shared_ptr<SwitchCore> core = nullptr);
  ~VhostUserPort();
  VhostUserPort(const VhostUserPort &) = delete;
  VhostUserPort &operator=(const VhostUserPort &) = delete;

  // Stops the thread and releases the guest's memory and fds; the socket
  // path is removed in server mode. Idempotent.
  void stop();
  const VhostUserCounters &counters() const { return counters_; }
  VhostUserInfo info() const;
  const VhostUserConfig &config() const { return cfg_; }

  // The features offered to the front-end.
  static uint64_t offered_features();
  static uint64_t offered_protocol_features();

  struct Impl;

 private:
  VhostUserPort() = default;
  VhostUserConfig cfg_;
  VhostUserCounters counters_;
  std::shared_ptr<SwitchCore> core_;  // in-line mode: the switch whose rounds run the datapath
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  unique_fd stop_fd_;
  bool stopped_ = false;
  mutable std::mutex info_mu_;
  VhostUserInfo info_;
  friend struct Impl;
};

}  // namespace nm
