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
//   bool pushed_back();          the kernel refused the last send (EAGAIN/ENOBUFS, a full tx ring): frames wait
//   bool no_carrier();           (asked while pushed back) the interface has no carrier: wait longer
//   void fd_ready(int) override; a socket in the switch's epoll set was readable
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/clock.h"
#include "core/port_client.h"
#include "core/switch_core.h"

namespace nm {

// how often, at most, an in-line driver reads the kernel's drop counts
inline constexpr int64_t kLinuxIfStatsNs = 2'000'000;
// Retrying a send the kernel pushes back: there is no event for a packet
// socket's backlog draining, so the switch sleeps a bounded time and looks
// again, doubling it while nothing goes out, up to the driver thread's 1 ms.
// (A veth whose far end is down pushes back for as long as it stays down.)
inline constexpr uint64_t kLinuxIfRetryMinNs = 20'000;
inline constexpr uint64_t kLinuxIfRetryMaxNs = 1'000'000;
// ... unless the interface has no carrier (IFF_RUNNING clear: a veth whose
// far end is down), which pushes back for as long as it stays so: then the
// waits grow to 100 ms (about 10 wakeups a second instead of 1000, and the
// frames leave at most that long after the carrier is back).
inline constexpr uint64_t kLinuxIfNoCarrierMaxNs = 100'000'000;

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
  // send; frames in a kernel ring and room for them). The driver's sockets
  // are in the switch's epoll set: a frame into an empty ring wakes it. Frames
  // the kernel pushed back are retried after a sleep of backoff_ns_
  // (wake_within_ns: the thread's wait() honours it, the loop datapath's
  // timer rounds it up to a ms).
  bool arm() final {
    const int64_t now = mono_ns();
    if (now - self().stats_ns() >= kLinuxIfStatsNs) {
      self().poll_stats();
      self().stats_ns() = now;
    }
    PortClient &p = self().port();
    (void)p.rxsync(0);
    (void)p.txsync(0);
    wake_ns_ = 0;
    const uint64_t sent = self().tx_frames();
    if (sent != sent_at_arm_) backoff_ns_ = 0;  // progress since the last look: start over
    sent_at_arm_ = sent;
    bool idle = !self().kernel_waiting();
    if (idle && p.rx_avail(0) > 0) {
      idle = self().pushed_back();
      if (idle) {
        const uint64_t cap = self().no_carrier() ? kLinuxIfNoCarrierMaxNs : kLinuxIfRetryMaxNs;
        backoff_ns_ = backoff_ns_ ? std::min(backoff_ns_ * 2, cap) : kLinuxIfRetryMinNs;
        wake_ns_ = backoff_ns_;
      }
    }
    self().before_sleep();
    if (idle) self().count_wakeup();
    return idle;
  }

  void disarm() final {}
  uint64_t wake_within_ns() const final { return wake_ns_; }

 private:
  Ops &self() { return static_cast<Ops &>(*this); }
  uint64_t backoff_ns_ = 0;   // the current retry sleep (0: none yet)
  uint64_t wake_ns_ = 0;      // what the last arm() asked for
  uint64_t sent_at_arm_ = 0;  // tx_frames() at the last arm()
};

}  // namespace nm
