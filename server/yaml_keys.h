// Validation of the keys of a YAML mapping, shared by every configuration file the server reads
// (products, tokens): a misspelt key is an error that names it, never silently ignored.
#ifndef MUSC_SERVER_YAML_KEYS_H_
#define MUSC_SERVER_YAML_KEYS_H_

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace musc {

// OK when `node` is a mapping whose keys are all in `allowed`. Otherwise INVALID_ARGUMENT,
// "<where>: expected a mapping" or, for the first key not allowed,
// "<where>: unknown key '<key>' (<hint>)", where the hint is `hint` when given and
// "allowed: <the allowed keys, sorted, comma-separated>" otherwise.
absl::Status CheckKeys(const YAML::Node& node, const std::set<std::string>& allowed,
                       const std::string& where, absl::string_view hint = {});

}  // namespace musc

#endif  // MUSC_SERVER_YAML_KEYS_H_
