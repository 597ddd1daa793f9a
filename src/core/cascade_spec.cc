#include "coe/cascade_spec.h"

#include <cmath>
#include <set>

#include "base/numbers.h"
#include "base/toml.h"
#include "coe/files.h"

namespace coe {

const char* ChatInputName(ChatInput input) { return input == ChatInput::kMessages ? "messages" : "template"; }

std::string CascadeSpec::ToString() const {
  std::string s;
  for (size_t t = 0; t < tiers.size(); ++t) {
    if (t) s += " -> ";
    s += "{";
    for (size_t m = 0; m < tiers[t].members.size(); ++m) {
      if (m) s += ", ";
      s += tiers[t].members[m];
    }
    s += "}";
    if (t + 1 < tiers.size()) s += " " + tiers[t].rule.ToString(static_cast<int>(tiers[t].members.size()));
    if (!tiers[t].match.exact()) s += " [" + tiers[t].match.ToString() + "]";
  }
  return s;
}

std::vector<std::string> CascadeSpec::AllMembers() const {
  std::vector<std::string> out;
  for (const TierSpec& t : tiers)
    for (const std::string& m : t.members) out.push_back(m);
  return out;
}

Status ValidateCascade(const CascadeSpec& spec, const std::string& source) {
  if (spec.tiers.empty()) return InvalidArgumentError(source + ": the cascade has no tiers");
  std::set<std::string> seen;
  for (size_t t = 0; t < spec.tiers.size(); ++t) {
    const TierSpec& tier = spec.tiers[t];
    const std::string where = source + ": tier " + std::to_string(t + 1);
    if (tier.members.empty()) return InvalidArgumentError(where + " has no members");
    for (const std::string& m : tier.members) {
      if (m.empty()) return InvalidArgumentError(where + " has an empty member name");
      if (!seen.insert(m).second)
        return InvalidArgumentError(where + ": member '" + m + "' appears twice in the cascade");
    }
    const bool last = t + 1 == spec.tiers.size();
    if (!last && tier.rule.empty()) {
      return InvalidArgumentError(where +
                                  " is not the last tier but has no rule "
                                  "(set min_agreement and/or min_score)");
    }
    auto check = [&](const std::optional<double>& v, const char* key) -> Status {
      if (v && !(*v > 0.0 && *v <= 1.0))
        return InvalidArgumentError(where + ": " + key + " = " + FormatDouble(*v) + " is outside (0, 1]");
      return Status::Ok();
    };
    COE_RETURN_IF_ERROR(check(tier.rule.min_agreement, "min_agreement"));
    COE_RETURN_IF_ERROR(check(tier.rule.min_score, "min_score"));
    if (tier.calibrated_agreement && last)
      return InvalidArgumentError(where +
                                  ": calibrated_agreement is an exiting tier's agreement with the last tier; the "
                                  "last tier has none (remove it)");
    if (tier.calibrated_agreement && !(*tier.calibrated_agreement >= 0.0 && *tier.calibrated_agreement <= 1.0))
      return InvalidArgumentError(where + ": calibrated_agreement = " + FormatDouble(*tier.calibrated_agreement) +
                                  " is outside [0, 1]");
  }
  return Status::Ok();
}

StatusOr<CascadeSpec> ReadCascade(const std::string& path) {
  COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseCascade(text, path);
}

StatusOr<CascadeSpec> ParseCascade(std::string_view text, const std::string& source) {
  COE_ASSIGN_OR_RETURN(toml::table root, ParseToml(text, source));
  CascadeSpec spec;
  for (auto&& [k, v] : root) {
    std::string key(k.str());
    if (key == "name") {
      auto s = v.value<std::string>();
      if (!s) return InvalidArgumentError(TomlWhere(source, v) + ": 'name' must be a string");
      spec.name = *s;
    } else if (key == "input") {
      auto s = v.value<std::string>();
      if (!s || (*s != "template" && *s != "messages"))
        return InvalidArgumentError(TomlWhere(source, v) +
                                    ": 'input' must be \"template\" (the catalogue's prompt over the request's user "
                                    "message) or \"messages\" (the whole conversation to every member)");
      spec.input = *s == "messages" ? ChatInput::kMessages : ChatInput::kTemplate;
    } else if (key != "tiers") {
      return InvalidArgumentError(TomlWhere(source, v) + ": unknown key '" + key +
                                  "' (expected name, input and [[tiers]])");
    }
  }
  const toml::array* tiers = root["tiers"].as_array();
  if (!tiers) return InvalidArgumentError(source + ": no [[tiers]] array");
  for (size_t t = 0; t < tiers->size(); ++t) {
    const toml::node& node = *tiers->get(t);
    const toml::table* tt = node.as_table();
    const std::string where = TomlWhere(source, node) + ": tier " + std::to_string(t + 1);
    if (!tt) return InvalidArgumentError(where + " must be a table");
    TierSpec tier;
    for (auto&& [k, v] : *tt) {
      std::string key(k.str());
      // Errors about one key point at its value, not at the [[tiers]] header.
      const std::string at = TomlWhere(source, v) + ": tier " + std::to_string(t + 1);
      if (key == "members") {
        const toml::array* a = v.as_array();
        if (!a) return InvalidArgumentError(at + ": 'members' must be an array of strings");
        for (const toml::node& e : *a) {
          auto s = e.value<std::string>();
          if (!s)
            return InvalidArgumentError(TomlWhere(source, e) + ": tier " + std::to_string(t + 1) +
                                        ": 'members' must be an array of strings");
          tier.members.push_back(*s);
        }
      } else if (key == "min_agreement" || key == "min_score" || key == "calibrated_agreement") {
        auto d = v.value<double>();
        if (!d) return InvalidArgumentError(at + ": '" + key + "' must be a number");
        (key == "min_agreement" ? tier.rule.min_agreement
         : key == "min_score"   ? tier.rule.min_score
                                : tier.calibrated_agreement) = *d;
      } else if (key == "match") {
        auto m = v.value<std::string>();
        if (!m) return InvalidArgumentError(at + ": 'match' must be a string (exact, number, jaccard:T)");
        auto parsed = AnswerMatch::Parse(*m);
        if (!parsed.ok()) return parsed.status().WithPrefix(at);
        tier.match = *parsed;
      } else {
        return InvalidArgumentError(at + ": unknown key '" + key +
                                    "' (expected members, min_agreement, min_score, match, calibrated_agreement)");
      }
    }
    spec.tiers.push_back(std::move(tier));
  }
  COE_RETURN_IF_ERROR(ValidateCascade(spec, source));
  return spec;
}

std::string CascadeToToml(const CascadeSpec& spec, const std::vector<std::string>& comment) {
  std::string out;
  for (const std::string& line : comment) out += TomlCommentLines(line);
  if (!spec.name.empty()) out += "name = " + TomlQuote(spec.name) + "\n";
  if (spec.input != ChatInput::kTemplate) out += "input = " + TomlQuote(ChatInputName(spec.input)) + "\n";
  for (size_t t = 0; t < spec.tiers.size(); ++t) {
    const TierSpec& tier = spec.tiers[t];
    out += "\n[[tiers]]\nmembers = [";
    for (size_t m = 0; m < tier.members.size(); ++m) out += (m ? ", " : "") + TomlQuote(tier.members[m]);
    out += "]\n";
    if (!tier.match.exact()) out += "match = " + TomlQuote(tier.match.ToString()) + "\n";
    if (t + 1 == spec.tiers.size()) continue;
    if (tier.rule.min_agreement) out += "min_agreement = " + TomlNumber(*tier.rule.min_agreement) + "\n";
    if (tier.rule.min_score) out += "min_score = " + TomlNumber(*tier.rule.min_score) + "\n";
    if (tier.calibrated_agreement) out += "calibrated_agreement = " + TomlNumber(*tier.calibrated_agreement) + "\n";
  }
  return out;
}

std::vector<std::string> CascadeWarnings(const CascadeSpec& spec,
                                         const std::function<const double*(const std::string&)>& cost_of) {
  std::vector<std::string> out;
  double prev_top = -1;
  for (size_t t = 0; t < spec.tiers.size(); ++t) {
    const TierSpec& tier = spec.tiers[t];
    const std::string name = "tier " + std::to_string(t + 1) + " {" + [&] {
      std::string m;
      for (size_t k = 0; k < tier.members.size(); ++k) m += (k ? ", " : "") + tier.members[k];
      return m;
    }() + "}";
    const int n = static_cast<int>(tier.members.size());
    if (t + 1 < spec.tiers.size() && tier.rule.min_agreement && !tier.rule.min_score &&
        std::ceil(*tier.rule.min_agreement * n - 1e-9) <= 1)
      out.push_back(name + ": min_agreement " + FormatDouble(*tier.rule.min_agreement) + " of " + std::to_string(n) +
                    " members is met by a single vote, so the tier never defers (unless every member abstains); "
                    "a majority is min_agreement > 0.5");
    if (t + 1 < spec.tiers.size() && tier.rule.min_score && *tier.rule.min_score <= 0)
      out.push_back(name + ": min_score " + FormatDouble(*tier.rule.min_score) +
                    " is met by every answer with a score, so the tier never defers on it");
    if (cost_of) {
      double top = -1;
      bool known = true;
      for (const std::string& m : tier.members) {
        const double* c = cost_of(m);
        if (!c)
          known = false;
        else
          top = std::max(top, *c);
      }
      if (known && t > 0 && prev_top >= 0 && top <= prev_top)
        out.push_back(name + " costs no more than tier " + std::to_string(t) +
                      " (its dearest member: " + FormatDouble(top) + " vs " + FormatDouble(prev_top) +
                      "): cascades run cheap tiers first, list tiers in ascending cost");
      prev_top = known ? top : -1;
    }
  }
  return out;
}

}  // namespace coe
