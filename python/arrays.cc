// Python arrays into coe's recordings (python/arrays.h).
#include "arrays.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace py = pybind11;

namespace coe_py {
namespace {

// Strings from a list, a tuple, a NumPy array of str/object, a pandas Series (anything
// iterable); None and NaN are "" (unknown truth / an abstention). Each value is a str,
// bytes or a number (its text: an integer's digits, a float's repr); anything else (a
// list, a dict, an array: a 2-D array's row) is ValueError naming where, never its
// Python text taken for an answer.
std::vector<std::string> Strings(const py::handle& seq, const std::string& what) {
  const py::object number = py::module_::import("numbers").attr("Number");
  const py::object np_bool = py::module_::import("numpy").attr("bool_");
  std::vector<std::string> out;
  for (const py::handle& v : py::iter(seq)) {
    if (v.is_none() || (py::isinstance<py::float_>(v) && std::isnan(v.cast<double>()))) {
      out.emplace_back();
    } else if (py::isinstance<py::str>(v) || py::isinstance<py::bytes>(v)) {
      out.push_back(v.cast<std::string>());
    } else if (py::isinstance(v, number) && !py::isinstance<py::bool_>(v) && !py::isinstance(v, np_bool)) {
      out.push_back(py::str(v).cast<std::string>());  // numbers as their text
    } else {
      throw py::value_error(what + "[" + std::to_string(out.size()) + "] is " +
                            py::str(py::type::of(v).attr("__name__")).cast<std::string>() +
                            ", not a string or a number");
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

// Scores: None marks an example with no score (a CSV's empty cell; it becomes NaN, as
// coe holds it); a NaN given as a number is refused, as the CSV reader refuses "nan".
std::vector<float> Scores(const py::handle& a, const std::vector<std::string>& ids, const std::string& what) {
  const std::vector<double> s = Doubles(a, ids.size(), what);
  if (std::none_of(s.begin(), s.end(), [](double v) { return std::isnan(v); })) return {s.begin(), s.end()};
  size_t i = 0;
  for (const py::handle& v : py::iter(a)) {
    if (std::isnan(s[i]) && !v.is_none())
      throw py::value_error(what + "[" + std::to_string(i) + "] (id '" + ids[i] +
                            "'): NaN is not a score (a score is in [0,1]; None marks an example with no score)");
    ++i;
  }
  return {s.begin(), s.end()};
}

// The probability columns' label names: each once, none empty (as the CSV's |p:
// columns, whose names must differ).
std::vector<std::string> LabelNames(const py::handle& names) {
  std::vector<std::string> out = Strings(names, "label_names");
  for (size_t l = 0; l < out.size(); ++l) {
    if (out[l].empty()) throw py::value_error("label_names[" + std::to_string(l) + "] is empty");
    for (size_t k = 0; k < l; ++k)
      if (out[k] == out[l])
        throw py::value_error("label_names: '" + out[l] + "' is listed twice (at " + std::to_string(k) + " and " +
                              std::to_string(l) + "): one probability column a label");
  }
  return out;
}

// The per-model dict `arg` (costs, scores, probabilities): a dict whose keys are models
// of `predictions` (a key naming no model would be ignored: a typo made silent).
py::dict PerModel(const py::object& arg, const py::dict& predictions, const char* what) {
  if (arg.is_none()) return {};
  if (!py::isinstance<py::dict>(arg)) throw py::value_error(std::string(what) + ": expected a dict {model: values}");
  py::dict d = arg.cast<py::dict>();
  for (const auto& [k, v] : d)
    if (!predictions.contains(k))
      throw py::value_error(std::string(what) + ": '" + py::str(k).cast<std::string>() +
                            "' is not a model of predictions");
  return d;
}

}  // namespace

// Recordings from arrays. The arrays are converted here; their values are checked by
// coe::ValidateRecordings, the rules the CSV reader applies too (ValueError).
PyRecordings FromArrays(const py::object& ids, const py::object& truth, const py::dict& predictions,
                        const py::object& costs_arg, const py::object& scores_arg, const py::object& probs_arg,
                        const py::object& label_names, bool allow_duplicate_ids) {
  PyRecordings r;
  r.rec.source = "coe.Recordings";
  r.rec.labels = r.labels.get();
  // Probability columns are label indices: the label names come first, in their order.
  int num_probs = 0;
  if (!label_names.is_none())
    for (const std::string& l : LabelNames(label_names)) r.labels->Intern(l), ++num_probs;
  if (!probs_arg.is_none() && num_probs == 0)
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
  const py::dict costs = PerModel(costs_arg, predictions, "costs");
  const py::dict scores = PerModel(scores_arg, predictions, "scores");
  const py::dict probabilities = PerModel(probs_arg, predictions, "probabilities");
  for (const auto& [k, v] : predictions) {
    coe::ModelRecord m;
    if (!py::isinstance<py::str>(k)) throw py::value_error("predictions: model names must be strings");
    m.name = k.cast<std::string>();
    for (const std::string& p : Strings(v, "predictions['" + m.name + "']"))
      m.label.push_back(p.empty() ? coe::kAbstain : r.labels->Intern(p));
    if (m.label.size() != n)
      throw py::value_error("predictions['" + m.name + "']: " + std::to_string(m.label.size()) + " values for " +
                            std::to_string(n) + " ids");
    if (costs.contains(k)) m.cost = Doubles(costs[k], n, "costs['" + m.name + "']");
    if (scores.contains(k)) m.score = Scores(scores[k], r.rec.ids, "scores['" + m.name + "']");
    if (probabilities.contains(k)) {
      auto p = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(probabilities[k]);
      if (!p || p.ndim() != 2 || static_cast<size_t>(p.shape(0)) != n || p.shape(1) != num_probs)
        throw py::value_error("probabilities['" + m.name + "']: expected an array of shape (" + std::to_string(n) +
                              ", " + std::to_string(num_probs) + "): a column per label_names");
      m.num_probs = num_probs;
      m.probs.assign(p.data(), p.data() + p.size());
    }
    r.rec.models.push_back(std::move(m));
  }
  coe::RecordingsReadOptions options;
  options.allow_duplicate_ids = allow_duplicate_ids;
  std::vector<std::string> warnings;
  if (coe::Status s = coe::ValidateRecordings(&r.rec, options, &warnings); !s.ok()) throw py::value_error(s.message());
  for (const std::string& w : warnings)
    if (PyErr_WarnEx(PyExc_UserWarning, w.c_str(), 1) < 0) throw py::error_already_set();  // warnings as errors
  return r;
}

}  // namespace coe_py
