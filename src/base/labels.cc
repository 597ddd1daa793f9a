#include "coe/labels.h"

#include <cassert>

namespace coe {

int LabelSet::Intern(std::string_view name) {
  if (name.empty()) return kAbstain;
  auto it = index_.find(std::string(name));
  if (it != index_.end()) return it->second;
  int id = size();
  names_.emplace_back(name);
  index_.emplace(names_.back(), id);
  return id;
}

int LabelSet::Find(std::string_view name) const {
  if (name.empty()) return kAbstain;
  auto it = index_.find(std::string(name));
  return it == index_.end() ? kAbstain : it->second;
}

const std::string& LabelSet::name(int index) const {
  static const std::string kEmpty;
  if (index == kAbstain) return kEmpty;
  assert(index >= 0 && index < size());
  return names_[index];
}

}  // namespace coe
