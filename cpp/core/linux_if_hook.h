// The in-line datapath shared by the Linux-interface drivers (AF_PACKET,
// AF_XDP): a SwitchCore RoundHook that runs the driver's pumps in the
// switch's own rounds instead of a thread of its own. The switch calls it from
// the thread running its rounds, with its mutex held; the driver has no
// thread then, so nothing else touches its rings (the driver's stop()
// unregisters the hook before anything goes).
//
// Ops (CRTP: the driver's nested Hook, which can reach the driver's private
// state) supplies what differs between the kernel interfaces:
//   void pump_in();              kernel rx ring(s) -> the port's tx ring
//   void pump_out();             the port's rx ring -> the kernel
//   uint64_t tx_frames();        frames sent so far (the driver's counter)
//   int64_t &stats_ns();         when the kernel's drop counts were last read
//   void poll_stats();           read them (a syscall: at most every kLinuxIfStatsNs)
//   PortClient &port();
//   bool kernel_waiting();       frames wait in a kernel ring and the port's tx ring has room for the next
//   void before_sleep();         anything the kernel must be told before the switch sleeps
//   void count_wakeup();
//   void fd_ready(int) override; a socket in the switch's epoll set was readable
#pragma once

#include <cstdint>

#include "core/clock.h"
#include "core/port_client.h"
#include "core/switch_core.h"

namespace nm {

// how often, at most, an in-line driver reads the kernel's drop counts
inline constexpr int64_t kLinuxIfStatsNs = 2'000'000;

template <class Ops>
struct LinuxIfHook : RoundHook {
  // the kernel's rings -> the port's tx ring, collected by this same round
  void before_collect() final { self().pump_in(); }

  // what this round delivered to the port -> the kernel
  uint32_t after_forward() final {
    const uint64_t before = self().tx_frames();
    self().pump_out();
    return static_cast<uint32_t>(self().tx_frames() - before);
  }

  // The switch is about to sleep: false while work waits here (frames to
  // send; a send the kernel pushed back is retried next round: in-line ports
  // poll, as the switch's own rings are; frames in a kernel ring and room for
  // them). The driver's sockets are in the switch's epoll set: a frame into
  // an empty ring wakes it.
  bool arm() final {
    const int64_t now = mono_ns();
    if (now - self().stats_ns() >= kLinuxIfStatsNs) {
      self().poll_stats();
      self().stats_ns() = now;
    }
    PortClient &p = self().port();
    (void)p.rxsync(0);
    (void)p.txsync(0);
    const bool idle = p.rx_avail(0) == 0 && !self().kernel_waiting();
    self().before_sleep();
    if (idle) self().count_wakeup();
    return idle;
  }

  void disarm() final {}

 private:
  Ops &self() { return static_cast<Ops &>(*this); }
};

}  // namespace nm
