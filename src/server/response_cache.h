// Internal: the exact-request response cache of the OpenAI front door (coe serve
// --cache-mb): replies by the key of their request (the served cascade and the
// canonical request: chat_route.cc's CacheKey), the least recently used evicted first
// so that the keys and replies held stay within a number of bytes.
//
// What a stored entry counts: its key's bytes, its reply's strings' bytes and
// kEntryOverhead for the bookkeeping around them. An entry larger than the whole
// cache is not kept.
//
// Thread safety: every method locks one mutex (held for a map lookup and a list
// splice, never while a reply is built or sent). Two identical requests that miss at
// once both run; the second answer stored replaces the first.
#ifndef COE_SERVER_RESPONSE_CACHE_H_
#define COE_SERVER_RESPONSE_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "coe/protocol.h"

namespace coe {

struct CacheStats {
  uint64_t hits = 0, misses = 0;  // Get()s that found their key, and those that did not
  uint64_t evictions = 0;         // entries dropped for room
  size_t bytes = 0, entries = 0, capacity = 0;
};

class ResponseCache {
 public:
  static constexpr size_t kEntryOverhead = 256;

  // capacity_bytes 0: off (nothing is kept; Get always misses).
  explicit ResponseCache(size_t capacity_bytes) : capacity_(capacity_bytes) {}
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  bool enabled() const { return capacity_ > 0; }
  // The reply stored under `key` (now the most recently used), counted as a hit; or
  // nullopt, counted as a miss.
  std::optional<ChatReply> Get(const std::string& key);
  // Stores `reply` under `key` (replacing an entry of that key), evicting the least
  // recently used entries until it fits.
  void Put(const std::string& key, ChatReply reply);
  // Drops every entry (not counted as evictions): a reload's (Server::Reload).
  void Clear();
  CacheStats Stats() const;

 private:
  using Entry = std::pair<std::string, ChatReply>;  // key, reply
  static size_t Bytes(const Entry& e);
  void EraseLocked(std::list<Entry>::iterator it);

  const size_t capacity_;
  mutable std::mutex mu_;  // guards everything below
  std::list<Entry> lru_;   // the most recently used first
  // Views of the keys in lru_'s nodes (a list node never moves).
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
  size_t bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

}  // namespace coe

#endif  // COE_SERVER_RESPONSE_CACHE_H_
