// Reading a request log back as inputs (coe/request_log.h ReadRequestLog): a line's
// record (chat) or its tensor from the side file, by hash.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "coe/files.h"
#include "coe/request_log.h"

namespace coe {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::string_view kMarker = "{\"coe_request_log\":";

// Where the side files of the log `path` are: <path>.tensors (a rotated FILE.3's are in
// FILE.3.tensors, rotated with it).
fs::path SideFolder(const std::string& path) { return path + ".tensors"; }

// A logged tensor: its values from the side file, checked against its hash.
Status ReadTensor(const fs::path& folder, const std::string& where, const std::string& id, const std::string& hash,
                  int64_t values, std::vector<float>* out) {
  const fs::path side = folder / (hash + ".bin");
  auto bytes = ReadFileToString(side.string());
  if (!bytes.ok())
    return NotFoundError(where + ": the input of id '" + id + "' (hash " + hash + ") has no side file " +
                         side.string() + " (the log's FILE.tensors/ folder must be beside it)");
  if (bytes->size() != static_cast<size_t>(values) * sizeof(float))
    return InvalidArgumentError(where + ": the side file " + side.string() + " of id '" + id + "' holds " +
                                std::to_string(bytes->size()) + " bytes, the logged shape needs " +
                                std::to_string(values * sizeof(float)));
  const size_t at = out->size();
  out->resize(at + static_cast<size_t>(values));
  std::memcpy(out->data() + at, bytes->data(), bytes->size());
  if (TensorHash(std::span<const float>(out->data() + at, static_cast<size_t>(values))) != hash)
    return InvalidArgumentError(where + ": the side file " + side.string() + " of id '" + id +
                                "' does not hash to its name (changed or damaged)");
  return Status::Ok();
}

// What one log line says of its input: the record text, or the tensor's shape and hash.
struct LoggedInput {
  std::string id, text, hash;
  std::vector<int64_t> shape;
};

StatusOr<LoggedInput> ParseLine(std::string_view row, const std::string& where) {
  const json j = json::parse(row, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("coe_request_log"))
    return InvalidArgumentError(where + ": not a request log line (a JSON object with \"coe_request_log\")");
  if (j["coe_request_log"] != 1)
    return InvalidArgumentError(where + ": request log version " + j["coe_request_log"].dump() +
                                " (this coe reads version 1)");
  LoggedInput in;
  if (!j.contains("id") || !j["id"].is_string() || j["id"].get<std::string>().empty())
    return InvalidArgumentError(where + ": no \"id\"");
  in.id = j["id"].get<std::string>();
  if (!j.contains("input"))
    return InvalidArgumentError(where + ": the line of id '" + in.id +
                                "' has no input (the log was written with --log-redact: it cannot be replayed)");
  const json& input = j["input"];
  if (input.is_string()) {
    in.text = input.get<std::string>();
    return in;
  }
  if (!input.is_object() || !input.contains("shape") || !input["shape"].is_array() || !input.contains("fp32") ||
      !input["fp32"].is_string())
    return InvalidArgumentError(where + ": \"input\" must be a record (a string) or {\"shape\", \"fp32\"}");
  for (const json& d : input["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > kMaxExampleValues)
      return InvalidArgumentError(where + ": \"input\".\"shape\" must hold positive integers");
    in.shape.push_back(d.get<int64_t>());
  }
  if (in.shape.empty() || in.shape.size() > kMaxExampleDims)
    return InvalidArgumentError(where + ": \"input\".\"shape\" must have 1 to " + std::to_string(kMaxExampleDims) +
                                " axes");
  in.hash = input["fp32"].get<std::string>();
  if (in.hash.size() != 16 || in.hash.find_first_not_of("0123456789abcdef") != std::string::npos)
    return InvalidArgumentError(where + ": \"input\".\"fp32\" must be 16 hex digits (the tensor's hash)");
  return in;
}

}  // namespace

bool IsRequestLog(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char head[kMarker.size()];
  return in.read(head, sizeof head) && std::string_view(head, sizeof head) == kMarker;
}

StatusOr<InputBatch> ReadRequestLog(const std::string& path, const std::vector<int64_t>& expected_shape, int64_t begin,
                                    int64_t end, std::vector<std::string>* warnings) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return NotFoundError("cannot open the request log '" + path + "'");
  const fs::path folder = SideFolder(path);
  InputBatch b;
  std::unordered_map<std::string, std::string> seen;  // id -> its input (text, or shape + hash)
  int64_t index = 0, repeated = 0, renamed = 0;
  bool tensors = false;
  std::string row;
  for (int line = 1; std::getline(file, row); ++line) {
    if (row.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line);
    COE_ASSIGN_OR_RETURN(LoggedInput in, ParseLine(row, where));
    const bool tensor = !in.shape.empty();
    if (index > 0 && tensor != tensors)
      return InvalidArgumentError(where + ": text and tensor inputs are mixed in one log; record them apart");
    tensors = tensor;
    if (tensor) {
      if (!expected_shape.empty() && in.shape != expected_shape)
        return InvalidArgumentError(where + ": the input of id '" + in.id + "' has shape " + ShapeString(in.shape) +
                                    ", the models take " + ShapeString(expected_shape));
      if (b.example_shape.empty()) b.example_shape = in.shape;
      if (in.shape != b.example_shape)
        return InvalidArgumentError(where + ": the input of id '" + in.id + "' has shape " + ShapeString(in.shape) +
                                    ", earlier ones " + ShapeString(b.example_shape));
    }
    const std::string key = tensor ? ShapeString(in.shape) + in.hash : in.text;
    if (auto it = seen.find(in.id); it != seen.end()) {
      if (it->second == key) {  // the same request again (a client's retry): recorded once
        ++repeated;
        continue;
      }
      in.id += "~" + std::to_string(line);
      ++renamed;
    }
    seen.emplace(in.id, key);
    const int64_t i = index++;
    if (i < begin || (end >= 0 && i >= end)) continue;
    b.ids.push_back(in.id);
    if (!tensor) {
      b.texts.push_back(std::move(in.text));
      continue;
    }
    int64_t values = 1;
    for (int64_t d : in.shape) values *= d;
    COE_RETURN_IF_ERROR(ReadTensor(folder, where, in.id, in.hash, values, &b.data));
  }
  if (file.bad()) return InternalError("error reading the request log '" + path + "'");
  if (b.ids.empty()) return InvalidArgumentError("the request log '" + path + "' has no examples (in the range)");
  if (warnings && repeated > 0)
    warnings->push_back(path + ": " + std::to_string(repeated) +
                        " lines repeat an earlier line's id and input: each input is recorded once");
  if (warnings && renamed > 0)
    warnings->push_back(path + ": " + std::to_string(renamed) +
                        " lines repeat an earlier line's id with another input: recorded as '<id>~<line>'");
  return b;
}

}  // namespace coe
