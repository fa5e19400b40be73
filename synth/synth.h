// A deterministic synthetic defect generator writing MVTec-AD-layout categories: demo and test
// data with exact masks and no licence strings attached.
//
// Two product kinds:
//  - texture: a plain-weave fabric (yarn tint per thread, fibre striations, slow shading), every
//    image a different crop of it: shift, rotation within ±2°, exposure jitter, sensor noise.
//  - object: a turned steel flange (ring with six bolt holes) centred on a dark table, with
//    small pose jitter (shift, scale, any rotation — the holes move), exposure jitter, noise.
// Defect types: "scratch" (thin curved bright or dark line), "spot" (an irregular stain of a
// different colour), "missing" (texture: a hole in the weave showing the dark backing; object:
// a bolt hole that was never drilled or a piece bitten out of the rim), "crack" (a thin dark
// jagged line; for objects it starts at an edge).
//
// Masks are exactly the painted shape: every pixel the defect painted (geometric coverage of the
// defect shape, clipped to the product surface, at least 1/4 of the pixel) is 255 and every other
// pixel is 0. Pixels outside the mask are bit-for-bit those of the same image rendered without
// the defect (the sensor noise is keyed by position, not drawn in sequence), and the painted
// opacity is high enough that nearly every mask pixel visibly changes.
//
// Determinism: all randomness comes from splitmix64 (our own code, not <random> distributions,
// whose output differs between standard libraries, nor cv::RNG), keyed by (seed, kind, split,
// defect type, index), so an image does not depend on how many others are generated. Rendering
// uses only IEEE-exact operations (+ − × ÷ sqrt floor) and our own polynomial sin/cos, never
// libm's transcendental functions or OpenCV's resampling, so the pixel values are identical on
// every conforming platform. The PNG bytes are identical for the same libpng/zlib (fixed
// compression level); a different zlib may compress the same pixels differently.
#ifndef MUSC_SYNTH_SYNTH_H_
#define MUSC_SYNTH_SYNTH_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace musc {

enum class ProductKind { kTexture, kObject };

// "texture" | "object" → the kind; anything else is InvalidArgument.
absl::StatusOr<ProductKind> ParseProductKind(std::string_view name);
std::string_view ProductKindName(ProductKind kind);

// The defect type names the generator knows, in a fixed order.
const std::vector<std::string>& KnownDefectTypes();

struct SynthOptions {
  std::string out_dir;                 // The category folder is <out_dir>/<category>.
  std::string category = "synthetic";  // One path component: no '/', not "." or "..".
  ProductKind kind = ProductKind::kTexture;
  int size = 256;            // Images are size × size, 32..4096.
  int good_count = 40;       // test/good images.
  int defective_count = 15;  // test/<type> images, per defect type.
  int train_good_count = 0;  // train/good images; 0 = no train/ folder (MuSc needs none).
  std::vector<std::string> defect_types = {"scratch", "spot", "missing"};
  uint64_t seed = 0;
  // When the category folder already holds files: false = FailedPrecondition (a rerun with
  // smaller counts would otherwise leave stale images behind); true = delete its test/,
  // ground_truth/ and train/ subfolders first (nothing else).
  bool overwrite = false;
};

// InvalidArgument with a one-line reason for any option WriteSyntheticCategory would reject.
absl::Status ValidateSynthOptions(const SynthOptions& options);

// One rendered sample, before it is written.
struct SynthSample {
  cv::Mat image;  // CV_8UC3, BGR (OpenCV's order, written as an RGB PNG), size × size.
  cv::Mat clean;  // The same image rendered without its defect (equal to `image` when good).
  cv::Mat mask;   // CV_8UC1 0/255, the painted defect shape; empty for good images.
};

// Renders image `index` of split `type` ("good" or a defect type) exactly as
// WriteSyntheticCategory writes it; `train` selects the train/good stream instead of test/good.
absl::StatusOr<SynthSample> RenderSyntheticSample(const SynthOptions& options,
                                                  std::string_view type, int index,
                                                  bool train = false);

// Writes <out>/<category>/test/good/NNN.png, test/<type>/NNN.png,
// ground_truth/<type>/NNN_mask.png and, when train_good_count > 0, train/good/NNN.png
// (NNN = 000, 001, … as in MVTec AD). Errors name the path and the reason.
absl::Status WriteSyntheticCategory(const SynthOptions& options);

}  // namespace musc

#endif  // MUSC_SYNTH_SYNTH_H_
