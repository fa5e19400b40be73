#include "core/backbones/backbone_registry.h"

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "core/backbones/checkpoint_io.h"
#include "core/backbones/darknet_tiny.h"
#include "core/backbones/model_registry.h"
#include "core/backbones/vision_transformer.h"
#include "core/backbones/vit_weight_names.h"
#include "core/torch_status.h"

namespace musc {
namespace {

absl::Status WithModel(const std::string& model, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(model, ": ", status.message()));
}

// Reads the vision tower of `path` in whichever naming it uses, as canonical weights.
absl::StatusOr<TensorMap> LoadVitWeights(const ModelSpec& spec, const VitConfig& config,
                                         const std::string& path) {
  // CLIP files also hold a text tower as large as a ViT-B; every CLIP vision-tower name starts
  // with "vis" (visual., visual_projection, vision_model.), so only those are converted.
  const bool clip = config.family == VitFamily::kOpenAiClip;
  absl::StatusOr<TensorMap> tensors = ReadCheckpoint(path, clip ? "vis" : "");
  if (!tensors.ok()) return WithModel(spec.name, tensors.status());
  absl::StatusOr<CanonicalVitWeights> canonical = CanonicalizeVitCheckpoint(*tensors, config);
  if (!canonical.ok() && clip) {
    // A prefixed state_dict ("module.visual.…"): read everything and look again.
    tensors = ReadCheckpoint(path);
    if (!tensors.ok()) return WithModel(spec.name, tensors.status());
    canonical = CanonicalizeVitCheckpoint(*tensors, config);
  }
  if (!canonical.ok()) {
    return WithModel(spec.name,
                     absl::Status(canonical.status().code(),
                                  absl::StrCat(path, ": ", canonical.status().message())));
  }
  return std::move(canonical->weights);
}

}  // namespace

std::vector<std::string> RegisteredModels() {
  std::vector<std::string> names;
  for (const ModelSpec& s : ModelRegistry()) names.push_back(s.name);
  return names;
}

absl::StatusOr<std::unique_ptr<Backbone>> CreateBackbone(const BackboneOptions& options) {
  const ModelSpec* spec = FindModel(options.model);
  if (spec == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown backbone model '", options.model,
                     "'; known: ", absl::StrJoin(RegisteredModels(), ", ")));
  }
  if (spec->kind == BackboneKind::kDarknetTiny) return CreateDarknetTinyBackbone(options);

  MUSC_ASSIGN_OR_RETURN(VitConfig config, ResolveVitConfig(*spec, options));
  try {
    TensorMap weights;
    if (spec->random_weights || options.random_weights) {
      weights = RandomVitWeights(config, options.seed);
    } else {
      MUSC_ASSIGN_OR_RETURN(std::string path, ResolveWeightsFile(*spec, options.weights_path));
      MUSC_ASSIGN_OR_RETURN(TensorMap loaded, LoadVitWeights(*spec, config, path));
      weights = std::move(loaded);
    }
    return std::unique_ptr<Backbone>(new VisionTransformer(
        options.model, config, std::move(weights), PreprocessOf(*spec, config.input_size)));
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "", absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace musc
