// Turns decoded pixels into a backbone's input (MUSC-SPEC §1). The single implementation every
// caller uses, so the server, the benchmarks and the tests cannot preprocess differently.
#ifndef MUSC_CORE_PREPROCESS_H_
#define MUSC_CORE_PREPROCESS_H_

#include <ATen/core/Tensor.h>

#include "core/backbone.h"

namespace musc {

// image: H×W×C float32 with values in [0,1], C = 1 (grey, replicated to RGB) or 3 (RGB).
// Returns 3×S×S float32: resized with spec.filter, then normalised with spec.mean / spec.std.
at::Tensor PreprocessImage(const at::Tensor& image, const PreprocessSpec& spec);

}  // namespace musc

#endif  // MUSC_CORE_PREPROCESS_H_
