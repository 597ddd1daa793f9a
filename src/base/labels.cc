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

std::string NormalizeLabel(std::string_view name) {
  const size_t b = name.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  const size_t e = name.find_last_not_of(" \t");
  std::string out(name.substr(b, e - b + 1));
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace coe
