// coe/cascade_spec.h: a cascade of ensembles as data, and its TOML file format.
//
//   name = "fashion"          # optional; the served model's name
//   input = "messages"        # optional: how chat members see a chat request (below)
//   [[tiers]]
//   members = ["mlp", "cnn"]  # ascending cost; ties go to the last listed
//   min_agreement = 1.0       # vote rule (optional)
//   min_score = 0.93          # score rule (optional; both must hold when both given)
//   match = "jaccard:0.6"     # how answers compare: exact (default), number, jaccard:T
//   calibrated_agreement = 0.97  # optional, written by `coe plan` (below)
//   [[tiers]]
//   members = ["resnet"]      # the last tier needs no rule: it answers its plurality
//
// `input` (cascades of chat models): "template" (the default) fills each member's
// prompt template with the request's one user message, and a request that carries more
// (a system message, earlier turns, a trailing assistant message) is refused;
// "messages" gives every member the whole conversation (the catalogue's `system`, if
// set, first as a system message of its own) and uses no template. `coe run` then reads
// a record's `messages`. Planners ignore it.
//
// `calibrated_agreement` (a non-final tier only, in [0, 1]): on the calibration split
// the plan was chosen on, the share of the inputs that exit at this tier on which the
// last tier's answer matches the exit answer (by this tier's `match`; a last tier that
// abstains does not match). It is what the plan expects of live traffic: shadow
// verification sends some exited requests to the last tier too and compares their
// agreement with it. `coe plan` writes it for every tier with exits on calibration;
// absent means unknown (a hand-written file, a tier that never exited). The engine
// ignores it: it changes no answer.
//
// `coe plan` writes these files; `coe run`, `coe serve` and `coe eval` read them.
// Errors: InvalidArgument naming the file and tier for malformed TOML, an `input`
// other than "template" or "messages", an empty cascade or tier, a member listed
// twice, a non-final tier without a rule, a rule threshold outside (0,1], a
// calibrated_agreement outside [0, 1] or on the last tier.
// Thread safety: an immutable value once built.
#ifndef COE_CASCADE_SPEC_H_
#define COE_CASCADE_SPEC_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coe/rules.h"
#include "coe/status.h"

namespace coe {

struct TierSpec {
  std::vector<std::string> members;
  DeferralRule rule;  // ignored for the last tier
  AnswerMatch match;  // how the members' answers are compared (default: exact)
  // A non-final tier's calibrated agreement with the last tier (see above), or none.
  std::optional<double> calibrated_agreement;
};

// How a cascade's chat members see a chat request (the `input` key above).
enum class ChatInput { kTemplate, kMessages };
// "template", "messages".
const char* ChatInputName(ChatInput input);

struct CascadeSpec {
  std::string name;
  ChatInput input = ChatInput::kTemplate;
  std::vector<TierSpec> tiers;

  // "{a, b} agree>=1 -> {c}".
  std::string ToString() const;
  // Every distinct member name, in tier order.
  std::vector<std::string> AllMembers() const;
};

// Checks the invariants listed above; `source` names the file in messages.
Status ValidateCascade(const CascadeSpec& spec, const std::string& source);

StatusOr<CascadeSpec> ReadCascade(const std::string& path);

// What a valid cascade may say that is almost surely not meant, one message a finding,
// naming the tier: a non-final tier that can never defer (a vote rule that a single
// vote meets, and no score rule), and a tier whose dearest member costs no more than
// the tier before's (`cost_of(member)`, when given, returns its cost figure or null).
std::vector<std::string> CascadeWarnings(const CascadeSpec& spec,
                                         const std::function<const double*(const std::string&)>& cost_of = nullptr);
StatusOr<CascadeSpec> ParseCascade(std::string_view text, const std::string& source);
// TOML text that ParseCascade reads back to an equal spec (thresholds keep every
// digit). `comment` lines are written first, each prefixed with "# ".
std::string CascadeToToml(const CascadeSpec& spec, const std::vector<std::string>& comment);

}  // namespace coe

#endif  // COE_CASCADE_SPEC_H_
