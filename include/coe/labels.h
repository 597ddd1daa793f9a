// coe/labels.h: class labels as small integers.
//
// Members answer with string tokens ("A", "cat", "7"); coe interns them into a
// LabelSet and works with their indices. Labels compare as exact strings. Index
// kAbstain (-1) means "no label": an abstention or an unknown truth.
//
// Thread safety: a LabelSet is a value; Intern() mutates it, so share a LabelSet
// across threads only for reading (Find, name).
#ifndef COE_LABELS_H_
#define COE_LABELS_H_

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace coe {

inline constexpr int kAbstain = -1;

class LabelSet {
 public:
  // Returns the index of `name`, adding it if new. An empty name is kAbstain.
  int Intern(std::string_view name);
  // Returns the index of `name`, or kAbstain if it is empty or unknown.
  int Find(std::string_view name) const;
  // The name of label `index` (0 <= index < size()); "" for kAbstain.
  const std::string& name(int index) const;
  int size() const { return static_cast<int>(names_.size()); }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> names_;
  std::unordered_map<std::string, int> index_;
};

// A label as --normalize-labels compares it: surrounding spaces removed, ASCII
// letters lower-cased ("Cat " -> "cat").
std::string NormalizeLabel(std::string_view name);

}  // namespace coe

#endif  // COE_LABELS_H_
