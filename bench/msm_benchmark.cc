#include "bench/msm_benchmark.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <tuple>

#include "bench/process_memory.h"
#include "core/mutual_scoring.h"
#include "core/thread_config.h"

namespace musc {
namespace {

double Seconds(const std::chrono::steady_clock::time_point& start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Best-of-`repeats` GFLOP/s of an m×k by k×n fp32 product through LibTorch (OpenBLAS).
double GemmGflops(int64_t m, int64_t k, int64_t n, int repeats) {
  const at::Tensor a = at::randn({m, k});
  const at::Tensor b = at::randn({n, k});
  at::Tensor c = at::empty({m, n});
  at::mm_out(c, a, b.t());  // Warm-up: thread pool, page faults.
  double best = 1e30;
  for (int r = 0; r < std::max(repeats, 2); ++r) {
    const auto start = std::chrono::steady_clock::now();
    at::mm_out(c, a, b.t());
    best = std::min(best, Seconds(start));
  }
  return 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n) / best /
         1e9;
}

}  // namespace

int RunMsmBenchmark(const MsmBenchmarkOptions& options) {
  c10::InferenceMode guard;
  // A fixed mmap threshold makes large blocks go back to the system when freed (glibc otherwise
  // raises the threshold and keeps them), so the peak-RSS readings below show live memory only.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  const int threads = ConfigureIntraOpThreads(options.threads);
  const double gemm_square = GemmGflops(2048, 2048, 2048, 3);
  std::printf("threads=%d block_budget=%lld MiB\n", threads,
              static_cast<long long>(options.block_budget_bytes >> 20));
  std::printf("gemm 2048x2048x2048 fp32: %.1f GFLOP/s\n", gemm_square);
  std::printf("%5s %5s %5s | %9s %9s %9s %6s | %8s %8s %8s %8s %7s\n", "N", "L", "C", "msm_s",
              "GFLOP/s", "gemm_GF/s", "ratio", "Z_MiB", "extra_MiB", "table_MiB", "tile_MiB",
              "stripes");

  double last_ratio = 0.0;
  for (int64_t c : options.channels) {
    for (int64_t l : options.patches) {
      // The GEMM figure at the shape MSM actually multiplies (L×C by C×L·k), to compare like
      // with like; the larger of it and the square GEMM is used as the machine's figure.
      const double gemm_shape = GemmGflops(l, c, 8 * l, 2);
      const double gemm = std::max(gemm_square, gemm_shape);
      for (int64_t n : options.images) {
        at::Tensor z = at::randn({n, l, c});
        z = (z / z.norm(2, {-1}, true)).contiguous();
        MutualScoringOptions msm;
        msm.block_budget_bytes = options.block_budget_bytes;
        at::Tensor scores = at::zeros({n, l}, at::kDouble);
        AccumulateMutualScores(z, msm, 1.0, scores);  // Warm-up and page-in.
        double best = 1e30;
        MutualScoringStats stats;
        int64_t extra = 0;
        for (int r = 0; r < options.repeats; ++r) {
          scores.zero_();
          ResetPeakRss();
          const int64_t baseline = CurrentRssBytes();
          const auto start = std::chrono::steady_clock::now();
          stats = AccumulateMutualScores(z, msm, 1.0, scores);
          best = std::min(best, Seconds(start));
          extra = std::max<int64_t>(extra, PeakRssBytes() - baseline);
        }
        // The work the reference does: every ordered pair, 2·L²·C flops each.
        const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n - 1) *
                             static_cast<double>(l) * static_cast<double>(l) *
                             static_cast<double>(c);
        const double gflops = flops / best / 1e9;
        last_ratio = gflops / gemm;
        std::printf("%5lld %5lld %5lld | %9.3f %9.1f %9.1f %6.2f | %8.1f %8.1f %8.1f %8.1f %7lld\n",
                    static_cast<long long>(n), static_cast<long long>(l), static_cast<long long>(c),
                    best, gflops, gemm, last_ratio, static_cast<double>(z.numel() * 4) / (1 << 20),
                    static_cast<double>(extra) / (1 << 20),
                    static_cast<double>(stats.table_bytes) / (1 << 20),
                    static_cast<double>(stats.tile_bytes) / (1 << 20),
                    static_cast<long long>(stats.stripes));
        std::fflush(stdout);
      }
    }
  }
  std::printf("msm_vs_gemm_ratio=%.2f\n", last_ratio);
  return 0;
}

}  // namespace musc
