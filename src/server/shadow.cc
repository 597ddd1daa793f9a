#include "server/shadow.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "base/binomial.h"

namespace coe {

Status CheckShadowOptions(const ShadowOptions& o) {
  auto bad = [](const char* field, const char* flag, const std::string& value, const std::string& range) {
    return InvalidArgumentError(std::string("shadow ") + field + " (coe serve " + flag + ") is " + value +
                                "; it must be " + range);
  };
  auto number = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return std::string(buf);
  };
  if (!(o.share >= 0 && o.share <= 1)) return bad("share", "--shadow", number(o.share), "in [0, 1] (0: off)");
  if (o.window < 1) return bad("window", "--shadow-window", std::to_string(o.window), "at least 1");
  if (!(o.confidence > 0 && o.confidence < 1))
    return bad("confidence", "--shadow-confidence", number(o.confidence), "in (0, 1), e.g. 0.95");
  if (!(o.margin >= 0 && o.margin < 1)) return bad("margin", "--shadow-margin", number(o.margin), "in [0, 1)");
  if (o.min_samples < 1 || o.min_samples > o.window)
    return bad("min_samples", "--shadow-min-samples", std::to_string(o.min_samples),
               "in [1, window] (window " + std::to_string(o.window) + ")");
  if (o.max_queued < 1) return bad("max_queued", "--shadow-queue", std::to_string(o.max_queued), "at least 1");
  if (o.workers < 1) return bad("workers", "--shadow-workers", std::to_string(o.workers), "at least 1");
  return Status::Ok();
}

bool ShadowChosen(std::string_view id, double share) {
  if (!(share > 0)) return false;
  if (share >= 1) return true;
  uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (unsigned char c : id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 30;  // SplitMix64's finaliser: every bit of the id moves the high bits
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return static_cast<double>(h >> 11) * 0x1.0p-53 < share;
}

ShadowMonitor::ShadowMonitor(const ShadowOptions& options, std::vector<double> expected) : options_(options) {
  tiers_.resize(expected.size());
  for (size_t k = 0; k < expected.size(); ++k) tiers_[k].expected = expected[k];
}

void ShadowMonitor::Bounds(const Tier& t, double* agreement, double* lower, double* upper) const {
  const int64_t n = static_cast<int64_t>(t.window.size());
  *agreement = n > 0 ? static_cast<double>(t.window_agreed) / n : NAN;
  const Interval i = ClopperPearson(t.window_agreed, n, options_.confidence);
  *lower = i.lower;
  *upper = i.upper;
}

std::string ShadowMonitor::Add(const std::string& model, int exit_tier, bool agreed, double cost) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::isfinite(cost)) cost_ += cost;
  if (exit_tier < 1 || exit_tier > static_cast<int>(tiers_.size())) return "";
  Tier& t = tiers_[exit_tier - 1];
  t.shadowed++;
  t.agreed += agreed;
  t.window.push_back(agreed);
  t.window_agreed += agreed;
  if (static_cast<int>(t.window.size()) > options_.window) {
    t.window_agreed -= t.window.front();
    t.window.pop_front();
  }
  double agreement, lower, upper;
  Bounds(t, &agreement, &lower, &upper);
  const bool judged = std::isfinite(t.expected) && static_cast<int>(t.window.size()) >= options_.min_samples;
  const bool alarm = judged && upper < t.expected - options_.margin;
  if (alarm == t.alarm) return "";
  t.alarm = alarm;
  char line[512];
  std::snprintf(line, sizeof line,
                "coe serve: shadow %s: model '%s' tier %d agrees with the last tier on %lld of its latest %zu "
                "shadowed exits (%.1f%%, %.0f%% interval [%.1f%%, %.1f%%]); the plan expected %.1f%% (margin %.1f%%)",
                alarm ? "ALARM" : "alarm cleared", model.c_str(), exit_tier, static_cast<long long>(t.window_agreed),
                t.window.size(), 100 * agreement, 100 * options_.confidence, 100 * lower, 100 * upper, 100 * t.expected,
                100 * options_.margin);
  return line;
}

void ShadowMonitor::Skipped(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  skipped_ += n;
}

nlohmann::json ShadowMonitor::Health() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json tiers = nlohmann::json::array();
  for (size_t k = 0; k < tiers_.size(); ++k) {
    const Tier& t = tiers_[k];
    double agreement, lower, upper;
    Bounds(t, &agreement, &lower, &upper);
    auto number = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
    tiers.push_back({{"tier", k + 1},
                     {"shadowed", t.shadowed},
                     {"agreed", t.agreed},
                     {"window_n", t.window.size()},
                     {"window_agreed", t.window_agreed},
                     {"agreement", number(agreement)},
                     {"lower", lower},
                     {"upper", upper},
                     {"expected", number(t.expected)},
                     {"alarm", t.alarm}});
  }
  return {{"share", options_.share},
          {"window", options_.window},
          {"confidence", options_.confidence},
          {"margin", options_.margin},
          {"min_samples", options_.min_samples},
          {"cost", cost_},
          {"skipped", skipped_},
          {"tiers", std::move(tiers)}};
}

std::string ShadowMetricsText(const std::map<std::string, nlohmann::json>& health) {
  std::string out;
  char buf[64];
  auto number = [&](double x) {
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return std::string(buf);
  };
  // One family at a time (the text format groups a family's lines), each model's lines.
  auto family = [&](const char* name, const char* type, const char* help, auto&& lines) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    for (const auto& [model, h] : health) lines(name, "model=\"" + model + "\"", h);
  };
  family("coe_shadow_cost_total", "counter", "What the shadow runs of the last tier cost (not in any request's cost).",
         [&](const char* name, const std::string& m, const nlohmann::json& h) {
           out += std::string(name) + "{" + m + "} " + number(h["cost"].get<double>()) + "\n";
         });
  family("coe_shadow_skipped_total", "counter", "Requests chosen for a shadow run that could not be made.",
         [&](const char* name, const std::string& m, const nlohmann::json& h) {
           out += std::string(name) + "{" + m + "} " + std::to_string(h["skipped"].get<int64_t>()) + "\n";
         });
  struct Series {
    const char* name;
    const char* type;
    const char* key;
    const char* help;
  };
  static constexpr Series kTierSeries[] = {
      {"coe_shadow_requests_total", "counter", "shadowed", "Shadow runs of requests that exited at the tier."},
      {"coe_shadow_agreed_total", "counter", "agreed", "Of those, the ones on which the last tier agreed."},
      {"coe_shadow_agreement", "gauge", "agreement", "The share agreed in the tier's window of latest shadow runs."},
      {"coe_shadow_agreement_lower", "gauge", "lower", "Its Clopper-Pearson interval's lower bound."},
      {"coe_shadow_agreement_upper", "gauge", "upper", "Its Clopper-Pearson interval's upper bound."},
      {"coe_shadow_expected_agreement", "gauge", "expected", "The agreement the plan expected (cascade file)."},
      {"coe_shadow_alarm", "gauge", "alarm", "1 when the upper bound is below the expected agreement - the margin."},
  };
  for (const Series& s : kTierSeries)
    family(s.name, s.type, s.help, [&](const char* name, const std::string& m, const nlohmann::json& h) {
      for (const nlohmann::json& t : h["tiers"]) {
        const nlohmann::json& v = t[s.key];
        if (v.is_null()) continue;
        const std::string value = v.is_boolean()          ? (v.get<bool>() ? "1" : "0")
                                  : v.is_number_integer() ? std::to_string(v.get<int64_t>())
                                                          : number(v.get<double>());
        out += std::string(name) + "{" + m + ",tier=\"" + std::to_string(t["tier"].get<int>()) + "\"} " + value + "\n";
      }
    });
  return out;
}

ShadowRunner::ShadowRunner(int max_queued, int workers) : max_queued_(static_cast<size_t>(std::max(1, max_queued))) {
  for (int i = 0; i < std::max(1, workers); ++i) threads_.emplace_back([this] { Loop(); });
}

ShadowRunner::~ShadowRunner() {
  Cancel();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

bool ShadowRunner::Post(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() + running_ >= max_queued_) return false;
    queue_.push_back(std::move(job));
    posted_++;
  }
  cv_.notify_all();
  return true;
}

void ShadowRunner::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and Cancel emptied the queue
    Job job = std::move(queue_.front());
    queue_.pop_front();
    running_++;
    lock.unlock();
    job.run(stop_);
    job = Job{};  // its captures (a generation) released off the lock
    lock.lock();
    running_--;
    done_++;
    cv_.notify_all();
  }
}

void ShadowRunner::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = posted_;
  cv_.wait(lock, [&] { return done_ >= target; });
}

void ShadowRunner::Cancel() {
  std::lock_guard<std::mutex> cancel(cancel_mu_);
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    dropped.swap(queue_);
  }
  for (Job& job : dropped) job.skip();
  const size_t skipped = dropped.size();
  dropped.clear();  // their captures released before the wait
  std::unique_lock<std::mutex> lock(mu_);
  done_ += skipped;
  cv_.wait(lock, [this] { return running_ == 0; });
  stop_ = false;
  cv_.notify_all();
}

}  // namespace coe
