#include "server/yaml_keys.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace musc {

absl::Status CheckKeys(const YAML::Node& node, const std::set<std::string>& allowed,
                       const std::string& where, absl::string_view hint) {
  if (!node.IsMap()) return absl::InvalidArgumentError(absl::StrCat(where, ": expected a mapping"));
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    if (allowed.count(key) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown key '", key, "' (",
                       hint.empty() ? absl::StrCat("allowed: ", absl::StrJoin(allowed, ", "))
                                    : std::string(hint),
                       ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace musc
