// netmap's user ABI (API 14), as the kernel module and libnetmap define it.
// Every size and offset is pinned by static_assert against the values measured
// on x86_64 Linux (see docs/netmap-abi.md), so a drift fails the build.
// The userspace backend lays its memory out with these same structs, which is
// what lets one TypeScript Ring serve the kernel and userspace alike.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sys/time.h>

namespace nm {

constexpr uint32_t NETMAP_API = 14;
constexpr uint32_t NETMAP_MIN_API = 14;
constexpr uint32_t NETMAP_MAX_API = 15;
constexpr const char *NETMAP_DEVICE_NAME = "/dev/netmap";
constexpr size_t NM_CACHE_ALIGN = 128;
constexpr size_t NETMAP_REQ_IFNAMSIZ = 64;
constexpr size_t NETMAP_REQ_MAXSIZE = 4096;
constexpr size_t NETMAP_MAX_FRAGS = 64;
constexpr size_t IFNAMSIZ_ = 16;

// ---- slots --------------------------------------------------------------
struct netmap_slot {
  uint32_t buf_idx;
  uint16_t len;
  uint16_t flags;
  uint64_t ptr;
};

constexpr uint16_t NS_BUF_CHANGED = 0x0001;
constexpr uint16_t NS_REPORT = 0x0002;
constexpr uint16_t NS_FORWARD = 0x0004;
constexpr uint16_t NS_NO_LEARN = 0x0008;
constexpr uint16_t NS_INDIRECT = 0x0010;
constexpr uint16_t NS_MOREFRAG = 0x0020;
constexpr uint16_t NS_TXMON = 0x0040;
constexpr uint16_t NS_PORT_SHIFT = 8;
constexpr uint16_t NS_PORT_MASK = 0xff << NS_PORT_SHIFT;

// ---- rings --------------------------------------------------------------
struct netmap_ring {
  int64_t buf_ofs;
  uint32_t num_slots;
  uint32_t nr_buf_size;
  uint16_t ringid;
  uint16_t dir;  // NR_TX (1) or NR_RX (0): the kernel writes kring->tx; netmap.h's comment has it backwards
  uint32_t head;
  uint32_t cur;
  uint32_t tail;
  uint32_t flags;
  struct timeval ts;
  uint64_t offset_mask;
  uint64_t buf_align;
  alignas(NM_CACHE_ALIGN) uint8_t sem[128];
  netmap_slot slot[0];  // NOLINT: the ABI's flexible array (GNU zero-length)
};

constexpr uint32_t NR_TIMESTAMP = 0x0002;
constexpr uint32_t NR_FORWARD = 0x0004;
// netmap_ring.dir values: the kernel's enum txrx { NR_RX = 0, NR_TX = 1 }
// (netmap_mem2.c stores kring->tx). Informational only: a ring's direction
// is its position in netmap_if.ring_ofs[] (tx rings first), which is what
// this project goes by.
constexpr uint16_t NR_RX = 0;
constexpr uint16_t NR_TX = 1;

// ---- interface ----------------------------------------------------------
struct netmap_if {
  char ni_name[IFNAMSIZ_];
  uint32_t ni_version;
  uint32_t ni_flags;
  uint32_t ni_tx_rings;
  uint32_t ni_rx_rings;
  uint32_t ni_bufs_head;
  uint32_t ni_host_tx_rings;
  uint32_t ni_host_rx_rings;
  uint32_t ni_spare1[3];
  int64_t ring_ofs[0];  // NOLINT: flexible array as in the ABI
};

constexpr uint32_t NI_PRIV_MEM = 0x1;

// ---- new control API ----------------------------------------------------
struct nmreq_header {
  uint16_t nr_version;
  uint16_t nr_reqtype;
  uint32_t nr_reserved;
  char nr_name[NETMAP_REQ_IFNAMSIZ];
  uint64_t nr_options;
  uint64_t nr_body;
};

enum : uint16_t {
  NETMAP_REQ_REGISTER = 1,
  NETMAP_REQ_PORT_INFO_GET,
  NETMAP_REQ_VALE_ATTACH,
  NETMAP_REQ_VALE_DETACH,
  NETMAP_REQ_VALE_LIST,
  NETMAP_REQ_PORT_HDR_SET,
  NETMAP_REQ_PORT_HDR_GET,
  NETMAP_REQ_VALE_NEWIF,
  NETMAP_REQ_VALE_DELIF,
  NETMAP_REQ_VALE_POLLING_ENABLE,
  NETMAP_REQ_VALE_POLLING_DISABLE,
  NETMAP_REQ_POOLS_INFO_GET,
  NETMAP_REQ_SYNC_KLOOP_START,
  NETMAP_REQ_SYNC_KLOOP_STOP,
  NETMAP_REQ_CSB_ENABLE,
};

struct nmreq_register {
  uint64_t nr_offset;
  uint64_t nr_memsize;
  uint32_t nr_tx_slots;
  uint32_t nr_rx_slots;
  uint16_t nr_tx_rings;
  uint16_t nr_rx_rings;
  uint16_t nr_host_tx_rings;
  uint16_t nr_host_rx_rings;
  uint16_t nr_mem_id;
  uint16_t nr_ringid;
  uint32_t nr_mode;
  uint32_t nr_extra_bufs;
  uint64_t nr_flags;
};

enum : uint32_t {
  NR_REG_DEFAULT = 0,
  NR_REG_ALL_NIC = 1,
  NR_REG_SW = 2,
  NR_REG_NIC_SW = 3,
  NR_REG_ONE_NIC = 4,
  NR_REG_PIPE_MASTER = 5,
  NR_REG_PIPE_SLAVE = 6,
  NR_REG_NULL = 7,
  NR_REG_ONE_SW = 8,
};

constexpr uint64_t NR_MONITOR_TX = 0x100;
constexpr uint64_t NR_MONITOR_RX = 0x200;
constexpr uint64_t NR_ZCOPY_MON = 0x400;
constexpr uint64_t NR_EXCLUSIVE = 0x800;
constexpr uint64_t NR_RX_RINGS_ONLY = 0x2000;
constexpr uint64_t NR_TX_RINGS_ONLY = 0x4000;
constexpr uint64_t NR_ACCEPT_VNET_HDR = 0x8000;
constexpr uint64_t NR_DO_RX_POLL = 0x10000;
constexpr uint64_t NR_NO_TX_POLL = 0x20000;

struct nmreq_port_info_get {
  uint64_t nr_memsize;
  uint32_t nr_tx_slots;
  uint32_t nr_rx_slots;
  uint16_t nr_tx_rings;
  uint16_t nr_rx_rings;
  uint16_t nr_host_tx_rings;
  uint16_t nr_host_rx_rings;
  uint16_t nr_mem_id;
  uint16_t pad[3];
};

struct nmreq_vale_attach {
  nmreq_register reg;
  uint32_t port_index;
  uint32_t pad1;
};

struct nmreq_vale_detach {
  uint32_t port_index;
  uint32_t pad1;
};

struct nmreq_vale_list {
  uint16_t nr_bridge_idx;
  uint16_t pad1;
  uint32_t nr_port_idx;
};

struct nmreq_port_hdr {
  uint32_t nr_hdr_len;
  uint32_t pad1;
};

struct nmreq_vale_newif {
  uint32_t nr_tx_slots;
  uint32_t nr_rx_slots;
  uint16_t nr_tx_rings;
  uint16_t nr_rx_rings;
  uint16_t nr_mem_id;
  uint16_t pad1;
};

struct nmreq_option {
  uint64_t nro_next;
  uint32_t nro_reqtype;
  uint32_t nro_status;
  uint64_t nro_size;
};

enum : uint32_t {
  NETMAP_REQ_OPT_EXTMEM = 1,
  NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS,
  NETMAP_REQ_OPT_CSB,
  NETMAP_REQ_OPT_SYNC_KLOOP_MODE,
  NETMAP_REQ_OPT_OFFSETS,
};

// CSB records: one pair per ring, app-to-kernel and kernel-to-app.
struct nm_csb_atok {
  uint32_t head;
  uint32_t cur;
  uint32_t appl_need_kick;
  uint32_t sync_flags;
  uint32_t pad[12];
};

struct nm_csb_ktoa {
  uint32_t hwcur;
  uint32_t hwtail;
  uint32_t kern_need_kick;
  uint32_t pad[13];
};

struct nmreq_opt_csb {
  nmreq_option nro_opt;
  uint64_t csb_atok;
  uint64_t csb_ktoa;
};

// ---- legacy API ---------------------------------------------------------
struct nmreq {
  char nr_name[IFNAMSIZ_];
  uint32_t nr_version;
  uint32_t nr_offset;
  uint32_t nr_memsize;
  uint32_t nr_tx_slots;
  uint32_t nr_rx_slots;
  uint16_t nr_tx_rings;
  uint16_t nr_rx_rings;
  uint16_t nr_ringid;
  uint16_t nr_cmd;
  uint16_t nr_arg1;
  uint16_t nr_arg2;
  uint32_t nr_arg3;
  uint32_t nr_flags;
  uint32_t spare2[1];
};

constexpr uint16_t NETMAP_HW_RING = 0x4000;
constexpr uint16_t NETMAP_SW_RING = 0x2000;
constexpr uint16_t NETMAP_RING_MASK = 0x0fff;
constexpr uint16_t NETMAP_NO_TX_POLL = 0x1000;
constexpr uint16_t NETMAP_DO_RX_POLL = 0x8000;
constexpr uint32_t NR_REG_MASK = 0xf;

// ---- ioctls (Linux encoding: dir<<30 | size<<16 | type<<8 | nr) ----------
constexpr unsigned long ioc(unsigned dir, unsigned type, unsigned nr, unsigned size) {
  return (static_cast<unsigned long>(dir) << 30) | (static_cast<unsigned long>(size) << 16) |
         (static_cast<unsigned long>(type) << 8) | nr;
}
constexpr unsigned IOC_RW = 3;
constexpr unsigned long NIOCGINFO = ioc(IOC_RW, 'i', 145, sizeof(nmreq));
constexpr unsigned long NIOCREGIF = ioc(IOC_RW, 'i', 146, sizeof(nmreq));
constexpr unsigned long NIOCTXSYNC = ioc(0, 'i', 148, 0);
constexpr unsigned long NIOCRXSYNC = ioc(0, 'i', 149, 0);
constexpr unsigned long NIOCCTRL = ioc(IOC_RW, 'i', 151, sizeof(nmreq_header));


// ---- the layout, one list per struct --------------------------------------
// Each NM_ABI_FIELDS_<struct>(F, T) lists the fields code outside C++ reads
// or writes, with the offset measured on x86_64 Linux; NM_ABI_STRUCTS lists
// every struct with its size. The same lists generate the static_asserts
// below (a drift fails the build) and the offsets exported to JavaScript
// (napi/abi_export.cc), so the two cannot diverge.
#define NM_ABI_FIELDS_netmap_slot(F, T) F(T, buf_idx, 0) F(T, len, 4) F(T, flags, 6) F(T, ptr, 8)
#define NM_ABI_FIELDS_netmap_ring(F, T)                                                                    \
  F(T, buf_ofs, 0) F(T, num_slots, 8) F(T, nr_buf_size, 12) F(T, ringid, 16) F(T, dir, 18) F(T, head, 20) \
  F(T, cur, 24) F(T, tail, 28) F(T, flags, 32) F(T, ts, 40) F(T, offset_mask, 56) F(T, buf_align, 64)      \
  F(T, sem, 128) F(T, slot, 256)
#define NM_ABI_FIELDS_netmap_if(F, T)                                                                 \
  F(T, ni_name, 0) F(T, ni_version, 16) F(T, ni_flags, 20) F(T, ni_tx_rings, 24) F(T, ni_rx_rings, 28) \
  F(T, ni_bufs_head, 32) F(T, ni_host_tx_rings, 36) F(T, ni_host_rx_rings, 40) F(T, ni_spare1, 44)     \
  F(T, ring_ofs, 56)
#define NM_ABI_FIELDS_nmreq_header(F, T)                                                         \
  F(T, nr_version, 0) F(T, nr_reqtype, 2) F(T, nr_reserved, 4) F(T, nr_name, 8) F(T, nr_options, 72) \
  F(T, nr_body, 80)
#define NM_ABI_FIELDS_nmreq_register(F, T)                                                              \
  F(T, nr_offset, 0) F(T, nr_memsize, 8) F(T, nr_tx_slots, 16) F(T, nr_rx_slots, 20) F(T, nr_tx_rings, 24) \
  F(T, nr_rx_rings, 26) F(T, nr_host_tx_rings, 28) F(T, nr_host_rx_rings, 30) F(T, nr_mem_id, 32)          \
  F(T, nr_ringid, 34) F(T, nr_mode, 36) F(T, nr_extra_bufs, 40) F(T, nr_flags, 48)
#define NM_ABI_FIELDS_nmreq_port_info_get(F, T)                                                      \
  F(T, nr_memsize, 0) F(T, nr_tx_slots, 8) F(T, nr_rx_slots, 12) F(T, nr_tx_rings, 16) F(T, nr_rx_rings, 18) \
  F(T, nr_host_tx_rings, 20) F(T, nr_host_rx_rings, 22) F(T, nr_mem_id, 24)
#define NM_ABI_FIELDS_nmreq_vale_attach(F, T) F(T, reg, 0) F(T, port_index, 56)
#define NM_ABI_FIELDS_nmreq_vale_detach(F, T) F(T, port_index, 0)
#define NM_ABI_FIELDS_nmreq_vale_list(F, T) F(T, nr_bridge_idx, 0) F(T, nr_port_idx, 4)
#define NM_ABI_FIELDS_nmreq_port_hdr(F, T) F(T, nr_hdr_len, 0)
#define NM_ABI_FIELDS_nmreq_vale_newif(F, T) \
  F(T, nr_tx_slots, 0) F(T, nr_rx_slots, 4) F(T, nr_tx_rings, 8) F(T, nr_rx_rings, 10) F(T, nr_mem_id, 12)
#define NM_ABI_FIELDS_nmreq_option(F, T) F(T, nro_next, 0) F(T, nro_reqtype, 8) F(T, nro_status, 12) F(T, nro_size, 16)
#define NM_ABI_FIELDS_nmreq_opt_csb(F, T) F(T, nro_opt, 0) F(T, csb_atok, 24) F(T, csb_ktoa, 32)
#define NM_ABI_FIELDS_nm_csb_atok(F, T) F(T, head, 0) F(T, cur, 4) F(T, appl_need_kick, 8) F(T, sync_flags, 12)
#define NM_ABI_FIELDS_nm_csb_ktoa(F, T) F(T, hwcur, 0) F(T, hwtail, 4) F(T, kern_need_kick, 8)
#define NM_ABI_FIELDS_nmreq(F, T)                                                                             \
  F(T, nr_name, 0) F(T, nr_version, 16) F(T, nr_offset, 20) F(T, nr_memsize, 24) F(T, nr_tx_slots, 28)        \
  F(T, nr_rx_slots, 32) F(T, nr_tx_rings, 36) F(T, nr_rx_rings, 38) F(T, nr_ringid, 40) F(T, nr_cmd, 42)        \
  F(T, nr_arg1, 44) F(T, nr_arg2, 46) F(T, nr_arg3, 48) F(T, nr_flags, 52)

#define NM_ABI_STRUCTS(S)                                                                             \
  S(netmap_slot, 16) S(netmap_ring, 256) S(netmap_if, 56) S(nmreq_header, 88) S(nmreq_register, 56)    \
  S(nmreq_port_info_get, 32) S(nmreq_vale_attach, 64) S(nmreq_vale_detach, 8) S(nmreq_vale_list, 8)    \
  S(nmreq_port_hdr, 8) S(nmreq_vale_newif, 16) S(nmreq_option, 24) S(nmreq_opt_csb, 40) S(nm_csb_atok, 64) \
  S(nm_csb_ktoa, 64) S(nmreq, 60)

#define NM_ABI_ASSERT_FIELD(T, f, off) static_assert(offsetof(T, f) == (off), "netmap ABI drift: " #T "." #f);
#define NM_ABI_ASSERT_STRUCT(T, size)                                       \
  static_assert(sizeof(T) == (size), "netmap ABI drift: sizeof(" #T ")"); \
  NM_ABI_FIELDS_##T(NM_ABI_ASSERT_FIELD, T)
NM_ABI_STRUCTS(NM_ABI_ASSERT_STRUCT)

static_assert(NIOCGINFO == 0xc03c6991UL);
static_assert(NIOCREGIF == 0xc03c6992UL);
static_assert(NIOCTXSYNC == 0x00006994UL);
static_assert(NIOCRXSYNC == 0x00006995UL);
static_assert(NIOCCTRL == 0xc0586997UL);

}  // namespace nm
