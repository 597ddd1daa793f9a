// coe/dataset.h: reading inputs for live runs.
//
// Supported inputs:
//  - IDX files (MNIST / Fashion-MNIST format), plain or gzipped: unsigned-byte images
//    [N, rows, cols] become FP32 [N, 1, rows, cols] raw pixel values (0..255); ids are
//    "<file stem>#<index>".
//  - Image files (PNG, JPEG, ... anything OpenCV reads): one file, a directory (sorted
//    by name), or a text file ending in .txt listing one path per line. Read as
//    grayscale when the expected shape has 1 channel; every image must have the
//    expected size (no silent resize). Ids are the file names.
//  - JSONL (a .jsonl file) for chat-model members: one JSON object a line with "id"
//    (string or integer), the fields the prompt templates name, and optionally
//    "label"; each object becomes a text input (InputBatch::texts).
//  - A request log of `coe serve --log` (coe/request_log.h; a file that begins with
//    {"coe_request_log":, whatever its extension): its logged inputs (ReadRequestLog),
//    chat records as texts, tensors from the side files; it holds no truth.
// Labels: an IDX label file (class indices into `label_names`), or for images a CSV
// with `id,label` rows.
//
// Errors: NotFound (a missing file), InvalidArgument naming the file and what was wrong
// (a bad IDX magic, a truncated file, an unreadable image, a wrong image size).
#ifndef COE_DATASET_H_
#define COE_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

struct DatasetOptions;
// Decodes image inputs (an image file, a folder of images, a .txt list of paths) into a
// batch, honouring the options. The data layer has no image codec of its own: pass
// the OpenCV module's (OpenCvImageLoader() in coe/backend.h) or another.
using ImageLoader = StatusOr<InputBatch> (*)(const std::string& path, const DatasetOptions& options);

struct DatasetOptions {
  std::vector<int64_t> expected_shape;  // one example's shape, e.g. {1, 28, 28}; empty = as read
  // Images: the shorter side resized to this (bilinear, as torchvision's Resize of a PIL
  // image: PIL's resampling, exactly), then the centre cropped to expected_shape's height
  // and width (as CenterCrop); 0 = images must be expected_shape's size already.
  int64_t resize = 0;
  int64_t begin = 0;                     // examples [begin, end) of the file(s)
  int64_t end = -1;                      // -1 = to the end
  std::string labels_path;               // optional truth
  std::vector<std::string> label_names;  // for IDX labels: index -> name
  ImageLoader image_loader = nullptr;    // needed for image inputs (FailedPrecondition without)
  // JSONL inputs: the field holding the truth. Empty: "label", when records have it. A
  // field named here must be in some record (InvalidArgument naming it otherwise); for
  // other inputs it is refused, as `labels_path` is for JSONL (whose truth is a field).
  std::string label_field;
};

StatusOr<InputBatch> LoadDataset(const std::string& path, const DatasetOptions& options);

// True when LoadDataset reads `path` as images (a folder, an image file, a .txt list).
bool IsImageInput(const std::string& path);

// Parses "A:B", "A:" or ":B" into [begin, end) (end -1 = open).
Status ParseRange(const std::string& text, int64_t* begin, int64_t* end);

}  // namespace coe

#endif  // COE_DATASET_H_
