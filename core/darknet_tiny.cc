// Placeholder until the darknet-tiny backbone lands (being written now).
#include "core/darknet_tiny.h"

namespace musc {
absl::StatusOr<std::unique_ptr<Backbone>> CreateDarknetTinyBackbone(const BackboneOptions&) {
  return absl::UnimplementedError("darknet-tiny: not built yet");
}
}  // namespace musc
