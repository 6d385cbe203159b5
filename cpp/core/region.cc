#include "core/region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace nm {

namespace {
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::string check_range(const char *what, uint32_t v, uint32_t lo, uint32_t hi) {
  if (v >= lo && v <= hi) return {};
  return std::string(what) + " " + std::to_string(v) + " is out of range: use " + std::to_string(lo) +
         ".." + std::to_string(hi);
}

std::string check_params(const LayoutParams &p) {
  std::string err;
  if (!(err = check_range("interface count", p.n_ifs, 1, MAX_IFS)).empty()) return err;
  if (!(err = check_range("tx rings", p.tx_rings, 1, MAX_RINGS)).empty()) return err;
  if (!(err = check_range("rx rings", p.rx_rings, 1, MAX_RINGS)).empty()) return err;
  if (!(err = check_range("tx slots", p.tx_slots, MIN_SLOTS, MAX_SLOTS)).empty()) return err;
  if (!(err = check_range("rx slots", p.rx_slots, MIN_SLOTS, MAX_SLOTS)).empty()) return err;
  if (!(err = check_range("buffer size", p.buf_size, MIN_BUF_SIZE, MAX_BUF_SIZE)).empty()) return err;
  if (p.buf_size % 64 != 0) return "buffer size " + std::to_string(p.buf_size) + " is not a multiple of 64";
  return check_range("extra buffers", p.extra_bufs, 0, MAX_EXTRA_BUFS);
}
}  // namespace

Result<Layout> compute_layout(const LayoutParams &p) {
  if (std::string err = check_params(p); !err.empty()) return check_fail(EINVAL, err);
  Layout l;
  l.p = p;
  uint64_t off = REGION_HEADER_SIZE;
  const uint32_t nr = p.tx_rings + p.rx_rings;
  for (uint32_t i = 0; i < p.n_ifs; i++) {
    l.nifp_ofs[i] = off;
    off = align_up(off + sizeof(netmap_if) + sizeof(int64_t) * nr, NM_CACHE_ALIGN);
  }
  for (uint32_t i = 0; i < p.n_ifs; i++) {
    for (uint32_t k = 0; k < nr; k++) {
      l.ring_ofs[i][k] = off;
      off = align_up(off + sizeof(netmap_ring) + sizeof(netmap_slot) * l.slots_of(k), NM_CACHE_ALIGN);
    }
  }
  l.csb_ofs = off;
  off += static_cast<uint64_t>(p.n_ifs) * nr * CSB_ENTRY_SIZE;
  l.buf_pool_ofs = align_up(off, 4096);
  // buffers 0 and 1 are reserved, as in netmap; each ring slot owns one buffer
  uint64_t nbufs = 2 + static_cast<uint64_t>(p.n_ifs) *
                           (static_cast<uint64_t>(p.tx_rings) * p.tx_slots +
                            static_cast<uint64_t>(p.rx_rings) * p.rx_slots + p.extra_bufs);
  if (nbufs > 0xffffffffULL) return check_fail(EINVAL, "too many buffers");
  l.num_bufs = static_cast<uint32_t>(nbufs);
  l.size = align_up(l.buf_pool_ofs + nbufs * p.buf_size, 4096);
  // byte offsets into a region travel as 32-bit values (switch batches) and
  // a JS typed array over it is limited to 4 GiB as well
  if (l.size > 0xffffffffULL)
    return check_fail(EINVAL, "region of " + std::to_string(l.size) +
                                  " bytes exceeds 4 GiB: use fewer rings, slots or smaller buffers");
  return l;
}

void init_region(uint8_t *base, const Layout &l, const std::string names[MAX_IFS]) {
  auto *h = new (base) RegionHeader{};
  h->magic = REGION_MAGIC;
  h->version = REGION_VERSION;
  h->size = l.size;
  h->n_ifs = l.p.n_ifs;
  h->tx_rings = l.p.tx_rings;
  h->rx_rings = l.p.rx_rings;
  h->tx_slots = l.p.tx_slots;
  h->rx_slots = l.p.rx_slots;
  h->buf_size = l.p.buf_size;
  h->extra_bufs = l.p.extra_bufs;
  h->num_bufs = l.num_bufs;
  for (uint32_t i = 0; i < MAX_IFS; i++) h->nifp_ofs[i] = l.nifp_ofs[i];
  h->csb_ofs = l.csb_ofs;
  h->buf_pool_ofs = l.buf_pool_ofs;

  uint32_t next_buf = 2;
  const uint32_t nr = l.rings_per_if();
  for (uint32_t i = 0; i < l.p.n_ifs; i++) {
    auto *nifp = reinterpret_cast<netmap_if *>(base + l.nifp_ofs[i]);
    std::strncpy(nifp->ni_name, names[i].c_str(), sizeof(nifp->ni_name) - 1);
    nifp->ni_version = NETMAP_API;
    nifp->ni_flags = NI_PRIV_MEM;
    nifp->ni_tx_rings = l.p.tx_rings;
    nifp->ni_rx_rings = l.p.rx_rings;
    auto *ring_ofs = reinterpret_cast<int64_t *>(base + l.nifp_ofs[i] + sizeof(netmap_if));
    for (uint32_t k = 0; k < nr; k++) {
      const bool tx = k < l.p.tx_rings;
      const uint32_t n = l.slots_of(k);
      ring_ofs[k] = static_cast<int64_t>(l.ring_ofs[i][k]) - static_cast<int64_t>(l.nifp_ofs[i]);
      auto *r = reinterpret_cast<netmap_ring *>(base + l.ring_ofs[i][k]);
      r->buf_ofs = static_cast<int64_t>(l.buf_pool_ofs) - static_cast<int64_t>(l.ring_ofs[i][k]);
      r->num_slots = n;
      r->nr_buf_size = l.p.buf_size;
      r->ringid = static_cast<uint16_t>(tx ? k : k - l.p.tx_rings);
      r->dir = tx ? NR_TX : NR_RX;  // as the kernel writes it: kring->tx, so tx 1, rx 0
      r->head = r->cur = 0;
      r->tail = tx ? n - 1 : 0;
      netmap_slot *s = ring_slots(r);
      for (uint32_t j = 0; j < n; j++) {
        s[j].buf_idx = next_buf++;
        s[j].len = tx ? 0 : static_cast<uint16_t>(0);
        s[j].flags = 0;
        s[j].ptr = 0;
      }
      auto *ktoa = reinterpret_cast<nm_csb_ktoa *>(base + l.csb_entry(i, k) + sizeof(nm_csb_atok));
      ktoa->hwcur = 0;
      ktoa->hwtail = r->tail;
    }
    // extra buffers, linked through their first 32 bits as netmap does
    uint32_t head = 0;
    for (uint32_t e = 0; e < l.p.extra_bufs; e++) {
      uint32_t idx = next_buf++;
      std::memcpy(base + l.buf_pool_ofs + static_cast<uint64_t>(idx) * l.p.buf_size, &head, 4);
      head = idx;
    }
    nifp->ni_bufs_head = head;
  }
}

Result<MemfdRegion> create_memfd_region(const char *memfd_name, const Layout &l, const std::string names[MAX_IFS]) {
  MemfdRegion r;
  r.fd.reset(memfd_create(memfd_name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!r.fd) return sys_fail("memfd_create", std::string("memfd_create ") + memfd_name);
  if (ftruncate(r.fd.get(), static_cast<off_t>(l.size)) < 0)
    return sys_fail("ftruncate", "ftruncate memfd " + std::string(memfd_name) + " to " + std::to_string(l.size));
  // the size is part of the contract with the peer: forbid changing it
  if (fcntl(r.fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
    return sys_fail("fcntl", "sealing memfd " + std::string(memfd_name) + " (F_ADD_SEALS)");
  auto m = mapping::map_shared(r.fd.get(), l.size, "mmap memfd " + std::string(memfd_name));
  if (!m) return std::move(m).take_error();
  r.map = std::move(m).value();
  init_region(r.map.data(), l, names);
  return r;
}

Result<Layout> validate_header(const uint8_t *base, uint64_t mapped) {
  auto bad = [](std::string why) { return check_fail(EINVAL, std::move(why)); };
  if (mapped < REGION_HEADER_SIZE) return bad("region smaller than its header");
  const auto *h = reinterpret_cast<const RegionHeader *>(base);
  if (h->magic != REGION_MAGIC) return bad("bad magic (not a @x/netmap region)");
  if (h->version != REGION_VERSION)
    return bad("region version " + std::to_string(h->version) + ", expected " + std::to_string(REGION_VERSION));
  LayoutParams p;
  p.n_ifs = h->n_ifs;
  p.tx_rings = h->tx_rings;
  p.rx_rings = h->rx_rings;
  p.tx_slots = h->tx_slots;
  p.rx_slots = h->rx_slots;
  p.buf_size = h->buf_size;
  p.extra_bufs = h->extra_bufs;
  auto r = compute_layout(p);
  if (!r) return bad("bad parameters in region header: " + r.error().what);
  const Layout &l = *r;
  if (l.size != h->size || l.size > mapped) return bad("region size does not match its parameters");
  if (l.num_bufs != h->num_bufs || l.csb_ofs != h->csb_ofs || l.buf_pool_ofs != h->buf_pool_ofs)
    return bad("region offsets do not match its parameters");
  for (uint32_t i = 0; i < p.n_ifs; i++)
    if (l.nifp_ofs[i] != h->nifp_ofs[i]) return bad("netmap_if offset does not match its parameters");
  return r;
}

}  // namespace nm
