// Label-free planning (issue 25, deliverable 2): a reference's answers as the truth,
// the Clopper-Pearson bound of match-best, the calibrated agreement of a cascade file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/binomial.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/evaluate.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/report.h"
#include "coe/workflow.h"
#include "testing.h"

namespace coe {
namespace {

// Known values: scipy.stats.beta.ppf(1 - alpha, k + 1, n - k) (scipy 1.10.1).
TEST(ClopperPearson, UpperBoundMatchesKnownValues) {
  struct Case {
    int k, n;
    double alpha, want;
  } cases[] = {
      {0, 10, 0.05, 0.2588655508930522},          {1, 10, 0.05, 0.39416330243650466},
      {5, 20, 0.05, 0.4555824040017489},          {12, 1000, 0.05, 0.019370199285059248},
      {12, 1000, 0.05 / 30, 0.02595172333069473}, {0, 1000, 0.0025, 0.005973551516349581},
      {999, 1000, 0.05, 0.999948708021091},       {50, 100, 0.01, 0.6192825330930475},
      {500, 100000, 0.05, 0.005382730759818749},  {20000, 1000000, 0.001, 0.020436359024700885},
  };
  for (const Case& c : cases)
    EXPECT_NEAR(ClopperPearsonUpper(c.k, c.n, c.alpha), c.want, 1e-9) << c.k << "/" << c.n << " at " << c.alpha;
  // No events: the closed form 1 - alpha^(1/n).
  EXPECT_NEAR(ClopperPearsonUpper(0, 437, 0.01), 1 - std::pow(0.01, 1.0 / 437), 1e-12);
  EXPECT_EQ(ClopperPearsonUpper(7, 7, 0.05), 1.0);
  EXPECT_TRUE(std::isnan(ClopperPearsonUpper(1, 0, 0.05)));
  EXPECT_TRUE(std::isnan(ClopperPearsonUpper(1, 10, 0)));
  // A smaller alpha (more candidates to correct for) never gives a lower bound.
  EXPECT_GT(ClopperPearsonUpper(12, 1000, 0.05 / 30), ClopperPearsonUpper(12, 1000, 0.05));
}

// Recordings of four models of rising skill and cost (a, b, c, ref) on `n` questions
// with answers A-D; `ref` is right on 90%, the others agree with it more the dearer
// they are. `forms` writes model m's answer (numbers or text in the tests below).
struct Data {
  std::string csv, csv_without_labels;
};
Data MakeData(uint32_t seed, int n, const std::function<std::string(int m, int answer)>& form) {
  std::mt19937 rng(seed);
  Data d;
  d.csv = "id,label,a,b,c,ref\n";
  d.csv_without_labels = "id,a,b,c,ref\n";
  for (int i = 0; i < n; ++i) {
    const int truth = static_cast<int>(rng() % 4);
    const int ref = rng() % 100 < 90 ? truth : static_cast<int>(rng() % 4);
    std::string row;
    for (int m = 0; m < 4; ++m) {
      const bool same = m == 3 || rng() % 100 < static_cast<unsigned>(70 + 9 * m);
      const int answer = same ? ref : static_cast<int>(rng() % 4);
      row += "," + form(m, answer);
    }
    d.csv += "q" + std::to_string(i) + "," + form(3, truth) + row + "\n";
    d.csv_without_labels += "q" + std::to_string(i) + row + "\n";
  }
  return d;
}

Catalogue FourModels() {
  auto cat = ParseCatalogue("[models.a]\nusd = 1\n[models.b]\nusd = 3\n[models.c]\nusd = 9\n[models.ref]\nusd = 27\n",
                            "four.toml", ".");
  EXPECT_TRUE(cat.ok()) << cat.status().ToString();
  return *cat;
}

StatusOr<PlanOutcome> PlanCsv(const std::string& calib, const std::string& test, const PlanRequest& request,
                              LabelSet* labels) {
  COE_ASSIGN_OR_RETURN(Recordings c, ParseRecordings(calib, "calib.csv", labels, nullptr));
  COE_ASSIGN_OR_RETURN(Recordings t, ParseRecordings(test, "test.csv", labels, nullptr));
  return PlanRecordings(c, &t, FourModels(), request);
}

// The reference's answers copied into `label`: planning on them is planning with the
// reference, figure for figure (the hand-made route of issue 25, now supported).
std::string WithReferenceAsLabel(const std::string& csv) {
  std::string out;
  std::istringstream in(csv);
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) f.push_back(cell);
    if (line.back() == ',') f.push_back("");
    out += f[0] + "," + (header ? "label" : f[4]);
    for (size_t k = 1; k < f.size(); ++k) out += "," + f[k];
    out += "\n";
    header = false;
  }
  return out;
}

void ExpectLabelFreeEqualsReferenceAsLabel(const std::function<std::string(int, int)>& form, const std::string& match) {
  const Data calib = MakeData(11, 900, form), test = MakeData(12, 600, form);
  PlanRequest request;
  request.match = match;
  request.max_tiers = 2;
  request.reference = "ref";
  LabelSet l1, l2, l3;
  auto free = PlanCsv(calib.csv_without_labels, test.csv_without_labels, request, &l1);
  ASSERT_TRUE(free.ok()) << free.status().ToString();
  auto labeled = PlanCsv(calib.csv, test.csv, request, &l2);  // labels present: only reported
  ASSERT_TRUE(labeled.ok()) << labeled.status().ToString();
  request.reference = "";
  auto hand = PlanCsv(WithReferenceAsLabel(calib.csv_without_labels), WithReferenceAsLabel(test.csv_without_labels),
                      request, &l3);
  ASSERT_TRUE(hand.ok()) << hand.status().ToString();
  // The same frontier, agreement for accuracy, as planning on the reference's answers.
  ASSERT_EQ(free->plan.frontier.size(), hand->plan.frontier.size());
  for (size_t k = 0; k < free->plan.frontier.size(); ++k) {
    EXPECT_EQ(free->plan.frontier[k].cascade.ToString(), hand->plan.frontier[k].cascade.ToString());
    EXPECT_EQ(free->plan.frontier[k].correct, hand->plan.frontier[k].correct);
    EXPECT_EQ(free->report.frontier[k].test->correct, hand->report.frontier[k].test->correct);
    EXPECT_EQ(labeled->plan.frontier[k].correct, hand->plan.frontier[k].correct);
  }
  EXPECT_EQ(free->report.reference, "ref");
  EXPECT_FALSE(free->report.chosen.test_true_accuracy.has_value());  // no labels: nothing to report
  // With labels, the true accuracy is reported beside the agreement, as EvaluateCascade
  // scores the chosen cascade against the labels.
  ASSERT_TRUE(labeled->report.chosen.test_true_accuracy.has_value());
  LabelSet l4;
  auto t = ParseRecordings(test.csv, "test.csv", &l4, nullptr);
  ASSERT_TRUE(t.ok());
  auto costs = BuildCostTable(*t, FourModels(), CostOptions{});
  ASSERT_TRUE(costs.ok());
  auto truth = EvaluateCascade(labeled->plan.chosen.cascade, *t, *costs);
  ASSERT_TRUE(truth.ok());
  EXPECT_DOUBLE_EQ(*labeled->report.chosen.test_true_accuracy, truth->accuracy);
  // Match-best: the cheapest frontier point whose Clopper-Pearson bound at 0.05 over
  // the candidates is <= epsilon.
  const Selection& s = free->plan.selection;
  EXPECT_EQ(s.reference, "ref");
  EXPECT_EQ(s.candidates, static_cast<int>(free->plan.frontier.size()));
  const int n = free->plan.labeled;
  for (const OperatingPoint& p : free->plan.frontier) {
    const double bound = ClopperPearsonUpper(n - p.correct, n, 0.05 / s.candidates);
    if (bound <= request.select_options.epsilon) {
      EXPECT_EQ(free->plan.chosen.cascade.ToString(), p.cascade.ToString());
      EXPECT_DOUBLE_EQ(s.disagreement_bound, bound);
      break;
    }
    EXPECT_NE(free->plan.chosen.cascade.ToString(), p.cascade.ToString());
  }
  EXPECT_TRUE(free->plan.goal_met);
  EXPECT_LE(s.disagreement_bound, request.select_options.epsilon);
  // The report says it is label-free, against which reference, and what it guarantees.
  const std::string text = PlanReportToText(free->report);
  EXPECT_NE(text.find("LABEL-FREE plan against the reference ref"), std::string::npos) << text;
  EXPECT_NE(text.find("with 95% confidence, accuracy is at most 2 points below ref's own"), std::string::npos) << text;
  // Its JSON reads back to the same text, true accuracies and selection included.
  for (const PlanOutcome* o : {&*free, &*labeled}) {
    const std::string json = PlanReportToJson(o->report);
    auto back = PlanReportFromJson(json, "plan.json");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(PlanReportToJson(*back), json);
    EXPECT_TRUE(RenderHtmlReport({"plan.json", json}, {}).ok());
  }
  const nlohmann::json doc = nlohmann::json::parse(PlanReportToJson(labeled->report));
  EXPECT_EQ(doc["reference"], "ref");
  EXPECT_EQ(doc["chosen"]["test"]["agreement"], doc["chosen"]["test"]["accuracy"]);
  EXPECT_TRUE(doc["chosen"]["test"]["true_accuracy"].is_number());
  EXPECT_EQ(doc["selection"]["confidence"], 0.95);
}

TEST(LabelFree, LabelsPlanAsIfTheReferenceWereTheLabel) {
  ExpectLabelFreeEqualsReferenceAsLabel([](int, int a) { return std::string(1, "ABCD"[a]); }, "exact");
}

TEST(LabelFree, NumbersCompareByTheMatch) {
  // Each model writes its numbers its own way; under --match number they agree.
  ExpectLabelFreeEqualsReferenceAsLabel(
      [](int m, int a) {
        const std::string v = std::to_string(10 + a);
        return m == 0 ? v + ".0" : m == 1 ? v + ".00" : m == 2 ? v : v + ".000";
      },
      "number");
}

TEST(LabelFree, TextComparesByTheMatch) {
  const char* says[] = {"the answer is paris", "it is london", "berlin it is", "madrid"};
  ExpectLabelFreeEqualsReferenceAsLabel([&](int m, int a) { return std::string(says[a]) + (m % 2 ? " indeed" : ""); },
                                        "jaccard:0.6");
}

TEST(LabelFree, PluralityTiesGoToTheLastColumn) {
  LabelSet labels;
  auto rec = ParseRecordings(
      "id,a,b,c,d\n"
      "1,x,x,y,z\n"   // x has the most votes
      "2,x,y,x,y\n"   // x and y tie: y holds the last column's vote
      "3,x,y,,\n"     // x and y tie, abstentions vote for nothing: y
      "4,,,,\n"       // every model abstained: no answer
      "5,y,x,x,y\n",  // tie: y (d is last)
      "p.csv", &labels, nullptr);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  auto answers = ReferenceAnswers(*rec, "plurality", AnswerMatch{});
  ASSERT_TRUE(answers.ok()) << answers.status().ToString();
  std::vector<std::string> got;
  for (int a : *answers) got.push_back(a == kAbstain ? "" : labels.name(a));
  EXPECT_EQ(got, (std::vector<std::string>{"x", "y", "y", "", "y"}));
  // Under --match number "1.0" and "1" are one answer: the group of the last column
  // ("1", d's own form) wins the tie with "2".
  LabelSet nl;
  auto nums = ParseRecordings("id,a,b,c,d\n1,1.0,2,2,1\n", "n.csv", &nl, nullptr);
  ASSERT_TRUE(nums.ok());
  auto na = ReferenceAnswers(*nums, "plurality", *AnswerMatch::Parse("number"));
  ASSERT_TRUE(na.ok());
  EXPECT_EQ(nl.name((*na)[0]), "1");
  // A model's answers, as recorded.
  auto b = ReferenceAnswers(*rec, "b", AnswerMatch{});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[1], labels.Find("y"));
  // A model that is not there is named, with the models that are.
  auto missing = ReferenceAnswers(*rec, "gpt-4", AnswerMatch{});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'gpt-4'"), std::string::npos);
  EXPECT_NE(missing.status().message().find("a, b, c, d"), std::string::npos) << missing.status().message();
  // A model named "plurality" makes the word ambiguous.
  LabelSet pl;
  auto amb = ParseRecordings("id,plurality,b\n1,x,y\n", "amb.csv", &pl, nullptr);
  ASSERT_TRUE(amb.ok());
  EXPECT_EQ(ReferenceAnswers(*amb, "plurality", AnswerMatch{}).status().code(), StatusCode::kInvalidArgument);
}

TEST(LabelFree, PluralityReferencePlans) {
  const Data calib = MakeData(21, 800, [](int, int a) { return std::string(1, "ABCD"[a]); });
  PlanRequest request;
  request.reference = "plurality";
  request.max_tiers = 2;
  LabelSet labels;
  auto p = PlanCsv(calib.csv_without_labels, calib.csv, request, &labels);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->report.reference, "plurality");
  EXPECT_EQ(p->plan.selection.reference, "plurality");
  // The calibration agreement of the plurality of all models with itself is 1.
  for (const ReportRow& b : p->report.baselines)
    if (b.name == "plurality of all models") {
      EXPECT_EQ(b.calib.accuracy, 1.0);
    }
}

TEST(LabelFree, GuardsThatCannotBoundAreRefused) {
  const Data calib = MakeData(31, 300, [](int, int a) { return std::string(1, "ABCD"[a]); });
  PlanRequest request;
  request.reference = "ref";
  request.select = "holdout";
  LabelSet labels;
  auto p = PlanCsv(calib.csv_without_labels, calib.csv_without_labels, request, &labels);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("--select holdout"), std::string::npos) << p.status().message();
  request.select = "none";
  auto none = PlanCsv(calib.csv_without_labels, calib.csv_without_labels, request, &labels);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  // The point estimate: the cheapest frontier point disagreeing on at most epsilon.
  const int n = none->plan.labeled;
  for (const OperatingPoint& pt : none->plan.frontier)
    if (n - pt.correct <= 0.02 * n) {
      EXPECT_EQ(none->plan.chosen.cascade.ToString(), pt.cascade.ToString());
      break;
    }
}

// The reference need not be in the cascades (--only): the goal is met by a cascade
// whose bound is within epsilon, and when none is, the point agreeing most is shown.
TEST(LabelFree, ReferenceOutsideTheSearch) {
  const Data calib = MakeData(51, 900, [](int, int a) { return std::string(1, "ABCD"[a]); });
  PlanRequest request;
  request.reference = "ref";
  request.only = {"a", "b", "c"};
  request.max_tiers = 2;
  request.select_options.epsilon = 0.3;
  LabelSet labels;
  auto met = PlanCsv(calib.csv_without_labels, calib.csv, request, &labels);
  ASSERT_TRUE(met.ok()) << met.status().ToString();
  EXPECT_TRUE(met->plan.goal_met);
  for (const std::string& m : met->plan.chosen.cascade.AllMembers()) EXPECT_NE(m, "ref");
  EXPECT_LE(met->plan.selection.disagreement_bound, 0.3);
  request.select_options.epsilon = 0.01;
  auto unmet = PlanCsv(calib.csv_without_labels, calib.csv, request, &labels);
  ASSERT_TRUE(unmet.ok()) << unmet.status().ToString();
  EXPECT_FALSE(unmet->plan.goal_met);
  EXPECT_EQ(unmet->plan.chosen.cascade.ToString(), unmet->plan.frontier.back().cascade.ToString());
  EXPECT_EQ(unmet->plan.selection.accuracy, unmet->plan.frontier.back().accuracy);
  EXPECT_NE(LabelFreeStatement(unmet->report).find("the goal is not met"), std::string::npos);
}

TEST(CalibratedAgreement, RoundTripsThroughTheCascadeFile) {
  CascadeSpec spec;
  spec.tiers.push_back(TierSpec{{"a", "b"}, DeferralRule{1.0, std::nullopt}, AnswerMatch{}, 0.9731});
  spec.tiers.push_back(TierSpec{{"c"}, DeferralRule{std::nullopt, 0.8}, *AnswerMatch::Parse("number"), 1.0 / 3});
  spec.tiers.push_back(TierSpec{{"ref"}, {}, AnswerMatch{}, std::nullopt});
  const std::string toml = CascadeToToml(spec, {"test"});
  EXPECT_NE(toml.find("calibrated_agreement = 0.9731"), std::string::npos) << toml;
  auto back = ParseCascade(toml, "c.toml");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->tiers.size(), 3u);
  EXPECT_EQ(back->tiers[0].calibrated_agreement, 0.9731);
  EXPECT_EQ(back->tiers[1].calibrated_agreement, 1.0 / 3);  // every digit kept
  EXPECT_FALSE(back->tiers[2].calibrated_agreement.has_value());
  EXPECT_EQ(CascadeToToml(*back, {"test"}), toml);
  // Files without it still read; bad values and a last tier's are refused, named.
  auto old = ParseCascade("[[tiers]]\nmembers = [\"a\"]\nmin_agreement = 1.0\n[[tiers]]\nmembers = [\"b\"]\n", "o");
  ASSERT_TRUE(old.ok());
  EXPECT_FALSE(old->tiers[0].calibrated_agreement.has_value());
  auto bad = ParseCascade(
      "[[tiers]]\nmembers = [\"a\", \"b\"]\nmin_agreement = 1.0\ncalibrated_agreement = 1.5\n[[tiers]]\nmembers = "
      "[\"c\"]\n",
      "bad.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("calibrated_agreement = 1.5 is outside [0, 1]"), std::string::npos)
      << bad.status().message();
  auto last = ParseCascade("[[tiers]]\nmembers = [\"c\"]\ncalibrated_agreement = 0.5\n", "last.toml");
  ASSERT_FALSE(last.ok());
  EXPECT_NE(last.status().message().find("last tier"), std::string::npos) << last.status().message();
  auto text = ParseCascade(
      "[[tiers]]\nmembers = [\"a\", \"b\"]\nmin_agreement = 1.0\ncalibrated_agreement = \"high\"\n[[tiers]]\n"
      "members = [\"c\"]\n",
      "text.toml");
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.status().message().find("'calibrated_agreement' must be a number"), std::string::npos);
}

TEST(CalibratedAgreement, IsTheShareOfExitsTheLastTierAnswersAlike) {
  LabelSet labels;
  // Tier 1 {a, b} unanimous exits on 1-4 (answers x, x, y, z); the last tier {c}
  // answers x, y, y, (abstains): agreement 2 of 4. Row 5 defers.
  auto rec = ParseRecordings("id,a,b,c\n1,x,x,x\n2,x,x,y\n3,y,y,y\n4,z,z,\n5,x,y,x\n", "r.csv", &labels, nullptr);
  ASSERT_TRUE(rec.ok());
  auto cat = ParseCatalogue("[models.a]\nusd = 1\n[models.b]\nusd = 1\n[models.c]\nusd = 5\n", "m.toml", ".");
  ASSERT_TRUE(cat.ok());
  auto costs = BuildCostTable(*rec, *cat, CostOptions{});
  ASSERT_TRUE(costs.ok());
  auto spec = ParseCascade("[[tiers]]\nmembers = [\"a\", \"b\"]\nmin_agreement = 1.0\n[[tiers]]\nmembers = [\"c\"]\n",
                           "c.toml");
  ASSERT_TRUE(spec.ok());
  auto agreement = AgreementWithLastTier(*spec, *rec, *costs);
  ASSERT_TRUE(agreement.ok()) << agreement.status().ToString();
  ASSERT_EQ(agreement->size(), 2u);
  EXPECT_EQ((*agreement)[0], 0.5);
  EXPECT_FALSE((*agreement)[1].has_value());
}

// `coe plan --reference` on recordings without labels, and a reference that is not there.
TEST(LabelFreeCli, PlansWithoutLabelsAndRefusesAnUnknownReference) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("coe_reference_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const Data d = MakeData(41, 700, [](int, int a) { return std::string(1, "ABCD"[a]); });
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const std::string calib = write("calib.csv", d.csv_without_labels), test = write("test.csv", d.csv);
  const std::string models =
      write("m.toml", "[models.a]\nusd = 1\n[models.b]\nusd = 3\n[models.c]\nusd = 9\n[models.ref]\nusd = 27\n");
  const std::string out = (dir / "cascade.toml").string();
  // Without labels and without a reference, the refusal says how to plan anyway.
  testing::Proc no_ref = testing::RunCoe("plan --calib " + calib + " --models " + models);
  EXPECT_EQ(no_ref.code, 2) << no_ref.out;
  EXPECT_NE(no_ref.out.find("--reference"), std::string::npos) << no_ref.out;
  testing::Proc plan = testing::RunCoe("plan --calib " + calib + " --test " + test + " --models " + models +
                                       " --reference ref --max-tiers 2 --epsilon 0.05 --out " + out);
  ASSERT_EQ(plan.code, 0) << plan.out;
  EXPECT_NE(plan.out.find("LABEL-FREE plan against the reference ref"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("accuracy is at most 5 points below ref's own"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("true acc"), std::string::npos) << plan.out;
  auto spec = ReadCascade(out);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  if (spec->tiers.size() > 1) {
    EXPECT_TRUE(spec->tiers[0].calibrated_agreement.has_value());
  }
  testing::Proc json = testing::RunCoe("plan --calib " + calib + " --models " + models +
                                           " --reference plurality --max-tiers 2 --json --confidence 0.9 --epsilon 0.1",
                                       false);
  ASSERT_EQ(json.code, 0) << json.out;
  const nlohmann::json doc = nlohmann::json::parse(json.out);
  EXPECT_EQ(doc["reference"], "plurality");
  EXPECT_NEAR(doc["selection"]["confidence"].get<double>(), 0.9, 1e-12);
  testing::Proc missing =
      testing::RunCoe("plan --calib " + calib + " --models " + models + " --reference gpt-4 --max-tiers 2");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.out.find("--reference 'gpt-4'"), std::string::npos) << missing.out;
  EXPECT_NE(missing.out.find("a, b, c, ref"), std::string::npos) << missing.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace coe
