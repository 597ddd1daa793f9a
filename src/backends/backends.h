// Internal: the backend plug-ins' factories (each compiled behind a CMake option).
#ifndef COE_BACKENDS_BACKENDS_H_
#define COE_BACKENDS_BACKENDS_H_

#include "coe/backend.h"

namespace coe {

StatusOr<std::unique_ptr<Backend>> CreateRecordedBackend(const ModelSpec& spec, const BackendOptions& options);
StatusOr<std::unique_ptr<Backend>> CreateOnnxBackend(const ModelSpec& spec, const BackendOptions& options);
StatusOr<std::unique_ptr<Backend>> CreateOpenAiBackend(const ModelSpec& spec, const BackendOptions& options);
StatusOr<std::unique_ptr<Backend>> CreateRemoteBackend(const ModelSpec& spec, const BackendOptions& options);

}  // namespace coe

#endif  // COE_BACKENDS_BACKENDS_H_
