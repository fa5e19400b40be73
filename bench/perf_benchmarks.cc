#include "bench/perf_benchmarks.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "bench/model_shapes.h"
#include "bench/noise_images.h"
#include "bench/process_memory.h"
#include "core/backbones/backbone_registry.h"
#include "core/backbones/model_registry.h"
#include "core/backbones/vision_transformer.h"
#include "core/engine_internal.h"
#include "core/musc/mutual_scoring.h"
#include "core/thread_config.h"

namespace musc {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(const Clock::time_point& start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Best-of-`repeats` seconds of fn() after one warm-up call.
template <typename Fn>
double BestSeconds(int repeats, Fn&& fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const auto start = Clock::now();
    fn();
    best = std::min(best, Seconds(start));
  }
  return best;
}

// The machine's fp32 GEMM figure: a 2048³ product through LibTorch/OpenBLAS, best of 3.
double SquareGemmGflops() {
  const at::Tensor a = at::randn({2048, 2048});
  const at::Tensor b = at::randn({2048, 2048});
  at::Tensor c = at::empty({2048, 2048});
  const double s = BestSeconds(3, [&] { at::mm_out(c, a, b); });
  return 2.0 * 2048.0 * 2048.0 * 2048.0 / s / 1e9;
}

// Least-squares slope and intercept of y on x.
std::pair<double, double> FitLine(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    sx += x[k];
    sy += y[k];
    sxx += x[k] * x[k];
    sxy += x[k] * y[k];
  }
  const double slope = (n * sxy - sx * sy) / std::max(1e-300, n * sxx - sx * sx);
  return {slope, (sy - slope * sx) / n};
}

// N×L×C unit rows in `type`, generated an image at a time so that no N-sized fp32 temporary
// inflates the peak being measured.
at::Tensor SyntheticTokens(int64_t n, int64_t l, int64_t c, at::ScalarType type, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor z = at::empty({n, l, c}, at::TensorOptions().dtype(type));
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor rows = at::randn({l, c}, gen);
    z[i].copy_(rows / rows.norm(2, {-1}, true));
  }
  return z;
}

// Analytic forward FLOPs of one image through a ViT (2 per multiply-add; the matrix products
// only — norms, softmax, activations and adds are O(T·W) and O(T²·heads), < 1 % here):
//   patch embed   2·G²·(3·P²)·W
//   per block     QKV 2·T·W·3W + QKᵀ 2·T²·W + AV 2·T²·W + proj 2·T·W² + MLP 2·2·T·W·D
//   (T = G² + 1 tokens, W width, D MLP width) × depth; the CLIP head (2·W·E) is negligible.
double VitForwardFlops(const VitConfig& cfg, int64_t input_size) {
  const double g = static_cast<double>(input_size / cfg.patch_size);
  const double t = g * g + 1.0;
  const double w = static_cast<double>(cfg.width);
  const double d = static_cast<double>(cfg.mlp_width);
  const double p = static_cast<double>(cfg.patch_size);
  const double patch = 2.0 * g * g * 3.0 * p * p * w;
  const double block = 2.0 * t * w * 3.0 * w + 4.0 * t * t * w + 2.0 * t * w * w + 4.0 * t * w * d;
  return patch + static_cast<double>(cfg.depth) * block;
}

// Attributes one block's time at batch n: the real block parts (VisionTransformer::RunBlockPart,
// the code Forward runs) and, for comparison, its four linear layers alone at the same shapes.
// What the parts spend beyond their linear layers is the attention core (QKᵀ, softmax, AV) and
// the activation, norms and residual adds.
void PrintBlockBreakdown(const VisionTransformer& vit, int64_t input_size, int64_t n, int repeats) {
  const VitConfig& cfg = vit.config();
  const int64_t g = input_size / cfg.patch_size;
  const int64_t t = g * g + 1, w = cfg.width, m = cfg.mlp_width;
  const double nt = static_cast<double>(n * t);
  const at::Tensor x = at::randn({n, t, w});
  const at::Tensor hidden = at::randn({n, t, m});
  const auto linear_s = [&](const at::Tensor& in, int64_t out_features) {
    const at::Tensor weight = at::randn({out_features, in.size(-1)}) * 0.03;
    const at::Tensor bias = at::zeros({out_features});
    return BestSeconds(repeats, [&] { at::linear(in, weight, bias); });
  };
  using Part = VisionTransformer::BlockPart;
  const auto part_s = [&](Part part) {
    return BestSeconds(repeats, [&] { vit.RunBlockPart(part, 0, x); });
  };
  const double qkv = linear_s(x, 3 * w), proj = linear_s(x, w);
  const double fc1 = linear_s(x, m), fc2 = linear_s(hidden, w);
  const double attention = part_s(Part::kAttention), mlp = part_s(Part::kMlp);
  const double block = part_s(Part::kWholeBlock);
  const double attention_core_flops = 4.0 * nt * static_cast<double>(t * w);
  const double attention_flops = 2.0 * nt * 4.0 * w * w + attention_core_flops;
  const double mlp_flops = 4.0 * nt * static_cast<double>(w * m);
  const auto row = [](const char* name, double s, double flops) {
    std::printf("  %-34s %9.2f %9s\n", name, 1e3 * s,
                flops > 0 ? std::to_string(static_cast<int>(flops / s / 1e9)).c_str() : "-");
  };
  std::printf("\none block at batch %lld (best of %d):\n", static_cast<long long>(n), repeats);
  std::printf("  %-34s %9s %9s\n", "part", "ms", "GFLOP/s");
  row("whole block", block, attention_flops + mlp_flops);
  row("attention (norm, qkv, core, proj)", attention, attention_flops);
  row("  qkv linear alone", qkv, 2.0 * nt * 3.0 * w * w);
  row("  proj linear alone", proj, 2.0 * nt * w * w);
  row("  rest: QK^T, softmax, AV, norm", attention - qkv - proj, attention_core_flops);
  row("mlp (norm, fc1, activation, fc2)", mlp, mlp_flops);
  row("  fc1 linear alone", fc1, 2.0 * nt * w * m);
  row("  fc2 linear alone", fc2, 2.0 * nt * w * m);
  row("  rest: activation, norm", mlp - fc1 - fc2, 0);
  row("residual adds (block - parts)", block - attention - mlp, 0);
}

}  // namespace

int RunBackboneBenchmark(const BackboneBenchmarkOptions& options) {
  c10::InferenceMode guard;
  const int threads = ConfigureIntraOpThreads(options.threads);
  const ModelSpec* spec = FindModel(options.model);
  if (spec == nullptr || spec->kind != BackboneKind::kVit) {
    std::fprintf(stderr, "backbone: '%s' is not a ViT model of the registry\n",
                 options.model.c_str());
    return 2;
  }
  BackboneOptions bo;
  bo.model = options.model;
  bo.input_size = options.input_size;
  bo.random_weights = true;
  const absl::StatusOr<VitConfig> cfg = ResolveVitConfig(*spec, bo);
  absl::StatusOr<std::unique_ptr<Backbone>> backbone = CreateBackbone(bo);
  if (!cfg.ok() || !backbone.ok()) {
    std::fprintf(stderr, "backbone: %s\n",
                 (!cfg.ok() ? cfg.status() : backbone.status()).ToString().c_str());
    return 1;
  }
  const int64_t s = cfg->input_size;
  const double flops = VitForwardFlops(*cfg, s);
  const double gemm_before = SquareGemmGflops();
  std::printf("model=%s input=%lld threads=%d random_weights=1\n", options.model.c_str(),
              static_cast<long long>(s), threads);
  std::printf(
      "analytic forward: %.2f GFLOP/image (patch embed + %lld blocks of QKV, QKᵀ, AV, "
      "proj, MLP)\n",
      flops / 1e9, static_cast<long long>(cfg->depth));
  std::printf("gemm 2048^3 fp32 (before): %.1f GFLOP/s\n", gemm_before);
  std::printf("%6s | %10s %10s %9s\n", "batch", "s/forward", "ms/image", "GFLOP/s");
  double best_gflops = 0;
  int64_t best_batch = 0;
  for (int64_t n : options.batches) {
    const at::Tensor images = at::randn({n, 3, s, s});
    const double sec = BestSeconds(options.repeats, [&] { (*backbone)->Forward(images); });
    const double gflops = flops * static_cast<double>(n) / sec / 1e9;
    if (gflops > best_gflops) {
      best_gflops = gflops;
      best_batch = n;
    }
    std::printf("%6lld | %10.3f %10.1f %9.1f\n", static_cast<long long>(n), sec,
                1e3 * sec / static_cast<double>(n), gflops);
    std::fflush(stdout);
  }
  const double gemm_after = SquareGemmGflops();
  std::printf("gemm 2048^3 fp32 (after): %.1f GFLOP/s\n", gemm_after);
  if (options.breakdown) {
    const auto* vit = dynamic_cast<const VisionTransformer*>(backbone->get());
    if (vit != nullptr) PrintBlockBreakdown(*vit, s, best_batch, options.repeats);
  }
  // The larger GEMM reading is the conservative reference (drift only ever lowers a reading).
  const double gemm = std::max(gemm_before, gemm_after);
  std::printf("backbone_vs_gemm_ratio=%.2f (batch %lld: %.1f of %.1f GFLOP/s)\n",
              best_gflops / gemm, static_cast<long long>(best_batch), best_gflops, gemm);
  return 0;
}

// Whole batches through the engine: RSS growth while the images are added (features stored) and
// while the batch is scored. What grows with N must be the stored features plus one fp32 Z (the
// (layer, degree) MSM is working on); the rest — the backbone's activations for one forward
// chunk, MSM's budget, small per-batch vectors — must not grow with N.
int RunEngineMemoryBenchmark(const MemoryBenchmarkOptions& options) {
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  EngineOptions eo;
  eo.backbone = *options.engine_backbone;
  eo.intra_op_threads = options.threads;
  eo.scoring.block_budget_bytes = options.block_budget_bytes;
  eo.scoring.token_dtype = options.token_dtype;
  eo.scoring.keep_maps = false;  // The maps are the output (N·S²·4 B), not working memory.
  absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(eo);
  if (!engine.ok()) {
    std::fprintf(stderr, "memory: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const int64_t s = (*engine)->input_size();
  absl::StatusOr<std::vector<LayerShape>> shapes = MsmShapesOf(eo.backbone);
  if (!shapes.ok()) {
    std::fprintf(stderr, "memory: %s\n", shapes.status().ToString().c_str());
    return 1;
  }
  LayerShape widest;
  for (const LayerShape& shape : *shapes) {
    if (shape.channels > widest.channels) widest = shape;
  }
  const double mib = 1 << 20;
  std::mt19937 rng(3);
  {
    NoiseImages warm = UniformNoiseImages(4, s, rng);
    (void)(*engine)->Score(warm.views);  // Thread pools, allocator arenas, OpenBLAS buffers.
  }
  std::printf("engine: %s at %lld, token_dtype=%s, block_budget=%.0f MiB (noise images)\n",
              (*engine)->backbone_name().c_str(), static_cast<long long>(s),
              NumericTypeName(options.token_dtype),
              static_cast<double>(options.block_budget_bytes) / mib);
  std::printf("%5s | %10s %8s | %10s %10s | %10s\n", "N", "tokens_MiB", "Z_MiB", "add_MiB",
              "score_MiB", "rest_MiB");
  std::vector<double> xs, ys;
  double rest_max = 0;
  double token_bytes_per_image = 0;
  for (int64_t n : options.images) {
    NoiseImages images = UniformNoiseImages(n, s, rng);
    const int64_t baseline = CurrentRssBytes();
    ResetPeakRss();
    std::unique_ptr<ScoringBatch> batch = (*engine)->NewBatch();
    if (absl::Status st = batch->Add(images.views); !st.ok()) {
      std::fprintf(stderr, "memory: %s\n", st.ToString().c_str());
      return 1;
    }
    const double add_peak = static_cast<double>(PeakRssBytes() - baseline);
    ResetPeakRss();
    absl::StatusOr<BatchScores> scores = batch->Score();
    if (!scores.ok()) {
      std::fprintf(stderr, "memory: %s\n", scores.status().ToString().c_str());
      return 1;
    }
    const double score_peak = static_cast<double>(PeakRssBytes() - baseline);
    const double tokens = static_cast<double>(batch->feature_bytes());
    // Z of one (layer, degree) in fp32: N × L × the widest layer's C.
    const double z = static_cast<double>(n * widest.patches * widest.channels * 4);
    const double peak = std::max(add_peak, score_peak);
    const double rest = peak - tokens - z;  // Must not grow with N.
    rest_max = std::max(rest_max, rest);
    token_bytes_per_image = tokens / static_cast<double>(n);
    xs.push_back(static_cast<double>(n));
    ys.push_back(peak);
    std::printf("%5lld | %10.1f %8.1f | %10.1f %10.1f | %10.1f\n", static_cast<long long>(n),
                tokens / mib, z / mib, add_peak / mib, score_peak / mib, rest / mib);
    std::fflush(stdout);
  }
  const auto [slope, intercept] = FitLine(xs, ys);
  std::printf("linear fit of the peak: %.3f MiB/image + %.1f MiB\n", slope / mib, intercept / mib);
  std::printf(
      "engine_memory_slope_vs_token_bytes=%.2f token_MiB_per_image=%.3f rest_max_MiB=%.1f "
      "budget_MiB=%.0f\n",
      slope / token_bytes_per_image, token_bytes_per_image / mib, rest_max / mib,
      static_cast<double>(options.block_budget_bytes) / mib);
  return 0;
}

int RunMemoryBenchmark(const MemoryBenchmarkOptions& options) {
  if (options.engine_backbone) return RunEngineMemoryBenchmark(options);
  c10::InferenceMode guard;
  // Freed large blocks go back to the system at once, so peak RSS shows live memory only.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  const int threads = ConfigureIntraOpThreads(options.threads);
  const at::ScalarType type = ScalarTypeOf(options.token_dtype);
  const int64_t elt = static_cast<int64_t>(c10::elementSize(type));
  const double mib = 1 << 20;
  const int64_t l = options.patches, c = options.channels;
  std::printf("threads=%d L=%lld C=%lld token_dtype=%s block_budget=%.0f MiB\n", threads,
              static_cast<long long>(l), static_cast<long long>(c),
              NumericTypeName(options.token_dtype),
              static_cast<double>(options.block_budget_bytes) / mib);
  std::printf("%5s | %10s %10s %10s %10s | %s\n", "N", "tokens_MiB", "peak_MiB", "bound_MiB",
              "table_MiB", "within");
  std::vector<double> xs, ys;
  bool within = true;
  for (int64_t n : options.images) {
    {
      // Warm-up at this N: thread pools and OpenBLAS buffers are allocated once per process and
      // are not the batch's memory.
      at::Tensor z = SyntheticTokens(std::min<int64_t>(n, 4), l, c, type, 1);
      at::Tensor acc = at::zeros({z.size(0), l}, at::kDouble);
      MutualScoringOptions msm;
      msm.block_budget_bytes = options.block_budget_bytes;
      AccumulateMutualScores(z, msm, 1.0, acc);
    }
    const int64_t baseline = CurrentRssBytes();
    ResetPeakRss();
    MutualScoringStats stats;
    {
      at::Tensor z = SyntheticTokens(n, l, c, type, static_cast<uint64_t>(n));
      at::Tensor acc = at::zeros({n, l}, at::kDouble);
      MutualScoringOptions msm;
      msm.block_budget_bytes = options.block_budget_bytes;
      stats = AccumulateMutualScores(z, msm, 1.0, acc);
    }
    const double peak = static_cast<double>(PeakRssBytes() - baseline);
    const double tokens = static_cast<double>(n * l * c * elt);
    const double bound = tokens + static_cast<double>(options.block_budget_bytes);
    within = within && peak <= bound;
    xs.push_back(static_cast<double>(n));
    ys.push_back(peak);
    std::printf("%5lld | %10.1f %10.1f %10.1f %10.1f | %s\n", static_cast<long long>(n),
                tokens / mib, peak / mib, bound / mib, static_cast<double>(stats.table_bytes) / mib,
                peak <= bound ? "yes" : "NO");
    std::fflush(stdout);
  }
  const auto [slope, intercept] = FitLine(xs, ys);
  // A quadratic term would show as residuals growing with N: report the largest one relative to
  // the fitted line.
  double worst = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    worst = std::max(worst, std::fabs(ys[k] - (slope * xs[k] + intercept)) / std::max(1.0, ys[k]));
  }
  const double token_bytes = static_cast<double>(l * c * elt);
  std::printf("linear fit: %.3f MiB/image + %.1f MiB (largest residual %.1f %% of the peak)\n",
              slope / mib, intercept / mib, 100 * worst);
  std::printf("memory_slope_vs_token_bytes=%.2f token_MiB_per_image=%.3f within_bound=%s\n",
              slope / token_bytes, token_bytes / mib, within ? "yes" : "no");
  // The verdict is in the output; the exit status stays 0 so smoke runs on tiny shapes (where
  // allocator noise is comparable to the tokens) do not fail on it.
  return 0;
}

int RunApproxBenchmark(const ApproxBenchmarkOptions& options) {
  c10::InferenceMode guard;
  const int threads = ConfigureIntraOpThreads(options.threads);
  const int64_t l = options.patches, c = options.channels;
  std::printf("threads=%d L=%lld C=%lld (synthetic unit tokens)\n", threads,
              static_cast<long long>(l), static_cast<long long>(c));
  std::printf("%5s %5s | %9s %9s %8s | %12s\n", "N", "M", "exact_s", "approx_s", "speedup",
              "work_ratio");
  double last = 0;
  for (int64_t n : options.images) {
    const at::Tensor z = SyntheticTokens(n, l, c, at::kFloat, static_cast<uint64_t>(n));
    at::Tensor acc = at::zeros({n, l}, at::kDouble);
    MutualScoringOptions exact;
    const double exact_s = BestSeconds(1, [&] { AccumulateMutualScores(z, exact, 1.0, acc); });
    for (int64_t m : options.neighbours) {
      if (m >= n - 1) continue;
      MutualScoringOptions approx;
      approx.approximate_neighbours = m;
      const double approx_s = BestSeconds(1, [&] { AccumulateMutualScores(z, approx, 1.0, acc); });
      last = exact_s / approx_s;
      // Exact computes N(N−1)/2 paired GEMMs, approximate N·M unpaired ones.
      const double work = static_cast<double>(n * (n - 1)) / 2.0 / static_cast<double>(n * m);
      std::printf("%5lld %5lld | %9.3f %9.3f %8.2f | %12.2f\n", static_cast<long long>(n),
                  static_cast<long long>(m), exact_s, approx_s, last, work);
      std::fflush(stdout);
    }
  }
  std::printf("approx_speedup=%.2f (last row)\n", last);
  return 0;
}

int RunScalingBenchmark(const ScalingBenchmarkOptions& options) {
  absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(options.engine);
  if (!engine.ok()) {
    std::fprintf(stderr, "scaling: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const int64_t s = (*engine)->input_size();
  std::printf("backbone=%s input=%lld backbone_batch=%lld (synthetic noise images)\n",
              (*engine)->backbone_name().c_str(), static_cast<long long>(s),
              static_cast<long long>(options.engine.backbone_batch_size));
  std::printf("%5s | %9s %9s %9s %9s %9s | %10s\n", "N", "backbone", "lnamd", "msm", "other",
              "total_s", "ms/image");
  std::vector<double> logn, logt, logmsm;
  std::mt19937 rng(1);
  {
    // Warm-up: the first forward pass pays for thread pools, allocator arenas and page faults on
    // the weights, which would otherwise inflate the smallest N and the fitted exponent.
    const NoiseImages warm = UniformNoiseImages(2, s, rng);
    (void)(*engine)->Score(warm.views);
  }
  for (int64_t n : options.images) {
    const NoiseImages images = UniformNoiseImages(n, s, rng);
    const std::vector<ImageView>& views = images.views;
    const auto start = Clock::now();
    absl::StatusOr<BatchScores> scores = (*engine)->Score(views);
    const double wall = Seconds(start);
    if (!scores.ok()) {
      std::fprintf(stderr, "scaling: %s\n", scores.status().ToString().c_str());
      return 1;
    }
    const StageTimings& t = scores->timings;
    const double other = t.preprocess_s + t.maps_s + t.rscin_s;
    logn.push_back(std::log(static_cast<double>(n)));
    logt.push_back(std::log(wall));
    logmsm.push_back(std::log(std::max(1e-9, t.msm_s)));
    std::printf("%5lld | %9.2f %9.2f %9.2f %9.2f %9.2f | %10.1f\n", static_cast<long long>(n),
                t.backbone_s, t.lnamd_s, t.msm_s, other, wall, 1e3 * wall / static_cast<double>(n));
    std::fflush(stdout);
  }
  const double exponent = FitLine(logn, logt).first;
  std::printf("fitted exponents (time ∝ N^k): total %.2f, msm %.2f\n", exponent,
              FitLine(logn, logmsm).first);
  std::printf("scaling_exponent=%.2f\n", exponent);
  return 0;
}

}  // namespace musc
