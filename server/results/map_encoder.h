// Turns a score map into what a client asked for: resized to the image's original resolution and
// encoded as PNG8 / PNG16 (with its value scale) or raw float16, plus an optional binary mask.
#ifndef MUSC_SERVER_RESULTS_MAP_ENCODER_H_
#define MUSC_SERVER_RESULTS_MAP_ENCODER_H_

#include <opencv2/core.hpp>
#include <optional>

#include "absl/status/status.h"
#include "musc/v1/musc_service.pb.h"

namespace musc {

// map: CV_32FC1 at any size. Fills result->map (unless encoding is MAP_NONE) and result->mask_png
// (when mask_threshold is set), both at width × height.
absl::Status EncodeMap(const cv::Mat& map, int width, int height, v1::MapEncoding encoding,
                       std::optional<float> mask_threshold, v1::ImageResult* result);

}  // namespace musc

#endif  // MUSC_SERVER_RESULTS_MAP_ENCODER_H_
