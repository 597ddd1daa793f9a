// libcoe_remote.so: the remote and openai backends (see backends/plugin.h).
#include "backends/backends.h"
#include "backends/plugin.h"

extern "C" void coe_remote_plugin_v1(coe::RemotePlugin* out) {
  out->create_remote = &coe::CreateRemoteBackend;
  out->create_openai = &coe::CreateOpenAiBackend;
}
