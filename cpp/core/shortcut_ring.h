// The co-resident shortcut's channel (docs/vxlan-shortcut.md, "The channel"):
// one sealed memfd holding two single-producer single-consumer frame rings,
// ring 0 from the side that created it to the side that attached, ring 1 back.
//
//   offset 0     header: "VTSCRING", version, slots, slot size (written once
//                by the creator; the attaching side copies what it checked
//                and never reads it again)
//   offset 64    ring 0: the producer's line at +0 (tail, then at +4 its
//                room-wait word), the consumer's line at +64 (head, then at
//                +68 its data-wait word), then `slots` slots of
//                {u32 len, frame bytes}, each slot on a cache line of its own
//                (a 60-byte frame and its length fill exactly one)
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
// Wakeups (no lost one, and none while the other side is awake): a side
// that is about to sleep on an empty ring (the consumer) or a full one (the
// producer) stores a fresh nonzero number in its wait word, fences, and looks
// at the ring once more (arm_data / arm_room: true means it need not sleep).
// The other side, after publishing its index, fences and reads that word
// (data_kick_due / room_kick_due): a number it has not kicked for yet means
// "kick me". Store, fence, load on both sides: one of the two sees the
// other. The words only ever decide whether to write an eventfd: a peer that
// writes nonsense there costs us at most one kick per batch.
//
// The memfd is sealed against shrinking and growing before it is handed over
// (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): a peer cannot truncate it under
// our mapping (SIGBUS). attach() refuses an fd without those seals.
#pragma once

#include <sys/uio.h>

#if defined(__x86_64__)
#include <emmintrin.h>  // _mm_stream_si128, _mm_sfence (SSE2: every x86-64)
#endif

#include <cstdint>

#include "core/fd.h"
#include "core/result.h"
#include "core/shm_atomic.h"

namespace nm {

constexpr uint32_t SHORTCUT_RING_VERSION = 3;  // 2: the wait words; 3: a 4-byte slot header
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
  bool room() {
    if (broken_) return false;
    return tail_ - peer_head_ < slots_ || refresh_head();
  }
  bool push_unpublished(const uint8_t *frame, uint32_t len) {  // false: no room, too long or broken
    const iovec v{const_cast<uint8_t *>(frame), len};
    return push_unpublished(&v, 1, len);
  }
  // The same from a frame in pieces: iov[0, n), `len` bytes in all (a
  // switch's direct send: the sender's buffers and the decision's snapshot).
  bool push_unpublished(const iovec *iov, uint32_t n, uint32_t len) {
    if (broken_ || len > slot_size_ || tail_ - peer_head_ >= slots_) return false;
    uint8_t *s = slot(out_, tail_);
    if (SLOT_HDR + len <= LINE) {
      if (n == 1 && len >= 8) {
        stream_slot(s, static_cast<const uint8_t *>(iov[0].iov_base), len, false);
      } else {
        // the pieces add up to len (the caller summed them): bounded by the line
        uint8_t frame[LINE - SLOT_HDR] = {};  // zeros after the frame: no stale bytes of ours to the peer
        uint64_t off = 0;
        for (uint32_t i = 0; i < n; i++) {
          __builtin_memcpy(frame + off, iov[i].iov_base, iov[i].iov_len);
          off += iov[i].iov_len;
        }
        stream_slot(s, frame, len, true);
      }
    } else {
      uint64_t off = SLOT_HDR;
      for (uint32_t i = 0; i < n; i++) {
        // the pieces add up to len (the caller summed them): bounded by the slot
        __builtin_memcpy(s + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
      }
      store_relaxed(reinterpret_cast<uint32_t *>(s), len);
    }
    tail_++;
    return true;
  }
  // Orders the slots' stores (streamed ones too) before the tail store.
  void publish();
  void pop_unpublished() {
    if (broken_ || head_ == peer_tail_) return;
    head_++;
  }
  void publish_head();
  // The oldest frame of the incoming ring, or false when it is empty or the
  // channel is broken. The bytes stay the peer's to overwrite only after pop().
  bool peek(const uint8_t *&frame, uint32_t &len) {
    if (broken_ || (peer_tail_ == head_ && !refresh_tail())) return false;
    const uint8_t *s = slot(1 - out_, head_);
    const uint32_t l = load_relaxed(reinterpret_cast<const uint32_t *>(s));
    if (l > slot_size_) {
      broken_ = true;
      return false;
    }
    frame = s + SLOT_HDR;
    len = l;
    return true;
  }
  void pop();
  // Frames published to the outgoing ring that the peer has not consumed
  // (what is lost if the peer is gone); 0 when broken.
  uint32_t unconsumed();
  // The wakeup handshake (see the header). The consumer, before it sleeps:
  // arm_data() announces it and returns true when frames came meanwhile (do
  // not sleep); disarm_data() once awake. The producer, after publish():
  // data_kick_due() says whether the consumer asked for a kick since the
  // last one. The same for room: arm_room() / disarm_room() by a producer
  // that found the ring full, room_kick_due() by the consumer after
  // publish_head().
  bool arm_data();
  void disarm_data();
  bool data_kick_due();
  bool arm_room();
  void disarm_room();
  bool room_kick_due();
  // Cache hints for the datapath: the incoming slot `k` frames after the
  // next one to read, the outgoing slot `k` after the next one to fill (the
  // other process wrote / read those lines last: without the hint each frame
  // waits for them). Only addresses inside the mapping; no index is read.
  void prefetch_in(uint32_t k) const {
    if (broken_ || !slots_) return;
    // the slot's first line only: a minimum frame ends there, and reading a
    // line the producer never wrote again would make its next store to it
    // cross CPUs for nothing
    __builtin_prefetch(slot(1 - out_, head_ + k), 0);
  }
  void prefetch_out(uint32_t k) const {
    if (broken_ || !slots_) return;
    __builtin_prefetch(slot(out_, tail_ + k), 1);
  }
  // a slot's bytes: its frame's length (u32), then the frame. Four bytes,
  // not eight: a 60-byte frame (the minimum, without FCS) then fits the
  // slot's first cache line, and each such frame moves one line between
  // the two CPUs, not two (bench/RESULTS.md, session 27)
  static constexpr uint64_t SLOT_HDR = 4;
  static constexpr uint64_t stride_for(uint32_t slot_size) { return (SLOT_HDR + slot_size + 63) & ~uint64_t{63}; }
  // Frames published to the outgoing ring since it was made (our own count).
  uint32_t produced() const { return tail_; }
  // Frames of the incoming ring seen published and not yet popped, as of the
  // last peek (our copies of the indices: checked when read).
  uint32_t pending_in() const { return peer_tail_ - head_; }
  // The incoming ring's producer index now, loaded once and checked as
  // peek() checks it: the frames published so far end there (our own
  // consumer index when broken). With consumed(), what bounds a read by a
  // point in time: a peer may publish more for as long as it likes.
  uint32_t published_in();
  // Frames of the incoming ring consumed so far (our own count).
  uint32_t consumed() const { return head_; }

 private:
  ShortcutRing() = default;
  static uint64_t bytes_for(uint32_t slots, uint32_t slot_size);
  // the rings' addresses and the slot stride, worked out once from the
  // geometry this side checked (never from the shared header again)
  void cache_layout();
  uint8_t *ring(int i) const { return rings_[i]; }
  uint8_t *slot(int i, uint32_t counter) const { return rings_[i] + CTL_BYTES + uint64_t{counter & mask_} * stride_; }
  // room() when our copy of the consumer's index says full: loads and checks it
  bool refresh_head();
  // peek() when our copy of the producer's index says empty: publishes our
  // head, then loads and checks the producer's index; true: frames came
  bool refresh_tail();
  static constexpr uint64_t LINE = 64;
  // A one-line slot (len and a frame of up to 60 bytes) is written with
  // streaming stores (x86-64): the consumer's CPU read that line last, and
  // an ordinary store waits, with every store behind it, until the line is
  // taken back from that CPU; a streamed full line replaces it without being
  // read. On the 2-CPU benchmark VM that was most of the producer's time in
  // its slow spells (bench/RESULTS.md, session 27). publish() fences first.
  // The line is built in registers, eight words straight from the frame:
  // gathered on the stack first, its reads back stalled on the copy's
  // stores (no store forwarding across their sizes and offsets). frame:
  // len bytes (len >= 8), or padded: LINE - SLOT_HDR bytes, zeros after len.
  static void stream_slot(uint8_t *dst, const uint8_t *frame, uint32_t len, bool padded) {
#if defined(__x86_64__)
    auto load64 = [](const uint8_t *p) {
      uint64_t v;
      __builtin_memcpy(&v, p, sizeof v);
      return v;
    };
    uint32_t head;  // frame bytes [0, 4): len >= 8 or padded
    __builtin_memcpy(&head, frame, sizeof head);
    // word i (little-endian) holds frame bytes [8i - 4, 8i + 4); word 0 the length, then bytes [0, 4)
    uint64_t w[LINE / 8];
    w[0] = len | uint64_t{head} << 32;
    for (uint32_t i = 1; i < LINE / 8; i++) {
      const uint32_t at = 8 * i - 4;
      if (padded || at + 8 <= len) w[i] = load64(frame + at);
      else if (at < len) w[i] = load64(frame + len - 8) >> (8 * (8 - (len - at)));  // its last len - at bytes, no read past len
      else w[i] = 0;
    }
    // four 16-byte stores (the slot is 64-byte aligned): half the store
    // buffer entries of eight 8-byte ones
    for (uint32_t i = 0; i < LINE / 16; i++)
      _mm_stream_si128(reinterpret_cast<__m128i *>(dst + 16 * i), _mm_set_epi64x(static_cast<long long>(w[2 * i + 1]), static_cast<long long>(w[2 * i])));
#else
    // elsewhere: plain stores, the length word last, as for a longer frame
    __builtin_memcpy(dst + SLOT_HDR, frame, padded ? LINE - SLOT_HDR : len);
    store_relaxed(reinterpret_cast<uint32_t *>(dst), len);
#endif
  }
  static constexpr uint64_t CTL_BYTES = 128;  // a ring's two index lines before its slots: tail at +0, head at +64 (producer and consumer on their own lines)

  unique_fd fd_;
  mapping map_;
  uint32_t slots_ = 0, slot_size_ = 0;
  uint32_t mask_ = 0;
  uint64_t stride_ = 0;
  uint8_t *rings_[2] = {nullptr, nullptr};  // inside map_ (a move keeps the mapping where it is)
  int out_ = 0;              // the ring this side produces
  uint32_t tail_ = 0;        // ours, of the outgoing ring
  uint32_t head_ = 0;        // ours, of the incoming ring
  uint32_t peer_head_ = 0;   // last checked consumer index of the outgoing ring
  uint32_t peer_tail_ = 0;   // last checked producer index of the incoming ring
  uint32_t tail_shown_ = 0;  // our tail as the consumer last saw it published
  uint32_t head_shown_ = 0;  // our head as the producer last saw it published
  uint32_t wait_seq_ = 0;      // our last wait number (either word: never 0)
  bool data_armed_ = false, room_armed_ = false;
  uint32_t data_kicked_ = 0;   // the consumer's wait number we last kicked for
  uint32_t room_kicked_ = 0;   // the producer's wait number we last kicked for
  bool broken_ = false;
};

}  // namespace nm
