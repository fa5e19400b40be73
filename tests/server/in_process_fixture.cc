#include "tests/server/in_process_fixture.h"

#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "server/images/image_decoder.h"
#include "tests/server/test_images.h"

namespace musc::testing {

std::vector<ProductConfig> ProductsFromYaml(const std::string& yaml) {
  absl::StatusOr<std::vector<ProductConfig>> products =
      ParseProducts(yaml, "in-process test products", "/");
  EXPECT_TRUE(products.ok()) << products.status();
  return products.ok() ? *std::move(products) : std::vector<ProductConfig>{};
}

std::string TexturePngFor(uint64_t seed) { return TexturePng(seed, /*defect=*/false); }

cv::Mat DecodedTexture(uint64_t seed) {
  absl::StatusOr<DecodedImage> decoded = DecodeImage(TexturePngFor(seed), DecodeLimits{});
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return decoded.ok() ? decoded->pixels : cv::Mat();
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

std::optional<double> SampleValue(const std::string& exposition, const std::string& sample) {
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 &&
        line[sample.size()] == ' ') {
      return std::stod(line.substr(sample.size() + 1));
    }
  }
  return std::nullopt;
}

}  // namespace musc::testing
