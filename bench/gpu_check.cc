// musc-gpu-check: the accelerator check bench/gpu_check.sh runs on a GPU machine. Depends on the
// core (LibTorch, Abseil) only, so it builds where gRPC and OpenCV are absent.
//
//  1. Agreement: the same batch (seeded random-weight ViT, seeded noise images) scored by a CPU
//     engine and by a device engine; then the device engine with bf16 and fp16 MSM GEMMs against
//     its own fp32 result. Prints the largest score differences and whether the image ranking
//     is unchanged.
//  2. Speed: the paper's setting — ViT-L/14-336 at 518, N = 200 — on the device, ms/image for the
//     whole batch (preprocessing to scores and maps), per GEMM type, with the stage breakdown.
//     The weights are random: a forward pass costs the same whatever their values.
//
// Last line: gpu_check: device=... max_abs_diff_cpu=... ms_per_image_fp32=... ms_per_image_fp16=...
// Exit 77 (CTest's skip) when the device is not available to this build.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/noise_images.h"
#include "core/musc_engine.h"

namespace {

constexpr musc::NumericType kFp32 = musc::NumericType::kFloat32;
constexpr musc::NumericType kFp16 = musc::NumericType::kFloat16;

struct Options {
  std::string device = "cuda";
  std::string check_model = "clip-vit-b-16";  // Agreement check: CPU and device both run it.
  int64_t check_images = 16;
  std::string model = "clip-vit-l-14-336";  // Speed: the paper's default backbone...
  int64_t size = 518;                       // ...at the paper's resolution...
  int64_t images = 200;                     // ...and batch size.
  int64_t backbone_batch = 16;
};

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k) {
    worst = std::max(worst, std::fabs(static_cast<double>(a[k]) - b[k]));
  }
  return worst;
}

std::vector<size_t> Ranking(const std::vector<float>& scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

absl::StatusOr<std::unique_ptr<musc::MuscEngine>> MakeEngine(const std::string& model, int64_t size,
                                                             const std::string& device,
                                                             int64_t backbone_batch) {
  musc::EngineOptions options;
  options.backbone.model = model;
  options.backbone.input_size = size;
  options.backbone.random_weights = model != "vit-tiny-random";
  options.backbone.seed = 1;
  options.backbone_batch_size = backbone_batch;
  options.device = device;
  return musc::MuscEngine::Create(options);
}

absl::StatusOr<musc::BatchScores> ScoreWith(musc::MuscEngine& engine,
                                            const std::vector<musc::ImageView>& views,
                                            musc::NumericType gemm_dtype) {
  musc::ScoringOptions scoring = engine.options().scoring;
  scoring.gemm_dtype = gemm_dtype;
  absl::StatusOr<std::unique_ptr<musc::ScoringBatch>> batch = engine.NewBatch(scoring);
  if (!batch.ok()) return batch.status();
  if (absl::Status s = (*batch)->Add(views); !s.ok()) return s;
  return (*batch)->Score();
}

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "gpu_check: %s: %s\n", what, status.ToString().c_str());
  return status.code() == absl::StatusCode::kFailedPrecondition ? 77 : 1;
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    const auto value = [&]() -> std::string { return k + 1 < argc ? argv[++k] : ""; };
    if (arg == "--device") {
      o->device = value();
    } else if (arg == "--check-model") {
      o->check_model = value();
    } else if (arg == "--check-images") {
      o->check_images = std::atoll(value().c_str());
    } else if (arg == "--model") {
      o->model = value();
    } else if (arg == "--size") {
      o->size = std::atoll(value().c_str());
    } else if (arg == "--images") {
      o->images = std::atoll(value().c_str());
    } else if (arg == "--backbone-batch") {
      o->backbone_batch = std::atoll(value().c_str());
    } else if (arg == "--quick") {  // Smoke run: tiny model and batches, any device.
      o->check_model = o->model = "vit-tiny-random";
      o->size = 64;
      o->check_images = 6;
      o->images = 8;
    } else {
      std::fprintf(stderr,
                   "usage: musc-gpu-check [--device cuda|cuda:K|cpu] [--check-model M] "
                   "[--check-images N] [--model M] [--size S] [--images N] "
                   "[--backbone-batch B] [--quick]\n");
      return false;
    }
  }
  return o->check_images >= 2 && o->images >= 2 && o->backbone_batch >= 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) return 2;
  std::printf("musc-gpu-check: device=%s libtorch=%s\n", o.device.c_str(), musc::LibTorchVersion());

  // 1. Agreement with the CPU path, and what half-precision GEMMs change.
  absl::StatusOr<std::unique_ptr<musc::MuscEngine>> device_engine =
      MakeEngine(o.check_model, 0, o.device, o.backbone_batch);
  if (!device_engine.ok()) return Fail("device engine", device_engine.status());
  absl::StatusOr<std::unique_ptr<musc::MuscEngine>> cpu_engine =
      MakeEngine(o.check_model, 0, "cpu", o.backbone_batch);
  if (!cpu_engine.ok()) return Fail("cpu engine", cpu_engine.status());
  const int64_t check_side = (*cpu_engine)->input_size() + 37;  // Exercises the resize too.
  const musc::NoiseImages check = musc::GradientNoiseImages(o.check_images, check_side, 11);
  const std::vector<musc::ImageView>& check_views = check.views;
  absl::StatusOr<musc::BatchScores> on_cpu = ScoreWith(**cpu_engine, check_views, kFp32);
  if (!on_cpu.ok()) return Fail("cpu scoring", on_cpu.status());
  std::printf("\nagreement: %s, N=%lld, S=%lld\n", o.check_model.c_str(),
              static_cast<long long>(o.check_images),
              static_cast<long long>((*cpu_engine)->input_size()));
  std::printf("%-16s %14s %14s %14s %10s\n", "run", "patch_max_abs", "raw_max_abs", "final_max_abs",
              "ranking");
  std::map<musc::NumericType, musc::BatchScores> by_gemm;
  double max_abs_diff_cpu = 0;
  for (const musc::NumericType gemm : {kFp32, musc::NumericType::kBFloat16, kFp16}) {
    const std::string run = o.device + " " + musc::NumericTypeName(gemm);
    absl::StatusOr<musc::BatchScores> scores = ScoreWith(**device_engine, check_views, gemm);
    if (!scores.ok()) {
      std::printf("%-16s skipped: %s\n", run.c_str(),
                  std::string(scores.status().message()).c_str());
      continue;
    }
    const musc::BatchScores& reference = gemm == kFp32 ? *on_cpu : by_gemm.at(kFp32);
    const double patch = MaxAbsDiff(scores->patch_scores, reference.patch_scores);
    if (gemm == kFp32) max_abs_diff_cpu = patch;
    std::printf("%-16s %14.3g %14.3g %14.3g %10s   (vs %s)\n", run.c_str(), patch,
                MaxAbsDiff(scores->raw_scores, reference.raw_scores),
                MaxAbsDiff(scores->final_scores, reference.final_scores),
                Ranking(scores->raw_scores) == Ranking(reference.raw_scores) ? "same" : "CHANGED",
                gemm == kFp32 ? "cpu fp32" : "device fp32");
    by_gemm.emplace(gemm, *std::move(scores));
  }
  cpu_engine->reset();  // The speed run should not share the host with a second model.

  // 2. Speed at the paper's setting.
  absl::StatusOr<std::unique_ptr<musc::MuscEngine>> engine =
      MakeEngine(o.model, o.size, o.device, o.backbone_batch);
  if (!engine.ok()) return Fail("speed engine", engine.status());
  const int64_t side = (*engine)->input_size();
  const musc::NoiseImages images = musc::GradientNoiseImages(o.images, side, 5);
  const std::vector<musc::ImageView>& views = images.views;
  std::printf("\nspeed: %s at %lld, N=%lld, backbone batch %lld\n", o.model.c_str(),
              static_cast<long long>(side), static_cast<long long>(o.images),
              static_cast<long long>(o.backbone_batch));
  std::printf("%-6s | %9s %9s %9s %9s %9s %9s | %9s %10s\n", "gemm", "prep_s", "backbone", "lnamd",
              "msm", "maps", "rscin", "wall_s", "ms/image");
  std::map<musc::NumericType, double> ms_per_image;
  {
    // Warm-up: device context, kernels and allocator pools are created once per process.
    const std::vector<musc::ImageView> few(views.begin(), views.begin() + 2);
    (void)ScoreWith(**engine, few, kFp32);
  }
  for (const musc::NumericType gemm : {kFp32, kFp16}) {
    const char* name = musc::NumericTypeName(gemm);
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<musc::BatchScores> scores = ScoreWith(**engine, views, gemm);
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!scores.ok()) {
      std::printf("%-6s | skipped: %s\n", name, std::string(scores.status().message()).c_str());
      continue;
    }
    const musc::StageTimings& t = scores->timings;
    ms_per_image[gemm] = 1e3 * wall / static_cast<double>(o.images);
    std::printf("%-6s | %9.2f %9.2f %9.2f %9.2f %9.2f %9.3f | %9.2f %10.1f\n", name, t.preprocess_s,
                t.backbone_s, t.lnamd_s, t.msm_s, t.maps_s, t.rscin_s, wall, ms_per_image[gemm]);
    std::fflush(stdout);
  }
  std::printf("paper (RTX 3090, ViT-L/14-336 @518, N=200): 955 ms/image\n");
  std::printf(
      "gpu_check: device=%s max_abs_diff_cpu=%.3g ms_per_image_fp32=%.1f "
      "ms_per_image_fp16=%.1f\n",
      o.device.c_str(), max_abs_diff_cpu, ms_per_image[kFp32], ms_per_image[kFp16]);
  return 0;
}
