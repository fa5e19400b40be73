// Pieces of the engine shared by batch scoring (musc_engine.cc) and line mode (line_scorer.cc).
// Internal: includes LibTorch headers, so only core sources and tests include it.
#ifndef MUSC_CORE_ENGINE_INTERNAL_H_
#define MUSC_CORE_ENGINE_INTERNAL_H_

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "core/backbones/backbone.h"
#include "core/musc_engine.h"
#include "core/stopwatch.h"

namespace musc {

struct MuscEngine::Impl {
  EngineOptions options;
  std::unique_ptr<Backbone> backbone;
  at::Device device = at::kCPU;  // Parsed options.device; the backbone's weights live there.
};

// Blocks until the work queued on t's device up to t is done (a no-op for CPU tensors), so that
// stage timings on an asynchronous accelerator measure the stage rather than its launch.
void WaitForDevice(const at::Tensor& t);

// InvalidArgument naming the image (by its position in the call) when it cannot be scored.
absl::Status ValidateImage(const ImageView& image, size_t index);
// H×W×C float32 in [0,1] (a copy: the caller's buffer is only borrowed for the call).
at::Tensor ToFloatImage(const ImageView& image);
// LibTorch's exceptions stop at the core's edge as Internal errors naming the stage.
absl::Status FromTorchError(const c10::Error& e, const char* stage);

}  // namespace musc

#endif  // MUSC_CORE_ENGINE_INTERNAL_H_
