// Synthetic product images for service tests: a regular texture with noise, optionally with a
// bright scratch, encoded as PNG (8-bit RGB, or 16-bit grey).
#ifndef MUSC_TESTS_SERVER_TEST_IMAGES_H_
#define MUSC_TESTS_SERVER_TEST_IMAGES_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>

namespace musc::testing {

cv::Mat MakeTexture(uint64_t seed, bool defect, int width, int height, bool grey16 = false);
std::string EncodePng(const cv::Mat& image);
inline std::string TexturePng(uint64_t seed, bool defect, int width = 96, int height = 80,
                              bool grey16 = false) {
  return EncodePng(MakeTexture(seed, defect, width, height, grey16));
}

}  // namespace musc::testing

#endif  // MUSC_TESTS_SERVER_TEST_IMAGES_H_
