// Internal: words in flags and settings: comma lists, and "did you mean" for unknown
// words (commands, flags, configuration keys).
#ifndef COE_BASE_WORDS_H_
#define COE_BASE_WORDS_H_

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace coe {

// The items of a comma-separated list, empty ones included ("a,,b" -> a, "", b).
inline std::vector<std::string> SplitCommas(std::string_view text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    items.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

// Levenshtein distance (hand-written: a dozen lines, no library needed).
inline size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

// The closest of `names` to `word` when it is close enough to be a typo (within a
// third of its length, at least 2 edits; a prefix either way counts as 1), else "".
template <typename Names>
std::string ClosestWord(std::string_view word, const Names& names) {
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& name : names) {
    const std::string_view n(name);
    const size_t d = n.starts_with(word) || word.starts_with(n) ? 1 : EditDistance(word, n);
    if (d < best_d) best_d = d, best = std::string(n);
  }
  return best;
}

}  // namespace coe

#endif  // COE_BASE_WORDS_H_
