// Pieces of the engine shared by batch scoring (musc_engine.cc) and line mode (line_scorer.cc).
// Internal: includes LibTorch headers, so only core sources, tests and benchmarks include it.
#ifndef MUSC_CORE_ENGINE_INTERNAL_H_
#define MUSC_CORE_ENGINE_INTERNAL_H_

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/backbones/backbone.h"
#include "core/engine_types.h"
#include "core/musc/mutual_scoring.h"
#include "core/musc_engine.h"

namespace musc {

// What an engine shares with its batches and lines: they keep it alive while they exist.
struct EngineState {
  EngineOptions options;
  std::unique_ptr<Backbone> backbone;
  at::Device device = at::kCPU;  // Parsed options.device; the backbone's weights live there.
};

// The engine's state, for the line scorer (defined in musc_engine.cc).
std::shared_ptr<EngineState> SharedEngineState(const MuscEngine& engine);

// Blocks until the work queued on t's device up to t is done (a no-op for CPU tensors), so that
// stage timings on an asynchronous accelerator measure the stage rather than its launch.
void WaitForDevice(const at::Tensor& t);

// InvalidArgument naming the image (by its position in the call) when it cannot be scored.
absl::Status ValidateImage(const ImageView& image, size_t index);
// H×W×C float32 in [0,1] (a copy: the caller's buffer is only borrowed for the call).
at::Tensor ToFloatImage(const ImageView& image);

// Preprocesses `images` (validated; one backbone batch) on the host, moves them to the engine's
// device and runs the backbone there: the features are on the device, at least one layer. Adds
// the preprocessing time and the backbone's (its launch, on an asynchronous accelerator) to
// `spent`. Under c10::InferenceMode; throws c10::Error.
BackboneFeatures RunBackbone(EngineState& engine, absl::Span<const ImageView> images,
                             StageTimings& spent);

// The LibTorch type of a ScoringOptions element type.
at::ScalarType ScalarTypeOf(NumericType type);

// The MSM options of `scoring` for mutual scoring on `device`, for batches and lines alike.
// Exact: approximate_neighbours depends on the batch's size and is the batch's to set. The GEMM
// type is scoring.gemm_dtype on an accelerator and fp32 on the host, the only type CPU MSM
// multiplies in (an engine refuses anything else on a CPU device; a line's bank always lives on
// the host).
MutualScoringOptions MsmOptionsFor(const ScoringOptions& scoring, const at::Device& device);

}  // namespace musc

#endif  // MUSC_CORE_ENGINE_INTERNAL_H_
