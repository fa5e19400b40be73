#include "client/evaluation.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "client/line_replay.h"
#include "client/map_codec.h"
#include "eval/metrics.h"

namespace musc {
namespace {

absl::StatusOr<std::string> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// MUSC-SPEC §7: the mask (any value > 0 is defect) resized to S×S bilinearly; values below 1 are
// normal. No mask: all normal.
absl::StatusOr<cv::Mat> MaskAtModelSize(const std::string& path, int size) {
  if (path.empty()) return cv::Mat(cv::Mat::zeros(size, size, CV_8U));
  const cv::Mat raw = cv::imread(path, cv::IMREAD_GRAYSCALE);
  if (raw.empty()) return absl::InvalidArgumentError(absl::StrCat("cannot decode mask ", path));
  cv::Mat unit, resized;
  cv::Mat(raw > 0).convertTo(unit, CV_32F, 1.0 / 255.0);
  cv::resize(unit, resized, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  cv::Mat binary = resized >= 1.0f;  // 0 / 255
  binary.convertTo(binary, CV_8U, 1.0 / 255.0);
  return binary;
}

}  // namespace

absl::StatusOr<EvaluationReport> Evaluate(MuscClient& client, const EvalSet& set,
                                          const EvaluationOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const size_t n = set.images.size();
  const size_t batch = options.batch_size > 0 ? static_cast<size_t>(options.batch_size) : n;
  std::vector<double> image_scores(n);
  std::vector<bool> image_labels(n);
  std::vector<float> pixel_maps;
  std::vector<uint8_t> pixel_masks;
  int map_size = 0;
  int first_width = -1, first_height = -1;
  bool any_mask = false;

  // Label-free decisions as the server made them, against the labels.
  int64_t decided = 0, true_positives = 0, predicted_positives = 0, actual_positives = 0;
  // One result: its score, label, map and mask join the evaluation (each map beside its own
  // mask, which is all the pixel metrics and PRO need: the order of images does not matter).
  auto consume = [&](size_t i, const v1::ImageResult& result) -> absl::Status {
    image_scores[i] = result.final_score();
    image_labels[i] = set.images[i].anomalous;
    if (result.has_decision() && result.decision().decided()) {
      ++decided;
      predicted_positives += result.decision().is_anomalous() ? 1 : 0;
      actual_positives += set.images[i].anomalous ? 1 : 0;
      true_positives += result.decision().is_anomalous() && set.images[i].anomalous ? 1 : 0;
    }
    cv::Mat values;
    if (absl::Status s = DecodeMap(result.map(), &values); !s.ok()) return s;
    if (map_size == 0) map_size = values.cols;
    if (values.cols != map_size || values.rows != map_size) {
      return absl::InternalError("maps of one evaluation differ in size");
    }
    absl::StatusOr<cv::Mat> mask = MaskAtModelSize(set.images[i].mask_path, map_size);
    if (!mask.ok()) return mask.status();
    any_mask = any_mask || !set.images[i].mask_path.empty();
    pixel_maps.insert(pixel_maps.end(), values.ptr<float>(), values.ptr<float>() + values.total());
    pixel_masks.insert(pixel_masks.end(), mask->data, mask->data + mask->total());
    return absl::OkStatus();
  };

  std::vector<double> line_latencies;
  if (options.line_mode) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    if (options.shuffle_seed != 0) {
      std::mt19937_64 rng(options.shuffle_seed);
      std::shuffle(order.begin(), order.end(), rng);
    }
    std::vector<EncodedImage> images;
    for (size_t i : order) {
      absl::StatusOr<std::string> bytes = ReadBytes(set.images[i].path);
      if (!bytes.ok()) return bytes.status();
      images.push_back({set.images[i].id, *std::move(bytes), {}});
    }
    LineReplayOptions replay;
    replay.product = options.product;
    replay.map_options.set_encoding(v1::FLOAT16);
    replay.map_options.set_model_resolution(true);
    size_t answered = 0;
    absl::StatusOr<LineReplayResult> line =
        ReplayLine(client, images, replay, [&](size_t, const v1::ScoreImageResponse&, double) {
          if (options.progress) std::fprintf(stderr, "\reval (line): %zu/%zu   ", ++answered, n);
        });
    if (!line.ok()) return line.status();
    for (size_t k = 0; k < n; ++k) {
      if (absl::Status s = consume(order[k], line->responses[k].result()); !s.ok()) return s;
      if (k >= static_cast<size_t>(line->warmup_images)) {
        line_latencies.push_back(line->latency_seconds[k]);
      }
    }
  }
  for (size_t begin = 0; begin < (options.line_mode ? 0 : n); begin += batch) {
    const size_t end = std::min(n, begin + batch);
    std::vector<EncodedImage> images;
    for (size_t i = begin; i < end; ++i) {
      absl::StatusOr<std::string> bytes = ReadBytes(set.images[i].path);
      if (!bytes.ok()) return bytes.status();
      images.push_back({set.images[i].id, *std::move(bytes), {}});
    }
    v1::CreateSessionRequest create;
    create.set_product(options.product);
    create.mutable_seal_policy();  // Manual: this batch is sealed when complete.
    (*create.mutable_labels())["purpose"] = "eval";
    absl::StatusOr<v1::Session> session = client.CreateSession(create);
    if (!session.ok()) return session.status();
    absl::StatusOr<std::vector<v1::ImageAck>> acks = client.AddImages(session->id(), images);
    if (!acks.ok()) return acks.status();
    for (const v1::ImageAck& ack : *acks) {
      if (!ack.accepted()) {
        client.CancelSession(session->id()).IgnoreError();
        return absl::InvalidArgumentError(
            absl::StrCat("server rejected ", ack.client_image_id(), ": ", ack.error_message()));
      }
      // One category's images share one size; a different one means a mixed-up folder.
      if (first_width < 0) {
        first_width = static_cast<int>(ack.width());
        first_height = static_cast<int>(ack.height());
      } else if (static_cast<int>(ack.width()) != first_width ||
                 static_cast<int>(ack.height()) != first_height) {
        client.CancelSession(session->id()).IgnoreError();
        return absl::InvalidArgumentError(
            absl::StrCat("mixed image sizes: ", ack.client_image_id(), " is ", ack.width(), "×",
                         ack.height(), ", earlier images are ", first_width, "×", first_height));
      }
    }
    absl::StatusOr<v1::Session> sealed = client.SealSession(session->id());
    if (!sealed.ok()) return sealed.status();
    v1::MapOptions map_options;
    map_options.set_encoding(v1::FLOAT16);
    map_options.set_model_resolution(true);
    std::map<uint32_t, v1::ImageResult> results;
    v1::Session final_session;
    absl::Status streamed =
        client.StreamResults(session->id(), map_options, [&](const v1::ResultEvent& e) {
          if (e.has_result()) results[e.result().index()] = e.result();
          if (e.has_finished()) final_session = e.finished().session();
          if (e.has_progress() && options.progress) {
            std::fprintf(stderr, "\reval: images %zu-%zu of %zu: %s %u/%u   ", begin + 1, end, n,
                         e.progress().stage().c_str(), e.progress().done(), e.progress().total());
          }
        });
    if (!streamed.ok()) return streamed;
    if (final_session.state() != v1::DONE) {
      return absl::InternalError(absl::StrCat("session ", session->id(), " ended ",
                                              v1::SessionState_Name(final_session.state()), ": ",
                                              final_session.error()));
    }
    if (results.size() != end - begin) {
      return absl::InternalError(
          absl::StrCat("expected ", end - begin, " results, got ", results.size()));
    }
    for (const auto& [index, result] : results) {
      if (absl::Status s = consume(begin + index, result); !s.ok()) return s;
    }
  }
  if (options.progress) std::fprintf(stderr, "\n");

  EvaluationReport report;
  if (decided > 0) {
    report.has_decisions = true;
    report.decided_images = decided;
    report.decision_precision =
        predicted_positives == 0 ? 0 : static_cast<double>(true_positives) / predicted_positives;
    report.decision_recall =
        actual_positives == 0 ? 0 : static_cast<double>(true_positives) / actual_positives;
    const double pr = report.decision_precision + report.decision_recall;
    report.decision_f1 = pr == 0 ? 0 : 2 * report.decision_precision * report.decision_recall / pr;
  }
  report.line_latency_p50 = Percentile(line_latencies, 0.5);
  report.line_latency_p99 = Percentile(line_latencies, 0.99);
  report.n_images = static_cast<int64_t>(n);
  report.map_size = map_size;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto take = [](absl::StatusOr<double> v, double* out) -> absl::Status {
    if (!v.ok()) return v.status();
    *out = *v;
    return absl::OkStatus();
  };
  if (absl::Status s = take(Auroc(image_scores, image_labels), &report.image_auroc); !s.ok()) {
    return s;
  }
  if (absl::Status s = take(AveragePrecision(image_scores, image_labels), &report.image_ap);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = take(F1Max(image_scores, image_labels), &report.image_f1max); !s.ok()) {
    return s;
  }
  if (any_mask) {
    report.has_pixel_metrics = true;
    const std::vector<double> scores(pixel_maps.begin(), pixel_maps.end());
    const std::vector<bool> labels(pixel_masks.begin(), pixel_masks.end());
    if (absl::Status s = take(Auroc(scores, labels), &report.pixel_auroc); !s.ok()) return s;
    if (absl::Status s = take(AveragePrecision(scores, labels), &report.pixel_ap); !s.ok()) {
      return s;
    }
    if (absl::Status s = take(F1Max(scores, labels), &report.pixel_f1max); !s.ok()) return s;
    if (absl::Status s = take(
            Pro(pixel_maps, pixel_masks, static_cast<int64_t>(n), map_size, map_size), &report.pro);
        !s.ok()) {
      return s;
    }
  }
  return report;
}

}  // namespace musc
