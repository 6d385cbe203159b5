// JS binding of the kernel backend (cpp/core/kernel_port.h): register specs
// from JS objects, the region as an ArrayBuffer, errors as exceptions.
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>

#include "core/kernel_port.h"
#include "napi/napi_util.h"

namespace nm {

namespace {

uint32_t bounded(Napi::Object o, const char *key, uint32_t max) {
  uint32_t v = opt_u32(o, key, 0);
  if (v > max)
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must be at most " + std::to_string(max) + ", got " +
                                             std::to_string(v));
  return v;
}

std::string opt_string(Napi::Object o, const char *key, const std::string &dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>();
}

RegisterSpec parse_spec(const Napi::CallbackInfo &info, size_t i) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsObject())
    throw Napi::TypeError::New(env, "expected a register spec {name, mode, ringId, flags, ...}");
  Napi::Object o = info[i].As<Napi::Object>();
  RegisterSpec s;
  Napi::Value name = o.Get("name");
  if (!name.IsString()) throw Napi::TypeError::New(env, "spec.name must be a string (the nr_name, e.g. 'eth0')");
  s.name = name.As<Napi::String>();
  if (s.name.empty()) throw coded_error(env, "spec.name is empty: name the interface or VALE port", EINVAL);
  if (s.name.find('\0') != std::string::npos)
    throw coded_error(env, "spec.name contains a NUL character", EINVAL);
  s.label = opt_string(o, "label", s.name);
  s.device = opt_string(o, "device", NETMAP_DEVICE_NAME);
  s.mode = bounded(o, "mode", 0xffffffffu);
  s.ring_id = bounded(o, "ringId", 0xffff);
  Napi::Value fv = o.Get("flags");
  if (!fv.IsUndefined()) {
    if (!fv.IsNumber()) throw Napi::TypeError::New(env, "flags must be a number");
    double d = fv.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= static_cast<double>(MAX_SAFE_FLAGS)) || std::floor(d) != d)
      throw Napi::RangeError::New(env, "flags must be a non-negative integer below 2^53");
    s.flags = static_cast<uint64_t>(d);
  }
  s.tx_slots = bounded(o, "txSlots", 0xffffffffu);
  s.rx_slots = bounded(o, "rxSlots", 0xffffffffu);
  s.tx_rings = bounded(o, "txRings", 0xffff);
  s.rx_rings = bounded(o, "rxRings", 0xffff);
  s.host_tx_rings = bounded(o, "hostTxRings", 0xffff);
  s.host_rx_rings = bounded(o, "hostRxRings", 0xffff);
  s.mem_id = bounded(o, "memId", 0xffff);
  s.extra_bufs = bounded(o, "extraBufs", 0xffffffffu);
  return s;
}

Napi::Array to_array(Napi::Env env, const std::vector<uint32_t> &v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (uint32_t i = 0; i < v.size(); i++) a.Set(i, Napi::Number::New(env, v[i]));
  return a;
}

// ---- exported functions --------------------------------------------------

Napi::Value KernelAvailable(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), kernel_available()); }

Napi::Value EncodeRegisterRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RegisterSpec s = parse_spec(info, 0);
  nmreq_header h = unwrap(env, make_header(s.name, NETMAP_REQ_REGISTER, false));
  nmreq_register r = make_register(s);
  Napi::Object o = Napi::Object::New(env);
  o.Set("header", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t *>(&h), sizeof h));
  o.Set("body", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t *>(&r), sizeof r));
  return o;
}

Napi::Value EncodeLegacyRegisterRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RegisterSpec s = parse_spec(info, 0);
  auto r = make_legacy(s);
  if (!r) throw coded_error(env, "cannot encode a legacy NIOCREGIF request: " + r.error().what, r.error().err);
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t *>(&*r), sizeof(nmreq));
}

// kernelRequest(reqtype, name, body: Buffer, device?): one NIOCCTRL on a fresh
// fd; the kernel reads and writes `body` in place. Returns {body, name}, name
// being nr_name as the kernel left it (VALE_LIST answers with a port's name).
Napi::Value KernelRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t rt = arg_u32(info, 0, "reqtype");
  if (info.Length() < 2 || !info[1].IsString())
    throw Napi::TypeError::New(env, "kernelRequest(reqtype, name, body, device?)");
  if (rt > 0xffff) throw coded_error(env, "kernelRequest: request type " + std::to_string(rt) + " is not a netmap request", EINVAL);
  std::string name = info[1].As<Napi::String>();
  Napi::Buffer<uint8_t> body;
  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsBuffer()) throw Napi::TypeError::New(env, "kernelRequest body must be a Buffer");
    body = info[2].As<Napi::Buffer<uint8_t>>();
  } else {
    body = Napi::Buffer<uint8_t>::New(env, 0);
  }
  std::string device = NETMAP_DEVICE_NAME;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsString()) throw Napi::TypeError::New(env, "kernelRequest device must be a string");
    device = info[3].As<Napi::String>();
  }
  // a Buffer's bytes do not move while this synchronous call runs
  std::string out_name =
      unwrap(env, kernel_request(device, name, static_cast<uint16_t>(rt), body.Data(), body.Length()));
  auto out = Napi::Object::New(env);
  out.Set("body", body);
  out.Set("name", Napi::String::New(env, out_name));
  return out;
}

// ---- KernelPort ------------------------------------------------------------

class KernelPort : public Napi::ObjectWrap<KernelPort> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KernelPort",
                       {InstanceMethod("txsync", &KernelPort::TxSync), InstanceMethod("rxsync", &KernelPort::RxSync),
                        InstanceMethod("close", &KernelPort::Close),
                        InstanceAccessor("memory", &KernelPort::Memory, nullptr),
                        InstanceAccessor("nifpOffset", &KernelPort::NifpOffset, nullptr),
                        InstanceAccessor("fd", &KernelPort::Fd, nullptr),
                        InstanceAccessor("info", &KernelPort::Info, nullptr)});
  }

  KernelPort(const Napi::CallbackInfo &info) : Napi::ObjectWrap<KernelPort>(info) {
    Napi::Env env = info.Env();
    RegisterSpec s = parse_spec(info, 0);
    label_ = s.label;
    KernelRegistration r = unwrap(env, kernel_register(s));
    const nmreq_register &reg = r.reg;
    const NifLayout &layout = r.layout;
    base_ = r.map.data();
    size_ = r.map.size();
    nifp_offset_ = reg.nr_offset;
    // the ArrayBuffer takes the mapping over (munmaps it itself if it fails)
    memory_ = Napi::Persistent(mapping_to_arraybuffer(env, std::move(r.map)));

    Napi::Object o = Napi::Object::New(env);
    o.Set("txSlots", Napi::Number::New(env, reg.nr_tx_slots));
    o.Set("rxSlots", Napi::Number::New(env, reg.nr_rx_slots));
    o.Set("txRings", Napi::Number::New(env, reg.nr_tx_rings));
    o.Set("rxRings", Napi::Number::New(env, reg.nr_rx_rings));
    o.Set("hostTxRings", Napi::Number::New(env, r.legacy ? layout.host_tx_rings : reg.nr_host_tx_rings));
    o.Set("hostRxRings", Napi::Number::New(env, r.legacy ? layout.host_rx_rings : reg.nr_host_rx_rings));
    o.Set("memId", Napi::Number::New(env, reg.nr_mem_id));
    o.Set("memSize", Napi::Number::New(env, static_cast<double>(reg.nr_memsize)));
    o.Set("usedLegacy", Napi::Boolean::New(env, r.legacy));
    o.Set("mode", Napi::Number::New(env, reg.nr_mode));
    o.Set("ringId", Napi::Number::New(env, reg.nr_ringid));
    o.Set("flags", Napi::Number::New(env, static_cast<double>(reg.nr_flags & MAX_SAFE_FLAGS)));
    o.Set("extraBufs", Napi::Number::New(env, reg.nr_extra_bufs));
    Napi::Object lo = Napi::Object::New(env);
    lo.Set("txRings", Napi::Number::New(env, layout.tx_rings));
    lo.Set("rxRings", Napi::Number::New(env, layout.rx_rings));
    lo.Set("hostTxRings", Napi::Number::New(env, layout.host_tx_rings));
    lo.Set("hostRxRings", Napi::Number::New(env, layout.host_rx_rings));
    lo.Set("txPresent", to_array(env, layout.tx_present));
    lo.Set("rxPresent", to_array(env, layout.rx_present));
    o.Set("layout", lo);
    info_ = Napi::Persistent(o);
    fd_ = std::move(r.fd);
  }

  // The mapping belongs to the ArrayBuffer (and may already be gone with it);
  // fd_ closes itself.

 private:
  Napi::Value Memory(const Napi::CallbackInfo &info) {
    if (memory_.IsEmpty()) return info.Env().Null();
    return memory_.Value();
  }
  Napi::Value NifpOffset(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), static_cast<double>(nifp_offset_));
  }
  Napi::Value Fd(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), fd_ ? fd_.get() : -1); }
  Napi::Value Info(const Napi::CallbackInfo &info) {
    if (info_.IsEmpty()) return info.Env().Null();
    return info_.Value();
  }

  Napi::Value Sync(const Napi::CallbackInfo &info, bool tx) {
    Napi::Env env = info.Env();
    if (!fd_) throw coded_error(env, "netmap port '" + label_ + "' is closed", EBADF);
    unwrap(env, kernel_sync(fd_.get(), tx, label_));
    return env.Undefined();
  }
  Napi::Value TxSync(const Napi::CallbackInfo &info) { return Sync(info, true); }
  Napi::Value RxSync(const Napi::CallbackInfo &info) { return Sync(info, false); }

  // Unregisters now: the kernel keeps a port bound while any mapping of its
  // fd exists, and the ArrayBuffer (with every view JS still holds) lives
  // until GC. So the netmap pages are swapped for private anonymous memory
  // at the same address (zeros, never the kernel's pages again), which drops
  // the mapping's hold on the file; the fd is closed; the address range is
  // unmapped when the ArrayBuffer goes. memory_ is held strongly, so the
  // range is still ours here.
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (!fd_) return info.Env().Undefined();
    if (base_ != nullptr) {
      void *r = ::mmap(base_, size_, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
      // on failure the netmap mapping stays until GC unmaps it: still correct,
      // only the port stays bound a little longer
      (void)r;
    }
    fd_.reset();
    return info.Env().Undefined();
  }

  std::string label_;
  unique_fd fd_;
  void *base_ = nullptr;
  size_t size_ = 0;
  uint64_t nifp_offset_ = 0;
  Napi::Reference<Napi::ArrayBuffer> memory_;
  Napi::ObjectReference info_;
};

}  // namespace

void InitKernel(Napi::Env env, Napi::Object exports) {
  exports.Set("kernelAvailable", Napi::Function::New(env, KernelAvailable));
  exports.Set("encodeRegisterRequest", Napi::Function::New(env, EncodeRegisterRequest));
  exports.Set("encodeLegacyRegisterRequest", Napi::Function::New(env, EncodeLegacyRegisterRequest));
  exports.Set("kernelRequest", Napi::Function::New(env, KernelRequest));
  exports.Set("KernelPort", KernelPort::Define(env));
}

}  // namespace nm
