#include "client/map_codec.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace musc {

absl::Status DecodeMap(const v1::AnomalyMap& map, cv::Mat* values) {
  const int w = static_cast<int>(map.width());
  const int h = static_cast<int>(map.height());
  switch (map.encoding()) {
    case v1::PNG8:
    case v1::PNG16: {
      const cv::Mat buffer(1, static_cast<int>(map.data().size()), CV_8UC1,
                           const_cast<char*>(map.data().data()));
      const cv::Mat pixels = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
      if (pixels.empty() || pixels.cols != w || pixels.rows != h) {
        return absl::InvalidArgumentError("map PNG does not decode to the stated size");
      }
      const double levels = map.encoding() == v1::PNG16 ? 65535.0 : 255.0;
      const double range =
          map.value_max() > map.value_min() ? map.value_max() - map.value_min() : 1.0;
      pixels.convertTo(*values, CV_32F, range / levels, map.value_min());
      return absl::OkStatus();
    }
    case v1::FLOAT16: {
      if (map.data().size() != static_cast<size_t>(w) * static_cast<size_t>(h) * 2) {
        return absl::InvalidArgumentError("float16 map has the wrong number of bytes");
      }
      const cv::Mat half(h, w, CV_16F, const_cast<char*>(map.data().data()));
      half.convertTo(*values, CV_32F);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("map has no decodable encoding");
  }
}

cv::Mat HeatMapOverlay(const cv::Mat& image, const cv::Mat& values, float value_min,
                       float value_max, double alpha) {
  cv::Mat base;
  if (image.depth() == CV_16U) {
    image.convertTo(base, CV_8U, 1.0 / 257.0);
  } else {
    base = image;
  }
  if (base.channels() == 1) cv::cvtColor(base, base, cv::COLOR_GRAY2BGR);
  const double range = value_max > value_min ? value_max - value_min : 1.0;
  cv::Mat scaled, colour;
  values.convertTo(scaled, CV_8U, 255.0 / range, -255.0 * value_min / range);
  cv::applyColorMap(scaled, colour, cv::COLORMAP_INFERNO);
  if (colour.size() != base.size()) cv::resize(colour, colour, base.size());
  cv::Mat blended;
  cv::addWeighted(base, 1.0 - alpha, colour, alpha, 0.0, blended);
  return blended;
}

}  // namespace musc
