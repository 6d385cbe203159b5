// pkt-gen-ts datapath: the per-batch tx fill and rx accounting loops, the pong
// echo, CPU pinning, and the C++ reference loops for the benchmark.
//
// TypeScript drives the loop (sync, wait, counters, rate, stop) and calls in
// here once per batch; no frame is touched per packet from JS on these paths.
//
// Every function takes the region as an ArrayBuffer and the byte offset of a
// netmap_ring inside it. The region is shared with another process (the
// switch, the pipe peer, the kernel), so every value read from it (ring
// geometry, head/tail, buffer indices, lengths) is read once into a local,
// checked against the ArrayBuffer's extent, and only then used: a hostile or
// buggy peer can make a call fail with an error, never make it touch memory
// outside the region.
#include <sched.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "napi/napi_util.h"
#include "abi/netmap_abi.h"
#include "core/clock.h"
#include "core/region.h"
#include "core/shm_atomic.h"
#include "tools/tools.h"

namespace nm {

namespace {

inline uint16_t load16(const uint16_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline int64_t load64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

inline void put16(uint8_t *p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put32(uint8_t *p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v & 0xffff);
}
// A short pause between two polls of a ring the other side has not moved
// yet, so a tight spin does not keep stealing the cache lines it shares
// with that side.
inline void backoff() {
  for (int i = 0; i < 32; i++) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ __volatile__("" ::: "memory");
#endif
  }
}

inline uint32_t get16(const uint8_t *p) { return (static_cast<uint32_t>(p[0]) << 8) | p[1]; }
inline uint32_t get32(const uint8_t *p) { return (get16(p) << 16) | get16(p + 2); }

// Ones'-complement fold of a wide sum to 16 bits.
inline uint32_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

// One netmap ring inside a region, its geometry read once and checked.
struct RingView {
  uint8_t *base = nullptr;  // the region
  netmap_ring *ring = nullptr;
  netmap_slot *slots = nullptr;
  uint32_t n = 0;           // num_slots
  uint32_t buf_size = 0;
  uint64_t buf_base = 0;    // byte offset of buffer 0 in the region
  uint32_t buf_limit = 0;   // buffer indices in [2, buf_limit) are usable
  uint8_t *buf(uint32_t idx) const { return base + buf_base + static_cast<uint64_t>(idx) * buf_size; }
  bool buf_ok(uint32_t idx) const { return idx >= 2 && idx < buf_limit; }
  uint32_t head() const { return load_relaxed(&ring->head); }
  uint32_t tail() const { return load_acquire(&ring->tail); }
  void publish(uint32_t h) {
    store_release(&ring->head, h);
    store_release(&ring->cur, h);
  }
};

Napi::ArrayBuffer arg_buffer(const Napi::CallbackInfo &info, size_t i) {
  if (info.Length() <= i || !info[i].IsArrayBuffer())
    throw Napi::TypeError::New(info.Env(), "memory must be the port's region (an ArrayBuffer)");
  return info[i].As<Napi::ArrayBuffer>();
}

// Reads the ring header at `ofs` in the region and checks it fits. Throws a
// RangeError naming what was wrong.
RingView view_ring(Napi::Env env, Napi::ArrayBuffer mem, double ofs_d) {
  uint8_t *base = static_cast<uint8_t *>(mem.Data());
  const uint64_t size = mem.ByteLength();
  // range first: converting an out-of-range double to an integer is undefined
  if (!(ofs_d >= 0 && ofs_d <= static_cast<double>(size)) || ofs_d != static_cast<double>(static_cast<uint64_t>(ofs_d)) ||
      static_cast<uint64_t>(ofs_d) % 8 != 0 || static_cast<uint64_t>(ofs_d) + sizeof(netmap_ring) > size || !base)
    throw Napi::RangeError::New(env, "ring offset " + std::to_string(ofs_d) + " does not hold a netmap_ring inside the " +
                                         std::to_string(size) + "-byte region");
  const uint64_t ofs = static_cast<uint64_t>(ofs_d);
  RingView v;
  v.base = base;
  v.ring = reinterpret_cast<netmap_ring *>(base + ofs);
  v.slots = ring_slots(v.ring);
  v.n = load_relaxed(&v.ring->num_slots);
  v.buf_size = load_relaxed(&v.ring->nr_buf_size);
  const int64_t bofs = load64(&v.ring->buf_ofs);
  if (v.n < 2 || v.n > (size - ofs - sizeof(netmap_ring)) / sizeof(netmap_slot))
    throw Napi::RangeError::New(env, "ring at offset " + std::to_string(ofs) + " claims " + std::to_string(v.n) +
                                         " slots, which do not fit in the region");
  if (v.buf_size == 0 || v.buf_size > MAX_BUF_SIZE)
    throw Napi::RangeError::New(env, "ring at offset " + std::to_string(ofs) + " has buffer size " +
                                         std::to_string(v.buf_size) + " (expected 1.." + std::to_string(MAX_BUF_SIZE) + ")");
  // buf_ofs is relative to the ring and may be negative in a kernel region
  const int64_t bb = static_cast<int64_t>(ofs) + bofs;
  if (bofs < -static_cast<int64_t>(size) || bofs > static_cast<int64_t>(size) || bb < 0 || static_cast<uint64_t>(bb) > size)
    throw Napi::RangeError::New(env, "ring at offset " + std::to_string(ofs) + " places its buffers outside the region");
  v.buf_base = static_cast<uint64_t>(bb);
  const uint64_t lim = (size - v.buf_base) / v.buf_size;
  v.buf_limit = lim > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(lim);
  return v;
}

Napi::Error bad_index(Napi::Env env, const char *what, uint32_t i, uint32_t n) {
  return coded_error(env, std::string("ring ") + what + " " + std::to_string(i) + " is outside the ring (" +
                              std::to_string(n) + " slots): the ring was changed by someone else", EINVAL);
}

// xorshift64*: a fast generator for addresses, ports and sizes (no crypto).
struct Rng {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
  // uniform-ish in [lo, hi] (modulo bias is irrelevant here)
  uint32_t range(uint32_t lo, uint32_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi) - lo + 1;
    return lo + static_cast<uint32_t>((next() >> 16) % span);
  }
};

// A float64 counter array from JS (may live on a SharedArrayBuffer, read by
// the reporting thread). Held by reference so its storage stays alive.
struct Counters {
  Napi::Reference<Napi::Float64Array> ref;
  double *d = nullptr;
  size_t n = 0;
  void bind(Napi::Env env, Napi::Value v, size_t need) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      throw Napi::TypeError::New(env, "stats must be a Float64Array");
    Napi::Float64Array a = v.As<Napi::Float64Array>();
    if (a.ElementLength() < need) throw Napi::RangeError::New(env, "stats needs " + std::to_string(need) + " elements");
    ref = Napi::Persistent(a);
    d = a.Data();
    n = a.ElementLength();
  }
};

uint32_t opt_num(Napi::Object o, const char *key, uint32_t dflt) { return opt_u32(o, key, dflt); }
bool opt_bool(Napi::Object o, const char *key) {
  Napi::Value v = o.Get(key);
  return !v.IsUndefined() && v.ToBoolean();
}

// Address/port walk of one side (source or destination) of the frame.
struct Side {
  uint32_t a0 = 0, a1 = 0;  // address (IPv4) or the varied 16-bit group (IPv6), inclusive
  uint32_t p0 = 0, p1 = 0;  // ports, inclusive
  bool random = false;
  uint32_t a = 0, p = 0;    // current values
};

// ---------------------------------------------------------------------------
// Tx: a frame template written into tx buffers, plus per-frame changes.

class PktgenTx : public Napi::ObjectWrap<PktgenTx> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PktgenTx",
                       {InstanceMethod("txFill", &PktgenTx::TxFill), InstanceMethod("benchLoop", &PktgenTx::BenchLoop)});
  }

  // new PktgenTx(template: Uint8Array, opts)
  //   opts: stats (Float64Array: [0] frames, [1] bytes, [2] events),
  //   af 4|6, l3, l4 (header offsets; 0 = no per-frame rewriting possible),
  //   lenMin, lenMax (random length in [lenMin, lenMax) when lenMin < lenMax),
  //   seq (bool), seqStart, src/dst {a0,a1,p0,p1,random}, group / dstGroup
  //   (the IPv6 16-bit word each side varies),
  //   frags, fragSize, fragGroup (bool: each slot a whole frame, txseq -F),
  //   alwaysCopy, rubbish, udpCsum (bool), seed
  PktgenTx(const Napi::CallbackInfo &info) : Napi::ObjectWrap<PktgenTx>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsObject())
      throw Napi::TypeError::New(env, "PktgenTx(template: Uint8Array, opts)");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_uint8_array) throw Napi::TypeError::New(env, "template must be a Uint8Array");
    Napi::Uint8Array t = ta.As<Napi::Uint8Array>();
    tpl_.assign(t.Data(), t.Data() + t.ElementLength());
    if (tpl_.empty() || tpl_.size() > 65536) throw Napi::RangeError::New(env, "template must hold 1..65536 bytes");
    Napi::Object o = info[1].As<Napi::Object>();
    stats_.bind(env, o.Get("stats"), 3);
    af_ = opt_num(o, "af", 4);
    l3_ = opt_num(o, "l3", 14);
    l4_ = opt_num(o, "l4", 0);
    len_min_ = opt_num(o, "lenMin", static_cast<uint32_t>(tpl_.size()));
    len_max_ = opt_num(o, "lenMax", static_cast<uint32_t>(tpl_.size()));
    seq_on_ = opt_bool(o, "seq");
    seq_ = opt_num(o, "seqStart", 0);
    frags_ = std::max(1u, opt_num(o, "frags", 1));
    frag_size_ = opt_num(o, "fragSize", 0);
    frag_group_ = opt_bool(o, "fragGroup");
    always_copy_ = opt_bool(o, "alwaysCopy");
    rubbish_ = opt_bool(o, "rubbish");
    udp_csum_ = opt_bool(o, "udpCsum");
    group_ = opt_num(o, "group", 7);
    dgroup_ = opt_num(o, "dstGroup", group_);
    uint32_t seed = opt_num(o, "seed", 1);
    rng_.s ^= (static_cast<uint64_t>(seed) << 32) | (seed ^ 0x5bd1e995u);
    for (int i = 0; i < 4; i++) rng_.next();
    read_side(o, "src", &src_);
    read_side(o, "dst", &dst_);
    random_len_ = len_min_ < len_max_;
    if (len_max_ > tpl_.size() || len_min_ > len_max_ || len_min_ == 0)
      throw Napi::RangeError::New(env, "lenMin/lenMax must satisfy 1 <= lenMin <= lenMax <= template length");
    if (frags_ > 64) throw Napi::RangeError::New(env, "frags must be 1..64");
    if ((frags_ == 1 || frag_group_) && tpl_.size() > 65535)
      throw Napi::RangeError::New(env, "a frame in one slot holds at most 65535 bytes (slot length is 16 bits)");
    const bool addr_walk = src_.random || dst_.random || src_.a0 != src_.a1 || src_.p0 != src_.p1 ||
                           dst_.a0 != dst_.a1 || dst_.p0 != dst_.p1;
    per_frame_ = addr_walk || seq_on_ || random_len_;
    if (per_frame_) Prepare(env);
    if (frags_ > 1 && !frag_group_) {
      if (frag_size_ == 0 || static_cast<uint64_t>(frag_size_) * (frags_ - 1) >= tpl_.size())
        throw Napi::RangeError::New(env, "fragSize must leave a non-empty last fragment");
      if (random_len_) throw Napi::RangeError::New(env, "random lengths cannot be split into fragments");
      if (per_frame_ && frag_size_ < hdr_end_)
        throw Napi::RangeError::New(env, "the first fragment must hold every rewritten header field (" +
                                             std::to_string(hdr_end_) + " bytes)");
    }
  }

 private:
  void read_side(Napi::Object o, const char *key, Side *s) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return;
    if (!v.IsObject()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be an object");
    Napi::Object so = v.As<Napi::Object>();
    s->a0 = opt_num(so, "a0", 0);
    s->a1 = opt_num(so, "a1", s->a0);
    s->p0 = opt_num(so, "p0", 0);
    s->p1 = opt_num(so, "p1", s->p0);
    s->random = opt_bool(so, "random");
    if (s->a1 < s->a0 || s->p1 < s->p0 || s->p1 > 0xffff || (af_ == 6 && s->a1 > 0xffff))
      throw Napi::RangeError::New(o.Env(), std::string(key) + ": bad range");
    s->a = s->a0;
    s->p = s->p0;
  }

  // Precomputes the checksum pieces that do not change per frame: the IPv4
  // header without length/checksum/addresses, and prefix sums of the UDP
  // header+payload with the rewritten fields zeroed, so that each frame's
  // checksums cost a handful of additions whatever its length.
  void Prepare(Napi::Env env) {
    const uint32_t L = static_cast<uint32_t>(tpl_.size());
    const uint32_t ip_min = af_ == 4 ? 20 : 40;
    if (af_ != 4 && af_ != 6) throw Napi::RangeError::New(env, "af must be 4 or 6");
    if (l4_ < l3_ + ip_min || l4_ + 8 > len_min_)
      throw Napi::RangeError::New(env, "per-frame rewriting needs an Ethernet+IP+UDP frame of at least " +
                                           std::to_string(l4_ + 8) + " bytes");
    if (seq_on_ && l4_ + 12 > len_min_)
      throw Napi::RangeError::New(env, "a sequence number needs frames of at least " + std::to_string(l4_ + 12) + " bytes");
    if (af_ == 6 && (group_ > 7 || dgroup_ > 7)) throw Napi::RangeError::New(env, "group and dstGroup must be 0..7");
    hdr_end_ = l4_ + (seq_on_ ? 12 : 8);
    std::vector<uint8_t> z(tpl_);
    // template's own UDP length (used when lengths are fixed)
    tpl_ulen_ = get16(&z[l4_ + 4]);
    if (!random_len_ && (tpl_ulen_ < 8 + (seq_on_ ? 4u : 0u) || l4_ + tpl_ulen_ > L))
      throw Napi::RangeError::New(env, "the template's UDP length field does not match the frame");
    if (af_ == 4) {
      src_.a = get32(&z[l3_ + 12]);
      dst_.a = get32(&z[l3_ + 16]);
      tpl_totlen_ = get16(&z[l3_ + 2]);
      std::memset(&z[l3_ + 2], 0, 2);
      std::memset(&z[l3_ + 10], 0, 2);
      std::memset(&z[l3_ + 12], 0, 8);
      uint64_t s = 0;
      for (uint32_t i = l3_; i + 1 < l4_; i += 2) s += get16(&z[i]);
      ip_base_ = s;
    } else {
      // every address word but the varied group counts as fixed
      src_.a = get16(&z[l3_ + 8 + 2 * group_]);
      dst_.a = get16(&z[l3_ + 24 + 2 * dgroup_]);
      uint64_t s = 0;
      for (uint32_t w = 0; w < 8; w++) {
        if (w != group_) s += get16(&z[l3_ + 8 + 2 * w]);
        if (w != dgroup_) s += get16(&z[l3_ + 24 + 2 * w]);
      }
      v6_addr_fixed_ = s;
    }
    // A walk starts from the range start (which the template carries); a
    // random side sends the template's own address and port first, then
    // draws, as pkt-gen's update_addresses runs after each copy.
    for (Side *sd : {&src_, &dst_}) {
      const bool is_src = sd == &src_;
      if (sd->random) {
        sd->p = get16(&z[l4_ + (is_src ? 0 : 2)]);
      } else if (sd->a0 != sd->a1) {
        sd->a = sd->a0;
      } else {
        sd->a0 = sd->a1 = sd->a;  // a single address: keep the template's
      }
    }
    std::memset(&z[l4_], 0, 8);
    if (seq_on_) std::memset(&z[l4_ + 8], 0, 4);
    const uint32_t span = L - l4_;
    psum_.assign(span + 1, 0);
    uint32_t acc = 0;  // at most 32768 words of 0xffff: fits in 32 bits
    for (uint32_t k = 0; k < span; k++) {
      acc += (k & 1) ? z[l4_ + k] : static_cast<uint32_t>(z[l4_ + k]) << 8;
      psum_[k + 1] = acc;
    }
  }

  // Writes the rewritten header fields of one frame of `len` bytes into `b`.
  void Rewrite(uint8_t *b, uint32_t len) {
    const uint32_t ulen = random_len_ ? len - l4_ : tpl_ulen_;
    uint64_t s = psum_[ulen];
    s += src_.p + dst_.p + ulen;  // UDP header
    s += 17 + ulen;               // pseudo-header protocol and length
    if (seq_on_) s += (seq_ >> 16) + (seq_ & 0xffff);
    if (af_ == 4) {
      s += (src_.a >> 16) + (src_.a & 0xffff) + (dst_.a >> 16) + (dst_.a & 0xffff);
      const uint32_t tot = random_len_ ? len - l3_ : tpl_totlen_;
      const uint64_t is = ip_base_ + tot + (src_.a >> 16) + (src_.a & 0xffff) + (dst_.a >> 16) + (dst_.a & 0xffff);
      put16(b + l3_ + 2, tot);
      put16(b + l3_ + 10, ~fold(is) & 0xffff);
      put32(b + l3_ + 12, src_.a);
      put32(b + l3_ + 16, dst_.a);
    } else {
      s += v6_addr_fixed_ + src_.a + dst_.a;
      if (random_len_) put16(b + l3_ + 4, ulen);
      put16(b + l3_ + 8 + 2 * group_, src_.a);
      put16(b + l3_ + 24 + 2 * dgroup_, dst_.a);
    }
    put16(b + l4_, src_.p);
    put16(b + l4_ + 2, dst_.p);
    put16(b + l4_ + 4, ulen);
    if (seq_on_) put32(b + l4_ + 8, seq_);
    if (udp_csum_) {
      uint32_t c = ~fold(s) & 0xffff;
      put16(b + l4_ + 6, c == 0 ? 0xffff : c);
    }
  }

  // pkt-gen's update_addresses: source port, then source address, then
  // destination port, then destination address, like an odometer; a random
  // side is redrawn every frame.
  void Advance() {
    if (seq_on_) seq_++;
    if (src_.random) {
      src_.a = rng_.range(src_.a0, src_.a1);
      src_.p = rng_.range(src_.p0, src_.p1);
    } else {
      if (src_.p < src_.p1) {
        src_.p++;
        return;
      }
      src_.p = src_.p0;
      if (src_.a < src_.a1) {
        src_.a++;
        return;
      }
      src_.a = src_.a0;
    }
    if (dst_.random) {
      dst_.a = rng_.range(dst_.a0, dst_.a1);
      dst_.p = rng_.range(dst_.p0, dst_.p1);
    } else {
      if (dst_.p < dst_.p1) {
        dst_.p++;
        return;
      }
      dst_.p = dst_.p0;
      if (dst_.a < dst_.a1) {
        dst_.a++;
        return;
      }
      dst_.a = dst_.a0;
    }
  }

  bool holds_template(uint32_t idx) const {
    const size_t w = idx >> 6;
    return w < bitmap_.size() && (bitmap_[w] >> (idx & 63) & 1);
  }
  void mark(uint32_t idx) {
    const size_t w = idx >> 6;
    if (w >= bitmap_.size()) bitmap_.resize(w + 1, 0);
    bitmap_[w] |= 1ull << (idx & 63);
  }

  // Whether a buffer must get the whole template again. The bitmap says which
  // buffers (by index) hold it already: the tx buffers of vale and kernel
  // ports stay in their ring, so after one lap only the fields that change
  // per frame are written. A pipe is different: txsync swaps our buffer for
  // the peer's, which the peer may have written anything into, and marks the
  // slot NS_BUF_CHANGED; checking that content would cost as much as copying
  // it, so for pipes (alwaysCopy, set by the caller) and for any slot marked
  // NS_BUF_CHANGED we always copy. A different region (another port) resets
  // the bitmap.
  bool need_copy(uint32_t idx, uint16_t flags) const {
    return always_copy_ || (flags & NS_BUF_CHANGED) || !holds_template(idx);
  }

  // Fills up to `max` frames from head; returns frames written (0 when the
  // ring has no room). Throws (after publishing what was written) on a slot
  // whose buffer index is invalid.
  uint32_t Fill(Napi::Env env, Napi::ArrayBuffer mem, RingView &v, uint32_t max) {
    if (mem.Data() != region_ || mem.ByteLength() != region_size_) {
      region_ = mem.Data();
      region_size_ = mem.ByteLength();
      bitmap_.clear();
    }
    const uint32_t L = static_cast<uint32_t>(tpl_.size());
    const bool split = frags_ > 1 && !frag_group_;
    if ((split ? frag_size_ : L) > v.buf_size || (split && L - frag_size_ * (frags_ - 1) > v.buf_size))
      throw coded_error(env, "frame of " + std::to_string(split ? frag_size_ : L) + " bytes does not fit the ring's " +
                                 std::to_string(v.buf_size) + "-byte buffers", EMSGSIZE);
    const uint32_t N = v.n;
    uint32_t h = v.head();
    const uint32_t t = v.tail();
    if (h >= N) throw bad_index(env, "head", h, N);
    if (t >= N) throw bad_index(env, "tail", t, N);
    const uint32_t space = ring_dist(t, h, N);
    const uint32_t per = split ? frags_ : 1;
    uint32_t frames = std::min(space / per, max);
    if (frag_group_ && frags_ > 1) frames -= frames % frags_;
    uint64_t bytes = 0;
    const uint8_t *tp = tpl_.data();
    uint32_t done = 0;
    const char *err = nullptr;
    uint32_t bad_slot = 0, bad_idx = 0;
    for (; done < frames; done++) {
      if (!split) {
        netmap_slot *s = &v.slots[h];
        const uint32_t idx = load_relaxed(&s->buf_idx);
        if (!v.buf_ok(idx)) {
          err = "buffer index";
          bad_slot = h;
          bad_idx = idx;
          break;
        }
        uint8_t *b = v.buf(idx);
        const uint32_t len = random_len_ ? len_min_ + static_cast<uint32_t>((rng_.next() >> 16) % (len_max_ - len_min_)) : L;
        if (!rubbish_) {
          if (need_copy(idx, load16(&s->flags))) {
            std::memcpy(b, tp, L);
            if (!always_copy_) mark(idx);
          }
          if (per_frame_) Rewrite(b, len);
        }
        s->len = static_cast<uint16_t>(len);
        s->flags = (frag_group_ && frags_ > 1 && (done % frags_) != frags_ - 1) ? NS_MOREFRAG : 0;
        bytes += len;
        h = ring_next(h, N);
      } else {
        // one frame over `frags_` slots: frag_size_ bytes each, the rest last
        uint32_t hh = h;
        uint32_t off = 0;
        bool ok = true;
        for (uint32_t k = 0; k < frags_; k++) {
          netmap_slot *s = &v.slots[hh];
          const uint32_t idx = load_relaxed(&s->buf_idx);
          if (!v.buf_ok(idx)) {
            err = "buffer index";
            bad_slot = hh;
            bad_idx = idx;
            ok = false;
            break;
          }
          const uint32_t flen = k + 1 < frags_ ? frag_size_ : L - off;
          uint8_t *b = v.buf(idx);
          if (!rubbish_) {
            std::memcpy(b, tp + off, flen);
            if (k == 0 && per_frame_) Rewrite(b, L);
          }
          s->len = static_cast<uint16_t>(flen);
          s->flags = k + 1 < frags_ ? NS_MOREFRAG : 0;
          off += flen;
          hh = ring_next(hh, N);
        }
        if (!ok) break;  // the partial frame is not published
        bytes += L;
        h = hh;
      }
      if (per_frame_) Advance();
    }
    if (done) v.publish(h);
    stats_.d[0] += done;
    stats_.d[1] += static_cast<double>(bytes);
    if (done) stats_.d[2] += 1;
    if (err)
      throw coded_error(env, std::string("tx slot ") + std::to_string(bad_slot) + " has " + err + " " +
                                 std::to_string(bad_idx) + ", outside the region's buffers [2, " +
                                 std::to_string(v.buf_limit) + ")", EINVAL);
    return done;
  }

  // txFill(memory, ringOffset, maxFrames) -> frames written
  Napi::Value TxFill(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::ArrayBuffer mem = arg_buffer(info, 0);
    if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "ringOffset must be a number");
    RingView v = view_ring(env, mem, info[1].As<Napi::Number>().DoubleValue());
    const uint32_t max = arg_u32(info, 2, "maxFrames");
    return Napi::Number::New(env, Fill(env, mem, v, max));
  }

  // benchLoop(memory, ringOffset, count, batch, sync) -> {frames, ns}: the C++
  // reference for the benchmark: the same fill as txFill in a tight native
  // loop, calling `sync()` (the port's txsync) after each batch, then
  // waiting until the ring has drained.
  Napi::Value BenchLoop(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::ArrayBuffer mem = arg_buffer(info, 0);
    if (info.Length() < 5 || !info[1].IsNumber() || !info[2].IsNumber() || !info[4].IsFunction())
      throw Napi::TypeError::New(env, "benchLoop(memory, ringOffset, count, batch, sync)");
    RingView v = view_ring(env, mem, info[1].As<Napi::Number>().DoubleValue());
    const double count = info[2].As<Napi::Number>().DoubleValue();
    const uint32_t batch = std::max(1u, arg_u32(info, 3, "batch"));
    Napi::Function sync = info[4].As<Napi::Function>();
    uint64_t done = 0;
    const uint64_t total = count > 0 ? static_cast<uint64_t>(std::min(count, 9007199254740992.0)) : 0;
    const int64_t t0 = mono_ns();
    while (done < total) {
      const uint64_t left = total - done;
      const uint32_t m = Fill(env, mem, v, left < batch ? static_cast<uint32_t>(left) : batch);
      done += m;
      if (!m) backoff();
      sync.Call({});
      if (env.IsExceptionPending()) return env.Undefined();
    }
    for (;;) {
      const uint32_t h = v.head(), t = v.tail();
      if (h >= v.n || t >= v.n || ring_next(t, v.n) == h) break;
      sync.Call({});
      if (env.IsExceptionPending()) return env.Undefined();
    }
    const int64_t t1 = mono_ns();
    Napi::Object o = Napi::Object::New(env);
    o.Set("frames", static_cast<double>(done));
    o.Set("ns", static_cast<double>(t1 - t0));
    return o;
  }

  // the next sequence number txseq will send

  std::vector<uint8_t> tpl_;
  Counters stats_;
  uint32_t af_ = 4, l3_ = 14, l4_ = 0, group_ = 7, dgroup_ = 7;
  uint32_t len_min_ = 0, len_max_ = 0;
  bool random_len_ = false, per_frame_ = false, seq_on_ = false;
  uint32_t seq_ = 0;
  uint32_t frags_ = 1, frag_size_ = 0;
  bool frag_group_ = false, always_copy_ = false, rubbish_ = false, udp_csum_ = false;
  uint32_t hdr_end_ = 0, tpl_ulen_ = 0, tpl_totlen_ = 0;
  uint64_t ip_base_ = 0, v6_addr_fixed_ = 0;
  std::vector<uint32_t> psum_;
  Side src_, dst_;
  Rng rng_;
  std::vector<uint64_t> bitmap_;
  const void *region_ = nullptr;
  size_t region_size_ = 0;
};

// ---------------------------------------------------------------------------
// Rx: count (and optionally check) what arrived, release it.

// rx rings a counter keeps state for: netmap counts them in 16 bits
constexpr uint32_t MAX_RX_RINGS = 65536;
enum RxEvent : uint32_t { EV_GAP = 1, EV_OUT_OF_ORDER = 2, EV_FRAGS = 3 };

class PktgenRx : public Napi::ObjectWrap<PktgenRx> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PktgenRx",
                       {InstanceMethod("rxCount", &PktgenRx::RxCount), InstanceMethod("benchLoop", &PktgenRx::BenchLoop)});
  }

  // new PktgenRx(opts): stats (Float64Array: [0] packets, [1] bytes,
  // [2] events, [3] sequence gaps, [4] out of order, [5] frag mismatches),
  // events (Uint32Array: [0] = events recorded by the last call, then
  // triples type, expected, found), seq (bool: check txseq numbers),
  // hdrLen (virtio-net header bytes before each frame), rings (the rx
  // rings counted, each with its own sequence and chain state; default 1)
  PktgenRx(const Napi::CallbackInfo &info) : Napi::ObjectWrap<PktgenRx>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "PktgenRx(opts)");
    Napi::Object o = info[0].As<Napi::Object>();
    stats_.bind(env, o.Get("stats"), 6);
    seq_on_ = opt_bool(o, "seq");
    hdr_ = opt_num(o, "hdrLen", 0);
    // a slot holds at most 65535 bytes; a larger value would also wrap the
    // `hdr_ + 14` length check in Count() and read far outside the buffer
    if (hdr_ > 65535) throw Napi::RangeError::New(env, "hdrLen must be 0..65535");
    const uint32_t rings = opt_num(o, "rings", 1);
    if (rings < 1 || rings > MAX_RX_RINGS) throw Napi::RangeError::New(env, "rings must be 1..65536");
    rings_.assign(rings, RingSeq{});
    Napi::Value ev = o.Get("events");
    if (!ev.IsUndefined()) {
      if (!ev.IsTypedArray() || ev.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
        throw Napi::TypeError::New(env, "events must be a Uint32Array");
      Napi::Uint32Array a = ev.As<Napi::Uint32Array>();
      events_ref_ = Napi::Persistent(a);
      events_ = a.Data();
      events_cap_ = a.ElementLength() > 0 ? static_cast<uint32_t>((a.ElementLength() - 1) / 3) : 0;
      if (a.ElementLength() == 0) events_ = nullptr;
    }
  }

 private:
  void record(uint32_t type, uint32_t exp, uint32_t found) {
    if (!events_ || events_[0] >= events_cap_) return;
    uint32_t *e = events_ + 1 + 3 * events_[0];
    e[0] = type;
    e[1] = exp;
    e[2] = found;
    events_[0]++;
  }

  // Consumes [head, tail) up to `max` packets; returns them. A packet is
  // what pkt-gen counts: for rx (receive_packets) a complete one, the slot
  // without NS_MOREFRAG; for rxseq (rxseq_body) every slot, as txseq counts
  // the slots it sends.
  uint32_t Count(Napi::Env env, RingView &v, uint32_t max, uint32_t ring_index) {
    const uint32_t N = v.n;
    const uint32_t h0 = v.head();
    const uint32_t t = v.tail();
    if (h0 >= N) throw bad_index(env, "head", h0, N);
    if (t >= N) throw bad_index(env, "tail", t, N);
    const uint32_t avail = ring_dist(t, h0, N);
    uint32_t h = h0;
    uint32_t pkts = 0;
    uint64_t bytes = 0;
    RingSeq &rs = rings_[ring_index];
    for (uint32_t i = 0; i < avail && pkts < max; i++) {
      const netmap_slot *s = &v.slots[h];
      const uint32_t len = load16(&s->len);
      const uint16_t fl = load16(&s->flags);
      bytes += len;
      rs.frags++;
      if (seq_on_) pkts++;
      if (!(fl & NS_MOREFRAG)) {
        if (!seq_on_) pkts++;
        if (seq_on_) {
          if (first_packet_) {
            first_packet_ = false;
          } else if (rs.frags != frags_exp_) {
            stats_.d[5] += 1;
            record(EV_FRAGS, frags_exp_, rs.frags);
          }
          frags_exp_ = rs.frags;
        }
        rs.frags = 0;
      }
      if (seq_on_) {
        const uint32_t idx = load_relaxed(&s->buf_idx);
        if (v.buf_ok(idx) && len <= v.buf_size && len >= hdr_ + 14) {
          const uint8_t *p = v.buf(idx) + hdr_;
          const uint32_t flen = len - hdr_;
          // pkt-gen reads the first 4 payload bytes of a UDP frame built
          // for the frame's address family (42 for IPv4, 62 otherwise)
          const uint32_t off = get16(p + 12) == 0x0800 ? 42 : 62;
          if (flen >= off + 4) {
            const uint32_t seq = get32(p + off);
            if (!rs.seen) {
              rs.seen = true;
            } else if (seq != rs.exp) {
              const uint32_t delta = seq - rs.exp;
              if (delta < (0xffffffffu >> 1)) {
                stats_.d[3] += 1;
                record(EV_GAP, rs.exp, seq);
              } else {
                stats_.d[4] += 1;
                record(EV_OUT_OF_ORDER, rs.exp, seq);
              }
            }
            rs.exp = seq + 1;
          }
        }
      }
      h = ring_next(h, N);
    }
    if (h != h0) v.publish(h);
    stats_.d[0] += pkts;
    stats_.d[1] += static_cast<double>(bytes);
    if (pkts) stats_.d[2] += 1;
    return pkts;
  }

  // rxCount(memory, ringOffset, maxFrames, ringIndex = 0) -> packets, as Count() counts them
  Napi::Value RxCount(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::ArrayBuffer mem = arg_buffer(info, 0);
    if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "ringOffset must be a number");
    RingView v = view_ring(env, mem, info[1].As<Napi::Number>().DoubleValue());
    const uint32_t max = arg_u32(info, 2, "maxFrames");
    const uint32_t ri = info.Length() > 3 && !info[3].IsUndefined() ? arg_u32(info, 3, "ringIndex") : 0;
    if (ri >= rings_.size())
      throw Napi::RangeError::New(env, "ringIndex: ring " + std::to_string(ri) + " is not one of the counter's " + std::to_string(rings_.size()) + " rx rings");
    if (events_) events_[0] = 0;
    return Napi::Number::New(env, Count(env, v, max, ri));
  }

  // benchLoop(memory, ringOffset, count, sync) -> {frames, ns, timed}: the
  // C++ reference receiver: sync (the port's rxsync), count, release,
  // repeat. The clock starts when the first frames arrive (so the sender's
  // start-up is not measured); `timed` frames arrived after that.
  Napi::Value BenchLoop(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::ArrayBuffer mem = arg_buffer(info, 0);
    if (info.Length() < 4 || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsFunction())
      throw Napi::TypeError::New(env, "benchLoop(memory, ringOffset, count, sync)");
    RingView v = view_ring(env, mem, info[1].As<Napi::Number>().DoubleValue());
    const double count = info[2].As<Napi::Number>().DoubleValue();
    Napi::Function sync = info[3].As<Napi::Function>();
    const uint64_t total = count > 0 ? static_cast<uint64_t>(std::min(count, 9007199254740992.0)) : 0;
    uint64_t done = 0, first = 0;
    int64_t t0 = 0;
    while (done < total) {
      sync.Call({});
      if (env.IsExceptionPending()) return env.Undefined();
      const uint64_t left = total - done;
      const uint32_t m = Count(env, v, left > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(left), 0);
      if (m && !first) {
        t0 = mono_ns();
        first = m;
      }
      if (!m) backoff();
      done += m;
    }
    sync.Call({});
    if (env.IsExceptionPending()) return env.Undefined();
    const int64_t t1 = mono_ns();
    Napi::Object o = Napi::Object::New(env);
    o.Set("frames", static_cast<double>(done));
    o.Set("timed", static_cast<double>(done - first));
    o.Set("ns", static_cast<double>(t1 - t0));
    return o;
  }

  Counters stats_;
  bool seq_on_ = false;
  uint32_t hdr_ = 0;
  Napi::Reference<Napi::Uint32Array> events_ref_;
  uint32_t *events_ = nullptr;
  uint32_t events_cap_ = 0;
  // per rx ring: the next sequence number, whether one was seen, and the
  // slots so far of its open chain (a chain never spans rings, and a batch
  // limit, unlike pkt-gen's not rounded to the fragment count, may stop a
  // ring mid-chain before the next ring is counted)
  struct RingSeq {
    uint32_t exp = 0;
    bool seen = false;
    uint32_t frags = 0;
  };
  std::vector<RingSeq> rings_;
  uint32_t frags_exp_ = 1;
  bool first_packet_ = true;
};

// ---------------------------------------------------------------------------
// Pong: echo what arrived, MACs (and IPv4 addresses) swapped.

// Why pongEcho did not echo a frame it consumed: indices into its `drops`.
enum PongDrop : uint32_t { PONG_TOO_LONG = 0, PONG_BAD_SLOT = 1, PONG_GROUP_SOURCE = 2, PONG_DROP_KINDS = 3 };
// pongEcho's per-rx-ring `state` (a Uint32Array the caller keeps per ring).
enum PongState : uint32_t {
  PONG_SKIPPING = 0,  // in and out: 1 while the rest of a dropped chain is skipped
  PONG_TX_NEED = 1,   // out: tx slots the frame at the rx head waits for (0: none)
  PONG_RX_HELD = 2,   // out: rx slots of a chain whose last slot has not arrived
  PONG_STATE_LEN = 3
};

// pongEcho(memory, rxRingOffset, txRingOffset, max, drops?, state?) -> frames
// echoed. A frame is one slot or a chain of slots with NS_MOREFRAG on all
// but the last (a frame longer than a buffer travels so: a guest's jumbo
// frame, tx -F; the switch delivers it as sent); its echo is the same chain
// (the same slot lengths and flags),
// published whole or not at all. Up to max frames are consumed, in order:
// a frame the tx ring lacks room for stops the call (state says how many
// slots it waits for), as does a chain whose last slot has not arrived.
// Those not echoed are counted in drops (a Float64Array, by PongDrop): a
// chain over NETMAP_MAX_FRAGS slots or one that fills a ring (it can never
// be echoed whole; the rest of its slots are skipped, in later calls too),
// a slot that holds no frame inside the region (bad buffer index or length,
// a first slot shorter than an Ethernet header), or a frame whose source
// MAC is a group address: its echo would go to that group, i.e. flood the
// switch, and two pongs would echo one such forged frame to each other for
// ever.
Napi::Value PongEcho(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer mem = arg_buffer(info, 0);
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "pongEcho(memory, rxRingOffset, txRingOffset, max, drops?, state?)");
  RingView rx = view_ring(env, mem, info[1].As<Napi::Number>().DoubleValue());
  RingView tx = view_ring(env, mem, info[2].As<Napi::Number>().DoubleValue());
  const uint32_t max = arg_u32(info, 3, "max");
  Counters drops;
  if (info.Length() > 4 && !info[4].IsUndefined()) drops.bind(env, info[4], PONG_DROP_KINDS);
  uint32_t *state = nullptr;
  if (info.Length() > 5 && !info[5].IsUndefined()) {
    if (!info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        info[5].As<Napi::Uint32Array>().ElementLength() < PONG_STATE_LEN)
      throw Napi::TypeError::New(env, "state must be a Uint32Array of " + std::to_string(PONG_STATE_LEN) + " elements");
    state = info[5].As<Napi::Uint32Array>().Data();
  }
  double dropped[PONG_DROP_KINDS] = {};
  uint32_t rh = rx.head();
  const uint32_t rt = rx.tail();
  uint32_t th = tx.head();
  const uint32_t tt = tx.tail();
  if (rh >= rx.n) throw bad_index(env, "head", rh, rx.n);
  if (rt >= rx.n) throw bad_index(env, "tail", rt, rx.n);
  if (th >= tx.n) throw bad_index(env, "head", th, tx.n);
  if (tt >= tx.n) throw bad_index(env, "tail", tt, tx.n);
  uint32_t left = ring_dist(rt, rh, rx.n);
  uint32_t room = ring_dist(tt, th, tx.n);
  bool skipping = state && state[PONG_SKIPPING];
  uint32_t need = 0, held = 0, frames = 0, sent = 0;
  for (;;) {
    // the rest of a dropped chain, up to its last slot
    while (skipping && left > 0) {
      const uint16_t fl = load16(&rx.slots[rh].flags);
      rh = ring_next(rh, rx.n);
      left--;
      if (!(fl & NS_MOREFRAG)) skipping = false;
    }
    if (skipping || left == 0 || frames >= max) break;
    // the frame's extent; its flags are read here only (the echo's come from k)
    uint32_t k = 0;
    bool ended = false;
    for (uint32_t j = rh; k < left && k < NETMAP_MAX_FRAGS && !ended; j = ring_next(j, rx.n), k++)
      ended = !(load16(&rx.slots[j].flags) & NS_MOREFRAG);
    if (!ended && k < NETMAP_MAX_FRAGS && left < rx.n - 1) {
      held = k;  // its last slot has not arrived yet
      break;
    }
    if (!ended || k > tx.n - 1) {
      // never echoed whole: over NETMAP_MAX_FRAGS slots, filling the rx ring
      // without an end, or more slots than the tx ring holds
      dropped[PONG_TOO_LONG] += 1;
      for (uint32_t i = 0; i < k; i++) rh = ring_next(rh, rx.n);
      left -= k;
      frames++;
      skipping = !ended;
      continue;
    }
    if (k > room) {
      need = k;  // wait for room: never a partial chain on the wire
      break;
    }
    uint32_t s = rh, d = th;
    PongDrop why = PONG_DROP_KINDS;
    for (uint32_t i = 0; i < k; i++, s = ring_next(s, rx.n), d = ring_next(d, tx.n)) {
      const netmap_slot *ss = &rx.slots[s];
      const uint32_t sidx = load_relaxed(&ss->buf_idx);
      const uint32_t len = load16(&ss->len);
      netmap_slot *ds = &tx.slots[d];
      const uint32_t didx = load_relaxed(&ds->buf_idx);
      if (!rx.buf_ok(sidx) || len > rx.buf_size || len > tx.buf_size || (i == 0 && len < 14) || !tx.buf_ok(didx)) {
        why = PONG_BAD_SLOT;
        break;
      }
      const uint8_t *src = rx.buf(sidx);
      uint8_t *dst = tx.buf(didx);
      if (i == 0) {
        // the MACs read once: the echo's destination is the source checked here
        uint8_t eth[12];
        std::memcpy(eth, src, 12);
        if (eth[6] & 1) {
          why = PONG_GROUP_SOURCE;
          break;
        }
        if (src != dst) std::memmove(dst + 12, src + 12, len - 12);
        std::memcpy(dst, eth + 6, 6);
        std::memcpy(dst + 6, eth, 6);
        if (len >= 34 && get16(dst + 12) == 0x0800) {
          uint8_t ip[4];
          std::memcpy(ip, dst + 26, 4);
          std::memmove(dst + 26, dst + 30, 4);
          std::memcpy(dst + 30, ip, 4);
        }
      } else if (src != dst) {
        std::memmove(dst, src, len);
      }
      ds->len = static_cast<uint16_t>(len);
      ds->flags = i + 1 < k ? NS_MOREFRAG : 0;
    }
    // consumed either way; the tx slots written for a dropped one stay unpublished
    for (uint32_t i = 0; i < k; i++) rh = ring_next(rh, rx.n);
    left -= k;
    frames++;
    if (why != PONG_DROP_KINDS) {
      dropped[why] += 1;
      continue;
    }
    th = d;
    room -= k;
    sent++;
  }
  rx.publish(rh);
  if (sent) tx.publish(th);
  if (state) {
    state[PONG_SKIPPING] = skipping ? 1 : 0;
    state[PONG_TX_NEED] = need;
    state[PONG_RX_HELD] = held;
  }
  if (drops.d)
    for (uint32_t k = 0; k < PONG_DROP_KINDS; k++) drops.d[k] += dropped[k];
  return Napi::Number::New(env, sent);
}

// setAffinity(cpu): pins the calling thread (the JS thread that calls it: the
// main thread or a worker) to one CPU, as pkt-gen's -a does per thread.
Napi::Value SetAffinity(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const uint32_t cpu = arg_u32(info, 0, "cpu");
  if (cpu >= CPU_SETSIZE) throw Napi::RangeError::New(env, "cpu must be below " + std::to_string(CPU_SETSIZE));
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) throw errno_error(env, "sched_setaffinity(cpu " + std::to_string(cpu) + ")", errno, "sched_setaffinity");
  return env.Undefined();
}

}  // namespace

void InitPktgen(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("PktgenTx", PktgenTx::Define(env));
  o.Set("PktgenRx", PktgenRx::Define(env));
  o.Set("pongEcho", Napi::Function::New(env, PongEcho, "pongEcho"));
  o.Set("setAffinity", Napi::Function::New(env, SetAffinity, "setAffinity"));
  exports.Set("pktgen", o);
}

}  // namespace nm
