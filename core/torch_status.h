// The core's exception edge: where LibTorch's exceptions become absl::Status.
//
// LibTorch reports every failure — a TORCH_CHECK on a shape, a failed allocation, an unusable
// device — by throwing c10::Error. The core's interface reports failures as absl::Status, so that
// no exception ever reaches the server (which is built without LibTorch's headers and could not
// even name the type). The torch-level building blocks (core/musc/*, Backbone::Forward,
// PreprocessImage, the weight converters) throw freely: they are compositions of ATen ops, and
// plumbing a Status through every op would only repeat what TORCH_CHECK already says. The public
// entry points that run them catch c10::Error once, around all of their LibTorch work, and turn
// it into a Status naming what they were doing:
//   core/musc_engine.cc   MuscEngine::Create (device name, moving the backbone to the device),
//                         ScoringBatch::Add, ScoringBatch::Score
//   core/line_scorer.cc   LineScorer::Extract, ::Score, ::ScoreBankAsBatch, ::Admit
//   core/backbones/       CreateBackbone (backbone_registry.cc), CreateDarknetTinyNetwork
//                         (darknet_tiny.cc), the checkpoint readers and writer (checkpoint_io.cc)
// Callers of the building blocks themselves (tests, benchmarks) catch on their own. Only
// c10::Error is caught, never `...`: any other exception is a bug and should terminate loudly.
#ifndef MUSC_CORE_TORCH_STATUS_H_
#define MUSC_CORE_TORCH_STATUS_H_

#include <c10/util/Exception.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace musc {

// A Status with `code` and the message "CONTEXT: WHAT" (just WHAT when context is empty), WHAT
// being LibTorch's message without its C++ backtrace.
absl::Status TorchErrorToStatus(const c10::Error& error, absl::string_view context,
                                absl::StatusCode code = absl::StatusCode::kInternal);

// Runs fn() — returning absl::Status or absl::StatusOr<T> — and returns its result, or a c10::Error
// it throws as TorchErrorToStatus(error, context, code).
template <typename Fn>
auto CatchTorchErrors(absl::string_view context, Fn&& fn,
                      absl::StatusCode code = absl::StatusCode::kInternal) -> decltype(fn()) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, context, code);
  }
}

}  // namespace musc

#endif  // MUSC_CORE_TORCH_STATUS_H_
