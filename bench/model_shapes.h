// What mutual scoring multiplies for a backbone: the (L, C) of each feature layer.
#ifndef MUSC_BENCH_MODEL_SHAPES_H_
#define MUSC_BENCH_MODEL_SHAPES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine_types.h"

namespace musc {

struct LayerShape {
  int64_t patches = 0;   // L: the first layer's grid, to which LNAMD resizes every layer.
  int64_t channels = 0;  // C of this layer.
};

// Per feature layer of `backbone`: analytic for ViTs (no weights needed); for darknet-tiny, whose
// layers differ in channels and grid, read from one forward pass of a blank image through the
// real network (backbone.weights_path must hold it).
absl::StatusOr<std::vector<LayerShape>> MsmShapesOf(const BackboneOptions& backbone);

}  // namespace musc

#endif  // MUSC_BENCH_MODEL_SHAPES_H_
