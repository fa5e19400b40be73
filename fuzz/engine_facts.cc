// Stand-ins for the products-config fuzzer only: the two engine functions server/product_config.cc
// calls whose real definitions (core/musc_engine.cc) need LibTorch, which the sanitizer build
// leaves out. They keep the parser's behaviour on model names. The scoring options' parsing and
// validation (core/engine_types.cc) are LibTorch-free and compiled into the fuzzer as they are.
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

}  // namespace musc
