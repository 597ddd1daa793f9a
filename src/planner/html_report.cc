// `coe report`: one self-contained HTML file from `coe plan --json` (and `coe run
// --json`) output. The plot is inline SVG drawn here: no script, no network, no font
// files; hovering a mark shows its <title> (the browser's own tooltip), so the file
// reads the same offline, attached to a ticket, years later.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "coe/report.h"

namespace coe {
namespace {

using json = nlohmann::json;

std::string Esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::string F(const char* fmt, double v) {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}
std::string Pct(double v) { return F("%.2f%%", 100 * v); }
std::string Num(double v) { return F("%.4g", v); }

bool Has(const json& j, const char* k) { return j.is_object() && j.contains(k) && !j[k].is_null(); }
double D(const json& j, const char* k) { return Has(j, k) && j[k].is_number() ? j[k].get<double>() : NAN; }

// "T1: a, b agree>=2/3 | T2: c" with exits.
std::string TiersText(const json& row) {
  std::string out;
  if (!Has(row, "tiers")) return Has(row, "cascade") ? row["cascade"].get<std::string>() : "";
  const json& tiers = row["tiers"];
  for (size_t t = 0; t < tiers.size(); ++t) {
    const json& tier = tiers[t];
    out += (t ? "\n" : "") + std::string("tier ") + std::to_string(t + 1) + ": ";
    std::string members;
    for (const auto& m : tier["members"]) members += (members.empty() ? "" : ", ") + m.get<std::string>();
    out += members;
    std::string rule;
    if (Has(tier, "min_agreement")) rule += "agreement >= " + F("%.3g", tier["min_agreement"].get<double>());
    if (Has(tier, "min_score"))
      rule += (rule.empty() ? "" : " and ") + ("score >= " + F("%.4g", tier["min_score"].get<double>()));
    if (!rule.empty()) out += " (exit when " + rule + ")";
  }
  return out;
}

std::string SplitText(const json& split, const char* name) {
  if (!split.is_object()) return "";
  std::string s = std::string(name) + ": accuracy " + Pct(D(split, "accuracy")) + ", cost " + Num(D(split, "cost"));
  if (Has(split, "exits") && split["exits"].size() > 1) {
    const double n = std::max(1.0, D(split, "examples"));
    s += ", exits";
    for (const auto& e : split["exits"]) s += " " + F("%.0f%%", 100 * e.get<double>() / n);
  }
  return s;
}

std::string Tooltip(const std::string& what, const json& row) {
  std::string t = what + "\n" + TiersText(row) + "\n" + SplitText(row["calib"], "calibration");
  if (Has(row, "test")) t += "\n" + SplitText(row["test"], "test");
  return t;
}

struct Axes {
  double x0, x1, y0, y1;  // data ranges: log10(cost), accuracy
  double left = 80, top = 30, width = 760, height = 440;
  double X(double cost) const { return left + (std::log10(cost) - x0) / (x1 - x0) * width; }
  double Y(double acc) const { return top + (1 - (acc - y0) / (y1 - y0)) * height; }
};

struct Point {
  double cost, acc;
};

std::string Mark(const Axes& a, const Point& p, const std::string& cls, const std::string& shape,
                 const std::string& title) {
  const std::string x = F("%.2f", a.X(p.cost)), y = F("%.2f", a.Y(p.acc));
  std::string el;
  if (shape == "square")
    el = "<rect class=\"" + cls + "\" x=\"" + F("%.2f", a.X(p.cost) - 5) + "\" y=\"" + F("%.2f", a.Y(p.acc) - 5) +
         "\" width=\"10\" height=\"10\"";
  else if (shape == "diamond")
    el = "<path class=\"" + cls + "\" d=\"M" + x + "," + F("%.2f", a.Y(p.acc) - 6) + " l6,6 l-6,6 l-6,-6 z\"";
  else
    el = "<circle class=\"" + cls + "\" cx=\"" + x + "\" cy=\"" + y + "\" r=\"" + (shape == "big" ? "9" : "4.5") + "\"";
  return el + "><title>" + Esc(title) + "</title>" +
         (shape == "square"    ? "</rect>"
          : shape == "diamond" ? "</path>"
                               : "</circle>") +
         "\n";
}

// A step line through points sorted by cost: the frontier as a staircase.
std::string Steps(const Axes& a, std::vector<Point> pts, const std::string& cls) {
  std::sort(pts.begin(), pts.end(), [](const Point& p, const Point& q) { return p.cost < q.cost; });
  std::string d;
  for (size_t i = 0; i < pts.size(); ++i) {
    const std::string x = F("%.2f", a.X(pts[i].cost)), y = F("%.2f", a.Y(pts[i].acc));
    if (i == 0)
      d += "M" + x + "," + y;
    else
      d += " H" + x + " V" + y;
  }
  return d.empty() ? "" : "<path class=\"" + cls + "\" d=\"" + d + "\"/>\n";
}

bool Usable(const json& split) {
  return split.is_object() && std::isfinite(D(split, "cost")) && D(split, "cost") > 0 &&
         std::isfinite(D(split, "accuracy"));
}

std::string Plot(const json& plan) {
  // Ranges over every mark.
  double cmin = INFINITY, cmax = -INFINITY, amin = INFINITY, amax = -INFINITY;
  auto take = [&](const json& row) {
    for (const char* s : {"calib", "test"}) {
      if (!Has(row, s) || !Usable(row[s])) continue;
      cmin = std::min(cmin, D(row[s], "cost"));
      cmax = std::max(cmax, D(row[s], "cost"));
      amin = std::min(amin, D(row[s], "accuracy"));
      amax = std::max(amax, D(row[s], "accuracy"));
    }
  };
  for (const auto& r : plan["frontier"]) take(r);
  for (const auto& r : plan["baselines"]) take(r);
  if (Has(plan, "families"))
    for (const auto& f : plan["families"])
      for (const auto& r : f["frontier"]) take(r);
  take(plan["chosen"]);
  if (!std::isfinite(cmin)) return "<p>No mark has a positive cost: nothing to plot on a log axis.</p>\n";
  Axes a;
  a.x0 = std::log10(cmin) - 0.1;
  a.x1 = std::log10(cmax) + 0.1;
  if (a.x1 - a.x0 < 0.5) a.x0 -= 0.25, a.x1 += 0.25;
  const double pad = std::max(0.005, (amax - amin) * 0.06);
  a.y0 = std::max(0.0, amin - pad);
  a.y1 = std::min(1.0, amax + pad);
  if (a.y1 - a.y0 < 0.01) a.y0 = std::max(0.0, a.y1 - 0.02), a.y1 = std::min(1.0, a.y0 + 0.02);
  std::string s = "<svg id=\"pareto\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " +
                  F("%.0f", a.left + a.width + 200) + " " + F("%.0f", a.top + a.height + 90) +
                  "\" role=\"img\" aria-label=\"accuracy against mean cost\">\n";
  // Axes and grid.
  s += "<g class=\"axes\">";
  for (int e = static_cast<int>(std::floor(a.x0)); e <= static_cast<int>(std::ceil(a.x1)); ++e)
    for (int m : {1, 2, 5}) {
      const double v = m * std::pow(10.0, e);
      if (std::log10(v) < a.x0 || std::log10(v) > a.x1) continue;
      const std::string x = F("%.2f", a.X(v));
      s += "<line class=\"grid\" x1=\"" + x + "\" x2=\"" + x + "\" y1=\"" + F("%.0f", a.top) + "\" y2=\"" +
           F("%.0f", a.top + a.height) + "\"/>";
      s += "<text class=\"tick\" x=\"" + x + "\" y=\"" + F("%.0f", a.top + a.height + 18) +
           "\" text-anchor=\"middle\">" + Esc(F("%g", v)) + "</text>";
    }
  const double step = (a.y1 - a.y0) > 0.2 ? 0.05 : (a.y1 - a.y0) > 0.06 ? 0.01 : 0.005;
  for (double v = std::ceil(a.y0 / step) * step; v <= a.y1 + 1e-12; v += step) {
    const std::string y = F("%.2f", a.Y(v));
    s += "<line class=\"grid\" x1=\"" + F("%.0f", a.left) + "\" x2=\"" + F("%.0f", a.left + a.width) + "\" y1=\"" + y +
         "\" y2=\"" + y + "\"/>";
    s += "<text class=\"tick\" x=\"" + F("%.0f", a.left - 8) + "\" y=\"" + y + "\" text-anchor=\"end\" dy=\"4\">" +
         F(step < 0.01 ? "%.1f%%" : "%.0f%%", 100 * v) + "</text>";
  }
  s += "<text class=\"label\" x=\"" + F("%.0f", a.left + a.width / 2) + "\" y=\"" + F("%.0f", a.top + a.height + 44) +
       "\" text-anchor=\"middle\">mean cost per example (" + Esc(plan.value("cost", std::string("cost"))) +
       "), log scale</text>";
  s += "<text class=\"label\" transform=\"rotate(-90)\" x=\"" + F("%.0f", -(a.top + a.height / 2)) +
       "\" y=\"20\" text-anchor=\"middle\">accuracy</text></g>\n";
  // Families' curves, coe's frontier (calibration, and test where present), baselines, chosen.
  static const char* kFamilyClass[] = {"fam0", "fam1", "fam2"};
  if (Has(plan, "families")) {
    int k = 0;
    for (const auto& f : plan["families"]) {
      const std::string cls = kFamilyClass[std::min(k++, 2)];
      std::vector<Point> pts;
      std::string marks;
      for (const auto& r : f["frontier"])
        if (Usable(r["calib"])) {
          pts.push_back({D(r["calib"], "cost"), D(r["calib"], "accuracy")});
          marks += Mark(a, pts.back(), "pt family " + cls, "diamond",
                        f["name"].get<std::string>() + " (calibration)\n" + Tooltip("", r));
        }
      s += Steps(a, pts, "curve family " + cls) + marks;
    }
  }
  std::vector<Point> calib, test;
  std::string marks;
  for (const auto& r : plan["frontier"]) {
    if (Usable(r["calib"])) {
      calib.push_back({D(r["calib"], "cost"), D(r["calib"], "accuracy")});
      marks += Mark(a, calib.back(), "pt frontier calib", "dot", Tooltip("coe frontier point (calibration)", r));
    }
    if (Has(r, "test") && Usable(r["test"])) {
      test.push_back({D(r["test"], "cost"), D(r["test"], "accuracy")});
      marks += Mark(a, test.back(), "pt frontier test", "dot", Tooltip("the same cascade on the test split", r));
    }
  }
  s += Steps(a, calib, "curve frontier calib") + Steps(a, test, "curve frontier test") + marks;
  for (const auto& b : plan["baselines"]) {
    if (!Usable(b["calib"])) continue;
    const Point p{D(b["calib"], "cost"), D(b["calib"], "accuracy")};
    const std::string name = b.value("name", std::string("baseline"));
    s += Mark(a, p, "pt baseline", "square", "baseline: " + name + "\n" + Tooltip("", b));
    s += "<text class=\"blabel\" x=\"" + F("%.2f", a.X(p.cost) + 8) + "\" y=\"" + F("%.2f", a.Y(p.acc) + 4) + "\">" +
         Esc(name) + "</text>\n";
  }
  const json& chosen = plan["chosen"];
  if (Usable(chosen["calib"]))
    s += Mark(a, {D(chosen["calib"], "cost"), D(chosen["calib"], "accuracy")}, "pt chosen calib", "big",
              Tooltip("CHOSEN (calibration)", chosen));
  if (Has(chosen, "test") && Usable(chosen["test"]))
    s += Mark(a, {D(chosen["test"], "cost"), D(chosen["test"], "accuracy")}, "pt chosen test", "big",
              Tooltip("CHOSEN (test split)", chosen));
  // Legend: a row under the axis label.
  const double ly = a.top + a.height + 74;
  double lx = a.left;
  auto legend = [&](const std::string& cls, const std::string& text) {
    s += "<g class=\"legend\"><rect class=\"" + cls + "\" x=\"" + F("%.0f", lx) + "\" y=\"" + F("%.0f", ly - 9) +
         "\" width=\"12\" height=\"12\"/><text x=\"" + F("%.0f", lx + 18) + "\" y=\"" + F("%.0f", ly + 2) + "\">" +
         Esc(text) + "</text></g>\n";
    lx += 40 + 6.5 * static_cast<double>(text.size());
  };
  legend("key frontier calib", "coe frontier, calibration");
  if (!test.empty()) legend("key frontier test", "the same, test split");
  legend("key chosen", "chosen cascade");
  legend("key baseline", "baselines");
  if (Has(plan, "families")) {
    int k = 0;
    for (const auto& f : plan["families"])
      legend(std::string("key family ") + kFamilyClass[std::min(k++, 2)], f["name"].get<std::string>());
  }
  return s + "</svg>\n";
}

std::string TierDiagram(const json& chosen) {
  std::string s = "<div class=\"tiers\" id=\"chosen-tiers\">\n";
  const json& tiers = chosen["tiers"];
  const json& split = Has(chosen, "test") ? chosen["test"] : chosen["calib"];
  const double n = std::max(1.0, D(split, "examples"));
  for (size_t t = 0; t < tiers.size(); ++t) {
    const json& tier = tiers[t];
    std::string members;
    for (const auto& m : tier["members"]) members += "<li>" + Esc(m.get<std::string>()) + "</li>";
    std::string rule;
    if (Has(tier, "min_agreement"))
      rule += "exit when agreement &ge; " + F("%.3g", tier["min_agreement"].get<double>());
    if (Has(tier, "min_score"))
      rule += std::string(rule.empty() ? "exit when" : " and") + " score &ge; " +
              F("%.4g", tier["min_score"].get<double>());
    if (rule.empty()) rule = t + 1 == tiers.size() ? "answers every example it gets" : "";
    const double exits = Has(split, "exits") && t < split["exits"].size() ? split["exits"][t].get<double>() : NAN;
    s += "<div class=\"tier\"><h4>Tier " + std::to_string(t + 1) + "</h4><ul>" + members + "</ul><p class=\"rule\">" +
         rule + "</p>";
    if (std::isfinite(exits))
      s += "<div class=\"bar\"><div style=\"width:" + F("%.1f", 100 * exits / n) + "%\"></div></div><p>" +
           F("%.1f%%", 100 * exits / n) + " of examples exit here</p>";
    s += "</div>" + std::string(t + 1 < tiers.size() ? "<div class=\"arrow\">&rarr;</div>" : "") + "\n";
  }
  return s + "</div>\n";
}

std::string Row(const std::vector<std::string>& cells, bool head = false) {
  std::string s = "<tr>";
  for (const std::string& c : cells) s += (head ? "<th>" : "<td>") + c + (head ? "</th>" : "</td>");
  return s + "</tr>\n";
}

const char* kStyle = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1120px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.muted{color:#5b6475}.met{color:#137333;font-weight:600}.unmet{color:#b3261e;font-weight:600}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #dde2ea;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f6f9}.flag{color:#b3261e;font-weight:600}
svg{width:100%;height:auto;background:#fff;border:1px solid #dde2ea;border-radius:6px}
.grid{stroke:#eef1f5}.tick{font-size:11px;fill:#5b6475}.label{font-size:12px;fill:#1d2330}
.curve{fill:none;stroke-width:1.6}.curve.frontier.calib{stroke:#1a73e8}.curve.frontier.test{stroke:#1a73e8;stroke-dasharray:4 3}
.pt{stroke-width:1.4;cursor:help}.pt.frontier.calib{fill:#1a73e8;stroke:#fff}.pt.frontier.test{fill:#fff;stroke:#1a73e8}
.pt.chosen{fill:none;stroke:#e8710a;stroke-width:3}.pt.baseline{fill:#5f6368;stroke:#fff}.blabel{font-size:11px;fill:#3c4043}
.fam0{stroke:#188038;fill:#188038}.fam1{stroke:#a142f4;fill:#a142f4}.fam2{stroke:#b3261e;fill:#b3261e}.curve.family{fill:none;opacity:.8}
.pt.family{stroke:#fff}.legend text{font-size:12px}.key.frontier.calib{fill:#1a73e8}.key.frontier.test{fill:#fff;stroke:#1a73e8}
.key.chosen{fill:#fff;stroke:#e8710a;stroke-width:3}.key.baseline{fill:#5f6368}
.tiers{display:flex;align-items:stretch;gap:8px;flex-wrap:wrap}.tier{border:1px solid #c6cdd8;border-radius:8px;padding:8px 12px;min-width:180px;background:#f8fafc}
.tier h4{margin:0 0 4px}.tier ul{margin:0;padding-left:18px}.rule{color:#5b6475;margin:6px 0}.arrow{align-self:center;font-size:22px;color:#5b6475}
.bar{height:8px;background:#e3e8ef;border-radius:4px;overflow:hidden}.bar div{height:100%;background:#e8710a}
)";

}  // namespace

StatusOr<std::string> RenderHtmlReport(const std::string& plan_text, const std::vector<std::string>& run_texts,
                                       const std::string& plan_source) {
  const json plan = json::parse(plan_text, nullptr, false);
  if (plan.is_discarded() || !plan.is_object())
    return InvalidArgumentError(plan_source + ": not JSON (expected the output of coe plan --json)");
  for (const char* key : {"chosen", "frontier", "baselines", "goal", "cost"})
    if (!plan.contains(key))
      return InvalidArgumentError(plan_source + ": no '" + std::string(key) +
                                  "' (expected the output of coe plan --json)");
  if (!plan["frontier"].is_array() || !plan["baselines"].is_array() || !plan["chosen"].is_object() ||
      !plan["chosen"].contains("calib") || !plan["chosen"].contains("tiers"))
    return InvalidArgumentError(plan_source + ": 'chosen', 'frontier' or 'baselines' has the wrong shape");
  std::vector<json> runs;
  for (size_t k = 0; k < run_texts.size(); ++k) {
    json r = json::parse(run_texts[k], nullptr, false);
    if (r.is_discarded() || !r.is_object())
      return InvalidArgumentError("run report " + std::to_string(k + 1) + ": not JSON (expected coe run --json)");
    runs.push_back(std::move(r));
  }
  const json& chosen = plan["chosen"];
  const bool goal_met = plan.value("goal_met", true);
  std::string h =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>coe plan report</title>"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>" +
      std::string(kStyle) + "</style></head><body>\n";
  h += "<h1>coe plan report</h1><p class=\"muted\">" + Esc(plan_source) + " &middot; " +
       F("%.0f", D(plan, "calib_examples")) + " calibration examples" +
       (D(plan, "test_examples") > 0 ? ", " + F("%.0f", D(plan, "test_examples")) + " test examples" : std::string()) +
       " &middot; " + F("%.0f", D(plan, "searched")) + " cascades searched</p>\n";
  // Goal and the cost model.
  h += "<h2>Goal</h2><p>Goal <b>" + Esc(plan["goal"].get<std::string>()) + "</b>: " +
       (goal_met ? "<span class=\"met\">met</span>"
                 : "<span class=\"unmet\">not met (the nearest point is shown)</span>");
  if (Has(plan, "selection")) {
    const json& sel = plan["selection"];
    h += "; chosen with the <b>" + Esc(sel.value("guard", std::string())) + "</b> guard on " +
         Esc(sel.value("basis", std::string())) +
         (sel.value("kept_best_single", false) ? " (no cascade passed: the best single model is kept)" : "");
  }
  h += ".</p><p>Cost model: <b>" + Esc(plan["cost"].get<std::string>()) + "</b>" +
       (Has(plan, "cost_model") ? "; " + Esc(plan["cost_model"].get<std::string>()) : std::string()) +
       ". Rules searched: " + Esc(plan.value("rules", std::string("?"))) + ".</p>\n";
  // Chosen.
  h += "<h2>Chosen cascade</h2>" + TierDiagram(chosen);
  h += "<table>" + Row({"", "accuracy", "mean cost", "vs best single model"}, true);
  const double best_cost = D(plan, "best_single_cost");
  auto best_row = [&]() -> const json* {
    for (const auto& b : plan["baselines"])
      if (b.value("name", std::string()) == plan.value("best_single", std::string())) return &b;
    return nullptr;
  }();
  for (const char* split : {"calib", "test"}) {
    if (!Has(chosen, split)) continue;
    const json& c = chosen[split];
    std::string vs;
    if (best_row && Has(*best_row, split)) {
      const json& b = (*best_row)[split];
      vs = F("%+.2f pt", 100 * (D(c, "accuracy") - D(b, "accuracy"))) + ", " +
           F("%.2fx", D(b, "cost") / std::max(1e-300, D(c, "cost"))) + " cheaper";
    } else if (std::isfinite(best_cost)) {
      vs = F("%.2fx", best_cost / std::max(1e-300, D(c, "cost"))) + " cheaper";
    }
    h += Row({std::string(split) == "calib" ? "calibration" : "test", Pct(D(c, "accuracy")), Num(D(c, "cost")), vs});
  }
  h += "</table>\n";
  // The plot.
  h += "<h2>Accuracy against cost</h2><p class=\"muted\">Hover a mark for its cascade, rules, exits and figures on "
       "both splits. Lines are frontiers on calibration (dashed: coe's on test); diamonds are the baseline "
       "families' own frontiers.</p>\n" +
       Plot(plan);
  // Families summary: where each is Pareto-better.
  if (Has(plan, "families") && !plan["families"].empty()) {
    h += "<h2>Baseline families</h2><table>" +
         Row({"family", "rules", "points", "cheapest at the best model's calibration accuracy"}, true);
    double best_acc = NAN;
    if (best_row) best_acc = D((*best_row)["calib"], "accuracy");
    auto cheapest = [&](const json& rows) {
      double c = INFINITY;
      for (const auto& r : rows)
        if (Usable(r["calib"]) && D(r["calib"], "accuracy") >= best_acc - 1e-12) c = std::min(c, D(r["calib"], "cost"));
      return c;
    };
    const double own = cheapest(plan["frontier"]);
    h += Row({"coe (all rules searched)", Esc(plan.value("rules", std::string())),
              std::to_string(plan["frontier"].size()), std::isfinite(own) ? Num(own) : "not reached"});
    for (const auto& f : plan["families"]) {
      const double c = cheapest(f["frontier"]);
      std::string cell = std::isfinite(c) ? Num(c) : "not reached";
      if (std::isfinite(c) && std::isfinite(own)) cell += F(" (%.2fx coe's)", c / own);
      h += Row({Esc(f["name"].get<std::string>()), Esc(f["rules"].get<std::string>()),
                std::to_string(f["frontier"].size()), cell});
    }
    h += "</table>\n";
  }
  // Baselines table.
  h += "<h2>Baselines</h2><table>" +
       Row({"baseline", "calib accuracy", "calib cost", "test accuracy", "test cost"}, true);
  for (const auto& b : plan["baselines"]) {
    const bool t = Has(b, "test");
    h += Row({Esc(b.value("name", std::string())), Pct(D(b["calib"], "accuracy")), Num(D(b["calib"], "cost")),
              t ? Pct(D(b["test"], "accuracy")) : "-", t ? Num(D(b["test"], "cost")) : "-"});
  }
  h += "</table>\n";
  // Live runs beside the plan.
  if (!runs.empty()) {
    const json& planned = Has(chosen, "test") ? chosen["test"] : chosen["calib"];
    const double pn = std::max(1.0, D(planned, "examples"));
    h += "<h2>Live runs</h2><p class=\"muted\">Planned figures are the chosen cascade's on the " +
         std::string(Has(chosen, "test") ? "test" : "calibration") +
         " split; a difference over 0.5 points of accuracy or 2 points of any tier's exits is flagged.</p><table>" +
         Row({"", "accuracy", "mean cost", "exits per tier", "examples/s"}, true);
    std::string pexits;
    if (Has(planned, "exits"))
      for (const auto& e : planned["exits"])
        pexits += (pexits.empty() ? "" : " / ") + F("%.1f%%", 100 * e.get<double>() / pn);
    h += Row({"planned", Pct(D(planned, "accuracy")), Num(D(planned, "cost")), pexits, "-"});
    for (size_t k = 0; k < runs.size(); ++k) {
      const json& r = runs[k];
      const double n = std::max(1.0, D(r, "examples"));
      std::string exits;
      bool flag_exits = false;
      if (Has(r, "exits"))
        for (size_t t = 0; t < r["exits"].size(); ++t) {
          const double share = r["exits"][t].get<double>() / n;
          exits += (exits.empty() ? "" : " / ") + F("%.1f%%", 100 * share);
          if (Has(planned, "exits") && t < planned["exits"].size() &&
              std::fabs(share - planned["exits"][t].get<double>() / pn) > 0.02)
            flag_exits = true;
        }
      const double acc = D(r, "accuracy");
      const bool flag_acc = std::isfinite(acc) && std::fabs(acc - D(planned, "accuracy")) > 0.005;
      const double secs = D(r, "seconds");
      h += Row({"run " + std::to_string(k + 1),
                (flag_acc ? "<span class=\"flag\">" : std::string("<span>")) + (std::isfinite(acc) ? Pct(acc) : "-") +
                    "</span>",
                Num(D(r, "cost")), (flag_exits ? "<span class=\"flag\">" : std::string("<span>")) + exits + "</span>",
                std::isfinite(secs) && secs > 0 ? F("%.0f", n / secs) : "-"});
    }
    h += "</table>\n";
  }
  // The frontier as a table too.
  h += "<h2>Frontier</h2><table>" +
       Row({"#", "cascade", "calib accuracy", "calib cost", "test accuracy", "test cost"}, true);
  int k = 0;
  for (const auto& r : plan["frontier"]) {
    const bool t = Has(r, "test");
    h +=
        Row({std::to_string(++k), Esc(r.value("cascade", std::string())), Pct(D(r["calib"], "accuracy")),
             Num(D(r["calib"], "cost")), t ? Pct(D(r["test"], "accuracy")) : "-", t ? Num(D(r["test"], "cost")) : "-"});
  }
  h += "</table>\n<p class=\"muted\">Written by coe report.</p></body></html>\n";
  return h;
}

}  // namespace coe
