// The tools addon (netmap_tools.node): pkt-gen-ts's native loops and the
// C++ reference loops of the benchmarks. Library users never load it; only
// tools/ and bench/ do (tools/addon.ts).
#pragma once

#include <napi.h>

namespace nm {

void InitPktgen(Napi::Env env, Napi::Object exports);
void InitPipeBench(Napi::Env env, Napi::Object exports);

}  // namespace nm
