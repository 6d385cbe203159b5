// A Linux interface as a vale-ts port (valectl -a vale0:IFNAME): a packet
// socket bound to the interface on one side, the client side of a switch port
// (PortClient) on the other, and one native thread moving frames between them
// in batches.
//
//   interface -> switch: a TPACKET_V2 rx ring (one frame per entry, the
//     kernel waking us for each; or, rx_version 3, TPACKET_V3 blocks handed
//     over when full or after 1 ms); we copy each frame straight out of the
//     ring into slots of the port's tx ring, then hand the entry back.
//   switch -> interface: the port's rx ring, sent with sendmmsg() straight
//     from the slot buffers (no copy into a tx ring), PACKET_QDISC_BYPASS,
//     on a second packet socket that receives nothing and that no one waits on;
//     with tx_ring, frames without GSO that fit a 256-byte ring frame go
//     through a PACKET_TX_RING on a third such socket instead (one send() per
//     batch rather than a message header each), in order with the rest.
//
// PACKET_VNET_HDR: every frame read carries a virtio-net header, so GSO
// super-frames (GRO, TSO from a local stack) and CHECKSUM_PARTIAL frames are
// recognised and segmented / completed (offload.h, shared with the TAP/socket drivers) instead of being
// forwarded with a wrong checksum or dropped by the next hop. With pass_hdr
// the header goes through the switch instead (docs/vnet-header.md): GSO
// frames stay whole to header-aware ports (TAP, vhost-user, another
// interface) and are sent with their header, the kernel (or the NIC's TSO)
// segmenting at the last moment.
//
// Promiscuous mode comes from PACKET_ADD_MEMBERSHIP PACKET_MR_PROMISC, which
// the kernel counts and undoes when the socket closes: a crash of vale-ts
// leaves the interface as it was. The interface is brought up on attach if it
// was down, and down again on stop.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <sys/socket.h>
#include <sys/uio.h>

#include "core/driver_thread.h"
#include "core/fd.h"
#include "core/offload.h"
#include "core/port_client.h"
#include "core/result.h"

namespace nm {

class SwitchCore;

struct AfPacketConfig {
  std::string ifname;
  bool vnet_hdr = true;
  // with vnet_hdr: frames keep the kernel's header through the switch (the
  // port declares a 10-byte header; GSO frames cross whole as NS_MOREFRAG
  // chains) and frames from the switch are sent with theirs, offloads left
  // to the kernel; the switch finishes them only for header-less receivers
  bool pass_hdr = false;
  // The receive ring's layout. TPACKET_V2 (the default): one fixed-size
  // frame per packet, and the kernel wakes us for each one. TPACKET_V3 packs
  // frames into blocks and hands a block over only when it is full or its
  // retire timer (≥ 1 ms) fires: a sparse flow such as TCP's ACKs then waits
  // up to 1 ms at every hop, which is what bounded TCP through the switch
  // (bench/RESULTS.md, session 7). V3 holds more small frames per MiB.
  int rx_version = 2;
  // rx_version 2 only: a second, TPACKET_V3 ring (default V3 size) behind
  // the V2 one, the two sockets in a PACKET_FANOUT group with rollover: the
  // kernel puts each frame in the V2 ring (a wakeup per frame: ACKs and pings
  // cross at once) unless it is three quarters full under one flow, or full,
  // and then in the V3 ring (blocks: a flood of small frames fits where the V2
  // ring's 240 frames overflow). Frames of one flow can pass each other
  // between the two rings only while the V2 ring is that full.
  bool overflow_v3 = false;
  // V3: blocks of block_size bytes. V2: blocks of block_size bytes cut into
  // frames of frame_size bytes. 0: the version's default (V3 32 × 256 KiB;
  // V2 16 × 1 MiB).
  uint32_t block_size = 0;
  uint32_t block_count = 0;
  // V2 frame size. 0: with pass_hdr, room for one frame of the interface's
  // MTU, at least 2 KiB (8192 frames at MTU 1500); without it, or behind an
  // overflow ring, whole 64 KiB + 1 KiB frames (240). Frames smaller than
  // 64 KiB + 1 KiB need pass_hdr: a frame larger than a ring frame (a GSO
  // super-frame) is then queued whole on the socket (PACKET_COPY_THRESH: the
  // kernel takes a reference, no copy) and its ring frame marked
  // TP_STATUS_COPY; the driver reads it with recvmsg(), in ring order,
  // straight into the port's slots. Small frames then sit side by side in
  // the ring, and a burst of thousands fits where 240 did.
  uint32_t frame_size = 0;
  // in-line with pass_hdr: the port's id in the switch. Frames to it are
  // then sent straight from the sender's buffers (SwitchCore's DirectSink)
  // while its rx ring is empty, one copy fewer; -1: always through the ring
  int32_t switch_port = -1;
  // with vnet_hdr: frames without GSO of up to 214 bytes (a 256-byte
  // TPACKET_V2 frame less its 32-byte header and the 10-byte virtio-net
  // header) are copied into a PACKET_TX_RING and sent with one send() per
  // batch, ~24% less of the sending CPU per 60 B frame than a sendmmsg
  // message each (bench/RESULTS.md, session 24); the rest keep sendmmsg.
  // Where the kernel refuses the ring, sendmmsg serves every frame.
  bool tx_ring = false;
};

// Counters, written by the driver thread only, read by anyone (relaxed).
struct AfPacketCounters {
#define NM_AFP_COUNTERS(X)                                                                              \
  X(rx_frames)      /* frames read from the interface */                                                 \
  X(rx_bytes)                                                                                            \
  X(tx_frames)      /* frames sent on the interface */                                                   \
  X(tx_bytes)                                                                                            \
  X(gso_frames)     /* GSO super-frames read */                                                          \
  X(gso_segments)   /* segments made of them */                                                          \
  X(csum_completed) /* CHECKSUM_PARTIAL frames completed */                                              \
  X(gso_passed)     /* (pass_hdr) GSO super-frames passed on whole with their header */                  \
  X(csum_passed)    /* (pass_hdr) CHECKSUM_PARTIAL frames passed on with their header */                 \
  X(wakeups)        /* times the thread slept and woke */                                                \
  X(tx_direct)      /* (in tx_frames) frames sent straight from the sending port's buffers, not via our rx ring */ \
  X(tx_ring)        /* (in tx_frames) frames sent through the PACKET_TX_RING (tx_ring), not sendmmsg */ \
  X(tx_retries)     /* sends the kernel pushed back (ENOBUFS/EAGAIN) and that were retried */            \
  X(tx_waits_no_carrier) /* of the waits before a retry: the interface had no carrier (a veth whose far end is down), waited longer */ \
  X(socket_errors)  /* errors the socket reported (ENETDOWN while the interface was down), read and cleared */ \
  X(rx_overflow)    /* (overflow_v3) frames read from the overflow ring */                              \
  X(rx_copied)      /* frames larger than a ring frame, read whole from the socket (TP_STATUS_COPY) */  \
  X(drop_kernel_ring) /* frames the kernel dropped: our rx ring was full (PACKET_STATISTICS tp_drops) */ \
  X(drop_truncated) /* frames larger than a ring frame the kernel could not queue whole (receive buffer full) */ \
  X(drop_too_big)   /* frames larger than the port's buffers, not GSO */                                 \
  X(drop_bad_vnet_hdr) /* a virtio-net header that does not fit its frame */                             \
  X(drop_gso_unsupported) /* GSO types offload.h does not segment (UFO, unknown) */                            \
  X(drop_tx_error)  /* the kernel refused the frame (sendmmsg or the tx ring failed with another errno) */                                             \
  X(drop_tx_bad_slot) /* a slot with a bad buffer index or length on the port's rx ring */
#define NM_AFP_FIELD(n) std::atomic<uint64_t> n{0};
  NM_AFP_COUNTERS(NM_AFP_FIELD)
#undef NM_AFP_FIELD
};

class AfPacketDriver {
 public:
  // Opens the socket, sets the ring up, joins promiscuous mode and starts the
  // thread. Takes the port client (its fds are the driver's own).
  // With `core` (the switch the port belongs to) there is no thread: the
  // datapath runs in-line in the switch's rounds (a SwitchCore RoundHook, as
  // the AF_XDP driver's and vhost-user's in-line modes), the receiving socket
  // in the switch's epoll set.
  static Result<std::unique_ptr<AfPacketDriver>> start(PortClient port, const AfPacketConfig &cfg, std::shared_ptr<SwitchCore> core = nullptr);
  ~AfPacketDriver();
  AfPacketDriver(const AfPacketDriver &) = delete;
  AfPacketDriver &operator=(const AfPacketDriver &) = delete;

  // Stops the thread, closes the socket (the kernel drops our promiscuity
  // reference), puts the interface down again if we brought it up. Idempotent.
  void stop();

  const AfPacketCounters &counters() const { return c_; }
  const std::string &ifname() const { return cfg_.ifname; }
  bool vnet_hdr() const { return cfg_.vnet_hdr; }
  bool pass_hdr() const { return cfg_.pass_hdr; }
  bool qdisc_bypass() const { return qdisc_bypass_; }
  int rx_version() const { return cfg_.rx_version; }
  bool overflow_v3() const { return static_cast<bool>(sock3_); }
  bool raised_up() const { return raised_up_; }
  bool was_promisc() const { return was_promisc_; }
  uint32_t mtu() const { return mtu_.load(std::memory_order_relaxed); }
  bool in_line() const { return core_ != nullptr; }
  bool tx_ring() const { return tx_ring_.data() != nullptr; }

  struct Hook;  // the in-line datapath (defined in the .cc)

 private:
  AfPacketDriver();
  void run();
  bool pump_in();   // interface -> port tx ring; true if anything moved
  bool pump_out();  // port rx ring -> interface
  // the switch's frames straight from the senders' buffers (DirectSink::send_direct)
  uint32_t send_direct(const iovec *iov, const uint32_t *at, uint32_t n);
  // the interface is up without a carrier (counted in tx_waits_no_carrier)
  bool no_carrier();
  // a sendmmsg error on the first of the messages: true when the kernel
  // pushed back (retry later), false when that frame is dropped (counted)
  bool send_failed(int e);
  // sendmmsg's contract (how many of msgs[0, n) were sent, or -1 and errno
  // when the first was not), each frame through the tx ring or sendmmsg,
  // in order: a run of ring frames is sent before the sendmmsg that follows
  int send_msgs(mmsghdr *msgs, uint32_t n);
  bool ring_fits(const msghdr &m) const;  // a frame the tx ring takes
  int ring_send(mmsghdr *msgs, uint32_t n);  // the same contract, every frame ring_fits
  bool put_frame(uint8_t *data, uint32_t len);  // false: tx ring full, retry later
  bool put_frame_with_hdr(uint8_t *data, uint32_t len);
  // pass_hdr's layout, a header and a frame of len bytes across n tx slots
  // from head: their buffers (false: a bad buffer index, counted), then,
  // once written, the slots published and the frame counted
  bool chain_bufs(uint32_t n, uint8_t **to);
  void publish_chain(uint32_t n, uint32_t len, const VnetHdr &vh);
  // a TP_STATUS_COPY frame of len bytes, from the socket; gso: a GSO frame,
  // as the virtio-net header in its ring frame says; tag: the VLAN tag the
  // kernel reported beside it (TPID << 16 | TCI, 0: none); false: retry later
  bool put_copied(bool gso, uint32_t len, uint32_t tag);
  void log_once(std::atomic<bool> &flag, const std::string &msg);
  void poll_kernel_drops();
  void watch_socket(bool on);
  void clear_socket_error(int fd);

  AfPacketConfig cfg_;
  PortClient port_;
  unique_fd sock_, tx_sock_;  // sock_ receives (rx ring, promiscuity), tx_sock_ sends
  // tx_ring: the PACKET_TX_RING's socket (a socket with a tx ring sends only
  // from it: sendmmsg's messages keep tx_sock_) and its mapping, unmapped
  // before the socket closes; tx_head_ is the kernel's own index in it,
  // which moves only past frames it took
  unique_fd ring_sock_;
  mapping tx_ring_;
  uint32_t tx_head_ = 0;
  mapping ring_;
  int ifindex_ = 0;
  // the interface's MTU: read at the attach, and again at most every
  // kMtuRecheckNs while the tx ring sends (refresh_mtu), since the ring,
  // unlike sendmmsg, does not refuse a frame over it
  std::atomic<uint32_t> mtu_{0};
  int64_t mtu_read_ns_ = 0;
  void refresh_mtu();
  bool qdisc_bypass_ = false, raised_up_ = false, was_promisc_ = false;
  // A TPACKET_V3 ring being read: the receive ring (rx_version 3) or the overflow ring.
  struct V3Walk {
    uint8_t *base = nullptr;
    uint32_t block_size = 0, block_count = 0;
    uint32_t block = 0;         // next block to read
    uint32_t pkt_left = 0;      // frames left in the block being read (0: not started)
    uint8_t *pkt = nullptr;     // next frame in it
    bool ready() const;         // a block (or the rest of one) waits for us
  };
  bool pump_in_v2(bool &moved);  // the V2 ring's walk; false: stopped on a full port tx ring
  bool pump_in_v3(V3Walk &w, bool &moved, bool overflow);  // the same for a V3 ring
  uint8_t *v2_frame() const;     // V2: the whole ring frame block_ names
  bool kernel_ready() const;     // a frame or block waits in a ring for us

  uint32_t block_ = 0;       // V2: next frame to read
  uint32_t frame_nr_ = 0;    // V2: frames in the ring
  uint32_t frames_per_block_ = 0;
  V3Walk v3_;                // rx_version 3: the receive ring
  unique_fd sock3_;          // overflow_v3: the overflow ring's socket (in the fanout group with sock_)
  mapping ring3_;
  V3Walk ov_;                // overflow_v3: the overflow ring
  bool out_blocked_ = false; // the kernel pushed back on a send
  bool in_blocked_ = false;  // the port's tx ring was full
  uint32_t need_slots_ = 1;  // the tx slots the frame that blocked needs
  bool sock_watched_ = true; // the socket is in the epoll set with EPOLLIN
  int64_t stats_ns_ = 0;        // when the kernel's drop count was last read (mono_ns)
  std::atomic<bool> logged_truncated_{false}, logged_too_big_{false}, logged_vnet_{false}, logged_gso_{false},
      logged_tx_{false}, logged_slot_{false}, logged_copy_{false}, logged_ring_{false};
  AfPacketCounters c_;
  DriverThread thread_;
  std::shared_ptr<SwitchCore> core_;  // in-line: the switch whose rounds run the datapath
  std::unique_ptr<Hook> hook_;        // registered with core_ while in-line
};

}  // namespace nm
