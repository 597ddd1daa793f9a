#include "planner/cluster_view.h"

#include <cstdio>

namespace coe {
namespace {

using json = nlohmann::json;

// The share of the examples reaching each tier, from `r`'s exits.
std::vector<double> Reach(const EvalResult& r) {
  std::vector<double> reach;
  int left = r.examples;
  for (int exits : r.exits) {
    reach.push_back(r.examples ? static_cast<double>(left) / r.examples : 0.0);
    left -= exits;
  }
  return reach;
}

std::vector<std::vector<std::string>> Members(const CascadeSpec& spec) {
  std::vector<std::vector<std::string>> tiers;
  for (const TierSpec& t : spec.tiers) tiers.push_back(t.members);
  return tiers;
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The inputs' transfer to the cloud (per example entering the cascade, from its
// replay): added to both views, at the rate for the bill.
void AddTransfer(const std::optional<double>& per_example, double qps, Serving* s) {
  if (!per_example || *per_example <= 0) return;
  s->transfer_usd_per_example = *per_example;
  s->transfer_usd_per_hour = *per_example * qps * 3600;
  s->usd_per_example += s->transfer_usd_per_example;
  s->usd_per_hour += s->transfer_usd_per_hour;
}

json ServingJson(const Serving& s) {
  json tiers = json::array();
  for (const TierServing& t : s.tiers)
    tiers.push_back({{"members", t.members},
                     {"rate", t.rate},
                     {"batch", t.batch},
                     {"type", t.type},
                     {"devices", t.devices},
                     {"usd_per_hour", t.usd_per_hour},
                     {"usd_per_example", t.usd_per_example}});
  json j = {{"usd_per_example", s.usd_per_example}, {"usd_per_hour", s.usd_per_hour}, {"tiers", tiers}};
  if (s.transfer_usd_per_example > 0) {
    j["transfer_usd_per_example"] = s.transfer_usd_per_example;
    j["transfer_usd_per_hour"] = s.transfer_usd_per_hour;
  }
  return j;
}

std::string Saving(double best, double chosen) { return chosen > 0 ? Fmt("%.2fx", best / chosen) : "-"; }

std::string TiersText(const Serving& s) {
  std::string out;
  for (size_t k = 0; k < s.tiers.size(); ++k) {
    const TierServing& t = s.tiers[k];
    std::string members;
    for (const std::string& m : t.members) members += (members.empty() ? "" : "+") + m;
    char buf[512];
    std::snprintf(buf, sizeof buf, "    tier %zu %-28s %9.4g/s  batch %-7.4g %4d x %-12s $%.4g/h  $%.4g per example\n",
                  k + 1, members.c_str(), t.rate, t.batch, t.devices, t.type.c_str(), t.usd_per_hour,
                  t.usd_per_example);
    out += buf;
  }
  if (s.transfer_usd_per_example > 0) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "    inputs sent to the cloud                                           $%.4g/h  $%.4g per example\n",
                  s.transfer_usd_per_hour, s.transfer_usd_per_example);
    out += buf;
  }
  return out;
}

}  // namespace

StatusOr<std::optional<ClusterView>> BuildClusterView(const PlanReport& rep, const CostTable& costs) {
  if (!costs.cluster || !costs.serving) return std::optional<ClusterView>();
  ClusterView v;
  v.serving = *costs.serving;
  v.max_delay_ms = costs.cluster->max_delay_ms;
  v.best_single = rep.best_single;
  const bool test = rep.chosen.test.has_value();
  v.split = test ? "test" : "calibration";
  const std::vector<double> reach = Reach(test ? *rep.chosen.test : rep.chosen.calib);
  const std::vector<std::vector<std::string>> chosen = Members(rep.chosen.cascade), best = {{rep.best_single}};
  const double one[] = {1.0};
  COE_ASSIGN_OR_RETURN(v.chosen, ServeCascade(*costs.cluster, chosen, reach, v.serving));
  COE_ASSIGN_OR_RETURN(v.best, ServeCascade(*costs.cluster, best, one, v.serving));
  std::optional<double> chosen_transfer = (test ? *rep.chosen.test : rep.chosen.calib).mean_transfer_cost;
  std::optional<double> best_transfer;
  for (const ReportRow& b : rep.baselines)
    if (b.name == rep.best_single) best_transfer = (test && b.test ? *b.test : b.calib).mean_transfer_cost;
  AddTransfer(chosen_transfer, v.serving.qps, &v.chosen);
  AddTransfer(best_transfer, v.serving.qps, &v.best);
  if (const std::string& type = v.serving.baseline_type; !type.empty()) {
    StatusOr<Serving> b = ServeCascade(*costs.cluster, best, one, v.serving, type);
    StatusOr<Serving> c = ServeCascade(*costs.cluster, chosen, reach, v.serving, type);
    if (b.ok()) AddTransfer(best_transfer, v.serving.qps, &*b);
    if (c.ok()) AddTransfer(chosen_transfer, v.serving.qps, &*c);
    if (b.ok()) v.best_on_baseline = *b;
    if (c.ok()) v.chosen_on_baseline = *c;
    if (!b.ok() || !c.ok()) v.baseline_note = (b.ok() ? c : b).status().message();
  }
  return std::optional<ClusterView>(std::move(v));
}

json ClusterViewJson(const ClusterView& v) {
  json j = {{"qps", v.serving.qps},       {"utilisation", v.serving.utilisation}, {"max_delay_ms", v.max_delay_ms},
            {"split", v.split},           {"best_single", v.best_single},         {"chosen", ServingJson(v.chosen)},
            {"best", ServingJson(v.best)}};
  if (!v.serving.baseline_type.empty()) {
    j["baseline_type"] = v.serving.baseline_type;
    j["chosen_on_baseline"] = v.chosen_on_baseline ? ServingJson(*v.chosen_on_baseline) : json();
    j["best_on_baseline"] = v.best_on_baseline ? ServingJson(*v.best_on_baseline) : json();
    if (!v.baseline_note.empty()) j["baseline_note"] = v.baseline_note;
  }
  if (!v.replaced.empty()) j["replaced"] = v.replaced;
  return j;
}

std::string ClusterViewText(const ClusterView& v) {
  std::string s = "\nCLUSTER COST at " + Fmt("%.6g", v.serving.qps) +
                  " examples/s (rates from the exit shares of the " + v.split +
                  " split; a tier's batcher waits up to " + Fmt("%.4g", v.max_delay_ms) +
                  " ms; devices provisioned at " + Fmt("%.4g%%", 100 * v.serving.utilisation) + " utilisation)\n";
  s += "  per example: chosen $" + Fmt("%.4g", v.chosen.usd_per_example) + ", " + v.best_single +
       " alone on its cheapest type $" + Fmt("%.4g", v.best.usd_per_example) + ": saving " +
       Saving(v.best.usd_per_example, v.chosen.usd_per_example) + "\n";
  s += "  provisioned: chosen $" + Fmt("%.4g", v.chosen.usd_per_hour) + "/h, " + v.best_single +
       " alone on its cheapest type $" + Fmt("%.4g", v.best.usd_per_hour) + "/h: saving " +
       Saving(v.best.usd_per_hour, v.chosen.usd_per_hour) + "\n";
  if (!v.replaced.empty())
    s += "  (the search chose " + v.replaced + "; provisioned at this rate it cost more than " + v.best_single +
         " alone, which is the plan)\n";
  s += "  chosen:\n" + TiersText(v.chosen) + "  " + v.best_single + " alone:\n" + TiersText(v.best);
  if (!v.serving.baseline_type.empty()) {
    const std::string& type = v.serving.baseline_type;
    if (v.best_on_baseline)
      s += "  baseline type " + type + ": " + v.best_single + " alone $" +
           Fmt("%.4g", v.best_on_baseline->usd_per_hour) + "/h, $" + Fmt("%.4g", v.best_on_baseline->usd_per_example) +
           " per example; against the chosen: saving " +
           Saving(v.best_on_baseline->usd_per_hour, v.chosen.usd_per_hour) + " provisioned, " +
           Saving(v.best_on_baseline->usd_per_example, v.chosen.usd_per_example) + " per example\n";
    if (v.chosen_on_baseline)
      s += "  the chosen cascade on " + type + " alone: $" + Fmt("%.4g", v.chosen_on_baseline->usd_per_hour) + "/h, $" +
           Fmt("%.4g", v.chosen_on_baseline->usd_per_example) + " per example\n";
    if (!v.baseline_note.empty()) s += "  baseline type " + type + ": " + v.baseline_note + "\n";
  }
  return s;
}

std::vector<std::string> ClusterViewWarnings(const ClusterView& v) {
  std::vector<std::string> w;
  const std::string at = " at " + Fmt("%.6g", v.serving.qps) + " examples/s";
  if (v.chosen.usd_per_hour > v.best.usd_per_hour)
    w.push_back("provisioned" + at + ", the chosen cascade ($" + Fmt("%.4g", v.chosen.usd_per_hour) +
                "/h) costs more than " + v.best_single + " alone ($" + Fmt("%.4g", v.best.usd_per_hour) +
                "/h): the plan priced each model fully batched, and whole devices round up");
  if (v.chosen.usd_per_example > v.best.usd_per_example)
    w.push_back("per example" + at + ", the chosen cascade ($" + Fmt("%.4g", v.chosen.usd_per_example) +
                ") costs more than " + v.best_single + " alone ($" + Fmt("%.4g", v.best.usd_per_example) +
                "): later tiers see small batches");
  return w;
}

StatusOr<std::optional<EvalServing>> BuildEvalServing(const CascadeSpec& spec, const EvalResult& r,
                                                      const CostTable& costs) {
  if (!costs.cluster || !costs.serving) return std::optional<EvalServing>();
  EvalServing e;
  e.serving = *costs.serving;
  e.max_delay_ms = costs.cluster->max_delay_ms;
  const std::vector<double> reach = Reach(r);
  const std::vector<std::vector<std::string>> tiers = Members(spec);
  COE_ASSIGN_OR_RETURN(e.cascade, ServeCascade(*costs.cluster, tiers, reach, e.serving));
  AddTransfer(r.mean_transfer_cost, e.serving.qps, &e.cascade);
  if (const std::string& type = e.serving.baseline_type; !type.empty()) {
    StatusOr<Serving> b = ServeCascade(*costs.cluster, tiers, reach, e.serving, type);
    if (b.ok()) {
      AddTransfer(r.mean_transfer_cost, e.serving.qps, &*b);
      e.on_baseline = *b;
    } else {
      e.baseline_note = b.status().message();
    }
  }
  return std::optional<EvalServing>(std::move(e));
}

json EvalServingJson(const EvalServing& s) {
  json j = {{"qps", s.serving.qps},
            {"utilisation", s.serving.utilisation},
            {"max_delay_ms", s.max_delay_ms},
            {"cascade", ServingJson(s.cascade)}};
  if (!s.serving.baseline_type.empty()) {
    j["baseline_type"] = s.serving.baseline_type;
    j["on_baseline"] = s.on_baseline ? ServingJson(*s.on_baseline) : json();
    if (!s.baseline_note.empty()) j["baseline_note"] = s.baseline_note;
  }
  return j;
}

std::string EvalServingText(const EvalServing& s) {
  std::string out = "served   at " + Fmt("%.6g", s.serving.qps) + " examples/s (a tier's batcher waits up to " +
                    Fmt("%.4g", s.max_delay_ms) + " ms; devices at " + Fmt("%.4g%%", 100 * s.serving.utilisation) +
                    " utilisation): $" + Fmt("%.4g", s.cascade.usd_per_example) + " per example, $" +
                    Fmt("%.4g", s.cascade.usd_per_hour) + "/h provisioned\n" + TiersText(s.cascade);
  if (s.on_baseline)
    out += "  on " + s.serving.baseline_type + " alone: $" + Fmt("%.4g", s.on_baseline->usd_per_example) +
           " per example, $" + Fmt("%.4g", s.on_baseline->usd_per_hour) + "/h\n" + TiersText(*s.on_baseline);
  if (!s.baseline_note.empty()) out += "  on " + s.serving.baseline_type + ": " + s.baseline_note + "\n";
  return out;
}

json OtherCostPlanJson(const OtherCostPlan& p) {
  return {{"key", p.key},
          {"cascade", p.cascade},
          {"same", p.same},
          {"saving_on_key", p.saving_on_key},
          {"saving", p.saving},
          {"chosen_saving_on_key", p.chosen_saving_on_key},
          {"chosen_saving", p.chosen_saving}};
}

std::string OtherCostPlanText(const OtherCostPlan& p) {
  std::string s = "\nPLANNED ON " + p.key + " INSTEAD (savings against the best single model, calibration): ";
  if (p.same)
    return s + "the same cascade: " + Saving(p.chosen_saving_on_key, 1) + " in " + p.key + ", " +
           Saving(p.chosen_saving, 1) + " in dollars\n";
  return s + "\n  " + p.cascade + "\n  " + Saving(p.saving_on_key, 1) + " in " + p.key + ", " + Saving(p.saving, 1) +
         " in dollars; the chosen: " + Saving(p.chosen_saving_on_key, 1) + " in " + p.key + ", " +
         Saving(p.chosen_saving, 1) + " in dollars\n";
}

}  // namespace coe
