// Exports every ABI size, offset and flag to JS from the compiled structs:
// src/abi.ts reads them from here, so TS and C++ cannot drift apart.
#include "napi/napi_util.h"
#include "core/region.h"

namespace nm {

namespace {
void put(Napi::Object o, const char *k, double v) { o.Set(k, Napi::Number::New(o.Env(), v)); }
}  // namespace

#define OFF(obj, T, f) put(obj, #f, static_cast<double>(offsetof(T, f)))

void InitAbi(Napi::Env env, Napi::Object exports) {
  Napi::Object abi = Napi::Object::New(env);

  Napi::Object c = Napi::Object::New(env);
  put(c, "NETMAP_API", NETMAP_API);
  put(c, "NETMAP_MIN_API", NETMAP_MIN_API);
  put(c, "NETMAP_MAX_API", NETMAP_MAX_API);
  put(c, "NM_CACHE_ALIGN", NM_CACHE_ALIGN);
  put(c, "NETMAP_REQ_IFNAMSIZ", NETMAP_REQ_IFNAMSIZ);
  put(c, "NETMAP_REQ_MAXSIZE", NETMAP_REQ_MAXSIZE);
  put(c, "NETMAP_MAX_FRAGS", NETMAP_MAX_FRAGS);
  put(c, "IFNAMSIZ", IFNAMSIZ_);
  put(c, "NS_BUF_CHANGED", NS_BUF_CHANGED);
  put(c, "NS_REPORT", NS_REPORT);
  put(c, "NS_FORWARD", NS_FORWARD);
  put(c, "NS_NO_LEARN", NS_NO_LEARN);
  put(c, "NS_INDIRECT", NS_INDIRECT);
  put(c, "NS_MOREFRAG", NS_MOREFRAG);
  put(c, "NS_TXMON", NS_TXMON);
  put(c, "NS_PORT_SHIFT", NS_PORT_SHIFT);
  put(c, "NS_PORT_MASK", NS_PORT_MASK);
  put(c, "NR_TIMESTAMP", NR_TIMESTAMP);
  put(c, "NR_FORWARD", NR_FORWARD);
  put(c, "NR_TX", NR_TX);
  put(c, "NR_RX", NR_RX);
  put(c, "NI_PRIV_MEM", NI_PRIV_MEM);
  put(c, "NETMAP_REQ_REGISTER", NETMAP_REQ_REGISTER);
  put(c, "NETMAP_REQ_PORT_INFO_GET", NETMAP_REQ_PORT_INFO_GET);
  put(c, "NETMAP_REQ_VALE_ATTACH", NETMAP_REQ_VALE_ATTACH);
  put(c, "NETMAP_REQ_VALE_DETACH", NETMAP_REQ_VALE_DETACH);
  put(c, "NETMAP_REQ_VALE_LIST", NETMAP_REQ_VALE_LIST);
  put(c, "NETMAP_REQ_PORT_HDR_SET", NETMAP_REQ_PORT_HDR_SET);
  put(c, "NETMAP_REQ_PORT_HDR_GET", NETMAP_REQ_PORT_HDR_GET);
  put(c, "NETMAP_REQ_VALE_NEWIF", NETMAP_REQ_VALE_NEWIF);
  put(c, "NETMAP_REQ_VALE_DELIF", NETMAP_REQ_VALE_DELIF);
  put(c, "NETMAP_REQ_POOLS_INFO_GET", NETMAP_REQ_POOLS_INFO_GET);
  put(c, "NETMAP_REQ_CSB_ENABLE", NETMAP_REQ_CSB_ENABLE);
  put(c, "NR_REG_DEFAULT", NR_REG_DEFAULT);
  put(c, "NR_REG_ALL_NIC", NR_REG_ALL_NIC);
  put(c, "NR_REG_SW", NR_REG_SW);
  put(c, "NR_REG_NIC_SW", NR_REG_NIC_SW);
  put(c, "NR_REG_ONE_NIC", NR_REG_ONE_NIC);
  put(c, "NR_REG_PIPE_MASTER", NR_REG_PIPE_MASTER);
  put(c, "NR_REG_PIPE_SLAVE", NR_REG_PIPE_SLAVE);
  put(c, "NR_REG_NULL", NR_REG_NULL);
  put(c, "NR_REG_ONE_SW", NR_REG_ONE_SW);
  put(c, "NR_MONITOR_TX", NR_MONITOR_TX);
  put(c, "NR_MONITOR_RX", NR_MONITOR_RX);
  put(c, "NR_ZCOPY_MON", NR_ZCOPY_MON);
  put(c, "NR_EXCLUSIVE", NR_EXCLUSIVE);
  put(c, "NR_RX_RINGS_ONLY", NR_RX_RINGS_ONLY);
  put(c, "NR_TX_RINGS_ONLY", NR_TX_RINGS_ONLY);
  put(c, "NR_ACCEPT_VNET_HDR", NR_ACCEPT_VNET_HDR);
  put(c, "NR_DO_RX_POLL", NR_DO_RX_POLL);
  put(c, "NR_NO_TX_POLL", NR_NO_TX_POLL);
  put(c, "NIOCGINFO", static_cast<double>(NIOCGINFO));
  put(c, "NIOCREGIF", static_cast<double>(NIOCREGIF));
  put(c, "NIOCTXSYNC", static_cast<double>(NIOCTXSYNC));
  put(c, "NIOCRXSYNC", static_cast<double>(NIOCRXSYNC));
  put(c, "NIOCCTRL", static_cast<double>(NIOCCTRL));
  put(c, "REGION_MAGIC", REGION_MAGIC);
  put(c, "REGION_VERSION", REGION_VERSION);
  put(c, "MAX_RINGS", MAX_RINGS);
  put(c, "MAX_SLOTS", MAX_SLOTS);
  put(c, "MIN_SLOTS", MIN_SLOTS);
  put(c, "DEFAULT_SLOTS", DEFAULT_SLOTS);
  put(c, "DEFAULT_BUF_SIZE", DEFAULT_BUF_SIZE);
  put(c, "MIN_BUF_SIZE", MIN_BUF_SIZE);
  put(c, "MAX_BUF_SIZE", MAX_BUF_SIZE);
  put(c, "CSB_ENTRY_SIZE", CSB_ENTRY_SIZE);
  abi.Set("constants", c);

  Napi::Object sizes = Napi::Object::New(env);
  put(sizes, "netmap_slot", sizeof(netmap_slot));
  put(sizes, "netmap_ring", sizeof(netmap_ring));
  put(sizes, "netmap_if", sizeof(netmap_if));
  put(sizes, "nmreq_header", sizeof(nmreq_header));
  put(sizes, "nmreq_register", sizeof(nmreq_register));
  put(sizes, "nmreq_port_info_get", sizeof(nmreq_port_info_get));
  put(sizes, "nmreq_vale_attach", sizeof(nmreq_vale_attach));
  put(sizes, "nmreq_vale_detach", sizeof(nmreq_vale_detach));
  put(sizes, "nmreq_vale_list", sizeof(nmreq_vale_list));
  put(sizes, "nmreq_port_hdr", sizeof(nmreq_port_hdr));
  put(sizes, "nmreq_vale_newif", sizeof(nmreq_vale_newif));
  put(sizes, "nmreq_option", sizeof(nmreq_option));
  put(sizes, "nmreq_opt_csb", sizeof(nmreq_opt_csb));
  put(sizes, "nm_csb_atok", sizeof(nm_csb_atok));
  put(sizes, "nm_csb_ktoa", sizeof(nm_csb_ktoa));
  put(sizes, "nmreq", sizeof(nmreq));
  put(sizes, "RegionHeader", sizeof(RegionHeader));
  abi.Set("sizes", sizes);

  Napi::Object o = Napi::Object::New(env);
  Napi::Object slot = Napi::Object::New(env);
  OFF(slot, netmap_slot, buf_idx);
  OFF(slot, netmap_slot, len);
  OFF(slot, netmap_slot, flags);
  OFF(slot, netmap_slot, ptr);
  o.Set("netmap_slot", slot);
  Napi::Object ring = Napi::Object::New(env);
  OFF(ring, netmap_ring, buf_ofs);
  OFF(ring, netmap_ring, num_slots);
  OFF(ring, netmap_ring, nr_buf_size);
  OFF(ring, netmap_ring, ringid);
  OFF(ring, netmap_ring, dir);
  OFF(ring, netmap_ring, head);
  OFF(ring, netmap_ring, cur);
  OFF(ring, netmap_ring, tail);
  OFF(ring, netmap_ring, flags);
  OFF(ring, netmap_ring, ts);
  OFF(ring, netmap_ring, offset_mask);
  OFF(ring, netmap_ring, buf_align);
  OFF(ring, netmap_ring, sem);
  put(ring, "slot", sizeof(netmap_ring));
  o.Set("netmap_ring", ring);
  Napi::Object nif = Napi::Object::New(env);
  OFF(nif, netmap_if, ni_name);
  OFF(nif, netmap_if, ni_version);
  OFF(nif, netmap_if, ni_flags);
  OFF(nif, netmap_if, ni_tx_rings);
  OFF(nif, netmap_if, ni_rx_rings);
  OFF(nif, netmap_if, ni_bufs_head);
  OFF(nif, netmap_if, ni_host_tx_rings);
  OFF(nif, netmap_if, ni_host_rx_rings);
  OFF(nif, netmap_if, ni_spare1);
  put(nif, "ring_ofs", sizeof(netmap_if));
  o.Set("netmap_if", nif);
  Napi::Object hdr = Napi::Object::New(env);
  OFF(hdr, nmreq_header, nr_version);
  OFF(hdr, nmreq_header, nr_reqtype);
  OFF(hdr, nmreq_header, nr_reserved);
  OFF(hdr, nmreq_header, nr_name);
  OFF(hdr, nmreq_header, nr_options);
  OFF(hdr, nmreq_header, nr_body);
  o.Set("nmreq_header", hdr);
  Napi::Object reg = Napi::Object::New(env);
  OFF(reg, nmreq_register, nr_offset);
  OFF(reg, nmreq_register, nr_memsize);
  OFF(reg, nmreq_register, nr_tx_slots);
  OFF(reg, nmreq_register, nr_rx_slots);
  OFF(reg, nmreq_register, nr_tx_rings);
  OFF(reg, nmreq_register, nr_rx_rings);
  OFF(reg, nmreq_register, nr_host_tx_rings);
  OFF(reg, nmreq_register, nr_host_rx_rings);
  OFF(reg, nmreq_register, nr_mem_id);
  OFF(reg, nmreq_register, nr_ringid);
  OFF(reg, nmreq_register, nr_mode);
  OFF(reg, nmreq_register, nr_extra_bufs);
  OFF(reg, nmreq_register, nr_flags);
  o.Set("nmreq_register", reg);
  Napi::Object legacy = Napi::Object::New(env);
  OFF(legacy, nmreq, nr_name);
  OFF(legacy, nmreq, nr_version);
  OFF(legacy, nmreq, nr_offset);
  OFF(legacy, nmreq, nr_memsize);
  OFF(legacy, nmreq, nr_tx_slots);
  OFF(legacy, nmreq, nr_rx_slots);
  OFF(legacy, nmreq, nr_tx_rings);
  OFF(legacy, nmreq, nr_rx_rings);
  OFF(legacy, nmreq, nr_ringid);
  OFF(legacy, nmreq, nr_cmd);
  OFF(legacy, nmreq, nr_arg1);
  OFF(legacy, nmreq, nr_arg2);
  OFF(legacy, nmreq, nr_arg3);
  OFF(legacy, nmreq, nr_flags);
  o.Set("nmreq", legacy);
  Napi::Object atok = Napi::Object::New(env);
  OFF(atok, nm_csb_atok, head);
  OFF(atok, nm_csb_atok, cur);
  OFF(atok, nm_csb_atok, appl_need_kick);
  OFF(atok, nm_csb_atok, sync_flags);
  o.Set("nm_csb_atok", atok);
  Napi::Object ktoa = Napi::Object::New(env);
  OFF(ktoa, nm_csb_ktoa, hwcur);
  OFF(ktoa, nm_csb_ktoa, hwtail);
  OFF(ktoa, nm_csb_ktoa, kern_need_kick);
  o.Set("nm_csb_ktoa", ktoa);
  Napi::Object rh = Napi::Object::New(env);
  OFF(rh, RegionHeader, magic);
  OFF(rh, RegionHeader, version);
  OFF(rh, RegionHeader, size);
  OFF(rh, RegionHeader, n_ifs);
  OFF(rh, RegionHeader, tx_rings);
  OFF(rh, RegionHeader, rx_rings);
  OFF(rh, RegionHeader, tx_slots);
  OFF(rh, RegionHeader, rx_slots);
  OFF(rh, RegionHeader, buf_size);
  OFF(rh, RegionHeader, extra_bufs);
  OFF(rh, RegionHeader, num_bufs);
  OFF(rh, RegionHeader, nifp_ofs);
  OFF(rh, RegionHeader, csb_ofs);
  OFF(rh, RegionHeader, buf_pool_ofs);
  OFF(rh, RegionHeader, end_state);
  OFF(rh, RegionHeader, generation);
  o.Set("RegionHeader", rh);
  abi.Set("offsets", o);

  exports.Set("abi", abi);
}

}  // namespace nm
