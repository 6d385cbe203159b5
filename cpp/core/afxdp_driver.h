// A Linux interface as a vale-ts port through AF_XDP (libxdp's xsk API):
// one XDP socket per receive queue of the interface, bound in native
// (driver) mode, zero-copy when the driver offers it, else copy mode; the
// default XDP program libxdp loads redirects every frame of each queue to its
// socket. One native thread moves frames between the sockets' rings and the
// port's rings (PortClient), in batches:
//
//   interface -> switch: rx ring descriptors are copied from the UMEM into
//     slots of the port's tx ring, and the UMEM frames go back on the fill
//     ring.
//   switch -> interface: slots of the port's rx ring are copied into free
//     UMEM frames of queue 0 and posted on its tx ring; completions return
//     the frames.
//
// The port's buffers live in the switch's region, not in a UMEM, so there is
// one copy each way; "zero-copy" names how the socket is bound to the NIC
// (XDP_ZEROCOPY: the NIC DMAs into the UMEM), which is what decides the cost
// of the kernel's side.
//
// No generic (SKB) mode: it costs more than the TPACKET_V3 path, which is the
// fallback the caller picks when start() fails.
//
// Checksums: a veth peer (or any sender on the same host) hands XDP frames
// whose TCP/UDP checksum is CHECKSUM_PARTIAL — the field holds only the
// pseudo-header sum — and XDP passes no metadata that says so. The driver
// recognises that exact value and computes the checksum (csum_completed); a
// frame whose checksum was already right is unchanged by this, since the
// computation gives the same value.
//
// In-line (start() with the switch's core): no thread. The driver is a
// SwitchCore RoundHook, as in-line vhost-user ports are: the XDP rx rings are
// drained into the port's tx ring just before the switch collects, and what
// the round delivered to the port is posted on the XDP tx ring and kicked just
// after it forwards; the XDP sockets sit in the switch's own epoll set. No
// doorbell, wakeup or context switch between the driver and the switch per
// batch, and one thread fewer sharing the CPUs (bench/RESULTS.md, session 10).
//
// Promiscuous mode: an AF_PACKET socket that receives nothing (protocol 0,
// never bound) holds a PACKET_MR_PROMISC membership, which the kernel counts
// and drops when the socket closes — on detach, exit or crash alike. The XDP
// program goes with the last XDP socket (xsk_socket__delete); the interface
// is brought up if it was down, and down again on stop.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/driver_thread.h"
#include "core/fd.h"
#include "core/port_client.h"
#include "core/result.h"

namespace nm {

class SwitchCore;

// True when the addon was built with libxdp/libbpf (binding.gyp finds them
// with pkg-config); without them start() answers ENOTSUP with the fix.
bool afxdp_built_in();

enum class AfXdpMode : uint8_t { Auto, ZeroCopy, Copy };

struct AfXdpConfig {
  std::string ifname;
  AfXdpMode mode = AfXdpMode::Auto;  // Auto: zero-copy, else copy
  uint32_t frames_per_queue = 4096;  // UMEM frames of 2 KiB: half on the fill ring, half for transmit
  uint32_t ring_size = 2048;         // rx, tx, fill and completion rings (power of two)
};

struct AfXdpCounters {
#define NM_AFX_COUNTERS(X)                                                                                   \
  X(rx_frames)      /* frames read from the interface */                                                     \
  X(rx_bytes)                                                                                                \
  X(tx_frames)      /* frames sent on the interface */                                                       \
  X(tx_bytes)                                                                                                \
  X(csum_completed) /* CHECKSUM_PARTIAL frames (pseudo-header sum only) completed */                         \
  X(wakeups)        /* times the thread slept and woke */                                                    \
  X(tx_kicks)       /* sendto() calls that asked the kernel to transmit */                                   \
  X(tx_retries)     /* kicks the kernel pushed back (EAGAIN/EBUSY/ENOBUFS) and that were retried */          \
  X(drop_kernel_rx) /* frames the kernel dropped: rx ring full or no fill frame (XDP_STATISTICS) */          \
  X(drop_kernel_invalid) /* descriptors the kernel found invalid (XDP_STATISTICS rx/tx_invalid_descs) */     \
  X(drop_too_big)   /* frames larger than the port's buffers, or than a UMEM frame on transmit */            \
  X(drop_bad_desc)  /* an rx descriptor outside the UMEM */                                                  \
  X(drop_tx_error)  /* a transmit kick failed with another errno (frames stay in the tx ring: counted once) */ \
  X(drop_tx_bad_slot) /* a slot with a bad buffer index or length on the port's rx ring */
#define NM_AFX_FIELD(n) std::atomic<uint64_t> n{0};
  NM_AFX_COUNTERS(NM_AFX_FIELD)
#undef NM_AFX_FIELD
};

class AfXdpDriver {
 public:
  // Binds one XDP socket per receive queue (libxdp loads its redirect
  // program), joins promiscuous mode and starts the thread. Fails (and
  // leaves the interface as it was) where the kernel, the driver or the
  // build does not allow native AF_XDP: the error says why.
  // With `core` (the switch the port belongs to) the datapath runs in-line in
  // the switch's rounds instead of a thread of its own (see above).
  static Result<std::unique_ptr<AfXdpDriver>> start(PortClient port, const AfXdpConfig &cfg, std::shared_ptr<SwitchCore> core = nullptr);
  ~AfXdpDriver();
  AfXdpDriver(const AfXdpDriver &) = delete;
  AfXdpDriver &operator=(const AfXdpDriver &) = delete;

  // Stops the thread, deletes the sockets (the XDP program goes with the
  // last), drops promiscuity, puts the interface down if we brought it up.
  void stop();

  const AfXdpCounters &counters() const { return c_; }
  const std::string &ifname() const { return cfg_.ifname; }
  bool zero_copy() const { return zero_copy_; }
  uint32_t queues() const;
  bool raised_up() const { return raised_up_; }
  bool was_promisc() const { return was_promisc_; }
  uint32_t mtu() const { return mtu_; }
  bool in_line() const { return core_ != nullptr; }

  struct Queue;  // one XDP socket and its UMEM (defined in the .cc, with libxdp's types)
  struct Hook;   // the in-line datapath: a SwitchCore RoundHook (defined in the .cc)

 private:
  AfXdpDriver();
  void run();
  bool pump_in(Queue &q);
  bool pump_out();
  void reap_completions();
  void kick_tx();
  void poll_kernel_stats();
  void watch_rx(bool on);
  void log_once(std::atomic<bool> &flag, const std::string &msg);

  AfXdpConfig cfg_;
  PortClient port_;
  std::vector<std::unique_ptr<Queue>> q_;
  unique_fd ctl_;
  int ifindex_ = 0;
  uint32_t mtu_ = 0;
  bool zero_copy_ = false, raised_up_ = false, was_promisc_ = false;
  bool in_blocked_ = false, out_blocked_ = false;
  int64_t stats_ns_ = 0;  // when the kernel's drop counts were last read (mono_ns)
  bool rx_watched_ = true;  // the XDP sockets are in the epoll set with EPOLLIN
  uint64_t last_kernel_rx_drops_ = 0, last_kernel_invalid_ = 0;
  std::atomic<bool> logged_too_big_{false}, logged_desc_{false}, logged_tx_{false}, logged_slot_{false};
  AfXdpCounters c_;
  DriverThread thread_;
  std::shared_ptr<SwitchCore> core_;  // in-line: the switch whose rounds run the datapath
  std::unique_ptr<Hook> hook_;        // registered with core_ while in-line
};

}  // namespace nm
