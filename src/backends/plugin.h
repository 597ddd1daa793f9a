// Internal: the plug-ins: libcoe_opencv.so (the onnx backend, OpenCV DNN),
// libcoe_images.so (image input, OpenCV's image codecs), libcoe_onednn.so (the
// onednn backend: ONNX models on oneDNN), libcoe_remote.so (the remote and openai
// backends: httplib, OpenSSL) and libcoe_grpc.so (the server's gRPC front end,
// src/server/grpc_module.h).
//
// OpenCV's image codecs on Debian pull in some 140 shared libraries (GDAL, Poppler,
// HDF5, ...): loading them costs ~0.12 s at every process start, DNN's ~0.02 s. So
// each part that needs OpenCV is a separate module, dlopen()ed on first use: `coe plan`
// loads neither, a cascade of onnx models on tensor or IDX inputs only the first.
//
// A module is looked up in $COE_PLUGIN_DIR, then beside the running executable, then
// beside libcoe_base.so, then in the install directory; one already in the process
// (linked by a test) is used as it is. It is never unloaded (backends it made may
// outlive any caller).
#ifndef COE_BACKENDS_PLUGIN_H_
#define COE_BACKENDS_PLUGIN_H_

#include <memory>
#include <mutex>
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
struct RemotePlugin {
  StatusOr<std::unique_ptr<Backend>> (*create_remote)(const ModelSpec&, const BackendOptions&);
  StatusOr<std::unique_ptr<Backend>> (*create_openai)(const ModelSpec&, const BackendOptions&);
};
struct ImagePlugin {
  StatusOr<InputBatch> (*load_images)(const std::string&, const DatasetOptions&);
};

// The entry point `entry_name` of the module file `name`, loaded where this header
// says; FailedPrecondition naming every path tried and why each failed. `what` and
// `option` name the feature and its CMake option in that message.
StatusOr<void*> LoadModuleEntry(const char* name, const char* entry_name, const char* what, const char* option);

// Plugin's module, loaded and its entry point called on the first call (once per
// Plugin type, thread-safe); later calls return the same Plugin or the same error.
template <typename Plugin>
StatusOr<const Plugin*> LoadPluginOnce(const char* name, const char* entry_name, const char* what, const char* option) {
  static std::once_flag once;
  static Plugin plugin;
  static Status status;
  std::call_once(once, [&] {
    StatusOr<void*> entry = LoadModuleEntry(name, entry_name, what, option);
    if (!entry.ok()) {
      status = entry.status();
      return;
    }
    reinterpret_cast<void (*)(Plugin*)> (*entry)(&plugin);
  });
  if (!status.ok()) return status;
  return &plugin;
}

// Load their module once (thread-safe); FailedPrecondition naming the paths tried when
// it cannot be found or loaded.
StatusOr<const OnnxPlugin*> LoadOnnxPlugin();
StatusOr<const ImagePlugin*> LoadImagePlugin();
StatusOr<const OnednnPlugin*> LoadOnednnPlugin();
StatusOr<const RemotePlugin*> LoadRemotePlugin();

}  // namespace coe

// The modules' entry points: they fill `out`. C linkage so that dlsym finds them.
extern "C" void coe_onnx_plugin_v1(coe::OnnxPlugin* out);
extern "C" void coe_images_plugin_v1(coe::ImagePlugin* out);
extern "C" void coe_onednn_plugin_v1(coe::OnednnPlugin* out);
extern "C" void coe_remote_plugin_v1(coe::RemotePlugin* out);

#endif  // COE_BACKENDS_PLUGIN_H_
