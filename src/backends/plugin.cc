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

StatusOr<void*> LoadModuleEntry(const char* name, const char* entry_name, const char* what, const char* option) {
  // One module at a time. The dynamic loader serializes dlopen itself, but under a lock
  // of its own that ThreadSanitizer cannot see: two modules loading at once (the onnx
  // backend on one thread, image input on another) grow its table of unique symbols
  // with a calloc on one thread and a free on the other, which TSan then reports
  // (do_lookup_unique, elf/dl-lookup.c) as a race. This lock is the same order, visible.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::vector<std::string> tried;
  std::string errors;
  // A module already in the process (a test or a host program linked it) is used as is:
  // a second copy would register its protobuf messages twice.
  if (void* h = dlopen(name, RTLD_NOW | RTLD_NOLOAD)) {
    if (void* entry = dlsym(h, entry_name)) return entry;
    errors += std::string("\n  ") + name + " (already loaded): no entry point " + entry_name;
  }
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
    void* entry = dlsym(h, entry_name);
    if (!entry) {
      errors += "\n  " + path + ": no entry point " + entry_name;
      continue;
    }
    return entry;
  }
  return FailedPreconditionError(std::string(what) + " needs " + name + " (built with " + option +
                                 "); tried:" + errors);
}

StatusOr<const OnnxPlugin*> LoadOnnxPlugin() {
  return LoadPluginOnce<OnnxPlugin>("libcoe_opencv.so", "coe_onnx_plugin_v1", "the onnx backend", "COE_WITH_ONNX");
}

StatusOr<const ImagePlugin*> LoadImagePlugin() {
  return LoadPluginOnce<ImagePlugin>("libcoe_images.so", "coe_images_plugin_v1", "image input", "COE_WITH_ONNX");
}

StatusOr<const OnednnPlugin*> LoadOnednnPlugin() {
  return LoadPluginOnce<OnednnPlugin>("libcoe_onednn.so", "coe_onednn_plugin_v1", "the onednn backend",
                                      "COE_WITH_ONEDNN");
}

StatusOr<const RemotePlugin*> LoadRemotePlugin() {
  return LoadPluginOnce<RemotePlugin>("libcoe_remote.so", "coe_remote_plugin_v1", "a remote or openai model",
                                      "COE_WITH_SERVER");
}

}  // namespace coe
