// A vale-ts port that is a VXLAN tunnel endpoint (VTEP, RFC 7348): frames the
// switch sends to the port leave as VXLAN over UDP to other VTEPs (Linux
// `vxlan` devices, Open vSwitch, another vale-ts), and VXLAN datagrams with
// this port's VNI come into the switch as the frames they carry.
//
// On the wire: outer IP / UDP (destination port 4789 by default) / an 8-byte
// VXLAN header (flags 0x08 = "VNI valid", 24 reserved bits, the 24-bit VNI,
// 8 reserved bits) / the inner Ethernet frame.
//
// A VTEP's forwarding, as Linux's vxlan driver does it:
//   - it learns behind which remote endpoint (outer source IP) each inner
//     source MAC lives; an entry ages out after `ageing_s` (300 s) unseen;
//     static entries (fdb=MAC@ADDR) never age and are never moved;
//   - a unicast frame to a known MAC goes to that endpoint alone;
//   - broadcast, multicast and unknown unicast go to every static remote
//     (head-end replication) or to the multicast group the port joined.
// The outer UDP source port is a hash of the inner flow mapped into
// [srcport_min, srcport_max) exactly as Linux maps its flow hash (ECMP in
// the underlay spreads flows, and one flow stays on one path). Sending from
// a per-flow source port needs a raw socket (CAP_NET_RAW); `srcport_fixed`
// sends from the bound UDP port instead and needs no privilege.
//
// Everything in a received datagram is the sender's word: its length, flags,
// VNI and inner frame are checked before use, and a datagram that fails is
// dropped and counted under its reason. The tables are bounded (FDB entries,
// endpoints): an underlay host spoofing sources fills a counter, not memory.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/port_pump.h"
#include "core/shortcut_peer.h"
#include "core/shortcut_ring.h"

namespace nm {

constexpr uint16_t VXLAN_PORT = 4789;
constexpr size_t VXLAN_HDR_LEN = 8;
constexpr uint8_t VXLAN_FLAG_I = 0x08;
constexpr uint32_t VXLAN_MAX_FDB = 8192;       // learned + static MACs
constexpr uint32_t VXLAN_MAX_ENDPOINTS = 1024;  // remote VTEPs with counters

// The co-resident shortcut's in-band control datagrams (docs/vxlan-shortcut.md):
// VXLAN flags I | 0x40 (a reserved bit neither GBP nor GPE uses: Linux's
// vxlan drops the datagram as malformed), an inner frame with a multicast
// source MAC (an older vale-ts drops it as dropBadSrcMac) and the IEEE local
// experimental ethertype, then "VTSC", version, type and the body.
constexpr uint8_t VXLAN_FLAG_SHORTCUT = 0x40;
constexpr uint16_t SHORTCUT_ETHERTYPE = 0x88b5;
constexpr uint8_t SHORTCUT_VERSION = 1;
constexpr uint8_t SHORTCUT_HELLO = 1;
constexpr uint8_t SHORTCUT_PROOF = 2;  // same layout: the sender's instance id, then the receiver's nonce
// same layout: the sender's instance id, then 8 bytes of the sender's nonce
// (the channel's epoch), the number of copies and this copy's index (u16 BE)
constexpr uint8_t SHORTCUT_MARKER = 3;
constexpr uint32_t SHORTCUT_MAX_MARKERS = 64;  // copies: outer source ports recently used to one endpoint
constexpr uint64_t SHORTCUT_SPORT_WINDOW_NS = 2000000000ull;  // "recently": anything older has left the host
constexpr size_t SHORTCUT_ID_LEN = 16;
// dst, src, type, magic, version, type, 2 reserved, boot id, instance id
constexpr size_t SHORTCUT_HELLO_LEN = 14 + 4 + 4 + 2 * SHORTCUT_ID_LEN;
constexpr uint64_t SHORTCUT_HELLO_PERIOD_NS = 1000000000ull;
// A peer whose ring stays full this long while frames wait for it (stopped,
// wedged or hostile: it maps the ring but frees no slot) is hung up on, so
// that it cannot hold up what the port sends to every other remote; three
// HELLO periods, three resends of MARKER copies a peer may still wait for.
// No new rendezvous with its endpoint for SHORTCUT_STALL_QUIET_NS after.
constexpr uint64_t SHORTCUT_STALL_NS = 3 * SHORTCUT_HELLO_PERIOD_NS;
constexpr uint64_t SHORTCUT_STALL_QUIET_NS = 60 * SHORTCUT_HELLO_PERIOD_NS;
// Rendezvous connections not through the handshake hold an fd and a peer
// slot, and one with a CLAIM holds its endpoint (one rendezvous each): each
// is closed once older than the handshake bound with no ring mapped (CLAIM,
// PROOF, CHANNEL; VxlanOptions::shortcut_handshake_ms), and at most this
// many accepted ones without a CLAIM wait at a time (the oldest closed
// beyond), so that connections that never claim, never prove or never send
// the channel cannot keep a real neighbour from pairing.
constexpr size_t SHORTCUT_MAX_UNCLAIMED = 8;
constexpr uint32_t SHORTCUT_HANDSHAKE_MS = 5000;  // five HELLO periods: a CLAIM may wait for its sender's HELLO, a PROOF is sent once
// Rings of one endpoint whose peer went and that still hold frames for a
// switch with no room: a peer pairing and hanging up again and again would
// otherwise leave one more each time (its fd, its mapping, up to a ring of
// frames). Beyond this many the oldest is let go, its frames counted.
constexpr size_t SHORTCUT_MAX_DRAINING = 2;

struct VxlanOptions {
  uint32_t vni = 0;                  // 0 .. 2^24-1
  std::string local;                 // this VTEP's address (source of what it sends); may be empty with a group
  uint16_t port = VXLAN_PORT;        // the UDP port it listens on
  uint16_t dstport = VXLAN_PORT;     // the UDP port it sends to
  std::vector<std::string> remotes;  // static remote VTEPs: flood targets
  std::string group;                 // or a multicast group (then no remotes)
  std::string dev;                   // the interface for the group (and IPv6 link-local scopes)
  std::vector<std::pair<std::string, std::string>> fdb;  // static entries: MAC text, remote address
  uint32_t ageing_s = 300;
  uint16_t srcport_min = 32768, srcport_max = 61000;  // [min, max)
  bool srcport_fixed = false;        // send from `port` (no raw socket, no CAP_NET_RAW)
  uint8_t ttl = 0;                   // 0: 64 to unicast, 1 to a multicast group (Linux's defaults)
  bool shortcut = true;              // announce this host to static remotes and notice co-resident ones
  std::string shortcut_dir;          // the rendezvous directory (docs/vxlan-shortcut.md); empty: /run/vale-ts/shortcut
  uint32_t shortcut_handshake_ms = SHORTCUT_HANDSHAKE_MS;  // a rendezvous connection with no ring mapped by then is closed
  bool gso = true;                   // UDP GSO for runs of datagrams to one remote from one source port, and UDP GRO on receive
  uint32_t rcvbuf = 0;               // the UDP socket's receive buffer in bytes (the kernel doubles it); 0: 4 MiB
};

// Reasons a datagram or frame is dropped by the VTEP (beyond PortPump's),
// and what its tables did.
enum class VxCtr : uint8_t {
  DropShortHeader,    // fewer than 8 bytes of VXLAN header
  DropNoVniFlag,      // flags without the I bit: no valid VNI
  DropWrongVni,       // a VNI other than this port's
  DropShortFrame,     // the inner frame is shorter than an Ethernet header
  DropBadSrcMac,      // inner source MAC multicast or all-zero
  DropTooLongIn,      // inner frame longer than the port's buffer
  DropNoDestination,  // a frame to an unknown MAC with no remote and no group to flood to
  DropShortOut,       // a frame from the switch shorter than an Ethernet header
  DropSendFailed,     // the kernel refused a datagram (no route, unreachable): per remote in txErrors
  FdbLearned,
  FdbMoved,           // a learned MAC seen behind another endpoint
  FdbAged,
  FdbFull,            // not learned: the table is at VXLAN_MAX_FDB (or the endpoints at theirs)
  Floods,             // frames replicated to every flood target
  FloodCopies,        // datagrams those became
  ShortcutHelloOut,        // HELLOs sent to static remotes
  ShortcutHelloIn,         // well-formed HELLOs from a static remote
  ShortcutHelloBad,        // shortcut-flagged datagrams that are short, or of another magic/version/type
  ShortcutHelloStranger,   // HELLOs from an address that is not a static remote: ignored
  ShortcutHelloOtherHost,  // HELLOs with another boot id: a peer on another host
  ShortcutConnects,        // rendezvous connections made or accepted
  ShortcutConnectFailed,   // a same-host peer's socket could not be reached (retried at its next HELLO)
  ShortcutPeerBad,         // a connection refused: credentials, a CLAIM that fails a check, a protocol error
  ShortcutPeerGone,        // a rendezvous connection hung up
  ShortcutProofs,          // PROOFs with our nonce from the peer's endpoint: the peer is proven
  ShortcutProofBad,        // PROOFs with no connection or another nonce: ignored
  ShortcutChannels,        // channels mapped (made and sent, or received and attached)
  ShortcutMarkersOut,      // MARKER copies sent (first sends and resends)
  ShortcutMarkersIn,       // MARKER copies received for a live connection
  ShortcutMarkerBad,       // MARKERs with no connection, another epoch or impossible copy numbers: ignored
  ShortcutRingBroken,      // a channel whose shared indices or lengths failed a check: torn down
  ShortcutLostOnHangup,    // frames we had put in the ring that the peer never read before it went
  ShortcutLateVxlan,       // VXLAN datagrams held back until the ring from their endpoint was drained
  ShortcutTxBatches,       // batches published to a ring (one index store each)
  ShortcutRxBatches,       // batches taken from a ring (one index store each)
  ShortcutTxDirect,        // frames the switch handed over from the senders' buffers straight into a ring (in-line: one copy fewer)
  ShortcutRingFull,        // a frame found a ring full: it waits in the switch's ring (the switch counts dropNoSpace behind it)
  ShortcutKicks,           // eventfd writes to a peer that asked for one before it slept (frames or room)
  ShortcutSelfWakes,       // sleeps skipped: frames or room came while we asked for a kick
  ShortcutFullTimeouts,    // 1 ms waits for room that ended without the peer's kick
  ShortcutFullTimeoutsRoom,  // ... of which found room in the ring: a room kick late or missed (0 when the wait words work)
  ShortcutPeerStalled,     // peers hung up on: their ring stayed full SHORTCUT_STALL_NS while frames waited (VXLAN after)
  ShortcutBellStuck,       // peers hung up on: a bell (shared with them) made blocking and filled, which held us a watchdog tick
  ShortcutLeftOnHangup,    // frames a peer published to its ring after it hung up (or was hung up on): not read, the ring let go
  ShortcutHandshakeTimeout,  // rendezvous connections closed: no ring mapped within the handshake bound
  ShortcutUnclaimedEvicted,  // accepted connections with no CLAIM closed: the oldest, when more than SHORTCUT_MAX_UNCLAIMED waited
  ShortcutDrainDropped,    // frames of a gone peer's ring never read: its endpoint had SHORTCUT_MAX_DRAINING newer ones waiting to drain
  TxGsoSends,              // UDP GSO sends: a run of datagrams to one endpoint from one source port in one sendmsg
  TxGsoDatagrams,          // datagrams those carried
  TxGsoUnavailable,        // GSO sends the kernel refused (no checksum offload on the route, xfrm): sent one by one after
  TxGsoRunsRefused,        // GSO sends the kernel refused for the run itself (a segment over the route's MTU): that run sent one by one, GSO kept
  RxGroDatagrams,          // datagrams received coalesced (UDP GRO: a GSO send taken whole), cut apart here
  RxGroSegments,           // the datagrams they held
  TxPushedBack,            // sends the underlay socket refused for now (EAGAIN: its send buffer full behind a slow or stalled underlay): the frames wait, asleep, until that socket drains
  Count_
};
const char *vx_ctr_name(VxCtr c);

class VxlanDriver final : public PortPump {
 public:
  static Result<std::unique_ptr<VxlanDriver>> open(PortClient pc, const VxlanOptions &o, std::string label);
  ~VxlanDriver() override;

  // Every counter, the per-remote ones ("remote ADDR txFrames") and the FDB
  // ("fdb MAC -> ADDR" = seconds to expiry, or 0 for static ones listed
  // as "fdb MAC -> ADDR static" = 1), at most `max_fdb_lines` FDB lines.
  std::vector<std::pair<std::string, uint64_t>> vx_counters(size_t max_fdb_lines) const;
  std::string describe() const;

 private:
  struct Endpoint {
    sockaddr_storage addr{};  // port 0: raw sends; the dstport for UDP sends
    socklen_t len = 0;
    std::string text;
    bool is_static = false;   // a remote= or fdb= address: kept
    bool flood = false;       // remote=: gets broadcast/unknown copies
    uint32_t macs = 0;        // FDB entries pointing here
    uint64_t rx_frames = 0, rx_bytes = 0, tx_frames = 0, tx_bytes = 0, tx_errors = 0;
    bool same_host = false;   // its last HELLO carried this host's boot id (and another instance id)
    std::array<uint8_t, SHORTCUT_ID_LEN> peer_instance{};
    uint8_t peer_state = 0;   // 0 no rendezvous, 1 connected, 2 proven (CLAIMs checked, PROOF received), 3 channel mapped
    // the shortcut, frames to it: 0 over VXLAN, 1 marked (into the ring, the
    // peer has not read any yet), 2 the peer reads the ring
    uint8_t sc_tx = 0;
    bool sc_rx_open = false;  // every MARKER copy came: its ring is read
    uint64_t sc_tx_frames = 0, sc_rx_frames = 0, sc_ups = 0, sc_downs = 0;
    uint64_t sc_quiet_until_ns = 0;  // its peer stalled: no rendezvous before then
    // outer source ports used to it lately (raw sends): one MARKER copy each
    std::array<uint16_t, SHORTCUT_MAX_MARKERS> sports{};
    std::array<uint64_t, SHORTCUT_MAX_MARKERS> sports_ns{};
    uint32_t nsports = 0, last_sport = 0;
  };
  // Where the datagrams held back in late_ stand in a ring from their
  // endpoint: its producer index when they were read (late_gen_ tells that
  // it is for the datagrams held now). They go after those frames, not after
  // every frame the peer publishes until its ring is empty (it need never be).
  struct LateMark {
    uint64_t gen = 0;
    uint32_t upto = 0;
  };
  // A rendezvous connection (driver thread only): accepted ones learn their
  // endpoint from the peer's CLAIM.
  struct Peer {
    unique_fd conn;
    int ep = -1;
    uint64_t since_ns = 0;       // connected or accepted then: the ring is due mapped within the handshake bound
    bool claim_sent = false, claim_got = false, proven = false;
    bool acceptor = false;       // the accepting side makes the channel
    uint32_t their_buf = 0;      // the peer's port buffer size, from its CLAIM
    std::array<uint8_t, SHORTCUT_ID_LEN> my_nonce{}, their_nonce{};
    std::optional<ShortcutRing> ring;  // mapped once both sides are proven
    // a CHANNEL that came over the socket before our PROOF came over UDP
    // (two paths, no order between them): attached once proven
    unique_fd channel_fd;
    uint32_t channel_slots = 0, channel_slot_size = 0;
    // a CLAIM that came before the claimant's HELLO (socket vs UDP again):
    // checked when that HELLO arrives
    std::optional<ShortcutClaim> pending_claim;
    // wakeups: ours is polled (the peer kicks it), theirs we kick
    unique_fd my_bell, their_bell;
    // tx: MARKERs sent (their source ports, kept for resends)
    bool marked = false;
    std::vector<uint16_t> marker_ports;
    bool pushed = false;    // pushed to the ring in this link_out or link_direct batch
    uint64_t full_since_ns = 0;  // a frame has found the ring full since then (0: it had room)
    bool stalled = false;        // full for SHORTCUT_STALL_NS: hung up on at the end of the batch
    bool bell_stuck = false;     // a bell it shares with us was made blocking and filled (shared_bell.h): hung up on
    // rx: the MARKER copies of the peer's epoch seen so far
    uint32_t marker_n = 0;
    uint64_t marker_seen = 0;
    LateMark late;
  };
  // a ring whose peer went: read up to what the peer had published when it
  // went (`end`), before anything later from its endpoint; what it publishes
  // after is not read (whoever still writes it could keep us reading forever)
  struct Draining {
    uint32_t ep;
    ShortcutRing ring;
    uint32_t end;
    LateMark late;
  };
  // a VXLAN datagram held back while the ring from its endpoint is drained
  struct Late {
    uint32_t off, len, ep;
  };
  struct FdbEntry {
    uint32_t ep;
    uint64_t seen_ns;
    bool is_static;
  };
  struct Out {  // one datagram waiting for sendmmsg
    uint32_t frame;  // index in out_frames_
    uint32_t ep;     // endpoint index, or GROUP_EP
  };
  static constexpr uint32_t GROUP_EP = 0xffffffff;

  VxlanDriver(PortClient pc, std::string label) : PortPump(std::move(pc), std::move(label)) {}
  void link_wants(std::vector<Want> &w, bool room_in, bool pending_out) override;
  void link_event(int fd, uint32_t events) override;
  uint32_t link_in() override;
  uint32_t link_out() override;
  // In-line: frames for endpoints behind a shortcut ring go from the
  // senders' buffers straight into the ring (one copy, not two); the first
  // frame that needs anything else (a datagram, a drop, a full ring) and
  // those after it go through the rx ring to link_out.
  bool link_direct_wanted() override;
  uint32_t link_direct(const iovec *iov, const uint32_t *at, uint32_t n) override;
  int idle_timeout_ms() override;
  void on_idle_timeout() override;

  Status setup(const VxlanOptions &o);
  Result<uint32_t> endpoint_for(const sockaddr_storage &a, bool make_static);  // mu_ held
  void learn(const uint8_t *mac, uint32_t ep, uint64_t now);                   // mu_ held
  int lookup(const uint8_t *mac, uint64_t now);                                // mu_ held; -1: flood
  uint16_t src_port(const uint8_t *frame, uint32_t len) const;
  uint32_t flush_out();
  // Datagrams out_[from..] that can leave as one UDP GSO send: to one
  // unicast endpoint, from one source port, all as long as the first but the
  // last (which may be shorter); 1 when GSO is off.
  size_t gso_run(size_t from) const;
  // The UDP socket that sends from source port `sp` with UDP_SEGMENT (the
  // bound socket with srcport=fixed, else one per recent source port), or
  // -1 when none can be had (the port is taken here: raw sends then).
  int gso_socket(uint16_t sp, uint64_t now);
  // Whether the kernel takes UDP GSO at all, asked once with a send the
  // MTU cannot refuse: 1 it does, 0 it refuses, -1 no telling (no loopback).
  int gso_probe() const;
  int find_endpoint(const sockaddr_storage &a) const;                           // mu_ held; -1: none
  void maybe_hello(uint64_t now);
  void on_control(const uint8_t *frame, size_t len, const sockaddr_storage &src);  // mu_ held
  void start_rendezvous(uint32_t ep);                                              // mu_ held
  void service_peers();                       // accepts, reads CLAIMs, notices hang-ups
  bool service_peer(size_t i);                // mu_ held; reads what waits on peers_[i]; false: dropped
  void expire_handshakes(uint64_t now);       // mu_ held; closes connections past the handshake bound
  bool handle_claim(Peer &p, const ShortcutClaim &c);      // mu_ held; false: drop the peer
  bool send_claim(Peer &p);                                   // mu_ held
  // a control datagram: type, then two 16-byte fields (HELLO: boot id,
  // instance; PROOF: instance, the receiver's nonce); returns its length
  size_t build_control(uint8_t type, const uint8_t *a16, const uint8_t *b16, uint8_t *out) const;
  void send_control(uint8_t type, uint32_t ep, const uint8_t *nonce);  // mu_ held
  void drop_peer(size_t i, VxCtr why);                        // mu_ held
  void hang_up_hostile(size_t i, VxCtr why);                  // mu_ held
  bool on_proven(Peer &p);                                    // mu_ held; false: drop the peer
  bool handle_channel(Peer &p, const ShortcutMsg &m, std::vector<unique_fd> &fds);  // mu_ held
  bool attach_channel(Peer &p);                                                     // mu_ held
  void send_markers(Peer &p);                                 // mu_ held
  void note_sport(Endpoint &e, uint16_t sp, uint64_t now);    // mu_ held
  Peer *ring_peer(uint32_t ep);                               // mu_ held; the peer whose channel we fill
  bool ring_waiting(uint32_t ep);                             // mu_ held; frames from ep wait in a ring we read
  uint32_t drain_rings(uint64_t now);                         // mu_ held
  void retire_draining(size_t k);                             // mu_ held; draining_[k] let go, its frames counted
  bool push_late(uint32_t &moved);                            // mu_ held; false: some still wait
  void mark_late();                                           // mu_ held; datagrams are being held back: where each ring stands
  bool late_waits(uint32_t ep) const;                         // mu_ held; held-back datagrams from ep wait for ring frames
  uint32_t recv_datagrams();                                  // link_in's UDP half
  // f: a shortcut ring slot's frame (60 bytes readable whatever len); mu_ held; false: no room
  bool deliver_ring_frame(uint32_t ep, const uint8_t *f, uint32_t len, uint64_t now);
  void kick(Peer &p);
  // The rings pushed to (Peer::pushed) published, their consumers kicked if
  // they asked; broken, stalled or bell-stuck peers dropped.
  void publish_rings();                                       // mu_ held
  // a batch's frames and bytes out, floods and their copies: the counters
  void count_out(uint64_t frames, uint64_t bytes, uint64_t floods, uint64_t flood_copies);
  void disarm_rings();  // mu_ held or driver thread: awake again, no kick wanted
  void vcount(VxCtr c, uint64_t n = 1) { vctr_[static_cast<size_t>(c)].fetch_add(n, std::memory_order_relaxed); }
  // count_datapath's twin, for what only the datapath counts (link_out,
  // link_direct, drain_rings)
  void vcount_datapath(VxCtr c, uint64_t n = 1) { add_one_writer(vctr_[static_cast<size_t>(c)], n); }

  VxlanOptions o_;
  int family_ = AF_INET;
  unique_fd udp_;   // bound to port: receives (and sends with srcport_fixed)
  unique_fd raw_;   // IPPROTO_UDP raw socket: sends with a per-flow source port
  bool readable_ = true;
  bool writable_ = true;
  sockaddr_storage group_{};
  socklen_t group_len_ = 0;
  uint8_t vni_be_[3]{};

  mutable std::mutex mu_;  // endpoints_ and fdb_: the driver thread writes, counters() reads
  std::vector<Endpoint> endpoints_;
  std::vector<uint32_t> flood_;  // endpoints with flood set
  std::unordered_map<uint64_t, FdbEntry> fdb_;
  uint64_t ageing_ns_ = 0;
  uint64_t last_sweep_ns_ = 0;

  // switch -> link: frames copied out of the rx ring (its slots go back to
  // the switch at the next rxsync, before sendmmsg may have run) and the
  // datagrams they become
  std::vector<uint8_t> out_buf_;
  std::vector<uint32_t> out_off_;  // where each frame of the batch starts in out_buf_
  size_t out_used_ = 0;            // bytes of out_buf_ the batch holds
  std::vector<uint32_t> out_len_;
  std::vector<std::array<uint8_t, 16>> out_hdr_;  // UDP (raw sends) + VXLAN header per frame
  std::vector<Out> out_;
  size_t out_sent_ = 0;
  // UDP GSO (UDP_SEGMENT): a run of datagrams to one endpoint leaves in one
  // sendmsg and crosses the sender's IP output once. Per-flow source ports
  // need a UDP socket bound to each (raw sockets have no GSO): kept for the
  // GSO_SOCKETS most recently used ports. Off after the kernel refused it.
  struct GsoSock {
    uint16_t sport = 0;
    bool failed = false;  // bind refused (the port is someone's here): raw sends for it
    unique_fd fd;
    uint64_t used_ns = 0;
  };
  bool gso_ = true;
  bool gso_works_ = false;  // a GSO send went out (or the probe did): an EINVAL is about the run, not the kernel
  std::vector<GsoSock> gso_socks_;
  size_t gso_no_until_ = 0;  // out_ positions before this go one by one (a GSO send failed on them)
  // The socket whose EAGAIN stopped flush_out (a GSO socket, or the sender):
  // its POLLOUT, not the sender's, says the send can go on; -1: none (the
  // sender's is polled, as when a full shortcut ring stopped the batch).
  int out_wait_fd_ = -1;
  // what a blocked send waits on for POLLOUT: out_wait_fd_, else the sender
  int out_poll_fd() const { return out_wait_fd_ >= 0 ? out_wait_fd_ : raw_ ? raw_.get() : udp_.get(); }
  sockaddr_storage local_{};
  socklen_t local_len_ = 0;
  // UDP GRO: a coalesced datagram's bytes beyond the header and the first
  // slot land here (one area per recvmmsg entry); its later segments are
  // queued in late_ (after every earlier frame, before every later one)
  bool gro_ = false;
  std::unique_ptr<uint8_t[]> gro_spill_;

  // the shortcut's identity: this host's boot id and this port's random
  // instance id (a restarted vale-ts is a new instance)
  bool shortcut_ = false;
  std::array<uint8_t, SHORTCUT_ID_LEN> boot_id_{};
  std::array<uint8_t, SHORTCUT_ID_LEN> instance_{};
  uint64_t last_hello_ns_ = 0;
  std::string shortcut_dir_;
  unique_fd listen_;                 // DIR/<instance>.sock
  unique_fd listen_lock_;            // DIR/<instance>.lock, flocked while the port lives
  std::string listen_path_;          // DIR/<instance>: .sock and .lock unlinked when the port goes
  uint8_t local_bytes_[16]{};        // this VTEP's address as CLAIMs carry it
  std::vector<Peer> peers_;
  uint64_t last_service_ns_ = 0;
  std::vector<Draining> draining_;
  std::vector<uint8_t> late_buf_;
  std::vector<Late> late_;
  size_t late_done_ = 0;
  uint64_t late_gen_ = 0;  // mark_late() calls: a ring's LateMark of another is stale
  std::vector<Peer *> ring_dst_;  // link_out: the rings one frame goes into (peers_ unchanged meanwhile)
  bool sc_full_ = false;  // a frame waits for room in a ring: retried on the peer's kick or in 1 ms
  bool sc_armed_ = false;  // a ring's wait word asks the peer for a kick (cleared once awake)
  uint64_t learned_key_ = 0;  // deliver_ring_frame: the MAC (and endpoint) learned last in this drain_rings call
  uint32_t learned_ep_ = 0;
  uint32_t ring_tx_room_ = 0;  // deliver_ring_frame: free tx slots left, within one drain_rings call
  bool socket_first_ = false;  // link_in: the socket's turn to take tx slots before the rings
  uint32_t ring_frames_unpolled_ = 0;  // ring frames moved since the socket was last read or polled
  size_t ring_next_ = 0;       // drain_rings: the peer whose ring is read first

  std::array<std::atomic<uint64_t>, static_cast<size_t>(VxCtr::Count_)> vctr_{};
};

}  // namespace nm
