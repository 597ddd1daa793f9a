// libcoe_opencv.so: the onnx backend, through OpenCV DNN (see backends/module.h).
#include "backends/backends.h"
#include "backends/module.h"

namespace {
const coe::ModuleBackend kBackends[] = {{"onnx", &coe::CreateOnnxBackend}};
const coe::ModuleExports kExports{.name = "opencv", .backends = kBackends, .num_backends = 1};
}  // namespace

extern "C" const coe::ModuleExports* coe_module() { return &kExports; }
