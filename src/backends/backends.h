// Internal: the backend plug-ins' factories (each compiled behind a CMake option).
#ifndef COE_BACKENDS_BACKENDS_H_
#define COE_BACKENDS_BACKENDS_H_

#include "coe/backend.h"

namespace coe {

StatusOr<std::unique_ptr<Backend>> CreateRecordedBackend(const ModelSpec& spec, const BackendOptions& options);
StatusOr<std::unique_ptr<Backend>> CreateOnnxBackend(const ModelSpec& spec, const BackendOptions& options);
StatusOr<std::unique_ptr<Backend>> CreateOpenAiBackend(const ModelSpec& spec, const BackendOptions& options);
StatusOr<std::unique_ptr<Backend>> CreateRemoteBackend(const ModelSpec& spec, const BackendOptions& options);

// ThreadSanitizer builds: reads one HTTP response from a loopback peer, once per
// process, on the calling thread (see openai_backend.cc); the HTTP backends call it at
// creation, before any thread that calls them exists. A no-op in other builds.
void WarmHttplibForTsan();

}  // namespace coe

#endif  // COE_BACKENDS_BACKENDS_H_
