// Module entry: each part of the addon registers its own functions.
#include "napi/napi_util.h"

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  nm::InitAbi(env, exports);
  nm::InitFdio(env, exports);
  nm::InitRegion(env, exports);
  nm::InitPipe(env, exports);
  nm::InitKernel(env, exports);
  nm::InitForward(env, exports);
  nm::InitPktgen(env, exports);
  return exports;
}

NODE_API_MODULE(netmap, InitAddon)
