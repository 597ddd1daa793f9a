// libFuzzer target for the Open Inference Protocol parsers: coe::ParseInferRequest (the
// server's request decoder) for models of three input shapes, and oip::ParseMessage
// (which also decodes the responses the remote backend reads).
//
// Checks, beyond "no crash, leak, hang or sanitizer report":
//  - errors are InvalidArgument with a message;
//  - an accepted request is sound: N * prod(example shape) values, all finite, the
//    example shape the model's (or the request's for a model taking any shape);
//  - writing the accepted batch back as a request (oip::AppendFloat) parses to the same
//    bits, with the same requested outputs and id;
//  - a parsed message respects the parser's limits (64 tensors, rank 16, finite numbers).
// A violated invariant abort()s with a message on stderr.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "coe/protocol.h"
#include "coe/status.h"
#include "protocol/oip.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "request_fuzz: invariant violated: %s\n", what.c_str());
  std::abort();
}

void Check(bool ok, const std::string& what) {
  if (!ok) Fail(what);
}

std::string Rewrite(const coe::InferRequest& r) {
  std::string b = "{";
  if (r.id) {
    b += "\"id\":";
    coe::oip::AppendJsonString(&b, *r.id);
    b += ",";
  }
  b += "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[" + std::to_string(r.batch.size());
  for (int64_t d : r.batch.example_shape) b += "," + std::to_string(d);
  b += "],\"data\":[";
  for (size_t i = 0; i < r.batch.data.size(); ++i) {
    if (i) b += ',';
    coe::oip::AppendFloat(&b, r.batch.data[i]);
  }
  b += "]}],\"outputs\":[";
  std::string outs;
  for (const coe::InferRequest::Output& o : r.outputs) {
    outs += ",{\"name\":";
    coe::oip::AppendJsonString(&outs, o.name);
    outs += o.binary ? ",\"parameters\":{\"binary_data\":true}}" : "}";
  }
  if (outs.empty()) outs = ",{\"name\":\"label\"}";  // the defaults: named
  return b + outs.substr(1) + "]}";
}

void FuzzRequest(std::string_view body, const std::vector<int64_t>& shape) {
  auto r = coe::ParseInferRequest(body, shape);
  if (!r.ok()) {
    Check(r.status().code() == coe::StatusCode::kInvalidArgument,
          "bad input must give InvalidArgument, got " + r.status().ToString());
    Check(!r.status().message().empty(), "an error without a message");
    return;
  }
  const coe::InputBatch& b = r->batch;
  if (!shape.empty()) Check(b.example_shape == shape, "example shape differs from the model's");
  const int64_t e = b.ExampleSize();
  Check(e > 0 || b.data.empty(), "examples of no values");
  Check(e == 0 || static_cast<int64_t>(b.data.size()) % e == 0, "data is not whole examples");
  for (float v : b.data) Check(std::isfinite(v), "a non-finite value");
  if (r->outputs.empty() || b.size() > 4096) return;  // the defaults: not written back as is
  const std::string again = Rewrite(*r);
  auto r2 = coe::ParseInferRequest(again, shape);
  if (!r2.ok()) Fail("a rewritten request does not parse: " + r2.status().ToString() + "\n" + again);
  Check(r2->batch.example_shape == b.example_shape, "round trip: shape differs");
  Check(r2->batch.data.size() == b.data.size() &&
            (b.data.empty() || std::memcmp(r2->batch.data.data(), b.data.data(), b.data.size() * sizeof(float)) == 0),
        "round trip: values differ\n" + again);
  Check(r2->id == r->id, "round trip: id differs");
  bool same = r2->outputs.size() == r->outputs.size();
  for (size_t k = 0; same && k < r->outputs.size(); ++k)
    same = r2->outputs[k].name == r->outputs[k].name && r2->outputs[k].binary == r->outputs[k].binary;
  Check(same, "round trip: requested outputs differ");
}

void FuzzMessage(std::string_view body) {
  coe::oip::Message m;
  coe::Status s = coe::oip::ParseMessage(body, &m);
  if (!s.ok()) {
    Check(s.code() == coe::StatusCode::kInvalidArgument && !s.message().empty(), "message error: " + s.ToString());
    return;
  }
  Check(m.inputs.size() <= 64 && m.outputs.size() <= 64, "more than 64 tensors");
  for (const auto* list : {&m.inputs, &m.outputs})
    for (const coe::oip::Tensor& t : *list) {
      Check(t.shape.size() <= 16, "rank over 16");
      for (int64_t d : t.shape) Check(d >= 0, "a negative dimension");
      for (float v : t.numbers) Check(std::isfinite(v), "a non-finite number");
      Check(t.data_depth <= 32, "data nested deeper than 32");
      Check(t.has_data || (t.numbers.empty() && t.strings.empty()), "elements without data");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  FuzzRequest(body, {2, 3});
  FuzzRequest(body, {});
  FuzzRequest(body, {1, 28, 28});
  FuzzMessage(body);
  return 0;
}
