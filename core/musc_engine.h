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

namespace musc {

enum class PixelType { kUint8, kUint16, kFloat32 };

// A decoded image, row-major H×W×C, tightly packed, C = 1 (grey) or 3 (RGB). Caller-owned; only
// read during the call it is passed to. Float pixels are expected in [0, 1].
struct ImageView {
  const void* data = nullptr;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 3;
  PixelType type = PixelType::kUint8;
};

// The registry's default backbone (the paper's CLIP ViT-L/14-336) and every model name known.
const char* DefaultBackboneModel();
std::vector<std::string> KnownBackboneModels();
// The LibTorch version the core was built against (e.g. "1.13.0"), for build-info reporting.
const char* LibTorchVersion();

struct BackboneOptions {
  // Registry name: "vit-tiny-random" (seeded random tiny CLIP-shaped ViT, for tests and demos).
  std::string model = "vit-tiny-random";
  std::string weights_path;     // File or directory holding the weights, when the model has any.
  uint64_t seed = 0;            // Random-weight models only.
  int64_t input_size = 0;       // S; 0 = the model's default.
  std::vector<int64_t> layers;  // 1-based feature layers; empty = the model's default.
  // ViT models: seeded random weights instead of a file, for benchmarks (a forward pass costs the
  // same whatever the values). Never for scoring: the features would be meaningless.
  bool random_weights = false;
};

// How a batch is scored. Per batch, so products sharing a backbone share one engine.
struct ScoringOptions {
  std::vector<int64_t> degrees{1, 3, 5};  // LNAMD aggregation degrees r (odd).
  double interval_low = 0.0;              // MSM interval over the sorted N−1 distances.
  double interval_high = 0.3;
  std::vector<int64_t> rscin_windows{1, 2, 3};  // Empty or containing 0: RsCIN off.
  // Bound on MSM's extra memory (similarity tiles + distance table); see core/mutual_scoring.h.
  int64_t block_budget_bytes = int64_t{512} << 20;
  bool keep_maps = true;  // Return the S×S anomaly maps (else only patch grids + scores).
  // Approximate MSM for large batches on small machines: each image is scored against M others
  // chosen deterministically and spread across the batch (offsets 1 + ⌊k·(N−1)/M⌋), cost O(N·M)
  // instead of O(N²). 0 = exact MuSc (all N−1 others); M ≥ N−1 is exact as well.
  int64_t approximate_neighbours = 0;
  // How the backbone's patch tokens are stored between Add() and Score(): "fp32", "bf16" or
  // "fp16". Arithmetic stays fp32 (tokens are widened per layer); bf16/fp16 halve the storage
  // that grows with N at the price of rounding the features (accuracy: docs/PERFORMANCE.md).
  std::string token_dtype = "fp32";
  // Element type of MSM's similarity GEMMs: "fp32", or "bf16"/"fp16" on an accelerator (the
  // engine's device), where half-precision GEMMs run many times faster. On CPU only fp32.
  std::string gemm_dtype = "fp32";
};

// Checks degrees, interval, windows and budget; InvalidArgument says which and why.
absl::Status ValidateScoringOptions(const ScoringOptions& options);

struct EngineOptions {
  BackboneOptions backbone;
  ScoringOptions scoring;           // Used by NewBatch() without arguments.
  int64_t backbone_batch_size = 8;  // Images per backbone forward pass.
  int intra_op_threads = 0;         // 0 = the machine's hardware concurrency.
  // Where the backbone, LNAMD, MSM and maps run: "cpu", "cuda" or "cuda:K" (a LibTorch built
  // with CUDA, see -DMUSC_CUDA). Images are preprocessed on the CPU and copied asynchronously
  // from pinned memory; results come back to the host.
  std::string device = "cpu";
};

// Wall-clock seconds spent in each stage for one batch.
struct StageTimings {
  double preprocess_s = 0;
  double backbone_s = 0;
  double lnamd_s = 0;
  double msm_s = 0;
  double maps_s = 0;
  double rscin_s = 0;
  double total() const { return preprocess_s + backbone_s + lnamd_s + msm_s + maps_s + rscin_s; }
};

struct BatchScores {
  int64_t num_images = 0;
  int64_t grid_h = 0;  // Patch-score grid (the first feature layer's grid).
  int64_t grid_w = 0;
  int64_t map_size = 0;             // S: maps are S×S.
  std::vector<float> patch_scores;  // N×grid_h×grid_w, mean over layers and degrees.
  std::vector<float> maps;          // N×S×S anomaly maps (empty unless keep_maps).
  std::vector<float> raw_scores;    // N: maximum of each map; comparable across batches.
  std::vector<float> final_scores;  // N: after RsCIN; relative to this batch.
  // True when the batch was too small for the configured interval (N < 5 at 30 %) and each patch
  // was scored against its single nearest image instead. Scores are then less reliable.
  bool small_batch = false;
  StageTimings timings;
};

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
  friend class ScoringBatch;  // A batch keeps the engine's state alive while it exists.
  friend class LineScorer;    // So does a line.
  struct Impl;
  explicit MuscEngine(std::unique_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace musc

#endif  // MUSC_CORE_MUSC_ENGINE_H_
