// The bodies of netmap's VALE control requests (NIOCCTRL), encoded from and
// decoded into the real structs of abi/netmap_abi.h, so that no TypeScript
// file lays out a netmap struct by hand:
//
//   kernelCtlEncode(reqtype, fields) -> Buffer  the body to pass to kernelRequest
//   kernelCtlDecode(reqtype, body)   -> object  the fields of a body the kernel returned
//
// Field names are those of src/backends/kernel/control.ts. Every number is
// range-checked against the width of its struct field: a value that does not
// fit is refused with RangeError instead of being truncated.
#include <cstring>
#include <string>

#include "abi/netmap_abi.h"
#include "napi/napi_util.h"

namespace nm {

namespace {

template <typename T>
T field(Napi::Object o, const char *key, uint64_t max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return T{0};
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must be an integer in 0.." + std::to_string(max));
  return static_cast<T>(d);
}

uint16_t u16(Napi::Object o, const char *k) { return field<uint16_t>(o, k, 0xffff); }
uint32_t u32(Napi::Object o, const char *k) { return field<uint32_t>(o, k, 0xffffffffu); }

template <typename T>
Napi::Buffer<uint8_t> bytes(Napi::Env env, const T &s) {
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t *>(&s), sizeof s);
}

template <typename T>
T from(Napi::Env env, Napi::Buffer<uint8_t> b, const char *what) {
  if (b.Length() != sizeof(T))
    throw coded_error(env,
                      std::string("kernelCtlDecode: a ") + what + " body is " + std::to_string(sizeof(T)) +
                          " bytes, got " + std::to_string(b.Length()),
                      EINVAL);
  T s;
  std::memcpy(&s, b.Data(), sizeof s);
  return s;
}

void put(Napi::Object o, const char *k, double v) { o.Set(k, Napi::Number::New(o.Env(), v)); }

// The ring geometry that nmreq_vale_newif, nmreq_register (inside
// nmreq_vale_attach) and nmreq_port_info_get share, under one set of names.
template <typename T>
void geometry_in(Napi::Object f, T &b) {
  b.nr_tx_slots = u32(f, "txSlots");
  b.nr_rx_slots = u32(f, "rxSlots");
  b.nr_tx_rings = u16(f, "txRings");
  b.nr_rx_rings = u16(f, "rxRings");
  b.nr_mem_id = u16(f, "memId");
}
template <typename T>
void geometry_out(Napi::Object o, const T &b) {
  put(o, "txSlots", b.nr_tx_slots);
  put(o, "rxSlots", b.nr_rx_slots);
  put(o, "txRings", b.nr_tx_rings);
  put(o, "rxRings", b.nr_rx_rings);
  put(o, "memId", b.nr_mem_id);
}

Napi::Value Encode(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t rt = arg_u32(info, 0, "reqtype");
  Napi::Object f = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  switch (rt) {
    case NETMAP_REQ_VALE_LIST: {
      nmreq_vale_list b{};
      b.nr_bridge_idx = u16(f, "bridgeIndex");
      b.nr_port_idx = u32(f, "portIndex");
      return bytes(env, b);
    }
    case NETMAP_REQ_PORT_INFO_GET: return bytes(env, nmreq_port_info_get{});
    case NETMAP_REQ_VALE_NEWIF: {
      nmreq_vale_newif b{};
      geometry_in(f, b);
      return bytes(env, b);
    }
    case NETMAP_REQ_VALE_DELIF: return Napi::Buffer<uint8_t>::New(env, 0);
    case NETMAP_REQ_VALE_ATTACH: {
      // the interface is registered on the switch as by NETMAP_REQ_REGISTER
      nmreq_vale_attach b{};
      geometry_in(f, b.reg);
      b.reg.nr_mode = f.Get("hostStack").ToBoolean() ? NR_REG_NIC_SW : NR_REG_ALL_NIC;
      return bytes(env, b);
    }
    case NETMAP_REQ_VALE_DETACH: return bytes(env, nmreq_vale_detach{});
    case NETMAP_REQ_VALE_POLLING_ENABLE:
    case NETMAP_REQ_VALE_POLLING_DISABLE: {
      nmreq_vale_polling b{};
      b.nr_mode = u32(f, "mode");
      b.nr_first_cpu_id = u32(f, "firstCpu");
      b.nr_num_polling_cpus = u32(f, "numCpus");
      return bytes(env, b);
    }
    case NETMAP_REQ_PORT_HDR_SET:
    case NETMAP_REQ_PORT_HDR_GET: {
      nmreq_port_hdr b{};
      b.nr_hdr_len = u32(f, "hdrLen");
      return bytes(env, b);
    }
    default:
      throw coded_error(env,
                        "kernelCtlEncode: request type " + std::to_string(rt) +
                            " is not a VALE control request (LIST, PORT_INFO_GET, NEWIF, DELIF, ATTACH, DETACH, "
                            "POLLING_ENABLE/DISABLE, PORT_HDR_SET/GET)",
                        EINVAL);
  }
}

Napi::Value Decode(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t rt = arg_u32(info, 0, "reqtype");
  if (info.Length() < 2 || !info[1].IsBuffer()) throw Napi::TypeError::New(env, "kernelCtlDecode(reqtype, body: Buffer)");
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Object o = Napi::Object::New(env);
  switch (rt) {
    case NETMAP_REQ_VALE_LIST: {
      auto b = from<nmreq_vale_list>(env, buf, "nmreq_vale_list");
      put(o, "bridgeIndex", b.nr_bridge_idx);
      put(o, "portIndex", b.nr_port_idx);
      return o;
    }
    case NETMAP_REQ_PORT_INFO_GET: {
      auto b = from<nmreq_port_info_get>(env, buf, "nmreq_port_info_get");
      put(o, "memsize", static_cast<double>(b.nr_memsize));
      geometry_out(o, b);
      put(o, "hostTxRings", b.nr_host_tx_rings);
      put(o, "hostRxRings", b.nr_host_rx_rings);
      return o;
    }
    case NETMAP_REQ_VALE_NEWIF: {
      auto b = from<nmreq_vale_newif>(env, buf, "nmreq_vale_newif");
      geometry_out(o, b);
      return o;
    }
    case NETMAP_REQ_VALE_ATTACH: {
      auto b = from<nmreq_vale_attach>(env, buf, "nmreq_vale_attach");
      put(o, "portIndex", b.port_index);
      put(o, "memId", b.reg.nr_mem_id);
      return o;
    }
    case NETMAP_REQ_VALE_DETACH: {
      auto b = from<nmreq_vale_detach>(env, buf, "nmreq_vale_detach");
      put(o, "portIndex", b.port_index);
      return o;
    }
    case NETMAP_REQ_PORT_HDR_SET:
    case NETMAP_REQ_PORT_HDR_GET: {
      auto b = from<nmreq_port_hdr>(env, buf, "nmreq_port_hdr");
      put(o, "hdrLen", b.nr_hdr_len);
      return o;
    }
    default:
      throw coded_error(env, "kernelCtlDecode: request type " + std::to_string(rt) + " returns no body to decode",
                        EINVAL);
  }
}

}  // namespace

void InitKernelCtl(Napi::Env env, Napi::Object exports) {
  exports.Set("kernelCtlEncode", Napi::Function::New(env, Encode));
  exports.Set("kernelCtlDecode", Napi::Function::New(env, Decode));
}

}  // namespace nm
