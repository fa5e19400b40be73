#include "client/evaluation.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <numeric>
#include <opencv2/core.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "client/line_replay.h"
#include "client/map_codec.h"
#include "eval/metrics.h"

namespace musc {
namespace {

// An image file's bytes, with the message `eval` has always given ("cannot read PATH").
absl::StatusOr<std::string> ReadImageFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) return absl::Status(bytes.status().code(), absl::StrCat("cannot read ", path));
  return bytes;
}

}  // namespace

absl::StatusOr<EvaluationReport> Evaluate(MuscClient& client, const EvalSet& set,
                                          const EvaluationOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const size_t n = set.images.size();
  const size_t batch = options.batch_size > 0 ? static_cast<size_t>(options.batch_size) : n;
  EvaluationAccumulator accumulator(n);
  int first_width = -1, first_height = -1;
  // One result: its score, label, map and mask join the evaluation, and its label-free decision
  // (as the server made it) is set against the label.
  auto consume = [&](size_t i, const v1::ImageResult& result) -> absl::Status {
    if (result.has_decision() && result.decision().decided()) {
      accumulator.AddDecision(result.decision().is_anomalous(), set.images[i].anomalous);
    }
    cv::Mat values;
    MUSC_RETURN_IF_ERROR(DecodeMap(result.map(), &values));
    return accumulator.AddImage(i, result.final_score(), set.images[i].anomalous,
                                values.ptr<float>(), values.cols, values.rows,
                                set.images[i].mask_path);
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
      MUSC_ASSIGN_OR_RETURN(std::string bytes, ReadImageFile(set.images[i].path));
      images.push_back({set.images[i].id, std::move(bytes), {}});
    }
    LineReplayOptions replay;
    replay.product = options.product;
    replay.map_options.set_encoding(v1::FLOAT16);
    replay.map_options.set_model_resolution(true);
    size_t answered = 0;
    MUSC_ASSIGN_OR_RETURN(
        const LineReplayResult line,
        ReplayLine(client, images, replay, [&](size_t, const v1::ScoreImageResponse&, double) {
          if (options.progress) std::fprintf(stderr, "\reval (line): %zu/%zu   ", ++answered, n);
        }));
    for (size_t k = 0; k < n; ++k) {
      MUSC_RETURN_IF_ERROR(consume(order[k], line.responses[k].result()));
      if (k >= static_cast<size_t>(line.warmup_images)) {
        line_latencies.push_back(line.latency_seconds[k]);
      }
    }
  }
  for (size_t begin = 0; begin < (options.line_mode ? 0 : n); begin += batch) {
    const size_t end = std::min(n, begin + batch);
    std::vector<EncodedImage> images;
    for (size_t i = begin; i < end; ++i) {
      MUSC_ASSIGN_OR_RETURN(std::string bytes, ReadImageFile(set.images[i].path));
      images.push_back({set.images[i].id, std::move(bytes), {}});
    }
    v1::CreateSessionRequest create;
    create.set_product(options.product);
    create.mutable_seal_policy();  // Manual: this batch is sealed when complete.
    (*create.mutable_labels())["purpose"] = "eval";
    MUSC_ASSIGN_OR_RETURN(const v1::Session session, client.CreateSession(create));
    MUSC_ASSIGN_OR_RETURN(const std::vector<v1::ImageAck> acks,
                          client.AddImages(session.id(), images));
    for (const v1::ImageAck& ack : acks) {
      if (!ack.accepted()) {
        client.CancelSession(session.id()).IgnoreError();
        return absl::InvalidArgumentError(
            absl::StrCat("server rejected ", ack.client_image_id(), ": ", ack.error_message()));
      }
      // One category's images share one size; a different one means a mixed-up folder.
      if (first_width < 0) {
        first_width = static_cast<int>(ack.width());
        first_height = static_cast<int>(ack.height());
      } else if (static_cast<int>(ack.width()) != first_width ||
                 static_cast<int>(ack.height()) != first_height) {
        client.CancelSession(session.id()).IgnoreError();
        return absl::InvalidArgumentError(
            absl::StrCat("mixed image sizes: ", ack.client_image_id(), " is ", ack.width(), "×",
                         ack.height(), ", earlier images are ", first_width, "×", first_height));
      }
    }
    MUSC_RETURN_IF_ERROR(client.SealSession(session.id()));
    v1::MapOptions map_options;
    map_options.set_encoding(v1::FLOAT16);
    map_options.set_model_resolution(true);
    std::map<uint32_t, v1::ImageResult> results;
    v1::Session final_session;
    MUSC_RETURN_IF_ERROR(
        client.StreamResults(session.id(), map_options, [&](const v1::ResultEvent& e) {
          if (e.has_result()) results[e.result().index()] = e.result();
          if (e.has_finished()) final_session = e.finished().session();
          if (e.has_progress() && options.progress) {
            std::fprintf(stderr, "\reval: images %zu-%zu of %zu: %s %u/%u   ", begin + 1, end, n,
                         e.progress().stage().c_str(), e.progress().done(), e.progress().total());
          }
        }));
    if (final_session.state() != v1::DONE) {
      return absl::InternalError(absl::StrCat("session ", session.id(), " ended ",
                                              v1::SessionState_Name(final_session.state()), ": ",
                                              final_session.error()));
    }
    if (results.size() != end - begin) {
      return absl::InternalError(
          absl::StrCat("expected ", end - begin, " results, got ", results.size()));
    }
    for (const auto& [index, result] : results) {
      MUSC_RETURN_IF_ERROR(consume(begin + index, result));
    }
  }
  if (options.progress) std::fprintf(stderr, "\n");

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  MUSC_ASSIGN_OR_RETURN(EvaluationReport report, accumulator.Report());
  report.seconds = seconds;
  report.line_latency_p50 = Percentile(line_latencies, 0.5);
  report.line_latency_p99 = Percentile(line_latencies, 0.99);
  return report;
}

}  // namespace musc
