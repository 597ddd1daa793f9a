// Internal (core layer): a cascade's tiers as JSON, the one form every JSON report
// (plan, eval, demo, run) gives them in: [{members, min_agreement, min_score, and
// match when not exact}], the last tier's rule null (it always answers).
#ifndef COE_CORE_CASCADE_JSON_H_
#define COE_CORE_CASCADE_JSON_H_

#include <nlohmann/json.hpp>

#include "coe/cascade_spec.h"

namespace coe {

inline nlohmann::json CascadeTiersJson(const CascadeSpec& spec) {
  using nlohmann::json;
  json tiers = json::array();
  for (size_t t = 0; t < spec.tiers.size(); ++t) {
    const TierSpec& tier = spec.tiers[t];
    const bool last = t + 1 == spec.tiers.size();
    json j;
    j["members"] = tier.members;
    j["min_agreement"] = (!last && tier.rule.min_agreement) ? json(*tier.rule.min_agreement) : json();
    j["min_score"] = (!last && tier.rule.min_score) ? json(*tier.rule.min_score) : json();
    if (!tier.match.exact()) j["match"] = tier.match.ToString();
    tiers.push_back(j);
  }
  return tiers;
}

}  // namespace coe

#endif  // COE_CORE_CASCADE_JSON_H_
