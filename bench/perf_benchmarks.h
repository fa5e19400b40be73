// Issue 8's benchmarks: each measures a ratio within one run (the machine is shared and its
// absolute speed drifts) and ends with one machine-readable line.
//   backbone: ViT forward FLOP/s vs an fp32 GEMM       → backbone_vs_gemm_ratio=X.XX
//   memory:   MSM peak RSS vs N at fixed L, C          → memory_slope_vs_token_bytes=X.XX ...
//   approx:   approximate MSM (M neighbours) vs exact  → approx_speedup=X.XX
//   scaling:  whole-batch time vs N through the engine → scaling_exponent=X.XX
#ifndef MUSC_BENCH_PERF_BENCHMARKS_H_
#define MUSC_BENCH_PERF_BENCHMARKS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/musc_engine.h"

namespace musc {

struct BackboneBenchmarkOptions {
  std::string model = "clip-vit-b-16";
  int64_t input_size = 224;
  std::vector<int64_t> batches{1, 4, 8};  // Images per forward pass, each measured.
  int repeats = 2;                        // Timed forwards per batch size (best kept).
  int threads = 0;
  bool breakdown = true;  // Time one block's operators separately (where the time goes).
};
int RunBackboneBenchmark(const BackboneBenchmarkOptions& options);

struct MemoryBenchmarkOptions {
  std::vector<int64_t> images{16, 32, 64, 128};
  int64_t patches = 196;
  int64_t channels = 768;
  int64_t block_budget_bytes = int64_t{16} << 20;
  NumericType token_dtype = NumericType::kFloat32;  // Storage of Z.
  int threads = 0;
  // Set: measure whole batches through the engine with this backbone (noise images) instead of
  // MSM alone on synthetic tokens; patches/channels then come from the model.
  std::optional<BackboneOptions> engine_backbone;
};
int RunMemoryBenchmark(const MemoryBenchmarkOptions& options);

struct ApproxBenchmarkOptions {
  std::vector<int64_t> images{64, 128};
  std::vector<int64_t> neighbours{8, 16, 32};
  int64_t patches = 196;
  int64_t channels = 768;
  int threads = 0;
};
int RunApproxBenchmark(const ApproxBenchmarkOptions& options);

struct ScalingBenchmarkOptions {
  EngineOptions engine;
  std::vector<int64_t> images{16, 32, 64, 128};
};
int RunScalingBenchmark(const ScalingBenchmarkOptions& options);

}  // namespace musc

#endif  // MUSC_BENCH_PERF_BENCHMARKS_H_
