// Entry of the tools addon (see tools.h).
#include "tools/tools.h"

static Napi::Object InitTools(Napi::Env env, Napi::Object exports) {
  nm::InitPktgen(env, exports);
  nm::InitPipeBench(env, exports);
  return exports;
}

NODE_API_MODULE(netmap_tools, InitTools)
