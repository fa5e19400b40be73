// Client-side handling of result maps: decoding the wire encodings and drawing overlays.
#ifndef MUSC_CLIENT_MAP_CODEC_H_
#define MUSC_CLIENT_MAP_CODEC_H_

#include <opencv2/core.hpp>

#include "absl/status/status.h"
#include "musc/v1/musc_service.pb.h"

namespace musc {

// PNG8 / PNG16 / FLOAT16 → CV_32FC1 values at the map's stated size (PNG values are mapped back
// through the stated value scale).
absl::Status DecodeMap(const v1::AnomalyMap& map, cv::Mat* values);

// The map in a perceptual colormap (inferno) blended over the image (BGR or grey, any depth),
// scaled to [value_min, value_max] so overlays of one batch share one colour scale.
cv::Mat HeatMapOverlay(const cv::Mat& image, const cv::Mat& values, float value_min,
                       float value_max, double alpha = 0.5);

}  // namespace musc

#endif  // MUSC_CLIENT_MAP_CODEC_H_
