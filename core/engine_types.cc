#include "core/engine_types.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace musc {

absl::StatusOr<NumericType> ParseNumericType(absl::string_view name) {
  if (name == "fp32") return NumericType::kFloat32;
  if (name == "bf16") return NumericType::kBFloat16;
  if (name == "fp16") return NumericType::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "' is invalid: expected fp32, bf16 or fp16"));
}

const char* NumericTypeName(NumericType type) {
  switch (type) {
    case NumericType::kFloat32:
      return "fp32";
    case NumericType::kBFloat16:
      return "bf16";
    case NumericType::kFloat16:
      return "fp16";
  }
  return "unknown";
}

absl::Status ValidateScoringOptions(const ScoringOptions& o) {
  if (o.degrees.empty()) return absl::InvalidArgumentError("no LNAMD degrees given");
  for (int64_t r : o.degrees) {
    if (r < 1 || r % 2 == 0 || r > 31) {
      return absl::InvalidArgumentError(
          absl::StrCat("LNAMD degree ", r, " is invalid: degrees must be odd, 1..31"));
    }
  }
  if (!(o.interval_low >= 0.0 && o.interval_low < o.interval_high && o.interval_high <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("MSM interval [", o.interval_low, ", ",
                                                   o.interval_high,
                                                   ") is invalid: need 0 <= low < high <= 1"));
  }
  for (int64_t k : o.rscin_windows) {
    if (k < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("RsCIN window ", k, " is invalid: windows must be >= 0 (0 = off)"));
    }
  }
  if (o.block_budget_bytes < (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("block budget ", o.block_budget_bytes, " bytes is below the 1 MiB minimum"));
  }
  if (o.approximate_neighbours < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("approximate_neighbours ", o.approximate_neighbours,
                     " is invalid: 0 = exact, M >= 1 = score against M other images"));
  }
  return absl::OkStatus();
}

}  // namespace musc
