// `coe run` as a library: inputs, a live run in growing calls, and its summary.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <nlohmann/json.hpp>

#include "coe/dataset.h"
#include "coe/labels.h"
#include "coe/record.h"
#include "coe/workflow.h"

namespace coe {

using nlohmann::json;

StatusOr<InputBatch> LoadInputs(const InputSpec& f, const std::vector<int64_t>& shape,
                                const std::vector<std::string>& label_names, std::vector<std::string>* warnings,
                                int64_t resize) {
  DatasetOptions o;
  if (IsImageInput(f.data)) {
    COE_ASSIGN_OR_RETURN(o.image_loader, OpenCvImageLoader());
  }
  o.expected_shape = shape;
  o.resize = resize;
  o.labels_path = f.labels;
  o.label_field = f.label_field;
  o.label_names = label_names;
  if (!f.range.empty()) COE_RETURN_IF_ERROR(ParseRange(f.range, &o.begin, &o.end));
  COE_ASSIGN_OR_RETURN(InputBatch b, LoadDataset(f.data, o));
  if (label_names.empty()) return b;  // open labels (chat models): any answer may be right
  // True labels no model gives count as wrong answers: map them (normalize_labels) or
  // say so, with counts.
  std::map<std::string, std::string> by_norm;
  for (const std::string& l : label_names) by_norm.emplace(NormalizeLabel(l), l);
  std::map<std::string, int> unknown;
  for (std::string& t : b.truth) {
    if (t.empty() || std::find(label_names.begin(), label_names.end(), t) != label_names.end()) continue;
    auto it = f.normalize_labels ? by_norm.find(NormalizeLabel(t)) : by_norm.end();
    if (it != by_norm.end())
      t = it->second;
    else
      unknown[t]++;
  }
  if (!unknown.empty() && warnings) {
    std::string list;
    for (const auto& [t, n] : unknown) list += (list.empty() ? "'" : ", '") + t + "' (" + std::to_string(n) + ")";
    warnings->push_back("true labels " + list + " are no model's label: those examples count as wrong" +
                        (f.normalize_labels ? "" : " (--normalize-labels ignores case and spaces)"));
  }
  return b;
}

StatusOr<InputBatch> LoadInputsFor(const InputSpec& f, const ModelSpec& first,
                                   const std::vector<const ModelSpec*>& others, std::vector<std::string>* warnings) {
  for (const ModelSpec* m : others)
    if (m && m->resize != first.resize && IsImageInput(f.data))
      return InvalidArgumentError("model '" + m->name + "' resizes images to " + std::to_string(m->resize) +
                                  " (key 'resize'), model '" + first.name + "' to " + std::to_string(first.resize) +
                                  ": images are read once, for every model");
  if (warnings && IsImageInput(f.data) && first.scale == 1.0 && first.mean == std::vector<double>{0.0} &&
      first.std == std::vector<double>{1.0} && (first.backend == "onednn" || first.backend == "onnx"))
    warnings->push_back("model '" + first.name +
                        "' has no preprocessing (scale, mean, std): it gets raw 0-255 pixels; an ImageNet model "
                        "takes scale = 0.00392156862745098, mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, "
                        "0.225] (and resize = 256)");
  return LoadInputs(f, first.input_shape, first.labels, warnings, first.resize);
}

RunSummary Summarize(const Cascade& c, const InputBatch& in, const RunResult& r, double wall) {
  RunSummary s;
  s.cascade = c.spec().ToString();
  s.cost_name = c.cost_name();
  s.examples = in.size();
  s.exits.assign(c.spec().tiers.size(), 0);
  for (int64_t i = 0; i < s.examples; ++i) {
    s.exits[r.exit_tier[i]]++;
    s.mean_cost += r.cost[i];
    s.degraded += r.degraded[i];
    s.unanswered += r.answer[i] == kAbstain;
    if (!in.truth.empty() && !in.truth[i].empty()) {
      s.labeled++;
      // Right when the answering tier's match says the answer is the truth.
      s.correct +=
          r.answer[i] != kAbstain && c.spec().tiers[r.exit_tier[i]].match.Same(r.labels.name(r.answer[i]), in.truth[i]);
    }
  }
  s.mean_cost /= std::max<int64_t>(1, s.examples);
  s.accuracy = s.labeled ? static_cast<double>(s.correct) / s.labeled : 0;
  s.seconds = wall;
  s.throughput = wall > 0 ? s.examples / wall : 0;
  s.failed_calls = static_cast<int64_t>(r.failures.size());
  s.failures = GroupFailures(r, c.members(), in.ids);
  // Chat responses without usage were paid at an estimate: say so.
  for (Backend* b : c.members())
    if (uint64_t n = b->stats().estimated_costs.load(); n > 0)
      s.warnings.push_back("model '" + b->info().name + "': " + std::to_string(n) +
                           " response(s) had no usage, or a token count that is not an integer from 0 to 2^40; "
                           "their cost is estimated (a token for 4 characters)");
  return s;
}

std::string RunSummaryJson(const RunSummary& s) {
  json failures = json::array();
  for (const FailureGroup& g : s.failures)
    failures.push_back({{"model", g.model}, {"error", g.error}, {"count", g.count}, {"first_id", g.first_id}});
  json j = {{"cascade", s.cascade},
            {"cost_name", s.cost_name},
            {"examples", s.examples},
            {"labeled", s.labeled},
            {"correct", s.correct},
            {"accuracy", s.labeled ? json(s.accuracy) : json()},
            {"cost", s.mean_cost},
            {"exits", s.exits},
            {"seconds", s.seconds},
            {"examples_per_second", s.throughput},
            {"degraded", s.degraded},
            {"unanswered", s.unanswered},
            {"failed_calls", s.failed_calls},
            {"failures", failures},
            {"warnings", s.warnings}};
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

std::string RunSummaryText(const RunSummary& s) {
  std::string out;
  char buf[256];
  auto line = [&](const char* fmt, auto... args) {
    std::snprintf(buf, sizeof buf, fmt, args...);
    out += buf;
  };
  out += "cascade    " + s.cascade + "\n";
  line("examples   %lld in %.3f s: %.0f examples/s\n", static_cast<long long>(s.examples), s.seconds, s.throughput);
  if (s.labeled)
    line("accuracy   %.2f%% (%lld/%lld)\n", 100 * s.accuracy, static_cast<long long>(s.correct),
         static_cast<long long>(s.labeled));
  line("mean cost  %.4g %s per example\n", s.mean_cost, s.cost_name.c_str());
  out += "exits      ";
  for (size_t t = 0; t < s.exits.size(); ++t)
    line("%stier %zu: %lld (%.1f%%)", t ? ", " : "", t + 1, static_cast<long long>(s.exits[t]),
         100.0 * s.exits[t] / std::max<int64_t>(1, s.examples));
  out += "\n";
  if (s.degraded)
    line("degraded   %lld (a failing member forced a fallback answer)\n", static_cast<long long>(s.degraded));
  return out;
}

std::string PredictionsCsv(const InputBatch& in, const RunResult& r) {
  auto field = [](const std::string& f) {
    if (f.find_first_of(",\"\r\n") == std::string::npos) return f;
    std::string q = "\"";
    for (char c : f) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  std::string csv =
      "id,answer,exit_tier,agreement,cost,degraded" + std::string(in.truth.empty() ? "" : ",label") + "\n";
  char buf[96];
  for (int64_t i = 0; i < in.size(); ++i) {
    std::snprintf(buf, sizeof buf, ",%d,%.4g,%.17g,%d", r.exit_tier[i] + 1, r.vote[i].agreement, r.cost[i],
                  r.degraded[i]);
    csv += field(in.ids.empty() ? std::to_string(i) : in.ids[i]) + "," + field(r.labels.name(r.answer[i])) + buf;
    if (!in.truth.empty()) csv += "," + field(in.truth[i]);
    csv += "\n";
  }
  return csv;
}

namespace {

// Creates the cascade while another thread loads the inputs, so that decoding them
// (~50 ms for 10,000 images) overlaps reading and compiling the models. The inputs are
// read with the shape and labels the catalogue gives the first member; when the
// cascade's own differ (a remote member's metadata), they are read again with those.
// The cascade's error, if any, comes first, as when the two ran one after the other.
Status CreateWhileLoading(const CascadeSpec& spec, const Catalogue& cat, const EngineOptions& eo, const InputSpec& in,
                          LiveRun* run) {
  const ModelSpec* first =
      spec.tiers.empty() || spec.tiers[0].members.empty() ? nullptr : cat.Find(spec.tiers[0].members[0]);
  std::future<StatusOr<InputBatch>> early;
  std::vector<std::string> early_warnings;  // kept only if this load is the one used
  std::vector<const ModelSpec*> members;
  for (const TierSpec& t : spec.tiers)
    for (const std::string& m : t.members) members.push_back(cat.Find(m));
  if (first && !first->input_shape.empty() && !first->labels.empty())
    early = std::async(std::launch::async, [&in, first, &members, &early_warnings] {
      return LoadInputsFor(in, *first, members, &early_warnings);
    });
  auto cascade = Cascade::Create(spec, cat, eo);
  if (early.valid()) early.wait();  // the loader reads `in` and `first`: it ends before they may go
  if (!cascade.ok()) return cascade.status();
  run->cascade = std::move(*cascade);
  const Cascade& c = *run->cascade;
  if (early.valid() && c.input_shape() == first->input_shape && c.labels().names() == first->labels) {
    COE_ASSIGN_OR_RETURN(run->inputs, early.get());
    run->summary.warnings = std::move(early_warnings);
  } else {
    COE_ASSIGN_OR_RETURN(run->inputs, LoadInputs(in, c.input_shape(), c.labels().names(), &run->summary.warnings,
                                                 first ? first->resize : 0));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<LiveRun> RunLive(const CascadeSpec& spec, const Catalogue& cat, const InputSpec& in, const LiveRunOptions& o) {
  EngineOptions eo;
  eo.threads = o.threads;
  if (o.chunk > 0) eo.chunk = o.chunk;
  eo.cost_key = o.cost_key;
  LiveRun run;
  COE_RETURN_IF_ERROR(CreateWhileLoading(spec, cat, eo, in, &run));
  // Tiers out of cost order, by the figure this run counts.
  std::vector<std::string> order = CascadeCostWarnings(spec, cat, o.cost_key);
  run.summary.warnings.insert(run.summary.warnings.begin(), order.begin(), order.end());
  if (!run.inputs.texts.empty()) COE_RETURN_IF_ERROR(CheckPromptFields(cat, spec.AllMembers(), run.inputs, in.data));
  const auto t0 = std::chrono::steady_clock::now();
  COE_ASSIGN_OR_RETURN(run.result, RunInBatches(*run.cascade, run.inputs, o.batch, {}, [&](int64_t done, int64_t n) {
                         if (o.progress)
                           o.progress("running", static_cast<double>(done) / std::max<int64_t>(1, n),
                                      std::to_string(done) + "/" + std::to_string(n));
                       }));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<std::string> warnings = std::move(run.summary.warnings);
  run.summary = Summarize(*run.cascade, run.inputs, run.result, wall);
  warnings.insert(warnings.end(), run.summary.warnings.begin(), run.summary.warnings.end());
  run.summary.warnings = std::move(warnings);
  return run;
}

}  // namespace coe
