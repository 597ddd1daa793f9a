// A streamed reply's body between its producer and the transport (http_transport.h).
#include "server/http_transport.h"

namespace coe::http {

bool ReplyStream::Write(std::string_view data) {
  std::function<void()> wake;
  {
    std::unique_lock<std::mutex> lock(mu_);
    room_.wait(lock, [&] { return closed_ || pending_.size() < kMaxBuffered; });
    if (closed_ || finished_) return false;
    pending_ += data;
    written_ += data.size();
    if (waiting_) {
      waiting_ = false;
      wake = waker_;
    }
  }
  if (wake) wake();  // outside the lock: it posts to the connection's strand
  return true;
}

void ReplyStream::Finish(int status, std::string_view tail) {
  std::vector<std::function<void(int, size_t)>> hooks;
  size_t written = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    hooks.swap(hooks_);
    written = written_ + tail.size();
  }
  for (auto& hook : hooks) hook(status, written);
  std::function<void()> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    if (closed_) return;
    pending_ += tail;
    written_ += tail.size();
    if (waiting_) {
      waiting_ = false;
      wake = waker_;
    }
  }
  if (wake) wake();
}

void ReplyStream::AtEnd(std::function<void(int status, size_t bytes)> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  hooks_.push_back(std::move(hook));
}

ReplyStream::Next ReplyStream::Take(std::string* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return Next::kClosed;
  if (!pending_.empty()) {
    out->clear();
    out->swap(pending_);
    room_.notify_all();
    return Next::kData;
  }
  if (ended_) return Next::kEnd;
  waiting_ = true;
  return Next::kNone;
}

void ReplyStream::Attach(std::function<void()> waker) {
  std::lock_guard<std::mutex> lock(mu_);
  waker_ = std::move(waker);
}

void ReplyStream::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  pending_.clear();
  waker_ = nullptr;
  room_.notify_all();
}

}  // namespace coe::http
