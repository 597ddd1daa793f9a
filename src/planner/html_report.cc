// `coe report`: one self-contained HTML file from `coe plan --json` (and `coe run
// --json`) output. The plot is inline SVG drawn here: no script, no network, no font
// files; hovering a mark shows its <title> (the browser's own tooltip), so the file
// reads the same offline, attached to a ticket, years later. The page is drawn from
// the typed PlanReport and RunFigures that the checked readers (report_json.cc) make
// of the JSON: nothing here reads JSON. Uses report_json.cc and goals.cc (GuardName).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "coe/report.h"
#include "planner/cluster_view.h"
#include "planner/report_json.h"

namespace coe {
namespace {

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

// "tier 1: a, b (exit when agreement >= 0.667)" lines.
std::string TiersText(const CascadeSpec& spec) {
  std::string out;
  for (size_t t = 0; t < spec.tiers.size(); ++t) {
    const TierSpec& tier = spec.tiers[t];
    out += (t ? "\n" : "") + std::string("tier ") + std::to_string(t + 1) + ": ";
    for (size_t k = 0; k < tier.members.size(); ++k) out += (k ? ", " : "") + tier.members[k];
    if (!tier.match.exact()) out += " [match " + tier.match.ToString() + "]";
    std::string rule;
    if (t + 1 < spec.tiers.size()) {
      if (tier.rule.min_agreement) rule += "agreement >= " + F("%.3g", *tier.rule.min_agreement);
      if (tier.rule.min_score) rule += (rule.empty() ? "" : " and ") + ("score >= " + F("%.4g", *tier.rule.min_score));
    }
    if (!rule.empty()) out += " (exit when " + rule + ")";
  }
  return out;
}

std::string SplitText(const EvalResult& split, const char* name) {
  std::string s = std::string(name) + ": accuracy " + Pct(split.accuracy) + ", cost " + Num(split.mean_cost);
  if (split.exits.size() > 1) {
    const double n = std::max(1, split.examples);
    s += ", exits";
    for (int e : split.exits) s += " " + F("%.0f%%", 100 * e / n);
  }
  return s;
}

std::string Tooltip(const std::string& what, const ReportRow& row) {
  std::string t = what + "\n" + TiersText(row.cascade) + "\n" + SplitText(row.calib, "calibration");
  if (row.test) t += "\n" + SplitText(*row.test, "test");
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

bool Usable(const EvalResult& split) {
  return std::isfinite(split.mean_cost) && split.mean_cost > 0 && std::isfinite(split.accuracy);
}
bool Usable(const std::optional<EvalResult>& split) { return split && Usable(*split); }

std::string Plot(const PlanReport& plan) {
  // Ranges over every mark.
  double cmin = INFINITY, cmax = -INFINITY, amin = INFINITY, amax = -INFINITY;
  auto take = [&](const ReportRow& row) {
    for (const EvalResult* s : {&row.calib, row.test ? &*row.test : nullptr}) {
      if (!s || !Usable(*s)) continue;
      cmin = std::min(cmin, s->mean_cost);
      cmax = std::max(cmax, s->mean_cost);
      amin = std::min(amin, s->accuracy);
      amax = std::max(amax, s->accuracy);
    }
  };
  for (const ReportRow& r : plan.frontier) take(r);
  for (const ReportRow& r : plan.baselines) take(r);
  for (const PlanReport::Family& f : plan.families)
    for (const ReportRow& r : f.frontier) take(r);
  take(plan.chosen);
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
       "\" text-anchor=\"middle\">mean cost per example (" + Esc(plan.cost_name) + "), log scale</text>";
  s += "<text class=\"label\" transform=\"rotate(-90)\" x=\"" + F("%.0f", -(a.top + a.height / 2)) +
       "\" y=\"20\" text-anchor=\"middle\">accuracy</text></g>\n";
  // Families' curves, coe's frontier (calibration, and test where present), baselines, chosen.
  static const char* kFamilyClass[] = {"fam0", "fam1", "fam2"};
  int k = 0;
  for (const PlanReport::Family& f : plan.families) {
    const std::string cls = kFamilyClass[std::min(k++, 2)];
    std::vector<Point> pts;
    std::string marks;
    for (const ReportRow& r : f.frontier)
      if (Usable(r.calib)) {
        pts.push_back({r.calib.mean_cost, r.calib.accuracy});
        marks += Mark(a, pts.back(), "pt family " + cls, "diamond", f.name + " (calibration)\n" + Tooltip("", r));
      }
    s += Steps(a, pts, "curve family " + cls) + marks;
  }
  std::vector<Point> calib, test;
  std::string marks;
  for (const ReportRow& r : plan.frontier) {
    if (Usable(r.calib)) {
      calib.push_back({r.calib.mean_cost, r.calib.accuracy});
      marks += Mark(a, calib.back(), "pt frontier calib", "dot", Tooltip("coe frontier point (calibration)", r));
    }
    if (Usable(r.test)) {
      test.push_back({r.test->mean_cost, r.test->accuracy});
      marks += Mark(a, test.back(), "pt frontier test", "dot", Tooltip("the same cascade on the test split", r));
    }
  }
  s += Steps(a, calib, "curve frontier calib") + Steps(a, test, "curve frontier test") + marks;
  for (const ReportRow& b : plan.baselines) {
    if (!Usable(b.calib)) continue;
    const Point p{b.calib.mean_cost, b.calib.accuracy};
    s += Mark(a, p, "pt baseline", "square", "baseline: " + b.name + "\n" + Tooltip("", b));
    s += "<text class=\"blabel\" x=\"" + F("%.2f", a.X(p.cost) + 8) + "\" y=\"" + F("%.2f", a.Y(p.acc) + 4) + "\">" +
         Esc(b.name) + "</text>\n";
  }
  const ReportRow& chosen = plan.chosen;
  if (Usable(chosen.calib))
    s += Mark(a, {chosen.calib.mean_cost, chosen.calib.accuracy}, "pt chosen calib", "big",
              Tooltip("CHOSEN (calibration)", chosen));
  if (Usable(chosen.test))
    s += Mark(a, {chosen.test->mean_cost, chosen.test->accuracy}, "pt chosen test", "big",
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
  k = 0;
  for (const PlanReport::Family& f : plan.families)
    legend(std::string("key family ") + kFamilyClass[std::min(k++, 2)], f.name);
  return s + "</svg>\n";
}

std::string TierDiagram(const ReportRow& chosen) {
  std::string s = "<div class=\"tiers\" id=\"chosen-tiers\">\n";
  const std::vector<TierSpec>& tiers = chosen.cascade.tiers;
  const EvalResult& split = chosen.test ? *chosen.test : chosen.calib;
  const double n = std::max(1, split.examples);
  for (size_t t = 0; t < tiers.size(); ++t) {
    const TierSpec& tier = tiers[t];
    const bool last = t + 1 == tiers.size();
    std::string members;
    for (const std::string& m : tier.members) members += "<li>" + Esc(m) + "</li>";
    std::string rule;
    if (!last && tier.rule.min_agreement) rule += "exit when agreement &ge; " + F("%.3g", *tier.rule.min_agreement);
    if (!last && tier.rule.min_score)
      rule += std::string(rule.empty() ? "exit when" : " and") + " score &ge; " + F("%.4g", *tier.rule.min_score);
    if (rule.empty()) rule = last ? "answers every example it gets" : "";
    if (!tier.match.exact()) rule += " (answers compared: " + Esc(tier.match.ToString()) + ")";
    s += "<div class=\"tier\"><h4>Tier " + std::to_string(t + 1) + "</h4><ul>" + members + "</ul><p class=\"rule\">" +
         rule + "</p>";
    if (t < split.exits.size())
      s += "<div class=\"bar\"><div style=\"width:" + F("%.1f", 100 * split.exits[t] / n) + "%\"></div></div><p>" +
           F("%.1f%%", 100 * split.exits[t] / n) + " of examples exit here</p>";
    s += "</div>" + std::string(last ? "" : "<div class=\"arrow\">&rarr;</div>") + "\n";
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

// The page's top: what was planned, the goal, the cost model.
std::string Heading(const PlanReport& plan, const std::string& source) {
  std::string h = "<h1>coe plan report</h1><p class=\"muted\">" + Esc(source) + " &middot; " +
                  std::to_string(plan.calib_examples) + " calibration examples" +
                  (plan.test_examples > 0 ? ", " + std::to_string(plan.test_examples) + " test examples" : "") +
                  " &middot; " + std::to_string(plan.searched) + " cascades searched</p>\n";
  h += "<h2>Goal</h2><p>Goal <b>" + Esc(plan.goal) + "</b>: " +
       (plan.goal_met ? "<span class=\"met\">met</span>"
                      : "<span class=\"unmet\">not met (the nearest point is shown)</span>");
  if (plan.goal == "match-best")
    h += "; chosen with the <b>" + Esc(GuardName(plan.selection.guard)) + "</b> guard on " + Esc(plan.selection.basis) +
         (plan.selection.kept_best_single ? " (no cascade passed: the best single model is kept)" : "");
  h += ".</p><p>Cost model: <b>" + Esc(plan.cost_name) + "</b>" +
       (plan.cost_model.empty() ? std::string() : "; " + Esc(plan.cost_model)) +
       ". Rules searched: " + Esc(plan.rules) + ". Answers compared: " + Esc(plan.match.ToString()) + ".</p>\n";
  if (!plan.reference.empty())
    h += "<p><b>Label-free plan</b> against the reference <b>" + Esc(plan.reference) +
         "</b>: its answers stood in for the truth, so every accuracy here is the agreement with it; the true "
         "accuracy (against the recordings' labels, not used for planning) follows in parentheses where known." +
         (plan.goal == "match-best" ? " " + Esc(LabelFreeStatement(plan)) + "." : std::string()) + "</p>\n";
  for (const std::string& w : plan.warnings) h += "<p class=\"flag\">warning: " + Esc(w) + "</p>\n";
  return h;
}

// The chosen cascade's figures beside the best single model's.
std::string ChosenTable(const PlanReport& plan, const ReportRow* best_row) {
  std::string h = "<table>" + Row({"", "accuracy", "mean cost", "vs best single model"}, true);
  for (const bool test : {false, true}) {
    if (test && !plan.chosen.test) continue;
    const EvalResult& c = test ? *plan.chosen.test : plan.chosen.calib;
    const EvalResult* b = !best_row ? nullptr : test ? (best_row->test ? &*best_row->test : nullptr) : &best_row->calib;
    std::string vs;
    if (b)
      vs = F("%+.2f pt", 100 * (c.accuracy - b->accuracy)) + ", " +
           F("%.2fx", b->mean_cost / std::max(1e-300, c.mean_cost)) + " cheaper";
    else if (std::isfinite(plan.best_single_cost))
      vs = F("%.2fx", plan.best_single_cost / std::max(1e-300, c.mean_cost)) + " cheaper";
    h += Row({test ? "test" : "calibration", Pct(c.accuracy), Num(c.mean_cost), vs});
  }
  return h + "</table>\n";
}

// Each baseline family's cheapest point at the best model's calibration accuracy.
std::string FamiliesTable(const PlanReport& plan, const ReportRow* best_row) {
  if (plan.families.empty()) return "";
  std::string h = "<h2>Baseline families</h2><table>" +
                  Row({"family", "rules", "points", "cheapest at the best model's calibration accuracy"}, true);
  const double best_acc = best_row ? best_row->calib.accuracy : NAN;
  auto cheapest = [&](const std::vector<ReportRow>& rows) {
    double c = INFINITY;
    for (const ReportRow& r : rows)
      if (Usable(r.calib) && r.calib.accuracy >= best_acc - 1e-12) c = std::min(c, r.calib.mean_cost);
    return c;
  };
  const double own = cheapest(plan.frontier);
  h += Row({"coe (all rules searched)", Esc(plan.rules), std::to_string(plan.frontier.size()),
            std::isfinite(own) ? Num(own) : "not reached"});
  for (const PlanReport::Family& f : plan.families) {
    const double c = cheapest(f.frontier);
    std::string cell = std::isfinite(c) ? Num(c) : "not reached";
    if (std::isfinite(c) && std::isfinite(own)) cell += F(" (%.2fx coe's)", c / own);
    h += Row({Esc(f.name), Esc(f.rules), std::to_string(f.frontier.size()), cell});
  }
  return h + "</table>\n";
}

// Live runs beside the chosen cascade's planned figures, differences flagged.
std::string RunsTable(const PlanReport& plan, const std::vector<RunFigures>& runs) {
  if (runs.empty()) return "";
  const EvalResult& planned = plan.chosen.test ? *plan.chosen.test : plan.chosen.calib;
  const double pn = std::max(1, planned.examples);
  std::string h = "<h2>Live runs</h2><p class=\"muted\">Planned figures are the chosen cascade's on the " +
                  std::string(plan.chosen.test ? "test" : "calibration") +
                  " split; a difference over 0.5 points of accuracy or 2 points of any tier's exits is flagged.</p>"
                  "<table>" +
                  Row({"", "accuracy", "mean cost", "exits per tier", "examples/s"}, true);
  std::string pexits;
  for (int e : planned.exits) pexits += (pexits.empty() ? "" : " / ") + F("%.1f%%", 100 * e / pn);
  h += Row({"planned", Pct(planned.accuracy), Num(planned.mean_cost), pexits, "-"});
  for (size_t k = 0; k < runs.size(); ++k) {
    const RunFigures& r = runs[k];
    const double n = std::max<double>(1, r.examples);
    std::string exits;
    bool flag_exits = r.exits.size() != planned.exits.size();
    for (size_t t = 0; t < r.exits.size(); ++t) {
      const double share = r.exits[t] / n;
      exits += (exits.empty() ? "" : " / ") + F("%.1f%%", 100 * share);
      if (t < planned.exits.size() && std::fabs(share - planned.exits[t] / pn) > 0.02) flag_exits = true;
    }
    const bool flag_acc = r.accuracy && std::fabs(*r.accuracy - planned.accuracy) > 0.005;
    h += Row({"run " + std::to_string(k + 1) + " <span class=\"muted\">" + Esc(r.source) + "</span>",
              (flag_acc ? "<span class=\"flag\">" : std::string("<span>")) + (r.accuracy ? Pct(*r.accuracy) : "-") +
                  "</span>",
              Num(r.cost), (flag_exits ? "<span class=\"flag\">" : std::string("<span>")) + exits + "</span>",
              r.seconds && *r.seconds > 0 ? F("%.0f", r.examples / *r.seconds) : "-"});
  }
  return h + "</table>\n";
}

// A split's accuracy; a label-free plan's true accuracy beside it when known.
std::string AccuracyCell(double accuracy, const std::optional<double>& true_accuracy) {
  return Pct(accuracy) + (true_accuracy ? " <span class=\"muted\">(true " + Pct(*true_accuracy) + ")</span>" : "");
}

std::string SplitCells(const ReportRow& r) {
  return "<td>" + AccuracyCell(r.calib.accuracy, r.calib_true_accuracy) + "</td><td>" + Num(r.calib.mean_cost) +
         "</td><td>" + (r.test ? AccuracyCell(r.test->accuracy, r.test_true_accuracy) : "-") + "</td><td>" +
         (r.test ? Num(r.test->mean_cost) : "-") + "</td>";
}

std::string Page(const PlanReport& plan, const std::string& source, const std::vector<RunFigures>& runs) {
  const ReportRow* best_row = nullptr;
  for (const ReportRow& b : plan.baselines)
    if (b.name == plan.best_single) best_row = &b;
  std::string h =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>coe plan report</title>"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>" +
      std::string(kStyle) + "</style></head><body>\n";
  h += Heading(plan, source);
  h += "<h2>Chosen cascade</h2>" + TierDiagram(plan.chosen) + ChosenTable(plan, best_row);
  h += "<h2>Accuracy against cost</h2><p class=\"muted\">Hover a mark for its cascade, rules, exits and figures on "
       "both splits. Lines are frontiers on calibration (dashed: coe's on test); diamonds are the baseline "
       "families' own frontiers.</p>\n" +
       Plot(plan);
  // Cluster dollars (issue 26): both views at the traffic rate, and the plan on
  // multiply-adds, as the text report words them.
  if (plan.cluster || plan.other_cost_plan) {
    std::string text = plan.cluster ? ClusterViewText(*plan.cluster) : "";
    if (plan.other_cost_plan) text += OtherCostPlanText(*plan.other_cost_plan);
    h += "<h2>Dollars on the cluster</h2><pre>" + Esc(text) + "</pre>\n";
  }
  h += FamiliesTable(plan, best_row);
  h += "<h2>Baselines</h2><table>" +
       Row({"baseline", "calib accuracy", "calib cost", "test accuracy", "test cost"}, true);
  for (const ReportRow& b : plan.baselines) h += "<tr><td>" + Esc(b.name) + "</td>" + SplitCells(b) + "</tr>\n";
  h += "</table>\n" + RunsTable(plan, runs);
  h += "<h2>Frontier</h2><table>" +
       Row({"#", "cascade", "calib accuracy", "calib cost", "test accuracy", "test cost"}, true);
  for (size_t k = 0; k < plan.frontier.size(); ++k)
    h += "<tr><td>" + std::to_string(k + 1) + "</td><td>" + Esc(plan.frontier[k].cascade.ToString()) + "</td>" +
         SplitCells(plan.frontier[k]) + "</tr>\n";
  return h + "</table>\n<p class=\"muted\">Written by coe report.</p></body></html>\n";
}

}  // namespace

StatusOr<std::string> RenderHtmlReport(const JsonDocument& plan, const std::vector<JsonDocument>& runs) {
  COE_ASSIGN_OR_RETURN(PlanReport report, PlanReportFromJson(plan.text, plan.source));
  std::vector<RunFigures> figures;
  for (const JsonDocument& run : runs) {
    COE_ASSIGN_OR_RETURN(RunFigures f, RunFiguresFromJson(run.text, run.source));
    figures.push_back(std::move(f));
  }
  return Page(report, plan.source, figures);
}

}  // namespace coe
