// libFuzzer target for the TOML readers and the --link parser: coe::ParseCatalogue,
// coe::ParseCascade, coe::ParseCluster and coe::LinkSpec::Parse, all on the same bytes.
//
// Checks, beyond "no crash, leak, hang or sanitizer report":
//  - errors are InvalidArgument with a message naming the source;
//  - a catalogue that reads is sound (valid unique model names, finite non-negative
//    costs, settings in range), and BuildCostTable over it gives finite figures;
//  - a cascade that reads passes ValidateCascade, and CascadeToToml -> ParseCascade
//    gives the same name, members and (bit-exact) thresholds, also when the comment
//    lines hold newlines or control characters;
//  - a cluster that reads is sound (positive finite prices and throughputs on known
//    GPU types, pins among them), and BuildCostTable over it gives finite costs;
//  - a link that reads has a positive finite bandwidth and a finite rtt >= 0.
// A violated invariant abort()s with a message on stderr.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "toml_fuzz: invariant violated: %s\n", what.c_str());
  std::abort();
}

void Check(bool ok, const std::string& what) {
  if (!ok) Fail(what);
}

void CheckError(const coe::Status& s, const std::string& source) {
  Check(!s.ok(), "error status expected");
  Check(s.code() == coe::StatusCode::kInvalidArgument, "bad input must give InvalidArgument, got " + s.ToString());
  Check(source.empty() || s.message().find(source) != std::string::npos,
        "error message does not name the source: " + s.message());
}

bool Finite(double x) { return std::isfinite(x); }

// One example, every model abstaining: enough for BuildCostTable's fixed figures.
coe::Recordings OneExample(const std::vector<std::string>& names) {
  coe::Recordings rec;
  rec.source = "rec.csv";
  rec.ids = {"x"};
  for (const std::string& n : names) rec.models.push_back(coe::ModelRecord{.name = n, .label = {-1}});
  return rec;
}

void CheckCostTable(const coe::StatusOr<coe::CostTable>& t, size_t num_models) {
  if (!t.ok()) {
    Check(t.status().code() == coe::StatusCode::kInvalidArgument || t.status().code() == coe::StatusCode::kNotFound,
          "BuildCostTable: " + t.status().ToString());
    return;
  }
  Check(t->mean.size() == num_models, "cost table size");
  for (double c : t->fixed) Check(Finite(c) && c >= 0, "non-finite or negative fixed cost");
  for (double c : t->mean) Check(Finite(c) && c >= 0, "non-finite or negative mean cost");
  for (double c : t->homogeneous) Check(Finite(c) && c >= 0, "non-finite homogeneous cost");
  for (double l : t->latency_ms) Check(Finite(l) && l >= 0, "non-finite latency");
  for (double b : t->input_bytes) Check(Finite(b) && b >= 0, "non-finite input_bytes");
}

void FuzzCatalogue(std::string_view text) {
  auto cat = coe::ParseCatalogue(text, "cat.toml", "base");
  if (!cat.ok()) {
    CheckError(cat.status(), "cat.toml");
    return;
  }
  Check(!cat->models.empty(), "catalogue without models");
  std::set<std::string> names;
  std::vector<std::string> name_list;
  for (const coe::ModelSpec& m : cat->models) {
    const std::string what = "catalogue model '" + m.name + "': ";
    Check(!m.name.empty() && m.name.find('|') == std::string::npos && m.name != "id" && m.name != "label",
          what + "bad name");
    Check(names.insert(m.name).second, what + "listed twice");
    Check(cat->Find(m.name) == &m, what + "Find");
    for (auto& [k, v] : m.costs) Check(Finite(v) && v >= 0, what + "bad cost " + k);
    Check(m.site == "edge" || m.site == "cloud", what + "site");
    for (int64_t d : m.input_shape) Check(d > 0, what + "input_shape");
    Check(Finite(m.input_bytes) && m.input_bytes >= 0, what + "input_bytes");
    std::set<std::string> labels(m.labels.begin(), m.labels.end());
    Check(labels.size() == m.labels.size() && !labels.count(""), what + "labels");
    Check(Finite(m.scale) && Finite(m.mean) && Finite(m.std) && m.std != 0, what + "scale/mean/std");
    Check(Finite(m.timeout_ms) && m.timeout_ms > 0, what + "timeout_ms");
    Check(m.retries >= 0 && m.retries <= 10, what + "retries");
    name_list.push_back(m.name);
  }
  coe::Recordings rec = OneExample(name_list);
  coe::CostOptions opt;
  opt.link = coe::LinkSpec{.bandwidth_bits_per_s = 1e6, .rtt_ms = 10};
  CheckCostTable(coe::BuildCostTable(rec, *cat, opt), name_list.size());
}

void CheckSameCascade(const coe::CascadeSpec& a, const coe::CascadeSpec& b) {
  Check(a.name == b.name, "round trip: name differs");
  Check(a.tiers.size() == b.tiers.size(), "round trip: number of tiers differs");
  for (size_t t = 0; t < a.tiers.size(); ++t) {
    const std::string what = "round trip: tier " + std::to_string(t + 1) + ": ";
    Check(a.tiers[t].members == b.tiers[t].members, what + "members differ");
    if (t + 1 == a.tiers.size()) continue;  // the last tier's rule is ignored (not written)
    Check(a.tiers[t].rule.min_agreement == b.tiers[t].rule.min_agreement, what + "min_agreement differs");
    Check(a.tiers[t].rule.min_score == b.tiers[t].rule.min_score, what + "min_score differs");
  }
}

void FuzzCascade(std::string_view text) {
  auto spec = coe::ParseCascade(text, "cascade.toml");
  if (!spec.ok()) {
    CheckError(spec.status(), "cascade.toml");
    return;
  }
  coe::Status valid = coe::ValidateCascade(*spec, "cascade.toml");
  if (!valid.ok()) Fail("ParseCascade result does not validate: " + valid.ToString());
  (void)spec->ToString();
  (void)spec->AllMembers();

  // Comments as `coe plan` writes them, plus hostile ones (a file name can hold anything).
  const std::vector<std::string> comment = {"written by the fuzzer", "", spec->name,
                                            "two\nlines\r\nand \x7f \x01 \\ \"\rthen \xff\xfe \xed\xa0\x80 \xc3",
                                            spec->tiers[0].members[0]};
  const std::string toml = coe::CascadeToToml(*spec, comment);
  auto back = coe::ParseCascade(toml, "written.toml");
  if (!back.ok()) Fail("CascadeToToml output does not parse: " + back.status().ToString() + "\n" + toml);
  CheckSameCascade(*spec, *back);
  Check(coe::CascadeToToml(*back, comment) == toml, "second round trip is not a fixed point");
}

void FuzzCluster(std::string_view text) {
  auto cluster = coe::ParseCluster(text, "cluster.toml");
  if (!cluster.ok()) {
    CheckError(cluster.status(), "cluster.toml");
    return;
  }
  Check(!cluster->devices.empty(), "cluster without devices");
  for (auto& [type, d] : cluster->devices)
    Check(Finite(d.usd_per_hour) && d.usd_per_hour > 0 && (d.cpu ? d.cores > 0 : d.cores == 0),
          "device '" + type + "': bad price or cores");
  Check(Finite(cluster->max_delay_ms) && cluster->max_delay_ms > 0, "bad max_delay_ms");
  std::vector<std::string> names;
  for (auto& [name, m] : cluster->models) {
    const std::string what = "cluster model '" + name + "': ";
    Check(!m.throughput.empty(), what + "no throughput");
    for (auto& [type, curve] : m.throughput) {
      Check(cluster->devices.count(type) == 1, what + "unknown device type " + type);
      Check(!curve.points.empty(), what + "empty throughput table");
      double last_batch = 0;
      for (auto& [b, x] : curve.points) {
        Check(b >= 1 && b > last_batch && Finite(x) && x > 0, what + "bad throughput table");
        last_batch = b;
      }
    }
    Check(m.pin.empty() || m.throughput.count(m.pin) == 1, what + "bad pin");
    // Names that recordings can hold (the catalogue rejects the others).
    if (!name.empty() && name.find('|') == std::string::npos && name != "id" && name != "label") names.push_back(name);
  }
  if (names.empty()) return;
  coe::Catalogue cat;
  cat.source = "cat.toml";
  for (const std::string& n : names) cat.models.push_back(coe::ModelSpec{.name = n});
  coe::CostOptions opt;
  opt.cluster = *cluster;
  CheckCostTable(coe::BuildCostTable(OneExample(names), cat, opt), names.size());
}

void FuzzLink(const std::string& text) {
  auto link = coe::LinkSpec::Parse(text);
  if (!link.ok()) {
    CheckError(link.status(), "--link");
    return;
  }
  Check(Finite(link->bandwidth_bits_per_s) && link->bandwidth_bits_per_s > 0, "link: bandwidth");
  Check(Finite(link->rtt_ms) && link->rtt_ms >= 0, "link: rtt");
  (void)link->ToString();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  FuzzCatalogue(text);
  FuzzCascade(text);
  FuzzCluster(text);
  FuzzLink(text);
  return 0;
}
