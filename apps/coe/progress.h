// A one-line progress display on stderr. Hand-written (30 lines) because a progress
// library would be a dependency for one line of output. Quiet unless stderr is a
// terminal and the caller did not ask for JSON.
#ifndef COE_APPS_PROGRESS_H_
#define COE_APPS_PROGRESS_H_

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace coe::app {

class Progress {
 public:
  Progress(std::string what, bool enabled) : what_(std::move(what)), enabled_(enabled && isatty(STDERR_FILENO)) {}
  ~Progress() { Done(); }

  void Update(double fraction, const std::string& detail = "") {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (fraction < 1.0 && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const int width = 30;
    int filled = static_cast<int>(fraction * width + 0.5);
    std::fprintf(stderr, "\r%s [%s%s] %3.0f%% %s\x1b[K", what_.c_str(), std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), 100 * fraction, detail.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void Done() {
    if (shown_) std::fprintf(stderr, "\r\x1b[K");
    shown_ = false;
  }

 private:
  std::string what_;
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace coe::app

#endif  // COE_APPS_PROGRESS_H_
