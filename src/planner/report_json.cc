// Reading `coe plan --json` and `coe run --json` back: one checked reader. Every value
// is taken through JsonReader, which checks its type and range first and keeps the
// first error, naming the file, the value's path (as jq writes it:
// .frontier[3].calib.accuracy) and what was expected. Nothing here calls get<>() or
// operator[] on a value it has not checked (nlohmann throws, or reads out of bounds).
// Uses goals.cc (ParseGuard).
#include "planner/report_json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "coe/report.h"

namespace coe {
namespace {

using json = nlohmann::json;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr uint64_t kMaxInt = std::numeric_limits<int>::max();

// A value of the document and its path. `value` is null only after an error.
struct Node {
  const json* value = nullptr;
  std::string path;  // "" for the document itself
};

// What a value is, for messages.
std::string Describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case json::value_t::string: {
      const std::string& s = v.get_ref<const std::string&>();
      return "the string \"" + PrintableText(s.size() > 40 ? s.substr(0, 40) + "..." : s) + "\"";
    }
    case json::value_t::array:
      return "an array of " + std::to_string(v.size());
    case json::value_t::object:
      return "an object";
    default:
      return v.is_number() ? "the number " + v.dump() : "a value of another type";
  }
}

// Typed reads of a parsed document. The first error sticks: later reads return
// defaults and keep it, so a reader is a straight list of reads checked once at the
// end (status()). Required members must be present and not null; Opt* ones may be
// missing or null (nullopt).
class JsonReader {
 public:
  JsonReader(const json& doc, std::string source, std::string what)
      : doc_(doc), source_(std::move(source)), what_(std::move(what)) {}

  Node root() const { return Node{&doc_, ""}; }
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  void Fail(const std::string& path, const std::string& expected, const std::string& got) {
    if (!ok()) return;
    status_ = InvalidArgumentError(source_ + ": " + (path.empty() ? "the document" : path) + ": expected " + expected +
                                   ", got " + got + "; is " + source_ + " " + what_ + "?");
  }

  // Checks that `n` is an object, as the reads of its members need.
  bool IsObject(const Node& n) {
    if (!ok()) return false;
    if (!n.value->is_object()) Fail(n.path, "an object", Describe(*n.value));
    return ok();
  }

  Node Object(const Node& obj, const char* key) {
    return Typed(Member(obj, key, "an object"), &json::is_object, "an object");
  }
  std::optional<Node> OptObject(const Node& obj, const char* key) {
    std::optional<Node> n = OptMember(obj, key);
    if (n) *n = Typed(*n, &json::is_object, "an object");
    return ok() ? n : std::nullopt;
  }

  // The elements of the array `key`.
  std::vector<Node> Array(const Node& obj, const char* key) {
    Node a = Typed(Member(obj, key, "an array"), &json::is_array, "an array");
    std::vector<Node> out;
    if (!ok()) return out;
    for (size_t i = 0; i < a.value->size(); ++i)
      out.push_back(Node{&(*a.value)[i], a.path + "[" + std::to_string(i) + "]"});
    return out;
  }

  double Number(const Node& n, double lo = -kInf, double hi = kInf) {
    if (!ok()) return 0;
    const std::string expected = RangeText(lo, hi);
    if (!n.value->is_number()) {
      Fail(n.path, expected, Describe(*n.value));
      return 0;
    }
    const double v = n.value->get<double>();
    if (!(v >= lo && v <= hi)) Fail(n.path, expected, Describe(*n.value));
    return v;
  }
  double Number(const Node& obj, const char* key, double lo = -kInf, double hi = kInf) {
    return Number(Member(obj, key, RangeText(lo, hi)), lo, hi);
  }
  std::optional<double> OptNumber(const Node& obj, const char* key, double lo = -kInf, double hi = kInf) {
    std::optional<Node> n = OptMember(obj, key);
    if (!n) return std::nullopt;
    const double v = Number(*n, lo, hi);
    return ok() ? std::optional<double>(v) : std::nullopt;
  }

  // A non-negative integer up to `max`.
  uint64_t Count(const Node& n, uint64_t max = kMaxInt) {
    if (!ok()) return 0;
    const std::string expected = "a non-negative integer" + (max < kMaxInt ? " up to " + std::to_string(max) : "");
    const bool count = n.value->is_number_unsigned() || (n.value->is_number_integer() && n.value->get<int64_t>() >= 0);
    if (!count || n.value->get<uint64_t>() > max) {
      Fail(n.path, expected, Describe(*n.value));
      return 0;
    }
    return n.value->get<uint64_t>();
  }
  uint64_t Count(const Node& obj, const char* key, uint64_t max = kMaxInt) {
    return Count(Member(obj, key, "a non-negative integer"), max);
  }

  std::string String(const Node& n) {
    if (!ok()) return "";
    if (!n.value->is_string()) {
      Fail(n.path, "a string", Describe(*n.value));
      return "";
    }
    return n.value->get<std::string>();
  }
  std::string String(const Node& obj, const char* key) { return String(Member(obj, key, "a string")); }
  std::optional<std::string> OptString(const Node& obj, const char* key) {
    std::optional<Node> n = OptMember(obj, key);
    if (!n) return std::nullopt;
    std::string s = String(*n);
    return ok() ? std::optional<std::string>(std::move(s)) : std::nullopt;
  }

  bool Bool(const Node& obj, const char* key) {
    Node n = Member(obj, key, "true or false");
    if (!ok()) return false;
    if (!n.value->is_boolean()) Fail(n.path, "true or false", Describe(*n.value));
    return ok() && n.value->get<bool>();
  }

 private:
  static std::string RangeText(double lo, double hi) {
    if (lo == 0 && hi == 1) return "a number in [0, 1]";
    if (lo == 0 && hi == kInf) return "a non-negative number";
    return "a number";
  }
  // `obj`'s member `key`, present and not null (an error otherwise).
  Node Member(const Node& obj, const char* key, const std::string& expected) {
    const std::string path = obj.path + "." + key;
    if (!IsObject(obj)) return Node{nullptr, path};
    auto it = obj.value->find(key);
    if (it == obj.value->end())
      Fail(path, expected, "nothing (no such key)");
    else if (it->is_null())
      Fail(path, expected, "null");
    return ok() ? Node{&*it, path} : Node{nullptr, path};
  }
  // `obj`'s member `key`, or nullopt when it is missing or null.
  std::optional<Node> OptMember(const Node& obj, const char* key) {
    if (!IsObject(obj)) return std::nullopt;
    auto it = obj.value->find(key);
    if (it == obj.value->end() || it->is_null()) return std::nullopt;
    return Node{&*it, obj.path + "." + key};
  }
  Node Typed(const Node& n, bool (json::*is)() const noexcept, const char* expected) {
    if (ok() && !(n.value->*is)()) Fail(n.path, expected, Describe(*n.value));
    return ok() ? n : Node{nullptr, n.path};
  }

  const json& doc_;
  const std::string source_, what_;
  Status status_;
};

CascadeSpec ReadTiers(JsonReader& in, const Node& row) {
  CascadeSpec spec;
  const std::vector<Node> tiers = in.Array(row, "tiers");
  if (in.ok() && tiers.empty()) in.Fail(row.path + ".tiers", "at least one tier", "an empty array");
  for (const Node& t : tiers) {
    TierSpec tier;
    const std::vector<Node> members = in.Array(t, "members");
    if (in.ok() && members.empty()) in.Fail(t.path + ".members", "at least one member", "an empty array");
    for (const Node& m : members) tier.members.push_back(in.String(m));
    tier.rule.min_agreement = in.OptNumber(t, "min_agreement", 0, 1);
    tier.rule.min_score = in.OptNumber(t, "min_score");
    if (std::optional<std::string> m = in.OptString(t, "match")) {
      StatusOr<AnswerMatch> match = AnswerMatch::Parse(*m);
      if (match.ok())
        tier.match = *match;
      else
        in.Fail(t.path + ".match", "exact, number or jaccard:T", Describe(json(*m)));
    }
    spec.tiers.push_back(std::move(tier));
  }
  return spec;
}

EvalResult ReadSplit(JsonReader& in, const Node& split, size_t tiers) {
  EvalResult r;
  r.accuracy = in.Number(split, "accuracy", 0, 1);
  r.mean_cost = in.Number(split, "cost", 0, kInf);
  for (const Node& e : in.Array(split, "exits")) r.exits.push_back(static_cast<int>(in.Count(e)));
  if (in.ok() && r.exits.size() != tiers)
    in.Fail(split.path + ".exits", "one count per tier (" + std::to_string(tiers) + ")",
            "an array of " + std::to_string(r.exits.size()));
  r.examples = static_cast<int>(in.Count(split, "examples"));
  r.labeled = static_cast<int>(in.Count(split, "labeled"));
  r.correct = static_cast<int>(in.Count(split, "correct"));
  r.unanswered = static_cast<int>(in.Count(split, "unanswered"));
  r.mean_latency_ms = in.OptNumber(split, "latency_ms", 0, kInf);
  r.p99_latency_ms = in.OptNumber(split, "p99_latency_ms", 0, kInf);
  r.mean_bytes_sent = in.OptNumber(split, "bytes_sent", 0, kInf);
  r.mean_cost_homogeneous = in.OptNumber(split, "cost_homogeneous", 0, kInf);
  r.mean_transfer_cost = in.OptNumber(split, "transfer_cost", 0, kInf);
  return r;
}

// A label-free plan's split also says its agreement (its accuracy, checked) and may
// give its true accuracy.
void ReadLabelFreeSplit(JsonReader& in, const Node& split, const EvalResult& r, std::optional<double>* true_accuracy) {
  const double agreement = in.Number(split, "agreement", 0, 1);
  if (in.ok() && agreement != r.accuracy)
    in.Fail(split.path + ".agreement", "the split's accuracy (" + std::to_string(r.accuracy) + ")",
            std::to_string(agreement));
  *true_accuracy = in.OptNumber(split, "true_accuracy", 0, 1);
}

// A row: `name` (baselines), tiers, cascade (checked; the tiers say it), calib, test.
ReportRow ReadRow(JsonReader& in, const Node& row, bool named, bool label_free) {
  ReportRow r;
  if (!in.IsObject(row)) return r;
  if (named) r.name = in.String(row, "name");
  r.cascade = ReadTiers(in, row);
  in.String(row, "cascade");
  const Node calib = in.Object(row, "calib");
  r.calib = ReadSplit(in, calib, r.cascade.tiers.size());
  if (label_free) ReadLabelFreeSplit(in, calib, r.calib, &r.calib_true_accuracy);
  if (std::optional<Node> test = in.OptObject(row, "test")) {
    r.test = ReadSplit(in, *test, r.cascade.tiers.size());
    if (label_free) ReadLabelFreeSplit(in, *test, *r.test, &r.test_true_accuracy);
  }
  return r;
}

std::vector<ReportRow> ReadRows(JsonReader& in, const Node& obj, const char* key, bool named, bool label_free) {
  std::vector<ReportRow> rows;
  for (const Node& n : in.Array(obj, key)) rows.push_back(ReadRow(in, n, named, label_free));
  return rows;
}

void ReadPair(JsonReader& in, const Node& obj, const char* key, double* out) {
  const std::vector<Node> v = in.Array(obj, key);
  if (in.ok() && v.size() != 2)
    in.Fail(obj.path + "." + key, "an array of 2 numbers", "an array of " + std::to_string(v.size()));
  for (size_t k = 0; k < v.size() && k < 2; ++k) out[k] = in.Number(v[k]);
}

Serving ReadServing(JsonReader& in, const Node& n) {
  Serving s;
  s.usd_per_example = in.Number(n, "usd_per_example", 0, kInf);
  s.usd_per_hour = in.Number(n, "usd_per_hour", 0, kInf);
  for (const Node& t : in.Array(n, "tiers")) {
    TierServing tier;
    for (const Node& m : in.Array(t, "members")) tier.members.push_back(in.String(m));
    tier.rate = in.Number(t, "rate", 0, kInf);
    tier.batch = in.Number(t, "batch", 1, kInf);
    tier.type = in.String(t, "type");
    tier.devices = static_cast<int>(in.Count(t, "devices"));
    tier.usd_per_hour = in.Number(t, "usd_per_hour", 0, kInf);
    tier.usd_per_example = in.Number(t, "usd_per_example", 0, kInf);
    s.tiers.push_back(std::move(tier));
  }
  s.transfer_usd_per_example = in.OptNumber(n, "transfer_usd_per_example", 0, kInf).value_or(0);
  s.transfer_usd_per_hour = in.OptNumber(n, "transfer_usd_per_hour", 0, kInf).value_or(0);
  return s;
}

// The "cluster" object ClusterViewJson (cluster_view.cc) writes.
ClusterView ReadClusterView(JsonReader& in, const Node& c) {
  ClusterView v;
  v.serving.qps = in.Number(c, "qps", 0, kInf);
  v.serving.utilisation = in.Number(c, "utilisation", 0, 1);
  v.max_delay_ms = in.Number(c, "max_delay_ms", 0, kInf);
  v.split = in.String(c, "split");
  v.best_single = in.String(c, "best_single");
  v.chosen = ReadServing(in, in.Object(c, "chosen"));
  v.best = ReadServing(in, in.Object(c, "best"));
  v.serving.baseline_type = in.OptString(c, "baseline_type").value_or("");
  if (std::optional<Node> b = in.OptObject(c, "chosen_on_baseline")) v.chosen_on_baseline = ReadServing(in, *b);
  if (std::optional<Node> b = in.OptObject(c, "best_on_baseline")) v.best_on_baseline = ReadServing(in, *b);
  v.baseline_note = in.OptString(c, "baseline_note").value_or("");
  v.replaced = in.OptString(c, "replaced").value_or("");
  return v;
}

// The "other_cost_plan" object OtherCostPlanJson (cluster_view.cc) writes.
OtherCostPlan ReadOtherCostPlan(JsonReader& in, const Node& o) {
  OtherCostPlan p;
  p.key = in.String(o, "key");
  p.cascade = in.String(o, "cascade");
  p.same = in.Bool(o, "same");
  p.saving_on_key = in.Number(o, "saving_on_key", 0, kInf);
  p.saving = in.Number(o, "saving", 0, kInf);
  p.chosen_saving_on_key = in.Number(o, "chosen_saving_on_key", 0, kInf);
  p.chosen_saving = in.Number(o, "chosen_saving", 0, kInf);
  return p;
}

TestIntervals ReadIntervals(JsonReader& in, const Node& t) {
  TestIntervals iv;
  in.Number(t, "level", 0, 1);
  iv.resamples = static_cast<int>(in.Count(t, "resamples"));
  iv.best_single = in.String(t, "paired_with");
  ReadPair(in, t, "accuracy", iv.accuracy);
  ReadPair(in, t, "accuracy_minus_best", iv.accuracy_diff);
  ReadPair(in, t, "cost", iv.cost);
  ReadPair(in, t, "saving", iv.saving);
  return iv;
}

Selection ReadSelection(JsonReader& in, const Node& s, bool label_free) {
  Selection sel;
  const std::string guard = in.String(s, "guard");
  if (in.ok()) {
    StatusOr<Guard> g = ParseGuard(guard);
    if (g.ok())
      sel.guard = *g;
    else
      in.Fail(s.path + ".guard", "none, mcnemar, noninferiority, holdout or cv", Describe(json(guard)));
  }
  sel.basis = in.String(s, "basis");
  sel.candidates = static_cast<int>(in.Count(s, "candidates"));
  sel.kept_best_single = in.Bool(s, "kept_best_single");
  const Node estimate = in.Object(s, "estimate"), best = in.Object(s, "best_single_estimate");
  sel.accuracy = in.Number(estimate, "accuracy", 0, 1);
  sel.cost = in.Number(estimate, "cost", 0, kInf);
  sel.best_accuracy = in.Number(best, "accuracy", 0, 1);
  sel.best_cost = in.Number(best, "cost", 0, kInf);
  sel.statistic = sel.critical = std::numeric_limits<double>::quiet_NaN();
  if (sel.guard == Guard::kMcNemar || sel.guard == Guard::kNonInferiority || sel.guard == Guard::kHoldout) {
    sel.wins_over_best = static_cast<int>(in.Count(s, "wins_over_best"));
    sel.losses_to_best = static_cast<int>(in.Count(s, "losses_to_best"));
    sel.statistic = in.OptNumber(s, "statistic").value_or(sel.statistic);
    sel.critical = in.OptNumber(s, "critical").value_or(sel.critical);
  }
  if (label_free) {
    sel.reference = in.String(s, "reference");
    sel.epsilon = in.Number(s, "epsilon", 0, 1);
    sel.alpha = 1 - in.Number(s, "confidence", 0, 1);
    sel.disagreements = static_cast<int>(in.Count(s, "disagreements"));
    sel.disagreement_bound = in.OptNumber(s, "disagreement_bound", 0, 1).value_or(sel.disagreement_bound);
    in.String(s, "statement");
  }
  return sel;
}

}  // namespace

StatusOr<PlanReport> PlanReportFromJson(const std::string& text, const std::string& source) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return InvalidArgumentError(source + ": not JSON (expected the output of coe plan --json)");
  JsonReader in(doc, source, "the output of coe plan --json");
  const Node root = in.root();
  PlanReport r;
  r.goal = in.String(root, "goal");
  r.reference = in.OptString(root, "reference").value_or("");
  const bool label_free = !r.reference.empty();
  r.goal_met = in.Bool(root, "goal_met");
  r.cost_name = in.String(root, "cost");
  r.rules = in.String(root, "rules");
  if (std::optional<std::string> m = in.OptString(root, "match")) {
    StatusOr<AnswerMatch> match = AnswerMatch::Parse(*m);
    if (match.ok())
      r.match = *match;
    else
      in.Fail(".match", "exact, number or jaccard:T", Describe(json(*m)));
  }
  r.best_single = in.String(root, "best_single");
  r.calib_examples = static_cast<int>(in.Count(root, "calib_examples"));
  r.test_examples = static_cast<int>(in.Count(root, "test_examples"));
  r.searched = in.Count(root, "searched", std::numeric_limits<uint64_t>::max());
  r.evaluated = in.Count(root, "evaluated", std::numeric_limits<uint64_t>::max());
  r.seconds = in.Number(root, "seconds", 0, kInf);
  if (std::optional<Node> b = in.OptObject(root, "budget")) {
    r.budget_name = in.String(*b, "figure");
    r.budget = in.Number(*b, "max", 0, kInf);
    r.chosen_budget_cost = in.Number(*b, "chosen", 0, kInf);
  }
  r.search_seconds = in.Number(root, "search_seconds", 0, kInf);
  r.select_seconds = in.Number(root, "select_seconds", 0, kInf);
  r.score_grid = static_cast<int>(in.Count(root, "score_grid"));
  r.best_single_cost = in.Number(root, "best_single_cost", 0, kInf);
  for (const Node& w : in.Array(root, "warnings")) r.warnings.push_back(in.String(w));
  const Node chosen = in.Object(root, "chosen");
  r.chosen = ReadRow(in, chosen, false, label_free);
  r.chosen.name = "chosen";
  if (std::optional<Node> t = in.OptObject(chosen, "test_intervals")) r.intervals = ReadIntervals(in, *t);
  // PlanReportToJson writes the selection for match-best only.
  if (in.ok() && r.goal == "match-best") r.selection = ReadSelection(in, in.Object(root, "selection"), label_free);
  r.baselines = ReadRows(in, root, "baselines", true, label_free);
  r.frontier = ReadRows(in, root, "frontier", false, label_free);
  for (const Node& f : in.Array(root, "families")) {
    PlanReport::Family family;
    family.name = in.String(f, "name");
    family.rules = in.String(f, "rules");
    family.frontier = ReadRows(in, f, "frontier", false, label_free);
    r.families.push_back(std::move(family));
  }
  r.cost_model = in.OptString(root, "cost_model").value_or("");
  if (std::optional<Node> c = in.OptObject(root, "cluster")) r.cluster = ReadClusterView(in, *c);
  if (std::optional<Node> o = in.OptObject(root, "other_cost_plan")) r.other_cost_plan = ReadOtherCostPlan(in, *o);
  if (!in.ok()) return in.status();
  return r;
}

StatusOr<RunFigures> RunFiguresFromJson(const std::string& text, const std::string& source) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return InvalidArgumentError(source + ": not JSON (expected the output of coe run --json)");
  JsonReader in(doc, source, "the output of coe run --json");
  const Node root = in.root();
  RunFigures r;
  r.source = source;
  r.examples = static_cast<int64_t>(in.Count(root, "examples", std::numeric_limits<int64_t>::max()));
  for (const Node& e : in.Array(root, "exits"))
    r.exits.push_back(static_cast<int64_t>(in.Count(e, std::numeric_limits<int64_t>::max())));
  r.accuracy = in.OptNumber(root, "accuracy", 0, 1);
  r.cost = in.Number(root, "cost", 0, kInf);
  r.seconds = in.OptNumber(root, "seconds", 0, kInf);
  if (!in.ok()) return in.status();
  return r;
}

}  // namespace coe
