#include "core/backbone_registry.h"

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/darknet_tiny.h"
#include "core/vision_transformer.h"

namespace musc {
namespace {

absl::StatusOr<std::unique_ptr<Backbone>> CreateRandomTinyVit(const BackboneOptions& options) {
  VitConfig config = TinyVitConfig();
  if (options.input_size > 0) config.input_size = options.input_size;
  if (!options.layers.empty()) config.feature_blocks = options.layers;
  if (config.input_size % config.patch_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.model, ": input size ", config.input_size,
                     " is not a multiple of the patch size ", config.patch_size));
  }
  for (int64_t b : config.feature_blocks) {
    if (b < 1 || b > config.depth) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.model, ": layer ", b, " is outside 1..", config.depth));
    }
  }
  try {
    return std::unique_ptr<Backbone>(new VisionTransformer(options.model, config,
                                                           RandomVitWeights(config, options.seed),
                                                           ClipPreprocessSpec(config.input_size)));
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(e.what_without_backtrace());
  }
}

}  // namespace

std::vector<std::string> RegisteredModels() { return {"vit-tiny-random", "darknet-tiny"}; }

absl::StatusOr<std::unique_ptr<Backbone>> CreateBackbone(const BackboneOptions& options) {
  if (options.model == "vit-tiny-random") return CreateRandomTinyVit(options);
  if (options.model == "darknet-tiny") return CreateDarknetTinyBackbone(options);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backbone model '", options.model,
                   "'; known: ", absl::StrJoin(RegisteredModels(), ", ")));
}

}  // namespace musc
