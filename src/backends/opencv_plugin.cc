// libcoe_opencv.so: the onnx backend, through OpenCV DNN (see backends/plugin.h).
#include "backends/backends.h"
#include "backends/plugin.h"

extern "C" void coe_onnx_plugin_v1(coe::OnnxPlugin* out) { out->create_onnx = &coe::CreateOnnxBackend; }
