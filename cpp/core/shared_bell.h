// Doorbells shared with another process: eventfds whose open file (and with
// it O_NONBLOCK) the other side holds too. A netmap client holds both of its
// port's bells, a vhost-user front-end its kick and call fds, a shortcut peer
// the bells it exchanged. The other side may clear O_NONBLOCK at any time,
// so the flag we set cannot be relied on:
//
//  - reading an empty counter would then wait: drain_bell reads with
//    RWF_NOWAIT, a per-call flag the file's flags cannot undo;
//  - writing would wait when the counter cannot take one more (the other
//    side wrote 2^64 - 2 into it; no honest side does). Writes to an eventfd
//    have no per-call non-blocking form (RWF_NOWAIT is refused), so
//    ring_bell marks the thread as writing and a watchdog thread interrupts a
//    write still under way at two consecutive ticks (50-100 ms) with a signal
//    whose handler does nothing (installed without SA_RESTART): the write
//    returns EINTR and ring_bell false. eventfd's write looks for signals only
//    while it waits, so a write that was not waiting is never cut short.
//    The caller then stops ringing that bell (the other side broke it).
#pragma once

#include <cstdint>

namespace nm {

// The counter's value, reset to 0; 0 when it was empty. Never waits.
uint64_t drain_bell(int fd);

// Adds 1 to the counter. False when the write waited and was interrupted
// (the other holder made the file blocking and filled the counter); true
// otherwise, including EAGAIN (a full counter on a non-blocking file: the
// other side is awake-able already).
bool ring_bell(int fd);

// The signal that interrupts a stuck ring_bell (documented for operators:
// it must not be blocked or handled elsewhere in the process).
int shared_bell_signal();

}  // namespace nm
