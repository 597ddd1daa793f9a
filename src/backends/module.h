// Internal: the one ABI of coe's modules, the parts loaded on first use
// (backends/registry.h loads them):
//   libcoe_opencv.so  the onnx backend (OpenCV DNN)             COE_WITH_OPENCV
//   libcoe_images.so  image input (OpenCV's image codecs)       COE_WITH_IMAGES
//   libcoe_onednn.so  the onednn backend (ONNX on oneDNN)       COE_WITH_ONEDNN
//   libcoe_remote.so  the remote and openai backends (httplib)  COE_WITH_REMOTE
//   libcoe_grpc.so    the server's gRPC front end               COE_WITH_GRPC
// Each exports one function, `coe_module`, with C linkage, returning its ModuleExports:
// the ABI version it was built for, its name, and what it provides (backend kinds with
// their factories, an image loader, services of a layer above the backends). CMake
// declares each with coe_module() (CMakeLists.txt), behind the option of its name.
//
// Why modules: OpenCV's image codecs pull in some 140 shared libraries (~0.12 s at every
// process start), DNN ~20, gRPC ~50 (~20 ms), httplib with OpenSSL ~10 ms. `coe plan`
// loads none of them; a cascade of onnx models on IDX inputs only libcoe_opencv.so.
//
// The types that cross (StatusOr, Backend, InputBatch) are C++: a module must be built
// with the same compiler and headers as the library, which kModuleAbiVersion stands
// for; bump it when ModuleExports or a factory's signature changes.
#ifndef COE_BACKENDS_MODULE_H_
#define COE_BACKENDS_MODULE_H_

#include <memory>
#include <string>

#include "coe/backend.h"
#include "coe/dataset.h"

namespace coe {

inline constexpr int kModuleAbiVersion = 1;

using BackendFactory = StatusOr<std::unique_ptr<Backend>> (*)(const ModelSpec&, const BackendOptions&);
using ImageLoaderFn = StatusOr<InputBatch> (*)(const std::string&, const DatasetOptions&);

// A backend kind a module provides: the catalogue's `backend = "<kind>"`.
struct ModuleBackend {
  const char* kind;
  BackendFactory create;
};

// A service for a layer above the backends, which alone knows its table's type (the
// server's "grpc": a GrpcModuleTable, server/grpc_module.h).
struct ModuleService {
  const char* name;
  const void* table;
};

struct ModuleExports {
  int abi_version = kModuleAbiVersion;
  const char* name = nullptr;  // as registry.h knows it: "opencv", "remote", ...
  const ModuleBackend* backends = nullptr;
  int num_backends = 0;
  ImageLoaderFn load_images = nullptr;  // image input, or null
  const ModuleService* services = nullptr;
  int num_services = 0;
};

}  // namespace coe

// The entry point of every module (C linkage so that dlsym finds it). The result is a
// static object of the module, valid while the process runs (modules are never unloaded).
extern "C" const coe::ModuleExports* coe_module();

#endif  // COE_BACKENDS_MODULE_H_
