// darknet-tiny (ImageNet-1k, ml5's TensorFlow.js export): the one pretrained network reachable on
// machines without internet. A weak backbone, but real features on real images.
#ifndef MUSC_CORE_DARKNET_TINY_H_
#define MUSC_CORE_DARKNET_TINY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/backbone.h"
#include "core/musc_engine.h"

namespace musc {

// options.weights_path: the directory holding model.json and its shard files.
absl::StatusOr<std::unique_ptr<Backbone>> CreateDarknetTinyBackbone(const BackboneOptions& options);

}  // namespace musc

#endif  // MUSC_CORE_DARKNET_TINY_H_
