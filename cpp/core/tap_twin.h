// The host stack port of an attached interface (valectl -h vale0:IFNAME makes
// vale0:IFNAME^) as a *TAP twin*: a TAP device named IFNAME^ whose far side is
// this driver. What the switch sends to IFNAME^ is written to the TAP, so the
// Linux stack receives it on IFNAME^; what the stack transmits through
// IFNAME^ is read from the TAP and enters the switch from IFNAME^.
//
// netmap's host rings are IFNAME's own stack; a userspace switch cannot take
// IFNAME's stack over, so the stack's addresses and routes go on IFNAME^
// instead (docs/linux-interfaces.md has the trade-offs). The TAP is created
// without offloads (no IFF_VNET_HDR, no TUNSETOFFLOAD): the stack segments
// and checksums everything it sends through it, so every frame is a plain
// frame of at most the TAP's MTU. That MTU is anyone's to raise (ip link set
// IFNAME^ mtu 9000): a frame longer than the port's buffers is dropped and
// counted (drop_too_big), never passed on cut short.
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

struct TapTwinCounters {
#define NM_TAP_COUNTERS(X)                                                                 \
  X(rx_frames) /* frames the stack sent through the TAP, into the switch */                \
  X(rx_bytes)                                                                              \
  X(tx_frames) /* frames written to the TAP, to the stack */                               \
  X(tx_bytes)                                                                              \
  X(wakeups)                                                                               \
  X(drop_too_big) /* frames longer than the port's buffers (the TAP's MTU raised), dropped, never cut short */ \
  X(drop_tx_error) /* write() to the TAP failed (the TAP down: EIO), frame dropped */       \
  X(drop_tx_bad_slot) /* a slot with a bad buffer index or length on the port's rx ring */
#define NM_TAP_FIELD(n) std::atomic<uint64_t> n{0};
  NM_TAP_COUNTERS(NM_TAP_FIELD)
#undef NM_TAP_FIELD
};

class TapTwinDriver {
 public:
  // Creates the TAP `tapname` (it must not exist), sets it up, starts the thread.
  static Result<std::unique_ptr<TapTwinDriver>> start(PortClient port, const std::string &tapname);
  ~TapTwinDriver();
  TapTwinDriver(const TapTwinDriver &) = delete;
  TapTwinDriver &operator=(const TapTwinDriver &) = delete;
  // Stops the thread and closes the TAP (which removes it: it is not persistent).
  void stop();
  const TapTwinCounters &counters() const { return c_; }
  const std::string &tapname() const { return name_; }

 private:
  TapTwinDriver() = default;
  void run();
  bool pump_in();
  bool pump_out();

  std::string name_;
  PortClient port_;
  unique_fd tap_;
  bool in_blocked_ = false;
  // where the rest of a frame longer than a buffer lands, so that it is
  // seen whole (and dropped) rather than read cut to the buffer's size
  std::vector<uint8_t> overflow_;
  std::atomic<bool> logged_tx_{false}, logged_big_{false};
  TapTwinCounters c_;
  DriverThread thread_;
};

}  // namespace nm
