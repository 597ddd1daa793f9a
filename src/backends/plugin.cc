#include "backends/plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <vector>

#include "coe/paths.h"

namespace coe {

namespace fs = std::filesystem;

namespace {

// dlopen()s the module `name` where plugin.h says and calls its entry point `entry`
// with `out`; the error names every path tried.
template <typename Plugin>
Status LoadModule(const char* name, const char* entry_name, const char* what, const char* option, Plugin* out) {
  std::vector<std::string> tried;
  if (const char* dir = std::getenv("COE_PLUGIN_DIR")) tried.push_back((fs::path(dir) / name).string());
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) tried.push_back((exe.parent_path() / name).string());
  // Beside libcoe_base.so (a build tree's, when coe is a library in another program:
  // the Python package).
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ExecutableDir), &info) && info.dli_fname) {
    const std::string beside = (fs::path(info.dli_fname).parent_path() / name).string();
    if (std::find(tried.begin(), tried.end(), beside) == tried.end()) tried.push_back(beside);
  }
  tried.push_back((fs::path(COE_PLUGIN_INSTALL_DIR) / name).string());
  std::string errors;
  for (const std::string& path : tried) {
    if (!fs::exists(path)) {
      errors += "\n  " + path + ": no such file";
      continue;
    }
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      errors += "\n  " + path + ": " + dlerror();
      continue;
    }
    auto entry = reinterpret_cast<void (*)(Plugin*)>(dlsym(h, entry_name));
    if (!entry) {
      errors += "\n  " + path + ": no entry point " + entry_name;
      continue;
    }
    entry(out);
    return Status::Ok();
  }
  return FailedPreconditionError(std::string(what) + " needs " + name + " (built with " + option +
                                 "); tried:" + errors);
}

// The module of `Plugin`, loaded on the first call (each Plugin type has its own once).
template <typename Plugin>
StatusOr<const Plugin*> LoadOnce(const char* name, const char* entry_name, const char* what, const char* option) {
  static std::once_flag once;
  static Plugin plugin;
  static Status status;
  std::call_once(once, [&] { status = LoadModule(name, entry_name, what, option, &plugin); });
  if (!status.ok()) return status;
  return &plugin;
}

}  // namespace

StatusOr<const OnnxPlugin*> LoadOnnxPlugin() {
  return LoadOnce<OnnxPlugin>("libcoe_opencv.so", "coe_onnx_plugin_v1", "the onnx backend", "COE_WITH_ONNX");
}

StatusOr<const ImagePlugin*> LoadImagePlugin() {
  return LoadOnce<ImagePlugin>("libcoe_images.so", "coe_images_plugin_v1", "image input", "COE_WITH_ONNX");
}

}  // namespace coe

namespace coe {

StatusOr<const OnednnPlugin*> LoadOnednnPlugin() {
  return LoadOnce<OnednnPlugin>("libcoe_onednn.so", "coe_onednn_plugin_v1", "the onednn backend", "COE_WITH_ONEDNN");
}

}  // namespace coe
