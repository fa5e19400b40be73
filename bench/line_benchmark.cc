#include "bench/line_benchmark.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "core/line_scorer.h"
#include "eval/metrics.h"
#include "server/images/image_decoder.h"

namespace musc {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::vector<cv::Mat> LoadImages(const std::string& dir, size_t count) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    const bool mask = e.path().string().find("ground_truth") != std::string::npos;
    if (e.is_regular_file() && !mask && (ext == ".png" || ext == ".jpg" || ext == ".bmp")) {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<cv::Mat> images;
  for (size_t k = 0; k < count && !files.empty(); ++k) {
    cv::Mat m = cv::imread(files[k % files.size()].string(), cv::IMREAD_COLOR);
    if (m.empty()) continue;
    cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
    images.push_back(m);
  }
  return images;
}

}  // namespace

int RunLineBenchmark(const LineBenchmarkOptions& options) {
  const size_t m = static_cast<size_t>(options.bank_size);
  const std::vector<cv::Mat> images = LoadImages(options.data_dir, m + options.scored);
  if (images.size() < m + 1) {
    std::fprintf(stderr, "line: need images under %s\n", options.data_dir.c_str());
    return 2;
  }
  absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(options.engine);
  if (!engine.ok()) {
    std::fprintf(stderr, "line: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  LineOptions line_options;
  line_options.bank_size = options.bank_size;
  line_options.scoring = options.engine.scoring;
  absl::StatusOr<std::unique_ptr<LineScorer>> scorer =
      LineScorer::Create(engine->get(), line_options);
  if (!scorer.ok()) {
    std::fprintf(stderr, "line: %s\n", scorer.status().ToString().c_str());
    return 1;
  }
  std::printf("backbone %s @%lld, bank M=%lld, %lld timed images, %d threads\n",
              (*engine)->backbone_name().c_str(), static_cast<long long>((*engine)->input_size()),
              static_cast<long long>(options.bank_size), static_cast<long long>(options.scored),
              options.engine.intra_op_threads);
  for (size_t k = 0; k < m; ++k) {
    auto features = (*scorer)->Extract(ViewOf(images[k]));
    if (!features.ok() || !(*scorer)->Admit(*std::move(features)).ok()) return 1;
  }
  std::vector<double> latency_ms, msm_ms, backbone_ms;
  for (size_t k = m; k < images.size(); ++k) {
    const auto start = Clock::now();
    auto features = (*scorer)->Extract(ViewOf(images[k]));
    if (!features.ok()) return 1;
    absl::StatusOr<LineImageScore> score = (*scorer)->Score(**features);
    if (!score.ok() || !(*scorer)->Admit(*std::move(features)).ok()) return 1;
    latency_ms.push_back(Ms(Clock::now() - start));
    msm_ms.push_back(1000 * score->timings.msm_s);
    backbone_ms.push_back(1000 * (score->timings.preprocess_s + score->timings.backbone_s));
  }
  // The batch reference: M+1 images, each compared with M others — the same work per image as
  // the line, all at once.
  std::vector<ImageView> batch;
  for (size_t k = 0; k <= m; ++k) batch.push_back(ViewOf(images[k]));
  const auto batch_start = Clock::now();
  absl::StatusOr<BatchScores> scores = (*engine)->Score(batch);
  if (!scores.ok()) return 1;
  const double batch_per_image = Ms(Clock::now() - batch_start) / static_cast<double>(m + 1);
  const double p50 = Percentile(latency_ms, 0.5);
  std::printf(
      "line per image: p50 %.1f ms, p99 %.1f ms (backbone p50 %.1f ms, mutual scoring p50 "
      "%.1f ms)\n",
      p50, Percentile(latency_ms, 0.99), Percentile(backbone_ms, 0.5), Percentile(msm_ms, 0.5));
  std::printf(
      "batch of %zu: %.1f ms per image (backbone %.1f, LNAMD %.1f, MSM %.1f, maps %.1f, "
      "RsCIN %.1f ms per image)\n",
      m + 1, batch_per_image, 1000 * scores->timings.backbone_s / (m + 1),
      1000 * scores->timings.lnamd_s / (m + 1), 1000 * scores->timings.msm_s / (m + 1),
      1000 * scores->timings.maps_s / (m + 1), 1000 * scores->timings.rscin_s / (m + 1));
  std::printf("line_p50_ms=%.1f line_p99_ms=%.1f batch_ms_per_image=%.1f line_over_batch=%.2f\n",
              p50, Percentile(latency_ms, 0.99), batch_per_image, p50 / batch_per_image);
  return 0;
}

}  // namespace musc
