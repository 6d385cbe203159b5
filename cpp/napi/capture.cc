// N-API glue of cpp/core/pcap_filter: a compiled tcpdump filter that JS runs
// on a batch of frames in a port's memory with one call.
#include <memory>

#include "core/pcap_filter.h"
#include "napi/napi_util.h"

namespace nm {

namespace {

// Bytes of a Uint8Array / ArrayBuffer argument.
std::pair<const uint8_t *, size_t> bytes_arg(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = info[i];
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto a = v.As<Napi::Uint8Array>();
    return {a.Data(), a.ByteLength()};
  }
  if (v.IsArrayBuffer()) {
    auto b = v.As<Napi::ArrayBuffer>();
    return {static_cast<const uint8_t *>(b.Data()), b.ByteLength()};
  }
  throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Uint8Array or an ArrayBuffer");
}

class PcapFilterWrap : public Napi::ObjectWrap<PcapFilterWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PcapFilter",
                       {InstanceMethod("match", &PcapFilterWrap::Match), InstanceMethod("matchBatch", &PcapFilterWrap::MatchBatch),
                        InstanceAccessor("instructions", &PcapFilterWrap::Instructions, nullptr)});
  }

  // new PcapFilter(expression, snaplen)
  PcapFilterWrap(const Napi::CallbackInfo &info) : Napi::ObjectWrap<PcapFilterWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "PcapFilter(expression: string, snaplen: number)");
    const uint32_t snaplen = arg_u32(info, 1, "snaplen");
    f_ = unwrap(env, PcapFilter::compile(info[0].As<Napi::String>().Utf8Value(), snaplen));
  }

 private:
  // match(frame: Uint8Array, wireLen?: number): boolean
  Napi::Value Match(const Napi::CallbackInfo &info) {
    auto [p, n] = bytes_arg(info, 0, "frame");
    if (n > UINT32_MAX) throw Napi::RangeError::New(info.Env(), "frame too large");
    uint32_t wire = info.Length() > 1 && !info[1].IsUndefined() ? arg_u32(info, 1, "wireLen") : static_cast<uint32_t>(n);
    if (wire < n) wire = static_cast<uint32_t>(n);
    return Napi::Boolean::New(info.Env(), f_->match(p, static_cast<uint32_t>(n), wire));
  }

  // matchBatch(memory, offsets: Uint32Array, lens: Uint32Array, count, keep: Uint8Array): number kept
  Napi::Value MatchBatch(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto [base, size] = bytes_arg(info, 0, "memory");
    auto u32 = [&](size_t i, const char *name) {
      if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
        throw Napi::TypeError::New(env, std::string(name) + " must be a Uint32Array");
      return info[i].As<Napi::Uint32Array>();
    };
    Napi::Uint32Array offs = u32(1, "offsets"), lens = u32(2, "lens");
    const uint32_t n = arg_u32(info, 3, "count");
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, "keep must be a Uint8Array");
    Napi::Uint8Array keep = info[4].As<Napi::Uint8Array>();
    if (n > offs.ElementLength() || n > lens.ElementLength() || n > keep.ElementLength())
      throw Napi::RangeError::New(env, "count is larger than offsets, lens or keep");
    return Napi::Number::New(env, f_->match_batch(base, size, offs.Data(), lens.Data(), n, keep.Data()));
  }

  Napi::Value Instructions(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), f_->instructions()); }

  std::unique_ptr<PcapFilter> f_;
};

// pcapAvailable(): null when libpcap loads, else why not
Napi::Value PcapAvailable(const Napi::CallbackInfo &info) {
  std::string why;
  if (pcap_available(&why)) return info.Env().Null();
  return Napi::String::New(info.Env(), why);
}

}  // namespace

void InitCapture(Napi::Env env, Napi::Object exports) {
  exports.Set("PcapFilter", PcapFilterWrap::Define(env));
  exports.Set("pcapAvailable", Napi::Function::New(env, PcapAvailable));
}

}  // namespace nm
