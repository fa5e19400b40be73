#include "tests/server/test_images.h"

#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

namespace musc::testing {

cv::Mat MakeTexture(uint64_t seed, bool defect, int width, int height, bool grey16) {
  cv::RNG rng(seed);
  cv::Mat image(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double stripes = 0.5 + 0.5 * std::sin(0.6 * x + 0.3 * y);
      const int base = static_cast<int>(80 + 100 * stripes + rng.gaussian(6.0));
      const uchar v = cv::saturate_cast<uchar>(base);
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(v, cv::saturate_cast<uchar>(v * 0.9), 60);
    }
  }
  if (defect) {
    const int x0 = rng.uniform(width / 5, width / 2);
    const int y0 = rng.uniform(height / 5, height / 2);
    cv::line(image, {x0, y0}, {x0 + width / 4, y0 + height / 5}, cv::Scalar(255, 255, 255), 3);
  }
  if (grey16) {
    cv::Mat grey, wide;
    cv::cvtColor(image, grey, cv::COLOR_BGR2GRAY);
    grey.convertTo(wide, CV_16U, 257.0);
    return wide;
  }
  return image;
}

std::string EncodePng(const cv::Mat& image) {
  std::vector<uchar> bytes;
  cv::imencode(".png", image, bytes);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace musc::testing
