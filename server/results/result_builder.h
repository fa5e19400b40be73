// The one place a v1::ImageResult is built from scores, for a batch session's results (streamed
// by StreamResults) and a line's answers (ScoreImage) alike: identity and metadata, scores, the
// decision (when the product has a policy), the anomaly map encoded as the request asks (else as
// the product says) and the binary mask.
#ifndef MUSC_SERVER_RESULTS_RESULT_BUILDER_H_
#define MUSC_SERVER_RESULTS_RESULT_BUILDER_H_

#include <cstdint>
#include <map>
#include <opencv2/core.hpp>
#include <string>

#include "absl/status/status.h"
#include "musc/v1/musc_service.pb.h"
#include "server/product_config.h"
#include "server/results/decision_policy.h"
#include "server/server_metrics.h"

namespace musc {

// What one result is built from. The pointers are borrowed for the call.
struct ScoredImage {
  const std::string* client_id = nullptr;
  uint32_t index = 0;
  float raw_score = 0;
  float final_score = 0;
  const std::map<std::string, std::string>* metadata = nullptr;
  const Decision* decision = nullptr;
  cv::Mat map;     // CV_32FC1 at model resolution; empty when no map was kept (then none is sent).
  int width = 0;   // The image's original size: the map is resized to it unless the request
  int height = 0;  // asks for model resolution.
};

// Fills `out` for `image` of `product` with the stream's or request's map `options`: the map is
// encoded as options.encoding (UNSPECIFIED: the product's), the mask drawn at options'
// mask_threshold, else the product's fixed one, else the decision's. Encoding time is recorded in
// `metrics` (may be null). On an encoding error `out` holds everything but the map and mask.
absl::Status BuildImageResult(const ProductConfig& product, const ScoredImage& image,
                              const v1::MapOptions& options, ServerMetrics* metrics,
                              v1::ImageResult* out);

}  // namespace musc

#endif  // MUSC_SERVER_RESULTS_RESULT_BUILDER_H_
