#include "server/results/map_encoder.h"

#include <algorithm>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "absl/strings/str_cat.h"

namespace musc {
namespace {

absl::Status EncodePng(const cv::Mat& image, std::string* out) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes)) return absl::InternalError("PNG encoding failed");
  out->assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return absl::OkStatus();
}

}  // namespace

absl::Status EncodeMap(const cv::Mat& map, int width, int height, v1::MapEncoding encoding,
                       std::optional<float> mask_threshold, v1::ImageResult* result) {
  if (map.type() != CV_32FC1 || map.empty()) {
    return absl::InternalError("score map must be a non-empty float matrix");
  }
  cv::Mat resized;
  // INTER_LINEAR samples at pixel centres: bilinear with align_corners=false, as an image resize.
  cv::resize(map, resized, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);

  if (encoding != v1::MAP_NONE) {
    v1::AnomalyMap* out = result->mutable_map();
    out->set_width(static_cast<uint32_t>(width));
    out->set_height(static_cast<uint32_t>(height));
    out->set_encoding(encoding);
    double lo = 0, hi = 0;
    cv::minMaxLoc(resized, &lo, &hi);
    out->set_value_min(static_cast<float>(lo));
    out->set_value_max(static_cast<float>(hi));
    const double range = hi > lo ? hi - lo : 1.0;
    switch (encoding) {
      case v1::PNG8:
      case v1::PNG16: {
        const bool wide = encoding == v1::PNG16;
        const double levels = wide ? 65535.0 : 255.0;
        cv::Mat quantised;
        resized.convertTo(quantised, wide ? CV_16U : CV_8U, levels / range, -lo * levels / range);
        if (absl::Status s = EncodePng(quantised, out->mutable_data()); !s.ok()) return s;
        break;
      }
      case v1::FLOAT16: {
        cv::Mat half;
        resized.convertTo(half, CV_16F);
        out->set_data(reinterpret_cast<const char*>(half.data), half.total() * half.elemSize());
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported map encoding ", v1::MapEncoding_Name(encoding)));
    }
  }
  if (mask_threshold) {
    cv::Mat mask = resized >= *mask_threshold;  // 0 / 255, CV_8U
    if (absl::Status s = EncodePng(mask, result->mutable_mask_png()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace musc
