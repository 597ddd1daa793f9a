// Internal: the OpenCV plug-in (libcoe_opencv.so: the onnx backend and image input).
//
// OpenCV on Debian pulls in some 140 shared libraries; loading them costs a quarter of
// a second at every process start. So the library that needs OpenCV is a separate
// module, dlopen()ed on first use: `coe plan` never pays for it.
//
// The module is looked up in $COE_PLUGIN_DIR, then beside the running executable, then
// in the install directory. It is never unloaded (backends it made may outlive any
// caller).
#ifndef COE_BACKENDS_PLUGIN_H_
#define COE_BACKENDS_PLUGIN_H_

#include <memory>
#include <string>

#include "coe/backend.h"
#include "coe/dataset.h"

namespace coe {

struct OpenCvPlugin {
  StatusOr<std::unique_ptr<Backend>> (*create_onnx)(const ModelSpec&, const BackendOptions&);
  StatusOr<InputBatch> (*load_images)(const std::string&, const DatasetOptions&);
};

// Loads the module once (thread-safe); FailedPrecondition naming the paths tried when
// it cannot be found or loaded.
StatusOr<const OpenCvPlugin*> LoadOpenCvPlugin();

}  // namespace coe

// The module's entry point: fills `out`. C linkage so that dlsym finds it by name.
extern "C" void coe_opencv_plugin_v1(coe::OpenCvPlugin* out);

#endif  // COE_BACKENDS_PLUGIN_H_
