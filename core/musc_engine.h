// The MuSc engine's public interface: decoded images in, anomaly maps and scores out.
// LibTorch-free on purpose (pimpl): the server and client include this without paying LibTorch's
// compile cost or its compile definitions.
#ifndef MUSC_CORE_MUSC_ENGINE_H_
#define MUSC_CORE_MUSC_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/engine_types.h"

namespace musc {

struct EngineState;  // The engine's shared internals (core/engine_internal.h).

// The registry's default backbone (the paper's CLIP ViT-L/14-336) and every model name known.
const char* DefaultBackboneModel();
std::vector<std::string> KnownBackboneModels();
// The LibTorch version the core was built against (e.g. "1.13.0"), for build-info reporting.
const char* LibTorchVersion();

// Features of a batch collected image by image (e.g. while a session is still receiving), scored
// once complete. Not thread-safe; one batch belongs to one caller at a time.
class ScoringBatch {
 public:
  ~ScoringBatch();
  ScoringBatch(const ScoringBatch&) = delete;
  ScoringBatch& operator=(const ScoringBatch&) = delete;

  // Preprocesses the images and runs the backbone on them. On error nothing is added.
  absl::Status Add(absl::Span<const ImageView> images);
  int64_t size() const;
  // Bytes of backbone features held for the images added so far (the part of a batch's memory
  // that grows with N until Score(); halved by ScoringOptions::token_dtype bf16/fp16).
  int64_t feature_bytes() const;
  // Runs LNAMD, MSM, maps and RsCIN over everything added. Requires at least 2 images.
  absl::StatusOr<BatchScores> Score();

 private:
  friend class MuscEngine;
  struct Impl;
  explicit ScoringBatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class MuscEngine {
 public:
  // Loads the backbone and validates the options.
  static absl::StatusOr<std::unique_ptr<MuscEngine>> Create(const EngineOptions& options);
  ~MuscEngine();
  MuscEngine(const MuscEngine&) = delete;
  MuscEngine& operator=(const MuscEngine&) = delete;

  // A batch scored with options.scoring.
  std::unique_ptr<ScoringBatch> NewBatch();
  // A batch scored with `scoring` (validated: InvalidArgument if malformed).
  absl::StatusOr<std::unique_ptr<ScoringBatch>> NewBatch(const ScoringOptions& scoring);
  // One-shot: NewBatch, Add(images), Score.
  absl::StatusOr<BatchScores> Score(absl::Span<const ImageView> images);

  const std::string& backbone_name() const;
  int64_t input_size() const;
  const EngineOptions& options() const;

 private:
  // Batches and lines keep the engine's state alive while they exist; lines reach it through
  // this internal accessor (core/engine_internal.h).
  friend std::shared_ptr<EngineState> SharedEngineState(const MuscEngine& engine);
  explicit MuscEngine(std::unique_ptr<EngineState> state);
  std::shared_ptr<EngineState> state_;
};

}  // namespace musc

#endif  // MUSC_CORE_MUSC_ENGINE_H_
