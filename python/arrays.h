// Recordings built from Python arrays (coe.Recordings(...)): the values are converted
// here and checked by coe::ValidateRecordings, the rules the CSV reader applies too.
// Errors are ValueError naming where (predictions['m'][0], ...).
#ifndef COE_PYTHON_ARRAYS_H_
#define COE_PYTHON_ARRAYS_H_

#include <pybind11/pybind11.h>

#include <memory>

#include "coe/labels.h"
#include "coe/recordings.h"

namespace coe_py {

// Recordings with the label names they index into.
struct PyRecordings {
  std::shared_ptr<coe::LabelSet> labels = std::make_shared<coe::LabelSet>();
  coe::Recordings rec;
};

// Recordings from arrays: ids, labels (None: no truth), predictions {model: answers},
// and per-model dicts of costs, scores and probabilities (columns: label_names).
PyRecordings FromArrays(const pybind11::object& ids, const pybind11::object& truth, const pybind11::dict& predictions,
                        const pybind11::object& costs_arg, const pybind11::object& scores_arg,
                        const pybind11::object& probs_arg, const pybind11::object& label_names,
                        bool allow_duplicate_ids);

}  // namespace coe_py

#endif  // COE_PYTHON_ARRAYS_H_
