// Model name → backbone instance. The one place that knows which models exist.
#ifndef MUSC_CORE_BACKBONE_REGISTRY_H_
#define MUSC_CORE_BACKBONE_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backbone.h"
#include "core/musc_engine.h"

namespace musc {

// Builds the backbone `options.model` names, loading its weights. Errors name the model and file.
absl::StatusOr<std::unique_ptr<Backbone>> CreateBackbone(const BackboneOptions& options);

// Names CreateBackbone accepts.
std::vector<std::string> RegisteredModels();

}  // namespace musc

#endif  // MUSC_CORE_BACKBONE_REGISTRY_H_
