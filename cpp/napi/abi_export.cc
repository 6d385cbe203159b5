// Exports every ABI size, offset and flag to JS from the compiled structs:
// src/netmap/abi.ts reads them from here, so TS and C++ cannot drift apart.
#include "napi/napi_util.h"
#include "core/region.h"

namespace nm {

namespace {
void put(Napi::Object o, const char *k, double v) { o.Set(k, Napi::Number::New(o.Env(), v)); }
}  // namespace

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

  // sizes and offsets from the lists that also generate the static_asserts
  Napi::Object sizes = Napi::Object::New(env);
  Napi::Object offsets = Napi::Object::New(env);
#define NM_EXPORT_FIELD(T, f, off) put(fields, #f, static_cast<double>(offsetof(T, f)));
#define NM_EXPORT_STRUCT(T, size)                \
  {                                              \
    put(sizes, #T, sizeof(T));                   \
    Napi::Object fields = Napi::Object::New(env); \
    NM_ABI_FIELDS_##T(NM_EXPORT_FIELD, T)        \
    offsets.Set(#T, fields);                     \
  }
  NM_ABI_STRUCTS(NM_EXPORT_STRUCT)
  NM_REGION_STRUCTS(NM_EXPORT_STRUCT)
#undef NM_EXPORT_STRUCT
#undef NM_EXPORT_FIELD
  abi.Set("sizes", sizes);
  abi.Set("offsets", offsets);

  exports.Set("abi", abi);
}

}  // namespace nm
