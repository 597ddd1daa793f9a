// Internal: the registry of backend kinds and modules (backends/module.h). The one
// place that knows which kind of backend a catalogue entry is, what that kind is like
// (its traits) and which module provides it; the layers ask it for a trait instead of
// comparing backend names.
//
// Kinds: recorded (in the library), onnx (module opencv), onednn (module onednn),
// remote and openai (module remote). Traits are known without loading any module.
//
// A module is looked up in $COE_PLUGIN_DIR, then beside the running executable, then
// beside libcoe_base.so, then in the install directory; one already in the process
// (linked by a test) is used as it is. It is loaded once (thread-safe) and never
// unloaded (backends it made may outlive any caller).
#ifndef COE_BACKENDS_REGISTRY_H_
#define COE_BACKENDS_REGISTRY_H_

#include <string>
#include <string_view>

#include "backends/module.h"
#include "coe/backend.h"
#include "coe/catalogue.h"

namespace coe {

struct BackendTraits {
  bool text_inputs = false;    // reads JSON records (a chat model's prompt fields), not tensors
  bool waits = false;          // a call mostly waits on another process (the network)
  bool measures_cost = false;  // measures each call's cost (Prediction::cost, usd): needs no catalogue figure
  bool computes = false;       // computes on this machine: its time per example is worth measuring
};

struct BackendKind {
  const char* name;    // the catalogue's `backend = "<name>"`
  const char* module;  // the module that provides it; nullptr: the library itself
  BackendTraits traits;
};

// The kind named `name`, or nullptr.
const BackendKind* FindBackendKind(std::string_view name);

// The kind `spec` names, or implies when it names none: "remote" when a url is set,
// "onnx" for a path ending in .onnx, "recorded" for one ending in .csv; "" otherwise.
std::string BackendKindOf(const ModelSpec& spec);

// The traits of `spec`'s kind; all false for an unknown kind (CreateBackend refuses it).
BackendTraits BackendTraitsOf(const ModelSpec& spec);

// The factory of `spec`'s kind, its module loaded. InvalidArgument for no or an unknown
// kind; FailedPrecondition, naming the model, when this build lacks the module or it
// cannot be loaded (naming every path tried and why each failed).
StatusOr<BackendFactory> BackendFactoryOf(const ModelSpec& spec);

// The module `name` ("opencv", "images", "onednn", "remote", "grpc"), loaded once.
// FailedPrecondition when this build lacks it ("this coe was built without ...") or it
// cannot be loaded (naming every path tried and why each failed).
StatusOr<const ModuleExports*> LoadModule(std::string_view name);

// The table of `module`'s service `service` (its type is the caller's to know).
StatusOr<const void*> LoadModuleService(std::string_view module, std::string_view service);

}  // namespace coe

#endif  // COE_BACKENDS_REGISTRY_H_
