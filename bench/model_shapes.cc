#include "bench/model_shapes.h"

#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "core/backbones/backbone.h"
#include "core/backbones/backbone_registry.h"
#include "core/backbones/model_registry.h"
#include "core/torch_status.h"

namespace musc {

absl::StatusOr<std::vector<LayerShape>> MsmShapesOf(const BackboneOptions& backbone) {
  const ModelSpec* spec = FindModel(backbone.model);
  if (spec == nullptr) {
    return absl::NotFoundError(absl::StrCat("no registry model '", backbone.model, "'"));
  }
  if (spec->kind == BackboneKind::kVit) {
    absl::StatusOr<VitConfig> config = ResolveVitConfig(*spec, backbone);
    if (!config.ok()) return config.status();
    const int64_t grid = config->input_size / config->patch_size;
    return std::vector<LayerShape>(config->feature_blocks.size(), {grid * grid, config->width});
  }
  absl::StatusOr<std::unique_ptr<Backbone>> network = CreateBackbone(backbone);
  if (!network.ok()) return network.status();
  const int64_t s = (*network)->preprocess_spec().input_size;
  try {
    c10::InferenceMode guard;
    const BackboneFeatures features = (*network)->Forward(at::zeros({1, 3, s, s}));
    const at::Tensor& first = features.layer_maps.front();
    std::vector<LayerShape> shapes;
    for (const at::Tensor& layer : features.layer_maps) {
      shapes.push_back({first.size(2) * first.size(3), layer.size(1)});
    }
    return shapes;
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "forward pass");
  }
}

}  // namespace musc
