#include "bench/msm_benchmark.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bench/model_shapes.h"
#include "bench/process_memory.h"
#include "core/backbones/model_registry.h"
#include "core/musc/mutual_scoring.h"
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

struct ShapeResult {
  double seconds = 0;
  double gflops = 0;
  double selection_share = 0;  // Interval selection's share of the MSM time.
  int64_t extra_bytes = 0;
  MutualScoringStats stats;
};

// Best of `repeats` MSM calls on N×L×C random unit tokens, after one warm-up call.
ShapeResult MeasureShape(int64_t n, int64_t l, int64_t c, const MsmBenchmarkOptions& options) {
  at::Tensor z = at::randn({n, l, c});
  z = (z / z.norm(2, {-1}, true)).contiguous();
  MutualScoringOptions msm;
  msm.block_budget_bytes = options.block_budget_bytes;
  at::Tensor scores = at::zeros({n, l}, at::kDouble);
  AccumulateMutualScores(z, msm, 1.0, scores);  // Warm-up and page-in.
  ShapeResult result;
  result.seconds = 1e30;
  for (int r = 0; r < std::max(options.repeats, 1); ++r) {
    scores.zero_();
    ResetPeakRss();
    const int64_t baseline = CurrentRssBytes();
    const auto start = std::chrono::steady_clock::now();
    const MutualScoringStats stats = AccumulateMutualScores(z, msm, 1.0, scores);
    const double seconds = Seconds(start);
    if (seconds < result.seconds) {
      result.seconds = seconds;
      result.stats = stats;
    }
    result.extra_bytes = std::max<int64_t>(result.extra_bytes, PeakRssBytes() - baseline);
  }
  // The work the reference does: every ordered pair, 2·L²·C flops each.
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n - 1) *
                       static_cast<double>(l) * static_cast<double>(l) * static_cast<double>(c);
  result.gflops = flops / result.seconds / 1e9;
  result.selection_share = result.stats.selection_seconds / result.seconds;
  return result;
}

struct ModelShape {
  std::string model;
  int64_t patches = 0;
  int64_t channels = 0;
};

// What MSM multiplies for each model at its default input size (darknet-tiny's channels are read
// from its weights).
absl::StatusOr<std::vector<ModelShape>> ShapesOf(const std::string& name,
                                                 const std::string& darknet_weights) {
  BackboneOptions backbone;
  backbone.model = name;
  const ModelSpec* spec = FindModel(name);
  if (spec != nullptr && spec->kind == BackboneKind::kDarknetTiny) {
    backbone.weights_path = darknet_weights;
  }
  absl::StatusOr<std::vector<LayerShape>> layers = MsmShapesOf(backbone);
  if (!layers.ok()) return layers.status();
  std::vector<ModelShape> shapes;
  for (const LayerShape& layer : *layers) {
    const ModelShape shape{name, layer.patches, layer.channels};
    // ViT layers all share one shape: measure it once.
    if (shapes.empty() || shapes.back().channels != shape.channels ||
        shapes.back().patches != shape.patches) {
      shapes.push_back(shape);
    }
  }
  return shapes;
}

void PrintHeader() {
  std::printf("%-18s %5s %5s %5s | %9s %9s %9s %6s %7s | %8s %8s %8s %8s %7s\n", "model", "N", "L",
              "C", "msm_s", "GFLOP/s", "gemm_GF/s", "ratio", "select", "Z_MiB", "extra_MiB",
              "table_MiB", "tile_MiB", "stripes");
}

void PrintRow(const std::string& model, int64_t n, int64_t l, int64_t c, double gemm,
              const ShapeResult& r) {
  const double mib = 1 << 20;
  std::printf(
      "%-18s %5lld %5lld %5lld | %9.3f %9.1f %9.1f %6.2f %6.1f%% | %8.1f %8.1f %8.1f %8.1f "
      "%7lld\n",
      model.c_str(), static_cast<long long>(n), static_cast<long long>(l),
      static_cast<long long>(c), r.seconds, r.gflops, gemm, r.gflops / gemm,
      100.0 * r.selection_share, static_cast<double>(n * l * c * 4) / mib,
      static_cast<double>(r.extra_bytes) / mib, static_cast<double>(r.stats.table_bytes) / mib,
      static_cast<double>(r.stats.tile_bytes) / mib, static_cast<long long>(r.stats.stripes));
  std::fflush(stdout);
}

// GEMM reference for shape (L, C), measured right before the shape so that both sides of the
// ratio see the same machine state (shared machines drift by 2× within minutes): the larger of
// the square GEMM and a GEMM at the shape MSM actually multiplies (L×C by C×8L).
double GemmReference(int64_t l, int64_t c) {
  return std::max(GemmGflops(2048, 2048, 2048, 2), GemmGflops(l, c, 8 * l, 2));
}

int RunModelShapes(const MsmBenchmarkOptions& options) {
  std::vector<std::string> names = options.models;
  if (names.size() == 1 && names[0] == "all") {
    names.clear();
    for (const ModelSpec& spec : ModelRegistry()) {
      if (!spec.random_weights) names.push_back(spec.name);
    }
  }
  std::vector<ModelShape> shapes;
  for (const std::string& name : names) {
    absl::StatusOr<std::vector<ModelShape>> model_shapes = ShapesOf(name, options.darknet_weights);
    if (!model_shapes.ok()) {
      std::printf("skipped %s: %s\n", name.c_str(), model_shapes.status().ToString().c_str());
      continue;
    }
    shapes.insert(shapes.end(), model_shapes->begin(), model_shapes->end());
  }
  PrintHeader();
  double worst_ratio = 1e30, worst_share = 0;
  std::string worst_model;
  for (const ModelShape& shape : shapes) {
    const double gemm = GemmReference(shape.patches, shape.channels);
    for (int64_t n : options.images) {
      const ShapeResult r = MeasureShape(n, shape.patches, shape.channels, options);
      PrintRow(shape.model, n, shape.patches, shape.channels, gemm, r);
      if (r.gflops / gemm < worst_ratio) {
        worst_ratio = r.gflops / gemm;
        worst_model = shape.model;
      }
      worst_share = std::max(worst_share, r.selection_share);
    }
  }
  if (shapes.empty()) {
    std::fprintf(stderr, "msm: no model shapes to measure\n");
    return 1;
  }
  std::printf("msm_vs_gemm_ratio_min=%.2f (%s) selection_share_max=%.3f\n", worst_ratio,
              worst_model.c_str(), worst_share);
  return 0;
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
  if (!options.models.empty()) return RunModelShapes(options);
  PrintHeader();
  double last_ratio = 0.0;
  for (int64_t c : options.channels) {
    for (int64_t l : options.patches) {
      const double gemm = GemmReference(l, c);
      for (int64_t n : options.images) {
        const ShapeResult r = MeasureShape(n, l, c, options);
        PrintRow("-", n, l, c, gemm, r);
        last_ratio = r.gflops / gemm;
      }
    }
  }
  std::printf("msm_vs_gemm_ratio=%.2f\n", last_ratio);
  return 0;
}

}  // namespace musc
