#include "backends/registry.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <mutex>
#include <vector>

#include "backends/backends.h"
#include "coe/paths.h"

// The modules this build made (CMakeLists.txt: every coe_module(), comma-separated).
#ifndef COE_BUILT_MODULES
#define COE_BUILT_MODULES ""
#endif

namespace coe {

namespace fs = std::filesystem;

namespace {

struct ModuleInfo {
  const char* name;
  const char* file;
  const char* what;    // what needs it, in error messages
  const char* option;  // its CMake option
};

constexpr std::array<ModuleInfo, 5> kModules = {{
    {"opencv", "libcoe_opencv.so", "the onnx backend", "COE_WITH_OPENCV"},
    {"images", "libcoe_images.so", "image input", "COE_WITH_IMAGES"},
    {"onednn", "libcoe_onednn.so", "the onednn backend", "COE_WITH_ONEDNN"},
    {"remote", "libcoe_remote.so", "a remote or openai model", "COE_WITH_REMOTE"},
    {"grpc", "libcoe_grpc.so", "the gRPC front end", "COE_WITH_GRPC"},
}};

constexpr std::array<BackendKind, 5> kKinds = {{
    {"onnx", "opencv", {.computes = true}},
    {"onednn", "onednn", {.computes = true}},
    {"recorded", nullptr, {.computes = false}},
    {"remote", "remote", {.waits = true}},
    {"openai", "remote", {.text_inputs = true, .waits = true, .measures_cost = true}},
}};

bool Built(const ModuleInfo& m) {
  const std::string built = std::string(",") + COE_BUILT_MODULES + ",";
  return built.find(std::string(",") + m.name + ",") != std::string::npos;
}

// The paths `file` is looked for at, in order (see registry.h).
std::vector<std::string> Candidates(const char* file) {
  std::vector<std::string> paths;
  if (const char* dir = std::getenv("COE_PLUGIN_DIR")) paths.push_back((fs::path(dir) / file).string());
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) paths.push_back((exe.parent_path() / file).string());
  // Beside libcoe_base.so (a build tree's, when coe is a library in another program:
  // the Python package).
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ExecutableDir), &info) && info.dli_fname) {
    const std::string beside = (fs::path(info.dli_fname).parent_path() / file).string();
    if (std::find(paths.begin(), paths.end(), beside) == paths.end()) paths.push_back(beside);
  }
  paths.push_back((fs::path(COE_PLUGIN_INSTALL_DIR) / file).string());
  return paths;
}

// The exports of the module at `handle` (`where` names it), or why they are not usable.
StatusOr<const ModuleExports*> Exports(void* handle, const ModuleInfo& m, const std::string& where) {
  auto entry = reinterpret_cast<const ModuleExports* (*)()>(dlsym(handle, "coe_module"));
  if (!entry) return FailedPreconditionError(where + ": no entry point coe_module");
  const ModuleExports* e = entry();
  if (!e || e->abi_version != kModuleAbiVersion)
    return FailedPreconditionError(where + ": built for module ABI " + std::to_string(e ? e->abi_version : 0) +
                                   ", this coe has ABI " + std::to_string(kModuleAbiVersion) +
                                   " (rebuild the module with this coe)");
  if (!e->name || std::string(e->name) != m.name)
    return FailedPreconditionError(where + ": is module '" + (e->name ? e->name : "") + "', not '" + m.name + "'");
  return e;
}

StatusOr<const ModuleExports*> Load(const ModuleInfo& m) {
  if (!Built(m))
    return FailedPreconditionError(std::string("this coe was built without ") + m.what + " (" + m.option + "=OFF)");
  // One module at a time. The dynamic loader serializes dlopen itself, but under a lock
  // of its own that ThreadSanitizer cannot see: two modules loading at once (the onnx
  // backend on one thread, image input on another) grow its table of unique symbols
  // with a calloc on one thread and a free on the other, which TSan then reports
  // (do_lookup_unique, elf/dl-lookup.c) as a race. This lock is the same order, visible.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::string errors;
  // A module already in the process (a test or a host program linked it) is used as is:
  // a second copy would register its protobuf messages twice.
  if (void* h = dlopen(m.file, RTLD_NOW | RTLD_NOLOAD)) {
    StatusOr<const ModuleExports*> e = Exports(h, m, std::string(m.file) + " (already loaded)");
    if (e.ok()) return e;
    errors += "\n  " + e.status().message();
  }
  for (const std::string& path : Candidates(m.file)) {
    if (!fs::exists(path)) {
      errors += "\n  " + path + ": no such file";
      continue;
    }
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      errors += "\n  " + path + ": " + dlerror();
      continue;
    }
    StatusOr<const ModuleExports*> e = Exports(h, m, path);
    if (e.ok()) return e;
    errors += "\n  " + e.status().message();
  }
  return FailedPreconditionError(std::string(m.what) + " needs " + m.file + " (built with " + m.option +
                                 "); tried:" + errors);
}

}  // namespace

StatusOr<const ModuleExports*> LoadModule(std::string_view name) {
  static std::array<std::once_flag, kModules.size()> once;
  static std::array<const ModuleExports*, kModules.size()> exports{};
  static std::array<Status, kModules.size()> status;
  for (size_t i = 0; i < kModules.size(); ++i) {
    if (name != kModules[i].name) continue;
    std::call_once(once[i], [i] {
      StatusOr<const ModuleExports*> e = Load(kModules[i]);
      if (e.ok())
        exports[i] = *e;
      else
        status[i] = e.status();
    });
    if (!status[i].ok()) return status[i];
    return exports[i];
  }
  return InvalidArgumentError("no module '" + std::string(name) + "'");
}

StatusOr<const void*> LoadModuleService(std::string_view module, std::string_view service) {
  COE_ASSIGN_OR_RETURN(const ModuleExports* e, LoadModule(module));
  for (int i = 0; i < e->num_services; ++i)
    if (e->services[i].name == service && e->services[i].table) return e->services[i].table;
  return FailedPreconditionError("module '" + std::string(module) + "' provides no service '" + std::string(service) +
                                 "'");
}

const BackendKind* FindBackendKind(std::string_view name) {
  for (const BackendKind& k : kKinds)
    if (name == k.name) return &k;
  return nullptr;
}

std::string BackendKindOf(const ModelSpec& spec) {
  if (!spec.backend.empty()) return spec.backend;
  if (!spec.url.empty()) return "remote";
  if (spec.path.ends_with(".onnx") && spec.path.size() > 5) return "onnx";
  if (spec.path.ends_with(".csv") && spec.path.size() > 4) return "recorded";
  return "";
}

BackendTraits BackendTraitsOf(const ModelSpec& spec) {
  const BackendKind* k = FindBackendKind(BackendKindOf(spec));
  return k ? k->traits : BackendTraits{};
}

StatusOr<BackendFactory> BackendFactoryOf(const ModelSpec& spec) {
  const std::string kind = BackendKindOf(spec);
  const BackendKind* k = FindBackendKind(kind);
  if (kind.empty())
    return InvalidArgumentError("model '" + spec.name + "' in the catalogue says neither backend, path nor url");
  if (!k) {
    std::string known;
    for (const BackendKind& each : kKinds) known += std::string(known.empty() ? "" : ", ") + each.name;
    return InvalidArgumentError("model '" + spec.name + "': unknown backend '" + kind + "' (expected " + known + ")");
  }
  if (!k->module) return &CreateRecordedBackend;
  const ModuleInfo* m = nullptr;
  for (const ModuleInfo& each : kModules)
    if (std::string_view(each.name) == k->module) m = &each;
  if (!Built(*m))
    return FailedPreconditionError("model '" + spec.name + "': this coe was built without the " + kind + " backend (" +
                                   m->option + "=OFF)");
  StatusOr<const ModuleExports*> e = LoadModule(k->module);
  if (!e.ok()) return e.status().WithPrefix("model '" + spec.name + "'");
  for (int i = 0; i < (*e)->num_backends; ++i)
    if ((*e)->backends[i].kind == kind && (*e)->backends[i].create) return (*e)->backends[i].create;
  return FailedPreconditionError("model '" + spec.name + "': module " + m->file + " provides no backend '" + kind +
                                 "'");
}

}  // namespace coe
