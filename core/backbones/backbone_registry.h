// Model name → backbone instance. The one place that knows which models exist.
#ifndef MUSC_CORE_BACKBONES_BACKBONE_REGISTRY_H_
#define MUSC_CORE_BACKBONES_BACKBONE_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backbones/backbone.h"
#include "core/engine_types.h"

namespace musc {

// Builds the backbone `options.model` names, loading its weights. Errors name the model and file.
absl::StatusOr<std::unique_ptr<Backbone>> CreateBackbone(const BackboneOptions& options);

// Names CreateBackbone accepts.
std::vector<std::string> RegisteredModels();

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_BACKBONE_REGISTRY_H_
