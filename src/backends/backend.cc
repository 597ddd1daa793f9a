#include "coe/backend.h"

#include "backends/backends.h"
#include "backends/plugin.h"

namespace coe {

StatusOr<ImageLoader> OpenCvImageLoader() {
  COE_ASSIGN_OR_RETURN(const ImagePlugin* plugin, LoadImagePlugin());
  return plugin->load_images;
}

StatusOr<std::unique_ptr<Backend>> CreateBackend(const ModelSpec& spec, const BackendOptions& options) {
  std::string kind = spec.backend;
  if (kind.empty()) {
    if (!spec.url.empty())
      kind = "remote";
    else if (spec.path.size() > 5 && spec.path.substr(spec.path.size() - 5) == ".onnx")
      kind = "onnx";
    else if (spec.path.size() > 4 && spec.path.substr(spec.path.size() - 4) == ".csv")
      kind = "recorded";
  }
  if (kind == "recorded") return CreateRecordedBackend(spec, options);
  if (kind == "onnx") {
    auto plugin = LoadOnnxPlugin();
    if (!plugin.ok()) return plugin.status().WithPrefix("model '" + spec.name + "'");
    return (*plugin)->create_onnx(spec, options);
  }
  if (kind == "onednn") {
    auto plugin = LoadOnednnPlugin();
    if (!plugin.ok()) return plugin.status().WithPrefix("model '" + spec.name + "'");
    return (*plugin)->create(spec, options);
  }
  if (kind == "remote" || kind == "openai") {
#ifdef COE_HAVE_REMOTE
    auto plugin = LoadRemotePlugin();
    if (!plugin.ok()) return plugin.status().WithPrefix("model '" + spec.name + "'");
    return kind == "remote" ? (*plugin)->create_remote(spec, options) : (*plugin)->create_openai(spec, options);
#else
    return FailedPreconditionError("model '" + spec.name + "': this coe was built without the " + kind + " backend");
#endif
  }
  if (kind.empty())
    return InvalidArgumentError("model '" + spec.name + "' in the catalogue says neither backend, path nor url");
  return InvalidArgumentError("model '" + spec.name + "': unknown backend '" + kind +
                              "' (expected onnx, onednn, recorded, remote, openai)");
}

}  // namespace coe
