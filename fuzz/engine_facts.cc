// The three engine functions server/product_config.cc calls, for the products-config fuzzer only.
// The real ones live in core/musc_engine.cc, which needs LibTorch (left out of the sanitizer
// build). What the fuzzer exercises is the parser; these stand-ins keep its behaviour on model
// names and leave scoring-option validation to the engine's own tests (tests/core).
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "core/musc_engine.h"

namespace musc {

// core/backbones/model_registry.h: the paper's default backbone.
const char* DefaultBackboneModel() { return "clip-vit-l-14-336"; }

// MUSC_MODEL_NAMES: the name column of core/models.tsv, which tests/core checks against the
// registry the real function returns.
std::vector<std::string> KnownBackboneModels() { return absl::StrSplit(MUSC_MODEL_NAMES, ','); }

absl::Status ValidateScoringOptions(const ScoringOptions&) { return absl::OkStatus(); }

}  // namespace musc
