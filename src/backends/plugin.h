// Internal: the plug-ins: libcoe_opencv.so (the onnx backend, OpenCV DNN),
// libcoe_images.so (image input, OpenCV's image codecs) and libcoe_onednn.so (the
// onednn backend: ONNX models on oneDNN).
//
// OpenCV's image codecs on Debian pull in some 140 shared libraries (GDAL, Poppler,
// HDF5, ...): loading them costs ~0.12 s at every process start, DNN's ~0.02 s. So
// each part that needs OpenCV is a separate module, dlopen()ed on first use: `coe plan`
// loads neither, a cascade of onnx models on tensor or IDX inputs only the first.
//
// A module is looked up in $COE_PLUGIN_DIR, then beside the running executable, then
// beside libcoe_base.so, then in the install directory. It is never unloaded (backends
// it made may outlive any caller).
#ifndef COE_BACKENDS_PLUGIN_H_
#define COE_BACKENDS_PLUGIN_H_

#include <memory>
#include <string>

#include "coe/backend.h"
#include "coe/dataset.h"

namespace coe {

struct OnnxPlugin {
  StatusOr<std::unique_ptr<Backend>> (*create_onnx)(const ModelSpec&, const BackendOptions&);
};
struct OnednnPlugin {
  StatusOr<std::unique_ptr<Backend>> (*create)(const ModelSpec&, const BackendOptions&);
};
struct ImagePlugin {
  StatusOr<InputBatch> (*load_images)(const std::string&, const DatasetOptions&);
};

// Load their module once (thread-safe); FailedPrecondition naming the paths tried when
// it cannot be found or loaded.
StatusOr<const OnnxPlugin*> LoadOnnxPlugin();
StatusOr<const ImagePlugin*> LoadImagePlugin();
StatusOr<const OnednnPlugin*> LoadOnednnPlugin();

}  // namespace coe

// The modules' entry points: they fill `out`. C linkage so that dlsym finds them.
extern "C" void coe_onnx_plugin_v1(coe::OnnxPlugin* out);
extern "C" void coe_images_plugin_v1(coe::ImagePlugin* out);
extern "C" void coe_onednn_plugin_v1(coe::OnednnPlugin* out);

#endif  // COE_BACKENDS_PLUGIN_H_
