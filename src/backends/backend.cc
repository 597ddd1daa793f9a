#include "coe/backend.h"

#include "backends/registry.h"

namespace coe {

StatusOr<ImageLoader> OpenCvImageLoader() {
  COE_ASSIGN_OR_RETURN(const ModuleExports* module, LoadModule("images"));
  if (!module->load_images) return FailedPreconditionError("module libcoe_images.so provides no image loader");
  return module->load_images;
}

StatusOr<std::unique_ptr<Backend>> CreateBackend(const ModelSpec& spec, const BackendOptions& options) {
  COE_ASSIGN_OR_RETURN(BackendFactory create, BackendFactoryOf(spec));
  return create(spec, options);
}

}  // namespace coe
