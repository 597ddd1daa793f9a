// coe/tensor.h: a batch of inputs as it enters a cascade.
//
// An InputBatch is N examples of one shape, FP32, row-major, as read from the data
// (raw pixels for images: preprocessing is each model's, from the catalogue). Each
// example may carry an id (the recorded backend looks examples up by it).
//
// Ownership: an InputBatch owns its data. Thread safety: a value; share it read-only.
#ifndef COE_TENSOR_H_
#define COE_TENSOR_H_

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coe {

// Receives a completion's text as its model produces it: the streaming of a chat
// request's last tier (RunOptions::tokens in coe/cascade.h, InputView::tokens). A
// backend that can stream (openai) calls Text with each piece in order, from the
// thread that runs its call; one that cannot ignores the sink. Either way its
// Prediction is what it would be without a sink (the text is still read whole).
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  // The next piece of the completion (never empty). False: the receiver is gone (its
  // client disconnected): the backend stops reading, and its call fails.
  virtual bool Text(std::string_view piece) = 0;
};

// A non-owning view of examples [begin, end) of an InputBatch. Valid while the batch lives.
struct InputBatch;
struct InputView {
  const std::vector<int64_t>* example_shape = nullptr;
  std::span<const float> data;         // size() * example size values
  std::span<const std::string> ids;    // size() ids, or empty
  std::span<const std::string> texts;  // size() JSON objects (text inputs), or empty
  int64_t n = 0;
  // Set while the run these examples belong to is cancelled (RunOptions::cancelled):
  // a backend may stop early (abstaining), e.g. abort a call in flight. Null: never.
  const std::atomic<bool>* cancelled = nullptr;
  // Set only for a view of one example whose member's completion is streamed (the
  // engine gives it to the last tier's single member; see TokenSink). Null: none.
  TokenSink* tokens = nullptr;
  int64_t size() const { return n; }
  const std::vector<int64_t>& shape() const { return *example_shape; }
  // Examples [begin, end) of this view.
  InputView Sub(int64_t begin, int64_t end) const;
  // A copy of the examples at `rows`, in that order (with their ids and texts).
  InputBatch Gather(std::span<const int> rows) const;
};

// The largest example coe accepts anywhere (catalogue input_shape, requests, data
// files): 2^26 values (256 MiB of FP32), with at most kMaxExampleDims axes. A shape
// past these is bad input, never an allocation attempt.
inline constexpr int64_t kMaxExampleValues = int64_t{1} << 26;
inline constexpr size_t kMaxExampleDims = 8;

// "[1, 28, 28]": a shape as error messages show it.
std::string ShapeString(std::span<const int64_t> shape);

// Softmax of `logits` into `probs`; returns the argmax, or kAbstain (-1) when any
// value is not finite (a model emitting NaN abstains).
int SoftmaxArgmax(std::span<const float> logits, std::vector<float>* probs);

struct InputBatch {
  std::vector<int64_t> example_shape;  // e.g. {1, 28, 28}; empty for text inputs
  std::vector<float> data;             // n * ExampleSize() values (tensor inputs)
  std::vector<std::string> ids;        // n ids, or empty
  std::vector<std::string> truth;      // n true labels ("" = unknown), or empty
  // Text inputs (for chat-model members): one JSON object a example, its fields the
  // prompt templates' (coe/dataset.h reads them from JSONL). Empty for tensor inputs.
  std::vector<std::string> texts;

  int64_t ExampleSize() const {
    int64_t s = 1;
    for (int64_t d : example_shape) s *= d;
    return s;
  }
  int64_t size() const {
    if (!texts.empty()) return static_cast<int64_t>(texts.size());
    const int64_t e = ExampleSize();
    return e ? static_cast<int64_t>(data.size()) / e : 0;
  }
  std::span<const float> Example(int64_t i) const {
    const int64_t e = ExampleSize();
    return {data.data() + i * e, static_cast<size_t>(e)};
  }
  // The examples at `rows`, in that order (ids and truth too).
  InputBatch Gather(std::span<const int> rows) const;
  // Examples [begin, end).
  InputBatch Slice(int64_t begin, int64_t end) const;
  // A view of examples [begin, end) (default: all).
  InputView View(int64_t begin = 0, int64_t end = -1) const {
    if (end < 0) end = size();
    const int64_t e = ExampleSize();
    InputView v;
    v.example_shape = &example_shape;
    if (!data.empty()) v.data = {data.data() + begin * e, static_cast<size_t>((end - begin) * e)};
    if (!ids.empty()) v.ids = {ids.data() + begin, static_cast<size_t>(end - begin)};
    if (!texts.empty()) v.texts = {texts.data() + begin, static_cast<size_t>(end - begin)};
    v.n = end - begin;
    return v;
  }
};

}  // namespace coe

#endif  // COE_TENSOR_H_
