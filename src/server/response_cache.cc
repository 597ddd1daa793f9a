#include "server/response_cache.h"

namespace coe {

size_t ResponseCache::Bytes(const Entry& e) {
  const ChatReply& r = e.second;
  return e.first.size() + r.id.size() + r.model.size() + r.content.size() + r.finish_reason.size() + r.answer.size() +
         kEntryOverhead;
}

std::optional<ChatReply> ResponseCache::Get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);  // iterators (and the key's view) stay valid
  return it->second->second;
}

void ResponseCache::EraseLocked(std::list<Entry>::iterator it) {
  bytes_ -= Bytes(*it);
  index_.erase(std::string_view(it->first));
  lru_.erase(it);
}

void ResponseCache::Put(const std::string& key, ChatReply reply) {
  Entry e{key, std::move(reply)};
  const size_t need = Bytes(e);
  if (need > capacity_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) EraseLocked(it->second);
  while (bytes_ + need > capacity_ && !lru_.empty()) {
    EraseLocked(std::prev(lru_.end()));
    ++evictions_;
  }
  lru_.push_front(std::move(e));
  index_.emplace(std::string_view(lru_.front().first), lru_.begin());
  bytes_ += need;
}

void ResponseCache::Clear() {
  std::list<Entry> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    index_.clear();
    dropped.swap(lru_);
    bytes_ = 0;
  }
}  // `dropped` freed here, outside the lock

CacheStats ResponseCache::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {hits_, misses_, evictions_, bytes_, lru_.size(), capacity_};
}

}  // namespace coe
