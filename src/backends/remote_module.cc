// libcoe_remote.so: the remote and openai backends (see backends/module.h).
#include "backends/backends.h"
#include "backends/module.h"

namespace {
const coe::ModuleBackend kBackends[] = {{"remote", &coe::CreateRemoteBackend}, {"openai", &coe::CreateOpenAiBackend}};
const coe::ModuleExports kExports{.name = "remote", .backends = kBackends, .num_backends = 2};
}  // namespace

extern "C" const coe::ModuleExports* coe_module() { return &kExports; }
