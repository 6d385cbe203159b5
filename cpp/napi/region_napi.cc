// JS entry points for regions: compute a layout, create one in a memfd.

#include "napi/napi_util.h"
#include "core/region.h"

namespace nm {

// Region parameters from a JS object ({nIfs, txRings, ...}), defaults as netmap's.
LayoutParams params_from(Napi::Object o) {
  LayoutParams p;
  p.n_ifs = opt_u32(o, "nIfs", 1);
  p.tx_rings = opt_u32(o, "txRings", 1);
  p.rx_rings = opt_u32(o, "rxRings", 1);
  p.tx_slots = opt_u32(o, "txSlots", DEFAULT_SLOTS);
  p.rx_slots = opt_u32(o, "rxSlots", DEFAULT_SLOTS);
  p.buf_size = opt_u32(o, "bufSize", DEFAULT_BUF_SIZE);
  p.extra_bufs = opt_u32(o, "extraBufs", 0);
  return p;
}

namespace {

Napi::Object layout_object(Napi::Env env, const Layout &l) {
  auto o = Napi::Object::New(env);
  o.Set("size", static_cast<double>(l.size));
  o.Set("numBufs", l.num_bufs);
  o.Set("bufPoolOffset", static_cast<double>(l.buf_pool_ofs));
  o.Set("csbOffset", static_cast<double>(l.csb_ofs));
  auto nifps = Napi::Array::New(env);
  for (uint32_t i = 0; i < l.p.n_ifs; i++) nifps.Set(i, static_cast<double>(l.nifp_ofs[i]));
  o.Set("nifpOffsets", nifps);
  return o;
}

Napi::Value ComputeLayout(const Napi::CallbackInfo &info) {
  if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "computeLayout(params)");
  return layout_object(info.Env(), unwrap(info.Env(), compute_layout(params_from(info[0].As<Napi::Object>()))));
}

// createRegion(params, names[]) -> {fd, memory, layout}: a sealed memfd
// holding a fresh region, mapped once here as well.
Napi::Value CreateRegion(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "createRegion(params, names)");
  const Layout l = unwrap(env, compute_layout(params_from(info[0].As<Napi::Object>())));
  std::string names[MAX_IFS];
  if (info.Length() > 1 && info[1].IsArray()) {
    auto a = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < MAX_IFS && i < a.Length(); i++) names[i] = a.Get(i).As<Napi::String>();
  }
  MemfdRegion r = unwrap(env, create_memfd_region("netmap-region", l, names));
  auto o = Napi::Object::New(env);
  // the ArrayBuffer takes the mapping first: if that throws, r still owns the fd
  o.Set("memory", mapping_to_arraybuffer(env, std::move(r.map)));
  o.Set("fd", r.fd.release());
  o.Set("layout", layout_object(env, l));
  return o;
}

// validateRegion(memory): checks a region made by someone else; returns its layout.
Napi::Value ValidateRegion(const Napi::CallbackInfo &info) {
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(info.Env(), "validateRegion(ArrayBuffer)");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  auto l = validate_header(static_cast<const uint8_t *>(ab.Data()), ab.ByteLength());
  if (!l) throw coded_error(info.Env(), "invalid region: " + l.error().what, EINVAL);
  return layout_object(info.Env(), *l);
}

}  // namespace

void InitRegion(Napi::Env env, Napi::Object exports) {
  exports.Set("computeLayout", Napi::Function::New(env, ComputeLayout));
  exports.Set("createRegion", Napi::Function::New(env, CreateRegion));
  exports.Set("validateRegion", Napi::Function::New(env, ValidateRegion));
}

}  // namespace nm
