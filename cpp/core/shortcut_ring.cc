#include "core/shortcut_ring.h"

#include <atomic>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "core/shm_atomic.h"

namespace nm {

namespace {
constexpr char MAGIC[8] = {'V', 'T', 'S', 'C', 'R', 'I', 'N', 'G'};
constexpr uint64_t HDR = 64;         // header, a cache line

bool pow2(uint32_t v) { return v && !(v & (v - 1)); }
}  // namespace

uint64_t ShortcutRing::bytes_for(uint32_t slots, uint32_t slot_size) {
  return HDR + 2 * (CTL_BYTES + uint64_t{slots} * stride_for(slot_size));
}

void ShortcutRing::cache_layout() {
  stride_ = stride_for(slot_size_);
  mask_ = slots_ - 1;
  rings_[0] = map_.data() + HDR;
  rings_[1] = rings_[0] + CTL_BYTES + uint64_t{slots_} * stride_;
}

Result<ShortcutRing> ShortcutRing::create(uint32_t slots, uint32_t slot_size) {
  if (!pow2(slots) || slots > SHORTCUT_RING_MAX_SLOTS)
    return check_fail(EINVAL, "shortcut ring of " + std::to_string(slots) + " slots", "give a power of two up to " + std::to_string(SHORTCUT_RING_MAX_SLOTS));
  if (slot_size < SHORTCUT_RING_MIN_SLOT || slot_size > SHORTCUT_RING_MAX_SLOT)
    return check_fail(EINVAL, "shortcut ring slot of " + std::to_string(slot_size) + " bytes",
                      "give " + std::to_string(SHORTCUT_RING_MIN_SLOT) + ".." + std::to_string(SHORTCUT_RING_MAX_SLOT));
  const uint64_t bytes = bytes_for(slots, slot_size);
  if (bytes > SHORTCUT_RING_MAX_BYTES) return check_fail(EINVAL, "shortcut channel of " + std::to_string(bytes) + " bytes", "fewer or smaller slots");
  ShortcutRing r;
  r.fd_.reset(::memfd_create("vale-ts-shortcut", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!r.fd_) return sys_fail("memfd_create", "shortcut channel");
  if (::ftruncate(r.fd_.get(), static_cast<off_t>(bytes)) < 0) return sys_fail("ftruncate", "shortcut channel");
  auto m = mapping::map_shared(r.fd_.get(), bytes, "shortcut channel");
  if (!m) return std::move(m).take_error();
  r.map_ = std::move(m).value();
  if (::fcntl(r.fd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) return sys_fail("fcntl(F_ADD_SEALS)", "shortcut channel");
  std::memcpy(r.map_.data(), MAGIC, sizeof MAGIC);
  const uint32_t geo[3] = {SHORTCUT_RING_VERSION, slots, slot_size};
  std::memcpy(r.map_.data() + 8, geo, sizeof geo);
  r.slots_ = slots;
  r.slot_size_ = slot_size;
  r.out_ = 0;
  r.cache_layout();
  return r;
}

Result<ShortcutRing> ShortcutRing::attach(unique_fd fd) {
  const int seals = ::fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0) return sys_fail("fcntl(F_GET_SEALS)", "shortcut channel from the peer", "the peer must send a memfd");
  if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
    return check_fail(EPERM, "shortcut channel from the peer is not sealed against resizing", "the peer must seal it (F_SEAL_SHRINK | F_SEAL_GROW)");
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return sys_fail("fstat", "shortcut channel from the peer");
  if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(HDR) || static_cast<uint64_t>(st.st_size) > SHORTCUT_RING_MAX_BYTES)
    return check_fail(EINVAL, "shortcut channel from the peer has an impossible size " + std::to_string(st.st_size));
  ShortcutRing r;
  auto m = mapping::map_shared(fd.get(), static_cast<size_t>(st.st_size), "shortcut channel from the peer");
  if (!m) return std::move(m).take_error();
  r.map_ = std::move(m).value();
  r.fd_ = std::move(fd);
  // the header is read once, into private memory: the peer may rewrite it later
  char magic[8];
  uint32_t geo[3];
  std::memcpy(magic, r.map_.data(), sizeof magic);
  std::memcpy(geo, r.map_.data() + 8, sizeof geo);
  if (std::memcmp(magic, MAGIC, sizeof MAGIC) != 0 || geo[0] != SHORTCUT_RING_VERSION)
    return check_fail(EINVAL, "shortcut channel from the peer has another magic or version", "both vale-ts must be of one version");
  if (!pow2(geo[1]) || geo[1] > SHORTCUT_RING_MAX_SLOTS || geo[2] < SHORTCUT_RING_MIN_SLOT || geo[2] > SHORTCUT_RING_MAX_SLOT ||
      bytes_for(geo[1], geo[2]) != static_cast<uint64_t>(st.st_size))
    return check_fail(EINVAL, "shortcut channel from the peer has an impossible geometry (" + std::to_string(geo[1]) + " slots of " +
                                  std::to_string(geo[2]) + " bytes in " + std::to_string(st.st_size) + ")");
  r.slots_ = geo[1];
  r.slot_size_ = geo[2];
  r.out_ = 1;
  r.cache_layout();
  return r;
}

ShortcutRing::Push ShortcutRing::push(const uint8_t *frame, uint32_t len) {
  if (broken_) return Push::Broken;
  if (len > slot_size_) return Push::TooLong;
  // the consumer's index read and checked at every push (the batched
  // forms read it only when our copy says full)
  if (!refresh_head()) return broken_ ? Push::Broken : Push::Full;
  push_unpublished(frame, len);
  publish();
  return Push::Ok;
}

bool ShortcutRing::refresh_head() {
  const uint32_t h = load_acquire(reinterpret_cast<const uint32_t *>(ring(out_) + 64));
  // the consumer's index only moves forward, and never past what we published
  if (h - peer_head_ > tail_ - peer_head_) {
    broken_ = true;
    return false;
  }
  peer_head_ = h;
  return tail_ - h < slots_;
}

void ShortcutRing::publish() {
  if (broken_ || tail_shown_ == tail_) return;
#if defined(__x86_64__)
  _mm_sfence();  // streamed slots (stream_slot) are not ordered by the release below
#endif
  store_release(reinterpret_cast<uint32_t *>(ring(out_)), tail_);
  tail_shown_ = tail_;
}

void ShortcutRing::publish_head() {
  if (broken_ || head_shown_ == head_) return;
  store_release(reinterpret_cast<uint32_t *>(ring(1 - out_) + 64), head_);
  head_shown_ = head_;
}

bool ShortcutRing::refresh_tail() {
  publish_head();  // before the fence below: the producer then sees it, or we see its tail
  // our last head store before this tail load (see the header: wakeups)
  full_fence();
  const uint32_t t = load_acquire(reinterpret_cast<const uint32_t *>(ring(1 - out_)));
  // the producer's index only moves forward, at most a ring ahead of ours
  if (t - peer_tail_ > slots_ - (peer_tail_ - head_)) {
    broken_ = true;
    return false;
  }
  peer_tail_ = t;
  return t != head_;
}

uint32_t ShortcutRing::published_in() {
  if (broken_) return head_;
  const uint32_t t = load_acquire(reinterpret_cast<const uint32_t *>(ring(1 - out_)));
  // the producer's index only moves forward, at most a ring ahead of ours
  if (t - peer_tail_ > slots_ - (peer_tail_ - head_)) {
    broken_ = true;
    return head_;
  }
  peer_tail_ = t;
  return t;
}

void ShortcutRing::pop() {
  if (broken_ || head_ == peer_tail_) return;
  head_++;
  store_release(reinterpret_cast<uint32_t *>(ring(1 - out_) + 64), head_);
  head_shown_ = head_;
}

namespace {
constexpr uint64_t WAIT_WORD = 4;  // after the index, on its owner's line
}

bool ShortcutRing::arm_data() {
  if (broken_) return false;
  if (++wait_seq_ == 0) wait_seq_ = 1;
  data_armed_ = true;
  store_relaxed(reinterpret_cast<uint32_t *>(ring(1 - out_) + 64 + WAIT_WORD), wait_seq_);
  const uint8_t *f;
  uint32_t l;
  // peek() looks at the producer's tail after a full fence when our copy
  // says empty: the fence orders the store above before that load
  if (peer_tail_ != head_) return true;
  return peek(f, l) || broken_;
}

void ShortcutRing::disarm_data() {
  if (!data_armed_ || broken_) return;
  data_armed_ = false;
  store_relaxed(reinterpret_cast<uint32_t *>(ring(1 - out_) + 64 + WAIT_WORD), 0);
}

bool ShortcutRing::data_kick_due() {
  if (broken_) return false;
  full_fence();  // our tail store before the consumer's wait word
  const uint32_t w = load_relaxed(reinterpret_cast<const uint32_t *>(ring(out_) + 64 + WAIT_WORD));
  if (w == 0 || w == data_kicked_) return false;
  data_kicked_ = w;
  return true;
}

bool ShortcutRing::arm_room() {
  if (broken_) return false;
  if (++wait_seq_ == 0) wait_seq_ = 1;
  room_armed_ = true;
  store_relaxed(reinterpret_cast<uint32_t *>(ring(out_) + WAIT_WORD), wait_seq_);
  full_fence();  // our wait word before the consumer's head
  const uint32_t h = load_acquire(reinterpret_cast<const uint32_t *>(ring(out_) + 64));
  if (h - peer_head_ > tail_ - peer_head_) {
    broken_ = true;
    return true;
  }
  peer_head_ = h;
  return tail_ - h < slots_;
}

void ShortcutRing::disarm_room() {
  if (!room_armed_ || broken_) return;
  room_armed_ = false;
  store_relaxed(reinterpret_cast<uint32_t *>(ring(out_) + WAIT_WORD), 0);
}

bool ShortcutRing::room_kick_due() {
  if (broken_) return false;
  full_fence();  // our head store before the producer's wait word
  const uint32_t w = load_relaxed(reinterpret_cast<const uint32_t *>(ring(1 - out_) + WAIT_WORD));
  if (w == 0 || w == room_kicked_) return false;
  room_kicked_ = w;
  return true;
}

uint32_t ShortcutRing::unconsumed() {
  if (broken_) return 0;
  // our last tail store before this head load (see the header: wakeups)
  full_fence();
  const uint32_t h = load_acquire(reinterpret_cast<const uint32_t *>(ring(out_) + 64));
  if (h - peer_head_ > tail_ - peer_head_) {
    broken_ = true;
    return 0;
  }
  peer_head_ = h;
  return tail_ - h;
}

}  // namespace nm
