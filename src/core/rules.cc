#include "coe/rules.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/decimal.h"

namespace coe {

TierVote TallyVotes(std::span<const MemberOutput> outputs) {
  TierVote v;
  v.members = static_cast<int>(outputs.size());
  if (outputs.empty()) return v;
  // Tiers are small (a handful of members): quadratic counting beats a map. Scanning
  // from the last member backwards and keeping the first label that reaches a
  // strictly larger count implements "a tie goes to the tied voter listed last".
  const int n = v.members;
  for (int i = n - 1; i >= 0; --i) {
    const int label = outputs[i].label;
    if (label == kAbstain) continue;
    int count = 0;
    for (int j = 0; j < n; ++j) count += outputs[j].label == label;
    if (count > v.votes) {
      v.votes = count;
      v.plurality = label;
    }
  }
  v.agreement = static_cast<double>(v.votes) / n;
  if (v.plurality == kAbstain) return v;
  double sum = 0.0;
  for (const MemberOutput& o : outputs) sum += o.ProbabilityOf(v.plurality);
  v.mean_score = sum / n;  // NaN propagates when a member has no probabilities
  return v;
}

namespace {

// Lower-cased word stems: words of letters and digits, with a plain English suffix
// taken off words longer than four letters (-ing, -ed, -ies -> -y, -es after s/x/z/ch/sh,
// else -s but not -ss); sorted, unique.
std::vector<std::string> Stems(std::string_view text) {
  std::vector<std::string> out;
  std::string w;
  auto ends = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return w.size() >= n && w.compare(w.size() - n, n, suffix) == 0;
  };
  auto flush = [&] {
    if (w.empty()) return;
    if (w.size() > 4) {
      if (ends("ing"))
        w.resize(w.size() - 3);
      else if (ends("ed"))
        w.resize(w.size() - 2);
      else if (ends("ies"))
        w.replace(w.size() - 3, 3, "y");
      else if (ends("sses") || ends("xes") || ends("zes") || ends("ches") || ends("shes"))
        w.resize(w.size() - 2);
      else if (ends("s") && !ends("ss"))
        w.resize(w.size() - 1);
    }
    out.push_back(w);
    w.clear();
  };
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      w += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else
      flush();
  }
  flush();
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

double Jaccard(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.empty() && b.empty()) return 1.0;
  size_t common = 0;
  for (size_t i = 0, j = 0; i < a.size() && j < b.size();) {
    const int c = a[i].compare(b[j]);
    if (c == 0)
      ++common, ++i, ++j;
    else if (c < 0)
      ++i;
    else
      ++j;
  }
  return static_cast<double>(common) / static_cast<double>(a.size() + b.size() - common);
}

}  // namespace

StatusOr<AnswerMatch> AnswerMatch::Parse(std::string_view text) {
  AnswerMatch m;
  if (text == "exact") return m;
  if (text == "number") {
    m.kind = Kind::kNumber;
    return m;
  }
  if (text.rfind("jaccard:", 0) == 0) {
    const std::string t(text.substr(8));
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (!t.empty() && end && *end == '\0' && v > 0 && v <= 1) {
      m.kind = Kind::kJaccard;
      m.threshold = v;
      return m;
    }
  }
  return InvalidArgumentError("match '" + std::string(text) +
                              "': expected exact, number or jaccard:T with T in (0, 1], e.g. jaccard:0.6");
}

std::string AnswerMatch::ToString() const {
  switch (kind) {
    case Kind::kExact:
      return "exact";
    case Kind::kNumber:
      return "number";
    case Kind::kJaccard: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "jaccard:%g", threshold);
      return buf;
    }
  }
  return "";
}

bool IsStructuredAnswer(std::string_view answer) {
  return !answer.empty() && (answer.front() == '{' || answer.front() == '[') && nlohmann::json::accept(answer);
}

bool AnswerMatch::Same(std::string_view a, std::string_view b) const {
  if (kind != Kind::kExact && (IsStructuredAnswer(a) || IsStructuredAnswer(b))) return a == b;
  switch (kind) {
    case Kind::kExact:
      return a == b;
    case Kind::kNumber: {
      const std::optional<std::string> x = LastNumber(a), y = LastNumber(b);
      return x && y ? *x == *y : a == b;
    }
    case Kind::kJaccard:
      return Jaccard(Stems(a), Stems(b)) >= threshold - 1e-12;
  }
  return false;
}

AnswerMatcher::AnswerMatcher(const AnswerMatch& match, const LabelSet& labels) : match_(match), labels_(labels) {}

const AnswerMatcher::Parsed& AnswerMatcher::Get(int label) {
  if (static_cast<size_t>(label) >= cache_.size()) cache_.resize(label + 1);
  Parsed& p = cache_[label];
  if (!p.done) {
    p.done = true;
    const std::string& name = labels_.name(label);
    p.structured = IsStructuredAnswer(name);
    if (match_.kind == AnswerMatch::Kind::kNumber) {
      std::optional<std::string> number = LastNumber(name);
      p.has_number = number.has_value();
      if (number) p.number = std::move(*number);
    }
    if (match_.kind == AnswerMatch::Kind::kJaccard) p.stems = Stems(name);
  }
  return p;
}

bool AnswerMatcher::Same(int a, int b) {
  if (a == b) return true;
  if (a == kAbstain || b == kAbstain || match_.kind == AnswerMatch::Kind::kExact) return false;
  const size_t need = static_cast<size_t>(std::max(a, b)) + 1;
  if (cache_.size() < need) cache_.resize(need);  // so that both references below stay valid
  const Parsed& x = Get(a);
  const Parsed& y = Get(b);
  if (x.structured || y.structured) return false;  // a != b: different strings
  if (match_.kind == AnswerMatch::Kind::kNumber)
    return x.has_number && y.has_number ? x.number == y.number : labels_.name(a) == labels_.name(b);
  return Jaccard(x.stems, y.stems) >= match_.threshold - 1e-12;
}

TierVote TallyVotes(std::span<const MemberOutput> outputs, AnswerMatcher* matcher) {
  if (!matcher || matcher->match().exact()) return TallyVotes(outputs);
  TierVote v;
  const int n = static_cast<int>(outputs.size());
  v.members = n;
  if (n == 0) return v;
  // Groups in member order: an answer joins the first group whose first answer it
  // matches. Tiers are small, so groups are kept as (first member, size, last member).
  struct Group {
    int first, size, last;
  };
  std::vector<Group> groups;
  std::vector<int> group_of(n, -1);
  for (int j = 0; j < n; ++j) {
    if (outputs[j].label == kAbstain) continue;
    int g = 0;
    for (; g < static_cast<int>(groups.size()); ++g)
      if (matcher->Same(outputs[groups[g].first].label, outputs[j].label)) break;
    if (g == static_cast<int>(groups.size())) groups.push_back({j, 0, j});
    groups[g].size++;
    groups[g].last = j;
    group_of[j] = g;
  }
  if (groups.empty()) {
    v.agreement = 0;
    return v;
  }
  int best = 0;
  for (int g = 1; g < static_cast<int>(groups.size()); ++g)
    if (groups[g].size > groups[best].size ||
        (groups[g].size == groups[best].size && groups[g].last > groups[best].last))
      best = g;
  v.votes = groups[best].size;
  v.plurality = outputs[groups[best].last].label;
  v.agreement = static_cast<double>(v.votes) / n;
  double sum = 0.0;
  for (int j = 0; j < n; ++j)
    if (group_of[j] == best) sum += outputs[j].ProbabilityOf(outputs[j].label);
  v.mean_score = sum / n;  // NaN propagates when a winning member gives no confidence
  return v;
}

bool DeferralRule::Exits(const TierVote& vote) const {
  if (vote.plurality == kAbstain) return false;
  // Thresholds such as 2/3 are written to cascade files with 17 significant digits;
  // the tolerance keeps k/n >= k/n true after that round trip.
  if (min_agreement && vote.agreement < *min_agreement - 1e-12) return false;
  if (min_score && !(vote.mean_score >= *min_score)) return false;  // NaN fails
  return true;
}

std::string DeferralRule::ToString(int members) const {
  if (empty()) return "plurality";
  std::string s;
  char buf[64];
  if (min_agreement) {
    if (*min_agreement >= 1 - 1e-12) {
      s += "unanimous";
    } else if (members > 0) {
      const int k = static_cast<int>(std::ceil(*min_agreement * members - 1e-9));
      std::snprintf(buf, sizeof buf, "agree>=%d/%d", std::max(k, 0), members);
      s += buf;
    } else {
      std::snprintf(buf, sizeof buf, "agree>=%.3g", *min_agreement);
      s += buf;
    }
  }
  if (min_score) {
    std::snprintf(buf, sizeof buf, "%sscore>=%.4g", s.empty() ? "" : " & ", *min_score);
    s += buf;
  }
  return s;
}

}  // namespace coe
