// Entry of the library addon (netmap.node): each part registers its own
// functions. pkt-gen and benchmark loops live in the tools addon (cpp/tools).
#include "napi/napi_util.h"

namespace nm {
void InitVhostUser(Napi::Env env, Napi::Object exports);  // napi/vhost_user.cc
void InitShortcutRing(Napi::Env env, Napi::Object exports);  // napi/shortcut_ring.cc
}

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  nm::InitAbi(env, exports);
  nm::InitFdio(env, exports);
  nm::InitRegion(env, exports);
  nm::InitPipe(env, exports);
  nm::InitKernel(env, exports);
  nm::InitKernelCtl(env, exports);
  nm::InitForward(env, exports);
  nm::InitPortDrivers(env, exports);
  nm::InitAfPacket(env, exports);
  nm::InitVhostUser(env, exports);
  nm::InitCapture(env, exports);
  nm::InitShortcutRing(env, exports);
  return exports;
}

NODE_API_MODULE(netmap, InitAddon)
