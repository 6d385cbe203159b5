// The C++ switch core behind a JS SwitchCore object, for glue that hands it
// to an in-line port driver (cpp/core/switch_core.h RoundHook).
#pragma once
#include <memory>

#include <napi.h>

#include "core/switch_core.h"

namespace nm {

// Throws a TypeError unless v is this thread's SwitchCore wrapper.
std::shared_ptr<SwitchCore> switch_core_of(Napi::Env env, Napi::Value v);

}  // namespace nm
