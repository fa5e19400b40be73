#include "bench/noise_images.h"

#include <cstddef>

namespace musc {
namespace {

// n side×side×3 images whose pixel (y, x, c) is value(y, x, c), filled image by image in
// row-major order (the order the values are drawn in).
template <typename Value>
NoiseImages Generate(int64_t n, int64_t side, Value&& value) {
  NoiseImages images;
  images.pixels.resize(static_cast<size_t>(n));
  for (std::vector<uint8_t>& px : images.pixels) {
    px.resize(static_cast<size_t>(side * side * 3));
    for (int64_t y = 0; y < side; ++y) {
      for (int64_t x = 0; x < side; ++x) {
        for (int64_t c = 0; c < 3; ++c) {
          px[static_cast<size_t>((y * side + x) * 3 + c)] = static_cast<uint8_t>(value(y, x, c));
        }
      }
    }
    images.views.push_back({px.data(), side, side, 3, PixelType::kUint8});
  }
  return images;
}

}  // namespace

NoiseImages UniformNoiseImages(int64_t n, int64_t side, std::mt19937& rng) {
  std::uniform_int_distribution<int> noise(0, 255);
  return Generate(n, side, [&](int64_t, int64_t, int64_t) { return noise(rng); });
}

NoiseImages GradientNoiseImages(int64_t n, int64_t side, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 63);
  return Generate(n, side, [&](int64_t y, int64_t x, int64_t c) {
    const int64_t base = (x * 96 / side + y * 96 / side + 40 * c) % 192;
    return static_cast<int>(base + noise(rng));
  });
}

}  // namespace musc
