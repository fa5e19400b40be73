// Seeded synthetic images for the benchmarks and the GPU check, which time the engine on inputs
// whose content does not matter (or must only be reproducible): RGB uint8 pixels and the engine's
// views of them. Part of musc_bench_images, which needs the core's value types only, so that
// musc-gpu-check keeps building without OpenCV (-DMUSC_CORE_ONLY=ON).
#ifndef MUSC_BENCH_NOISE_IMAGES_H_
#define MUSC_BENCH_NOISE_IMAGES_H_

#include <cstdint>
#include <random>
#include <vector>

#include "core/engine_types.h"

namespace musc {

// Move-only: the views point into the pixel buffers, which a move keeps and a copy would not.
struct NoiseImages {
  NoiseImages() = default;
  NoiseImages(NoiseImages&&) = default;
  NoiseImages& operator=(NoiseImages&&) = default;
  NoiseImages(const NoiseImages&) = delete;
  NoiseImages& operator=(const NoiseImages&) = delete;

  std::vector<std::vector<uint8_t>> pixels;  // One side×side×3 buffer per image.
  std::vector<ImageView> views;              // views[i] shows pixels[i].
};

// n images of uniform noise in [0, 255], drawn from rng (which advances: successive calls give
// new images).
NoiseImages UniformNoiseImages(int64_t n, int64_t side, std::mt19937& rng);

// n images of noise in [0, 63] over a diagonal gradient per channel (some large-scale structure
// for the backbone to see), from `seed`.
NoiseImages GradientNoiseImages(int64_t n, int64_t side, uint32_t seed);

}  // namespace musc

#endif  // MUSC_BENCH_NOISE_IMAGES_H_
