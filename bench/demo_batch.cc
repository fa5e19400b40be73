#include "bench/demo_batch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "eval/evaluation.h"
#include "eval/metrics.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

struct DemoImage {
  std::string name;  // <type>/<file>
  bool anomalous = false;
  std::string mask_path;  // ground_truth/<type>/<stem>_mask.png when it exists
  cv::Mat pixels;         // RGB or grey, 8 or 16 bit.
};

std::vector<fs::path> SortedImages(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".bmp")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int RunDemoBatch(const DemoOptions& options) {
  const fs::path test_dir = fs::path(options.data_dir) / "test";
  if (!fs::is_directory(test_dir)) {
    std::fprintf(stderr, "demo: %s is not an MVTec-layout category (no test/ folder)\n",
                 options.data_dir.c_str());
    return 2;
  }
  std::vector<fs::path> types;
  for (const auto& entry : fs::directory_iterator(test_dir)) {
    if (entry.is_directory()) types.push_back(entry.path());
  }
  std::sort(types.begin(), types.end());
  std::vector<std::vector<fs::path>> per_type;
  size_t total = 0;
  for (const auto& t : types) {
    per_type.push_back(SortedImages(t));
    total += per_type.back().size();
  }
  // With a limit, take images round-robin over the types so every type is represented.
  std::vector<std::pair<size_t, fs::path>> chosen;
  const size_t want =
      options.limit > 0 ? std::min(total, static_cast<size_t>(options.limit)) : total;
  for (size_t round = 0; chosen.size() < want; ++round) {
    for (size_t t = 0; t < per_type.size() && chosen.size() < want; ++t) {
      if (round < per_type[t].size()) chosen.emplace_back(t, per_type[t][round]);
    }
  }

  std::vector<DemoImage> images;
  for (const auto& [t, path] : chosen) {
    DemoImage image;
    image.name = types[t].filename().string() + "/" + path.filename().string();
    image.anomalous = types[t].filename() != "good";
    const fs::path mask = fs::path(options.data_dir) / "ground_truth" / types[t].filename() /
                          (path.stem().string() + "_mask.png");
    if (fs::exists(mask)) image.mask_path = mask.string();
    cv::Mat raw = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
    if (raw.empty()) {
      std::fprintf(stderr, "demo: cannot decode %s\n", path.c_str());
      return 2;
    }
    if (raw.channels() == 4) cv::cvtColor(raw, raw, cv::COLOR_BGRA2BGR);
    if (raw.channels() == 3) cv::cvtColor(raw, raw, cv::COLOR_BGR2RGB);
    image.pixels = raw;
    images.push_back(std::move(image));
  }
  std::vector<ImageView> views;
  for (const DemoImage& image : images) {
    const cv::Mat& m = image.pixels;
    if (m.depth() != CV_8U && m.depth() != CV_16U) {
      std::fprintf(stderr, "demo: %s has an unsupported pixel depth\n", image.name.c_str());
      return 2;
    }
    views.push_back({m.data, m.rows, m.cols, m.channels(),
                     m.depth() == CV_8U ? PixelType::kUint8 : PixelType::kUint16});
  }

  const auto load_start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(options.engine);
  if (!engine.ok()) {
    std::fprintf(stderr, "demo: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  std::printf("backbone %s (input %lld px) loaded in %.2f s; scoring %zu images as one batch\n",
              (*engine)->backbone_name().c_str(), static_cast<long long>((*engine)->input_size()),
              load_s, views.size());
  absl::StatusOr<BatchScores> scores = (*engine)->Score(views);
  if (!scores.ok()) {
    std::fprintf(stderr, "demo: %s\n", scores.status().ToString().c_str());
    return 1;
  }

  std::printf("\n%-28s %-9s %10s %10s\n", "image", "truth", "raw", "final");
  std::vector<double> raw, final_scores;
  std::vector<bool> labels;
  for (size_t i = 0; i < images.size(); ++i) {
    std::printf("%-28s %-9s %10.5f %10.5f\n", images[i].name.c_str(),
                images[i].anomalous ? "defect" : "good", scores->raw_scores[i],
                scores->final_scores[i]);
    raw.push_back(scores->raw_scores[i]);
    final_scores.push_back(scores->final_scores[i]);
    labels.push_back(images[i].anomalous);
  }
  const StageTimings& t = scores->timings;
  std::printf(
      "\nstage seconds: preprocess %.2f  backbone %.2f  lnamd %.2f  msm %.2f  maps %.2f  "
      "rscin %.3f  total %.2f (%.1f ms/image)\n",
      t.preprocess_s, t.backbone_s, t.lnamd_s, t.msm_s, t.maps_s, t.rscin_s, t.total(),
      1000.0 * t.total() / static_cast<double>(images.size()));
  if (scores->small_batch) std::printf("note: small batch, interval widened to nearest image\n");
  const absl::StatusOr<double> auroc_raw = Auroc(raw, labels);
  const absl::StatusOr<double> auroc_final = Auroc(final_scores, labels);
  if (auroc_raw.ok() && auroc_final.ok()) {
    std::printf("image AUROC: raw %.4f  after RsCIN %.4f  (N=%zu, %zu defective)\n", *auroc_raw,
                *auroc_final, labels.size(),
                static_cast<size_t>(std::count(labels.begin(), labels.end(), true)));
  }

  // Pixel AUROC over the masks at the model size (eval/evaluation.h); a mask that cannot be
  // decoded counts as all normal here, as an image without one does.
  if (!scores->maps.empty()) {
    const int s = static_cast<int>(scores->map_size);
    std::vector<double> pixel_scores;
    std::vector<bool> pixel_labels;
    pixel_scores.reserve(images.size() * static_cast<size_t>(s) * s);
    pixel_labels.reserve(pixel_scores.capacity());
    for (size_t i = 0; i < images.size(); ++i) {
      absl::StatusOr<std::vector<uint8_t>> truth = MaskAtModelSize(images[i].mask_path, s);
      if (!truth.ok()) truth = std::vector<uint8_t>(static_cast<size_t>(s) * s, 0);
      const float* map = scores->maps.data() + i * static_cast<size_t>(s) * s;
      for (int k = 0; k < s * s; ++k) {
        pixel_scores.push_back(map[k]);
        pixel_labels.push_back((*truth)[k] != 0);
      }
    }
    const absl::StatusOr<double> pixel_auroc = Auroc(pixel_scores, pixel_labels);
    if (pixel_auroc.ok()) {
      std::printf("pixel AUROC: %.4f  (%zu pixels at %d×%d)\n", *pixel_auroc, pixel_scores.size(),
                  s, s);
    }
  }

  if (!options.out_dir.empty()) {
    fs::create_directories(options.out_dir);
    const int64_t s = scores->map_size;
    // One colour scale for the whole batch, so maps are comparable with each other.
    const auto [lo, hi] = std::minmax_element(scores->maps.begin(), scores->maps.end());
    for (size_t i = 0; i < images.size() && !scores->maps.empty(); ++i) {
      cv::Mat map(static_cast<int>(s), static_cast<int>(s), CV_32F,
                  scores->maps.data() + i * static_cast<size_t>(s * s));
      cv::Mat scaled, colour, resized;
      map.convertTo(scaled, CV_8U, 255.0 / std::max(1e-12f, *hi - *lo), -255.0 * *lo / (*hi - *lo));
      cv::applyColorMap(scaled, colour, cv::COLORMAP_INFERNO);
      cv::resize(colour, resized, images[i].pixels.size(), 0, 0, cv::INTER_LINEAR);
      std::string file = images[i].name;
      std::replace(file.begin(), file.end(), '/', '_');
      cv::imwrite((fs::path(options.out_dir) / file).string(), resized);
    }
    std::printf("heat maps written to %s\n", options.out_dir.c_str());
  }
  return 0;
}

}  // namespace musc
