// The `coe` Python package's native part (`coe._coe`): pybind11 over the library.
// Thin: recordings in, the planner's and the engine's own reports out (as JSON text
// that coe/__init__.py turns into objects). Errors raise coe.Error with coe's message
// (file, line); the GIL is released while planning, evaluating and running.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "coe/cascade.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/report.h"

namespace py = pybind11;

namespace {

// Recordings with the label names they index into.
struct PyRecordings {
  std::shared_ptr<coe::LabelSet> labels = std::make_shared<coe::LabelSet>();
  coe::Recordings rec;
};

PyObject* g_error = nullptr;

[[noreturn]] void Raise(const coe::Status& s) {
  PyErr_SetString(g_error, s.ToString().c_str());
  throw py::error_already_set();
}

template <typename T>
T Value(coe::StatusOr<T> v) {
  if (!v.ok()) Raise(v.status());
  return std::move(*v);
}

// Strings from a list, a tuple, a NumPy array of str/object, a pandas Series (anything
// iterable); None and NaN are "" (unknown truth / an abstention).
std::vector<std::string> Strings(const py::handle& seq, const std::string& what) {
  std::vector<std::string> out;
  for (const py::handle& v : py::iter(seq)) {
    if (v.is_none() || (py::isinstance<py::float_>(v) && std::isnan(v.cast<double>()))) {
      out.emplace_back();
    } else if (py::isinstance<py::str>(v) || py::isinstance<py::bytes>(v)) {
      out.push_back(v.cast<std::string>());
    } else {
      out.push_back(py::str(v).cast<std::string>());  // numbers as their text
    }
  }
  if (out.empty()) throw py::value_error(what + " is empty");
  return out;
}

std::vector<double> Doubles(const py::handle& a, size_t n, const std::string& what) {
  auto arr = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!arr || arr.ndim() != 1 || static_cast<size_t>(arr.shape(0)) != n)
    throw py::value_error(what + ": expected a 1-D array of " + std::to_string(n) + " numbers");
  return {arr.data(), arr.data() + n};
}

PyRecordings FromArrays(const py::object& ids, const py::object& truth, const py::dict& predictions,
                        const py::object& costs, const py::object& scores, const py::object& probabilities,
                        const py::object& label_names) {
  PyRecordings r;
  r.rec.source = "arrays";
  r.rec.labels = r.labels.get();
  // Probability columns are label indices: the label names come first, in their order.
  int num_probs = 0;
  if (!label_names.is_none())
    for (const std::string& l : Strings(label_names, "label_names")) r.labels->Intern(l), ++num_probs;
  if (!probabilities.is_none() && num_probs == 0)
    throw py::value_error("probabilities need label_names: the label of each column");
  r.rec.ids = Strings(ids, "ids");
  const size_t n = r.rec.ids.size();
  if (!truth.is_none()) {
    for (const std::string& t : Strings(truth, "labels"))
      r.rec.truth.push_back(t.empty() ? coe::kAbstain : r.labels->Intern(t));
    if (r.rec.truth.size() != n)
      throw py::value_error("labels: " + std::to_string(r.rec.truth.size()) + " values for " + std::to_string(n) +
                            " ids");
  }
  if (predictions.empty()) throw py::value_error("predictions: no models");
  for (const auto& [k, v] : predictions) {
    coe::ModelRecord m;
    m.name = k.cast<std::string>();
    for (const std::string& p : Strings(v, "predictions['" + m.name + "']"))
      m.label.push_back(p.empty() ? coe::kAbstain : r.labels->Intern(p));
    if (m.label.size() != n)
      throw py::value_error("predictions['" + m.name + "']: " + std::to_string(m.label.size()) + " values for " +
                            std::to_string(n) + " ids");
    if (!costs.is_none() && py::dict(costs).contains(k))
      m.cost = Doubles(py::dict(costs)[k], n, "costs['" + m.name + "']");
    if (!scores.is_none() && py::dict(scores).contains(k)) {
      std::vector<double> s = Doubles(py::dict(scores)[k], n, "scores['" + m.name + "']");
      m.score.assign(s.begin(), s.end());
    }
    if (!probabilities.is_none() && py::dict(probabilities).contains(k)) {
      auto p = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(py::dict(probabilities)[k]);
      if (!p || p.ndim() != 2 || static_cast<size_t>(p.shape(0)) != n || p.shape(1) != num_probs)
        throw py::value_error("probabilities['" + m.name + "']: expected an array of shape (" + std::to_string(n) +
                              ", " + std::to_string(num_probs) + "): a column per label_names");
      m.num_probs = num_probs;
      m.probs.assign(p.data(), p.data() + p.size());
    }
    r.rec.models.push_back(std::move(m));
  }
  return r;
}

coe::CostTable Costs(const PyRecordings& r, const coe::Catalogue& cat, const std::string& cost) {
  coe::CostOptions o;
  o.key = cost;
  return Value(coe::BuildCostTable(r.rec, cat, o));
}

// Plans; returns the report (coe plan --json) and the chosen cascade as TOML.
std::pair<std::string, std::string> PlanJson(const PyRecordings& calib, const std::string& catalogue,
                                             const std::string& goal, const std::string& rules,
                                             const PyRecordings* test, const std::string& select, int max_tiers,
                                             int max_members, const std::string& cost, int threads) {
  const coe::Catalogue cat = Value(coe::ReadCatalogue(catalogue));
  const coe::Goal g = Value(coe::Goal::Parse(goal));
  coe::PlannerOptions opt;
  opt.max_tiers = max_tiers;
  opt.max_members = max_members;
  opt.threads = threads;
  opt.select.guard = Value(coe::ParseGuard(select));
  if (!rules.empty()) opt.rules = Value(coe::ParseRuleKinds(rules));
  const coe::CostTable calib_costs = Costs(calib, cat, cost);
  std::optional<coe::CostTable> test_costs;
  if (test) test_costs = Costs(*test, cat, cost);
  coe::StatusOr<coe::PlanReport> report = coe::InvalidArgumentError("not planned");
  coe::StatusOr<coe::PlanResult> plan = coe::InvalidArgumentError("not planned");
  {
    py::gil_scoped_release release;
    plan = coe::Plan(calib.rec, calib_costs, g, opt);
    if (plan.ok())
      report = coe::BuildPlanReport(*plan, g, opt, calib.rec, calib_costs, test ? &test->rec : nullptr,
                                    test_costs ? &*test_costs : nullptr);
  }
  if (!plan.ok()) Raise(plan.status());
  if (!report.ok()) Raise(report.status());
  report->cost_model = "cost per example = " + calib_costs.name;
  return {coe::PlanReportToJson(*report), coe::CascadeToToml(plan->chosen.cascade, {})};
}

}  // namespace

PYBIND11_MODULE(_coe, m) {
  m.doc() = "coe's native core (use the `coe` package)";
  static py::exception<std::runtime_error> error(m, "Error");
  g_error = error.ptr();

  py::class_<PyRecordings>(m, "_Recordings")
      .def_static(
          "from_csv",
          [](const std::string& path, bool allow_duplicate_ids) {
            PyRecordings r;
            coe::RecordingsReadOptions o;
            o.allow_duplicate_ids = allow_duplicate_ids;
            std::vector<std::string> warnings;
            r.rec = Value(coe::ReadRecordings(path, r.labels.get(), &warnings, o));
            r.rec.labels = r.labels.get();
            return r;
          },
          py::arg("path"), py::arg("allow_duplicate_ids") = false)
      .def_static("from_arrays", &FromArrays, py::arg("ids"), py::arg("labels"), py::arg("predictions"),
                  py::arg("costs") = py::none(), py::arg("scores") = py::none(), py::arg("probabilities") = py::none(),
                  py::arg("label_names") = py::none())
      .def_property_readonly("num_examples", [](const PyRecordings& r) { return r.rec.num_examples(); })
      .def_property_readonly("models",
                             [](const PyRecordings& r) {
                               std::vector<std::string> names;
                               for (const auto& mr : r.rec.models) names.push_back(mr.name);
                               return names;
                             })
      .def("to_csv", [](const PyRecordings& r) { return coe::RecordingsToCsv(r.rec, *r.labels); });

  m.def(
      "plan_json",
      [](const PyRecordings& calib, const std::string& catalogue, const std::string& goal, const std::string& rules,
         const PyRecordings* test, const std::string& select, int max_tiers, int max_members, const std::string& cost,
         int threads) {
        return PlanJson(calib, catalogue, goal, rules, test, select, max_tiers, max_members, cost, threads);
      },
      py::arg("calib"), py::arg("catalogue"), py::arg("goal"), py::arg("rules"), py::arg("test"), py::arg("select"),
      py::arg("max_tiers"), py::arg("max_members"), py::arg("cost"), py::arg("threads"));

  m.def(
      "check_cascade",
      [](const std::string& toml, const std::string& source) {
        return coe::CascadeToToml(Value(coe::ParseCascade(toml, source)), {});
      },
      py::arg("toml"), py::arg("source"));

  m.def(
      "evaluate_json",
      [](const std::string& toml, const PyRecordings& rec, const std::string& catalogue, const std::string& cost) {
        const coe::CascadeSpec spec = Value(coe::ParseCascade(toml, "cascade"));
        const coe::Catalogue cat = Value(coe::ReadCatalogue(catalogue));
        const coe::CostTable costs = Costs(rec, cat, cost);
        coe::StatusOr<coe::EvalResult> r = coe::InvalidArgumentError("not evaluated");
        {
          py::gil_scoped_release release;
          r = coe::EvaluateCascade(spec, rec.rec, costs);
        }
        if (!r.ok()) Raise(r.status());
        return coe::EvalReportToJson(spec, costs.name, *r);
      },
      py::arg("toml"), py::arg("recordings"), py::arg("catalogue"), py::arg("cost") = "");

  m.def(
      "run",
      [](const std::string& toml, const std::string& catalogue,
         py::array_t<float, py::array::c_style | py::array::forcecast> images, int threads) {
        const coe::CascadeSpec spec = Value(coe::ParseCascade(toml, "cascade"));
        const coe::Catalogue cat = Value(coe::ReadCatalogue(catalogue));
        coe::EngineOptions eo;
        eo.threads = threads;
        std::unique_ptr<coe::Cascade> cascade = Value(coe::Cascade::Create(spec, cat, eo));
        // A chat model would answer an array with nothing (every example abstains): refused.
        for (coe::Backend* b : cascade->members())
          if (b->info().text_inputs)
            throw py::value_error("cascade member '" + b->info().name +
                                  "' is a chat model: it takes text (JSON records: coe run --data x.jsonl, or "
                                  "coe serve's POST /v1/chat/completions), not an array of tensors");
        if (images.ndim() < 2) throw py::value_error("images: expected an array of shape (N, ...)");
        coe::InputBatch batch;
        for (py::ssize_t d = 1; d < images.ndim(); ++d) batch.example_shape.push_back(images.shape(d));
        batch.data.assign(images.data(), images.data() + images.size());
        coe::StatusOr<coe::RunResult> r = coe::InvalidArgumentError("not run");
        {
          py::gil_scoped_release release;
          r = cascade->Run(batch, coe::RunOptions{});
        }
        if (!r.ok()) Raise(r.status());
        std::vector<std::string> answers;
        for (int a : r->answer) answers.push_back(a == coe::kAbstain ? "" : r->labels.name(a));
        std::vector<int> exit;
        for (int t : r->exit_tier) exit.push_back(t + 1);
        py::dict out;
        out["answer"] = answers;
        out["exit_tier"] = py::array_t<int>(static_cast<py::ssize_t>(exit.size()), exit.data());
        out["cost"] = py::array_t<double>(static_cast<py::ssize_t>(r->cost.size()), r->cost.data());
        std::vector<uint8_t> degraded(r->degraded.begin(), r->degraded.end());
        out["degraded"] = py::array_t<bool>(static_cast<py::ssize_t>(degraded.size()),
                                            reinterpret_cast<const bool*>(degraded.data()));
        out["cost_unit"] = cascade->cost_name();
        out["seconds"] = r->seconds;
        return out;
      },
      py::arg("toml"), py::arg("catalogue"), py::arg("images"), py::arg("threads") = 0);
}
