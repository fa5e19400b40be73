// The engine's plain value types: images in, options, scores and timings out. No LibTorch, no
// facade: the backbones, the image library and the server's configuration depend on these values
// without depending on the engine (core/musc_engine.h) itself. Their functions (engine_types.cc)
// are LibTorch-free too, so the products-config fuzzer runs the real option parsing.
#ifndef MUSC_CORE_ENGINE_TYPES_H_
#define MUSC_CORE_ENGINE_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace musc {

enum class PixelType { kUint8, kUint16, kFloat32 };

// Element types a product may choose for the engine's features and GEMMs, named "fp32", "bf16"
// and "fp16" in configurations, command lines and the protocol.
enum class NumericType { kFloat32, kBFloat16, kFloat16 };

// The type named `name`; InvalidArgument ("'NAME' is invalid: expected fp32, bf16 or fp16")
// otherwise, for the caller to prefix with the option it was reading.
absl::StatusOr<NumericType> ParseNumericType(absl::string_view name);
// "fp32", "bf16" or "fp16".
const char* NumericTypeName(NumericType type);

// A decoded image, row-major H×W×C, tightly packed, C = 1 (grey) or 3 (RGB). Caller-owned; only
// read during the call it is passed to. Float pixels are expected in [0, 1].
struct ImageView {
  const void* data = nullptr;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 3;
  PixelType type = PixelType::kUint8;
};

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
  // Bound on MSM's extra memory (similarity tiles + distance table); see
  // core/musc/mutual_scoring.h.
  int64_t block_budget_bytes = int64_t{512} << 20;
  bool keep_maps = true;  // Return the S×S anomaly maps (else only patch grids + scores).
  // Approximate MSM for large batches on small machines: each image is scored against M others
  // chosen deterministically and spread across the batch (offsets 1 + ⌊k·(N−1)/M⌋), cost O(N·M)
  // instead of O(N²). 0 = exact MuSc (all N−1 others); M ≥ N−1 is exact as well.
  int64_t approximate_neighbours = 0;
  // How the backbone's patch tokens are stored between Add() and Score(). Arithmetic stays fp32
  // (tokens are widened per layer); bf16/fp16 halve the storage that grows with N at the price
  // of rounding the features (accuracy: docs/PERFORMANCE.md).
  NumericType token_dtype = NumericType::kFloat32;
  // Element type of MSM's similarity GEMMs: fp32, or bf16/fp16 on an accelerator (the engine's
  // device), where half-precision GEMMs run many times faster. On CPU only fp32.
  NumericType gemm_dtype = NumericType::kFloat32;
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

}  // namespace musc

#endif  // MUSC_CORE_ENGINE_TYPES_H_
