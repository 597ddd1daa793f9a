// The `coe` Python package's native part (`coe._coe`): pybind11 over the library.
// Thin: recordings in, the planner's and the engine's own reports out (as JSON text
// that coe/__init__.py turns into objects). Errors raise coe.Error with coe's message
// (file, line); the GIL is released while planning, evaluating and running.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "arrays.h"
#include "coe/cascade.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/report.h"
#include "coe/workflow.h"

namespace py = pybind11;

namespace {

using coe_py::FromArrays;
using coe_py::PyRecordings;

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

// Plans (the workflow `coe plan` calls); returns the report (coe plan --json) and the
// chosen cascade as TOML.
std::pair<std::string, std::string> PlanJson(const PyRecordings& calib, const std::string& catalogue,
                                             const std::string& goal, const std::string& rules,
                                             const PyRecordings* test, const std::string& select, int max_tiers,
                                             int max_members, const std::string& cost, int threads) {
  const coe::Catalogue cat = Value(coe::ReadCatalogue(catalogue));
  coe::PlanRequest request;
  request.goal = goal;
  request.rules = rules;
  request.select = select;
  request.max_tiers = max_tiers;
  request.max_members = max_members;
  request.threads = threads;
  request.cost.key = cost;
  coe::StatusOr<coe::PlanOutcome> p = coe::InvalidArgumentError("not planned");
  {
    py::gil_scoped_release release;
    p = coe::PlanRecordings(calib.rec, test ? &test->rec : nullptr, cat, request);
  }
  if (!p.ok()) Raise(p.status());
  return {coe::PlanReportToJson(p->report), coe::CascadeToToml(p->plan.chosen.cascade, {})};
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
                  py::arg("label_names") = py::none(), py::arg("allow_duplicate_ids") = false)
      .def_property_readonly("num_examples", [](const PyRecordings& r) { return r.rec.num_examples(); })
      .def_property_readonly("models",
                             [](const PyRecordings& r) {
                               std::vector<std::string> names;
                               for (const auto& mr : r.rec.models) names.push_back(mr.name);
                               return names;
                             })
      .def("to_csv", [](const PyRecordings& r) { return coe::RecordingsToCsv(r.rec, *r.labels); });

  m.def("plan_json", &PlanJson, py::arg("calib"), py::arg("catalogue"), py::arg("goal"), py::arg("rules"),
        py::arg("test"), py::arg("select"), py::arg("max_tiers"), py::arg("max_members"), py::arg("cost"),
        py::arg("threads"));

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
        coe::CostOptions o;
        o.key = cost;
        coe::StatusOr<coe::EvalOutcome> e = coe::InvalidArgumentError("not evaluated");
        {
          py::gil_scoped_release release;
          std::vector<std::string> warnings;
          e = coe::EvalRecordings(spec, rec.rec, cat, o, &warnings);
        }
        if (!e.ok()) Raise(e.status());
        return coe::EvalReportToJson(e->cascade, e->cost_name, e->result, e->serving ? &*e->serving : nullptr);
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
