// A vale-ts port whose far side is a Linux TAP device: frames the host stack
// (or whatever holds the TAP's interface: a namespace, a bridge) sends come
// in through the TAP fd; frames the switch forwards to the port are written
// to it. vale-ts holds the TAP's file side, so the TAP's interface is the
// port's peer.
//
// Opened with IFF_TAP | IFF_NO_PI, plus IFF_VNET_HDR when asked (then with
// the kernel's checksum/TSO offloads turned on by TUNSETOFFLOAD, so a TCP
// sender on the host hands over 64 KiB GSO frames). With pass_hdr, the
// port declares the 10-byte header to the switch and frames cross it with
// their header, whole (NS_MOREFRAG chains): the switch completes checksums
// and segments only for receivers that take no header, so TAP to TAP keeps
// GSO end to end. Without pass_hdr, they are checksummed and segmented on
// the way into the switch (nm::PortPump::ingest_vnet). And
// IFF_MULTI_QUEUE with N fds when asked for N queues. An existing persistent
// TAP (`ip tuntap add ... vnet_hdr`) is opened if it has that name; the flags
// must agree with how it was made (the kernel says EINVAL otherwise).
//
// Reads go straight into the port's tx slot buffers (readv: header, slot
// buffer, then a 64 KiB overflow area that only GSO frames and too-long
// frames reach); writes go straight from the rx slot buffers (writev: a
// zero header when vnet_hdr is on, then the slot's buffer).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/port_pump.h"

namespace nm {

struct TapOptions {
  std::string ifname;
  bool vnet_hdr = false;
  bool offload = true;  // with vnet_hdr: let the kernel hand over partial checksums and GSO frames
  bool pass_hdr = false;  // with vnet_hdr: frames keep their header through the switch (the port declares it)
  uint32_t queues = 1;
};

class TapDriver final : public PortPump {
 public:
  // Opens (creating if needed) the TAP and starts nothing yet; start() runs it.
  static Result<std::unique_ptr<TapDriver>> open(PortClient pc, const TapOptions &o, std::string label);
  ~TapDriver() override;
  const std::string &ifname() const { return ifname_; }

 private:
  TapDriver(PortClient pc, std::string label) : PortPump(std::move(pc), std::move(label)) {}
  void link_wants(std::vector<Want> &w, bool room_in, bool pending_out) override;
  void link_event(int fd, uint32_t events) override;
  uint32_t link_in() override;
  uint32_t link_out() override;
  // In-line: the switch's frames for the TAP written from the senders'
  // buffers (one writev each, as link_out does from the rx ring)
  bool link_direct_wanted() override { return !out_blocked_ && !dead_[0]; }
  bool link_in_ready() const override {
    for (size_t i = 0; i < q_.size(); i++)
      if (readable_[i] && !dead_[i]) return true;
    return recheck_;
  }
  uint32_t link_direct(const iovec *iov, const uint32_t *at, uint32_t n) override;
  uint32_t link_in_with_hdr();
  // The queue to read next, round robin a frame at a time from next_q_:
  // readable and alive, with room in the port's tx ring. False once every
  // queue in a row was passed over (`spins` counts them; a pick resets it)
  // or the ring is full.
  bool pick_queue(uint32_t &spins, uint32_t &qi);
  // A read of queue qi failed: EINTR reads it again, EAGAIN waits for it to
  // be readable, anything else (the device gone) stops reading it, logged.
  void read_failed(uint32_t qi);
  uint32_t link_out_with_hdr();

  std::vector<unique_fd> q_;
  std::vector<bool> readable_;
  std::vector<bool> dead_;  // a queue whose device went (its interface deleted, its namespace gone)
  std::string ifname_;
  bool vnet_ = false;
  bool pass_hdr_ = false;
  uint32_t next_q_ = 0;
  bool recheck_ = false;  // readable_ may be stale (the queues were not polled): try them all
  // a GSO frame read but not yet segmented for want of tx room
  std::vector<uint8_t> scratch_;
  bool pending_ = false;
  VnetHdr pending_hdr_{};
  size_t pending_len_ = 0;
};

}  // namespace nm
