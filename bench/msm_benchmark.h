// `musc-bench msm`: this machine's fp32 GEMM throughput and MSM throughput, measured in one run.
#ifndef MUSC_BENCH_MSM_BENCHMARK_H_
#define MUSC_BENCH_MSM_BENCHMARK_H_

#include <cstdint>
#include <string>
#include <vector>

namespace musc {

struct MsmBenchmarkOptions {
  std::vector<int64_t> images{16, 32, 64};
  std::vector<int64_t> patches{196, 784};
  std::vector<int64_t> channels{384, 768};
  int64_t block_budget_bytes = int64_t{512} << 20;
  int threads = 0;
  int repeats = 1;  // Timed repetitions per configuration (the best is kept).
  // Registry models whose MSM shapes (L, C of every feature layer at the default input size) are
  // measured instead of the patches × channels grid; "all" = every model with real weights.
  std::vector<std::string> models;
  std::string darknet_weights = "../shared/models/darknet-tiny-tfjs";  // Its channels are read.
};

// Prints a table and, as the last line, msm_vs_gemm_ratio=X.XX for the largest configuration;
// with models, msm_vs_gemm_ratio_min=X.XX selection_share_max=X.XXX over every model's shapes.
int RunMsmBenchmark(const MsmBenchmarkOptions& options);

}  // namespace musc

#endif  // MUSC_BENCH_MSM_BENCHMARK_H_
