// Turns decoded pixels into a backbone's input (MUSC-SPEC §1). The single implementation every
// caller uses, so the server, the benchmarks and the tests cannot preprocess differently.
#ifndef MUSC_CORE_BACKBONES_PREPROCESS_H_
#define MUSC_CORE_BACKBONES_PREPROCESS_H_

#include <ATen/core/Tensor.h>

#include "core/backbones/backbone.h"

namespace musc {

// image: H×W×C float32 with values in [0,1], C = 1 (grey, replicated to RGB) or 3 (RGB).
// Returns 3×S×S float32: resized with spec.filter (antialiased when shrinking, like PIL, which the
// reference uses), clamped to [0,1], then normalised with spec.mean / spec.std. When the source
// had 8 bits per channel, the resized pixels are rounded to 8 bits as PIL does before ToTensor.
at::Tensor PreprocessImage(const at::Tensor& image, const PreprocessSpec& spec,
                           bool source_is_8bit = false);

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_PREPROCESS_H_
