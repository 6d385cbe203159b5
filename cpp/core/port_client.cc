#include "core/port_client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/shm_atomic.h"

namespace nm {

Result<PortClient> PortClient::attach(unique_fd region_fd, unique_fd wait_bell, unique_fd switch_bell) {
  struct stat st {};
  if (::fstat(region_fd.get(), &st) < 0) return sys_fail("fstat", "port region fd " + std::to_string(region_fd.get()));
  if (st.st_size < static_cast<off_t>(REGION_HEADER_SIZE))
    return check_fail(EINVAL, "port region is smaller than its header (" + std::to_string(st.st_size) + " bytes)");
  auto m = mapping::map_shared(region_fd.get(), static_cast<size_t>(st.st_size), "port region");
  if (!m) return std::move(m).take_error();
  auto l = validate_header(m->data(), m->size());
  if (!l) return std::move(l).take_error();
  if (l->p.n_ifs != 1) return check_fail(EINVAL, "port region has " + std::to_string(l->p.n_ifs) + " netmap_ifs, a port has 1");
  PortClient c;
  c.region_fd_ = std::move(region_fd);
  c.wait_bell_ = std::move(wait_bell);
  c.switch_bell_ = std::move(switch_bell);
  c.map_ = std::move(m).value();
  c.layout_ = std::move(l).value();
  return c;
}

uint32_t PortClient::tx_space(uint32_t r) const {
  const netmap_ring *g = tx_ring(r);
  uint32_t n = g->num_slots, h = g->head, t = g->tail;
  return h < n && t < n ? ring_dist(t, h, n) : 0;
}

uint32_t PortClient::rx_avail(uint32_t r) const {
  const netmap_ring *g = rx_ring(r);
  uint32_t n = g->num_slots, h = g->head, t = g->tail;
  return h < n && t < n ? ring_dist(t, h, n) : 0;
}

bool PortClient::sync(uint32_t k, netmap_ring *r, bool exists) {
  if (!exists) return false;
  nm_csb_atok *a = atok(k);
  nm_csb_ktoa *kt = ktoa(k);
  // the switch reads cur then head; head last is the publication
  const uint32_t head = r->head;
  const bool moved = load_relaxed(&a->head) != head;
  store_release(&a->cur, r->cur);
  store_release(&a->head, head);
  full_fence();
  // a kick only for news (frames to take, slots freed), as sync_checked:
  // a sync that just reads the tail costs the sleeping switch no wakeup
  if (moved && load_relaxed(&kt->kern_need_kick)) {
    uint64_t one = 1;
    // EAGAIN: a kick is pending already, the switch will wake
    [[maybe_unused]] ssize_t w = ::write(switch_bell_.get(), &one, sizeof one);
  }
  uint32_t t = load_acquire(&kt->hwtail);
  if (t >= r->num_slots) return false;
  r->tail = t;
  return true;
}

PortClient::Shadow PortClient::shadow(uint32_t k) const {
  const uint32_t n = k < tx_rings() ? layout_.p.tx_slots : layout_.p.rx_slots;
  const netmap_ring *g = ring(k);
  const uint32_t h = load_relaxed(&g->head), t = load_relaxed(&g->tail);
  return {h < n ? h : 0, t < n ? t : (k < tx_rings() ? n - 1 : 0)};
}

bool PortClient::sync_checked(uint32_t k, Shadow &s) {
  if (k >= tx_rings() + rx_rings()) return false;
  // the layout's size, not the ring's num_slots, which the program can write
  const uint32_t N = k < tx_rings() ? layout_.p.tx_slots : layout_.p.rx_slots;
  netmap_ring *r = ring(k);
  const uint32_t head = load_relaxed(&r->head), cur = load_relaxed(&r->cur);
  if (head >= N || cur >= N || ring_dist(head, s.head, N) > ring_dist(s.tail, s.head, N) ||
      ring_dist(cur, head, N) > ring_dist(s.tail, head, N))
    return false;
  nm_csb_atok *a = atok(k);
  nm_csb_ktoa *kt = ktoa(k);
  store_release(&a->cur, cur);
  store_release(&a->head, head);
  full_fence();
  if (head != s.head && load_relaxed(&kt->kern_need_kick)) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(switch_bell_.get(), &one, sizeof one);  // EAGAIN: one is pending
  }
  s.head = head;
  const uint32_t t = load_acquire(&kt->hwtail);
  if (t < N) s.tail = t;
  store_release(&r->tail, s.tail);
  return true;
}

void PortClient::need_kick(uint32_t k, bool on) {
  if (k < tx_rings() + rx_rings()) store_release(&atok(k)->appl_need_kick, on ? 1u : 0u);
}

void PortClient::arm(bool rx, bool tx) {
  if (rx)
    for (uint32_t i = 0; i < rx_rings(); i++) store_release(&atok(tx_rings() + i)->appl_need_kick, 1);
  if (tx)
    for (uint32_t i = 0; i < tx_rings(); i++) store_release(&atok(i)->appl_need_kick, 1);
  full_fence();
}

void PortClient::disarm() {
  for (uint32_t k = 0; k < tx_rings() + rx_rings(); k++) store_release(&atok(k)->appl_need_kick, 0);
}

void PortClient::drain_bell() const {
  uint8_t buf[64];
  for (;;) {
    ssize_t r = ::read(wait_bell_.get(), buf, sizeof buf);
    if (r > 0) continue;
    if (r < 0 && errno == EINTR) continue;
    break;
  }
}

}  // namespace nm
