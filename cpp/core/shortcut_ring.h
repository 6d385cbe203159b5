// The co-resident shortcut's channel (docs/vxlan-shortcut.md, "The channel"):
// one sealed memfd holding two single-producer single-consumer frame rings,
// ring 0 from the side that created it to the side that attached, ring 1 back.
//
//   offset 0     header: "VTSCRING", version, slots, slot size (written once
//                by the creator; the attaching side copies what it checked
//                and never reads it again)
//   offset 64    ring 0: tail (producer) at +0, head (consumer) at +64,
//                then `slots` slots of {u32 len, u32 0, frame bytes}
//   after it     ring 1, the same
//
// head and tail are free-running 32-bit counters (slot = counter & (slots-1))
// published with release stores and read with acquire loads. Each side keeps
// its own index in private memory and only publishes it: what it reads back
// from the shared region is the peer's word, checked at every use (the
// peer's index never runs past ours by more than the ring, a slot's length
// never exceeds the slot). A check that fails marks the channel broken for
// good; the VXLAN port then falls back to UDP.
//
// Wakeups (no lost one): a producer publishes its tail, then (after a full
// fence, ShortcutRing::unconsumed) reads the consumer's head and kicks the
// consumer's eventfd when the consumer had taken everything published before;
// a consumer that finds the ring empty read the tail after a full fence that
// follows its own head store. One of the two sees the other.
//
// The memfd is sealed against shrinking and growing before it is handed over
// (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): a peer cannot truncate it under
// our mapping (SIGBUS). attach() refuses an fd without those seals.
#pragma once

#include <cstdint>

#include "core/fd.h"
#include "core/result.h"

namespace nm {

constexpr uint32_t SHORTCUT_RING_VERSION = 1;
constexpr uint32_t SHORTCUT_RING_MAX_SLOTS = 16384;      // a power of two
constexpr uint32_t SHORTCUT_RING_MIN_SLOT = 64;          // a minimum Ethernet frame and more
constexpr uint32_t SHORTCUT_RING_MAX_SLOT = 65536;       // a VXLAN port's largest frame
constexpr uint64_t SHORTCUT_RING_MAX_BYTES = 256ull << 20;

class ShortcutRing {
 public:
  // A new channel: a sealed memfd with both rings empty. This side produces
  // ring 0 and consumes ring 1.
  static Result<ShortcutRing> create(uint32_t slots, uint32_t slot_size);
  // The peer's channel (an fd received with SCM_RIGHTS, owned from now on):
  // seals, size and header checked before use. This side produces ring 1.
  static Result<ShortcutRing> attach(unique_fd fd);

  ShortcutRing(ShortcutRing &&) noexcept = default;
  ShortcutRing &operator=(ShortcutRing &&) noexcept = default;

  int fd() const { return fd_.get(); }
  uint32_t slots() const { return slots_; }
  uint32_t slot_size() const { return slot_size_; }
  bool broken() const { return broken_; }

  enum class Push { Ok, Full, TooLong, Broken };
  // Copies a frame into the next slot of the outgoing ring and publishes it.
  Push push(const uint8_t *frame, uint32_t len);
  // Batched forms for the driver's datapath, which touch the shared indices
  // once per batch instead of once per frame (each touch moves a cache line
  // between the two processes' CPUs):
  // room(): a slot is free, from our copy of the consumer's index, which is
  // loaded (and checked) again only when that copy says full;
  // push_unpublished(): copies a frame into the next slot (room() first);
  // publish(): makes every pushed frame visible to the consumer;
  // pop_unpublished(): consumes the frame peek() gave, telling the producer
  // at publish_head() or when peek() finds the ring empty.
  bool room();
  bool push_unpublished(const uint8_t *frame, uint32_t len);  // false: no room, too long or broken
  void publish();
  void pop_unpublished();
  void publish_head();
  // The oldest frame of the incoming ring, or false when it is empty or the
  // channel is broken. The bytes stay the peer's to overwrite only after pop().
  bool peek(const uint8_t *&frame, uint32_t &len);
  void pop();
  // Frames published to the outgoing ring that the peer has not consumed
  // (what is lost if the peer is gone); 0 when broken.
  uint32_t unconsumed();
  // Frames published to the outgoing ring since it was made (our own count).
  uint32_t produced() const { return tail_; }
  // Frames of the incoming ring seen published and not yet popped, as of the
  // last peek (our copies of the indices: checked when read).
  uint32_t pending_in() const { return peer_tail_ - head_; }

 private:
  ShortcutRing() = default;
  static uint64_t bytes_for(uint32_t slots, uint32_t slot_size);
  uint8_t *ring(int i) const;
  uint8_t *slot(int i, uint32_t counter) const;

  unique_fd fd_;
  mapping map_;
  uint32_t slots_ = 0, slot_size_ = 0;
  int out_ = 0;              // the ring this side produces
  uint32_t tail_ = 0;        // ours, of the outgoing ring
  uint32_t head_ = 0;        // ours, of the incoming ring
  uint32_t peer_head_ = 0;   // last checked consumer index of the outgoing ring
  uint32_t peer_tail_ = 0;   // last checked producer index of the incoming ring
  uint32_t tail_shown_ = 0;  // our tail as the consumer last saw it published
  uint32_t head_shown_ = 0;  // our head as the producer last saw it published
  bool broken_ = false;
};

}  // namespace nm
