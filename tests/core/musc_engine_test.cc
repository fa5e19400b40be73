// The engine through its public API (core/musc_engine.h) on the seeded random tiny ViT: option
// validation, pixel types and sizes, result sizes and flags, raw scores = max of maps, batch
// permutation, incremental batches, and the whole pipeline against the naive float64 stages of
// naive_reference.h run on the same backbone's features.
#include "core/musc_engine.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/stack.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/backbones/backbone.h"
#include "core/backbones/backbone_registry.h"
#include "core/backbones/preprocess.h"
#include "core/backbones/vision_transformer.h"
#include "tests/core/musc/naive_reference.h"

namespace musc {
namespace {

// An image that owns its pixels. Content: a smooth periodic texture (the "product") plus noise,
// optionally with a bright square (a "defect"); grey images have equal channels.
struct TestImage {
  std::vector<uint8_t> u8;
  std::vector<uint16_t> u16;
  std::vector<float> f32;
  ImageView view;

  TestImage() = default;
  TestImage(const TestImage&) = delete;
  TestImage& operator=(const TestImage&) = delete;
};

// Pixel values in 0..255 (row-major H×W×C), so the same picture can be encoded in every type.
std::vector<int> Picture(int64_t h, int64_t w, int64_t c, uint32_t seed, bool defect) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 6.0);
  std::vector<int> v(static_cast<size_t>(h * w * c));
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const double base =
          128 + 60 * std::sin(2 * M_PI * x * 6.0 / w) * std::cos(2 * M_PI * y * 5.0 / h);
      const double n = noise(rng);
      for (int64_t ch = 0; ch < c; ++ch) {
        double value = base + n + 10 * ch;
        if (defect && y >= h / 3 && y < h / 3 + h / 6 && x >= w / 2 && x < w / 2 + w / 6) {
          value = 250;
        }
        v[static_cast<size_t>((y * w + x) * c + ch)] =
            static_cast<int>(std::clamp(std::round(value), 0.0, 255.0));
      }
    }
  }
  return v;
}

std::unique_ptr<TestImage> MakeImage(int64_t h, int64_t w, int64_t c, PixelType type, uint32_t seed,
                                     bool defect = false) {
  auto image = std::make_unique<TestImage>();
  const std::vector<int> values = Picture(h, w, c, seed, defect);
  switch (type) {
    case PixelType::kUint8:
      image->u8.assign(values.begin(), values.end());
      image->view.data = image->u8.data();
      break;
    case PixelType::kUint16:
      for (int v : values) image->u16.push_back(static_cast<uint16_t>(v * 257));  // v/255 exactly.
      image->view.data = image->u16.data();
      break;
    case PixelType::kFloat32:
      for (int v : values) image->f32.push_back(static_cast<float>(v) / 255.0f);
      image->view.data = image->f32.data();
      break;
  }
  image->view.height = h;
  image->view.width = w;
  image->view.channels = c;
  image->view.type = type;
  return image;
}

using ImageSet = std::vector<std::unique_ptr<TestImage>>;

std::vector<ImageView> Views(const ImageSet& images) {
  std::vector<ImageView> views;
  for (const auto& image : images) views.push_back(image->view);
  return views;
}

// N float RGB 64×64 images of one product; image `defect_index` (if ≥ 0) has a defect.
ImageSet ProductImages(int64_t n, int64_t defect_index = -1, int64_t size = 64) {
  ImageSet images;
  for (int64_t i = 0; i < n; ++i) {
    images.push_back(MakeImage(size, size, 3, PixelType::kFloat32, 100 + static_cast<uint32_t>(i),
                               i == defect_index));
  }
  return images;
}

EngineOptions DefaultOptions(uint64_t seed = 7) {
  EngineOptions options;
  options.backbone.model = "vit-tiny-random";
  options.backbone.seed = seed;
  return options;
}

std::unique_ptr<MuscEngine> MakeEngine(const EngineOptions& options) {
  absl::StatusOr<std::unique_ptr<MuscEngine>> engine = MuscEngine::Create(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

BatchScores MustScore(MuscEngine& engine, const ImageSet& images) {
  absl::StatusOr<BatchScores> scores = engine.Score(Views(images));
  EXPECT_TRUE(scores.ok()) << scores.status();
  return scores.ok() ? *std::move(scores) : BatchScores{};
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k) {
    const double d = std::abs(static_cast<double>(a[k]) - b[k]);
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

// Rows of `per_image`-sized blocks of `v`, reordered: out block k = v block perm[k].
std::vector<float> PermuteBlocks(const std::vector<float>& v, const std::vector<int64_t>& perm,
                                 size_t per_image) {
  std::vector<float> out;
  for (int64_t p : perm) {
    out.insert(out.end(), v.begin() + p * per_image, v.begin() + (p + 1) * per_image);
  }
  return out;
}

void ExpectWellFormed(const BatchScores& s, int64_t n, int64_t grid, int64_t map_size,
                      bool with_maps = true) {
  EXPECT_EQ(s.num_images, n);
  EXPECT_EQ(s.grid_h, grid);
  EXPECT_EQ(s.grid_w, grid);
  EXPECT_EQ(s.map_size, map_size);
  EXPECT_EQ(s.patch_scores.size(), static_cast<size_t>(n * grid * grid));
  EXPECT_EQ(s.maps.size(), with_maps ? static_cast<size_t>(n * map_size * map_size) : 0u);
  EXPECT_EQ(s.raw_scores.size(), static_cast<size_t>(n));
  EXPECT_EQ(s.final_scores.size(), static_cast<size_t>(n));
  for (float v : s.patch_scores) ASSERT_TRUE(std::isfinite(v) && v >= 0.0f) << v;
  for (float v : s.maps) ASSERT_TRUE(std::isfinite(v)) << v;
  for (float v : s.raw_scores) ASSERT_TRUE(std::isfinite(v)) << v;
  for (float v : s.final_scores) ASSERT_TRUE(std::isfinite(v)) << v;
  EXPECT_GE(s.timings.preprocess_s, 0.0);
  EXPECT_GE(s.timings.backbone_s, 0.0);
  EXPECT_GE(s.timings.msm_s, 0.0);
  EXPECT_GE(s.timings.total(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Options

TEST(MuscEngineOptionsTest, DefaultsAreValidAndDescribeTheModel) {
  EXPECT_TRUE(ValidateScoringOptions(ScoringOptions{}).ok());
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->backbone_name(), "vit-tiny-random");
  EXPECT_EQ(engine->input_size(), 64);
  EXPECT_EQ(engine->options().backbone.seed, 7u);
}

TEST(MuscEngineOptionsTest, BadScoringOptionsAreInvalidArgument) {
  struct Case {
    const char* what;
    void (*edit)(ScoringOptions&);
  };
  const Case cases[] = {
      {"even degree",
       [](ScoringOptions& o) {
         o.degrees = {1, 2, 5};
       }},
      {"degree 0", [](ScoringOptions& o) { o.degrees = {0}; }},
      {"negative degree", [](ScoringOptions& o) { o.degrees = {-3}; }},
      {"empty degrees", [](ScoringOptions& o) { o.degrees.clear(); }},
      {"high == low", [](ScoringOptions& o) { o.interval_low = o.interval_high = 0.3; }},
      {"high < low", [](ScoringOptions& o) { o.interval_low = 0.5, o.interval_high = 0.2; }},
      {"low < 0", [](ScoringOptions& o) { o.interval_low = -0.1; }},
      {"high > 1", [](ScoringOptions& o) { o.interval_high = 1.5; }},
      {"NaN interval", [](ScoringOptions& o) { o.interval_high = std::nan(""); }},
      {"negative window",
       [](ScoringOptions& o) {
         o.rscin_windows = {1, -2};
       }},
      {"zero budget", [](ScoringOptions& o) { o.block_budget_bytes = 0; }},
      {"negative budget", [](ScoringOptions& o) { o.block_budget_bytes = -5; }},
  };
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ScoringOptions scoring;
    c.edit(scoring);
    EXPECT_EQ(ValidateScoringOptions(scoring).code(), absl::StatusCode::kInvalidArgument);
    EngineOptions options = DefaultOptions();
    options.scoring = scoring;
    EXPECT_EQ(MuscEngine::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(engine->NewBatch(scoring).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// Element types are named in configurations and on command lines; an unknown name is refused
// where it is read, naming what was expected.
TEST(MuscEngineOptionsTest, NumericTypesAreParsedByName) {
  for (NumericType type : {NumericType::kFloat32, NumericType::kBFloat16, NumericType::kFloat16}) {
    absl::StatusOr<NumericType> parsed = ParseNumericType(NumericTypeName(type));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_STREQ(NumericTypeName(NumericType::kBFloat16), "bf16");
  for (const char* bad : {"int8", "", "FP32", "float32"}) {
    const absl::Status s = ParseNumericType(bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("expected fp32, bf16 or fp16"), std::string::npos) << s;
  }
}

TEST(MuscEngineOptionsTest, RsCinOffSwitchesAreValid) {
  for (const std::vector<int64_t>& windows :
       std::vector<std::vector<int64_t>>{{}, {0}, {1, 8, 9}, {1, 2, 3}}) {
    ScoringOptions scoring;
    scoring.rscin_windows = windows;
    EXPECT_TRUE(ValidateScoringOptions(scoring).ok()) << windows.size();
  }
}

TEST(MuscEngineOptionsTest, BadBackboneOptionsFail) {
  EngineOptions options = DefaultOptions();
  options.backbone.model = "no-such-model";
  EXPECT_EQ(MuscEngine::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = DefaultOptions();
  options.backbone.layers = {1, 9};  // The tiny ViT has 4 blocks.
  EXPECT_FALSE(MuscEngine::Create(options).ok());
  options = DefaultOptions();
  options.backbone.input_size = 60;  // Not a multiple of the patch size 8.
  EXPECT_FALSE(MuscEngine::Create(options).ok());
}

TEST(MuscEngineOptionsTest, DevicesThisBuildCannotUseAreRefusedClearly) {
  EngineOptions options = DefaultOptions();
  for (const char* bad : {"banana", "tpu", "cuda:x"}) {
    options.device = bad;
    const absl::Status s = MuscEngine::Create(options).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << s;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s;
  }
  options.device = "cuda";
  const absl::Status cuda = MuscEngine::Create(options).status();
  if (cuda.ok()) {
    GTEST_SKIP() << "this LibTorch has CUDA and a GPU: cuda is a valid device here";
  }
  EXPECT_EQ(cuda.code(), absl::StatusCode::kFailedPrecondition) << cuda;
  EXPECT_NE(cuda.message().find("MUSC_CUDA"), std::string::npos) << cuda;
}

TEST(MuscEngineOptionsTest, HalfPrecisionGemmsNeedAnAccelerator) {
  EngineOptions options = DefaultOptions();
  options.scoring.gemm_dtype = NumericType::kBFloat16;
  EXPECT_TRUE(ValidateScoringOptions(options.scoring).ok());  // Valid in itself...
  const absl::Status s = MuscEngine::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;  // ...but not on a CPU engine.
  EXPECT_NE(s.message().find("accelerator"), std::string::npos) << s;
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->NewBatch(options.scoring).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Inputs

TEST(MuscEngineTest, FewerThanTwoImagesIsRefused) {
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  const ImageSet one = ProductImages(1);
  for (const absl::Status& status : {engine->Score(Views(one)).status(), engine->Score({}).status(),
                                     engine->NewBatch()->Score().status()}) {
    EXPECT_TRUE(status.code() == absl::StatusCode::kFailedPrecondition ||
                status.code() == absl::StatusCode::kInvalidArgument)
        << status;
  }
}

TEST(MuscEngineTest, MixedSizesAndPixelTypesWork) {
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  ImageSet images;
  images.push_back(MakeImage(80, 60, 3, PixelType::kUint8, 1));     // RGB, resized down.
  images.push_back(MakeImage(50, 70, 1, PixelType::kUint16, 2));    // Grey 16-bit, up.
  images.push_back(MakeImage(64, 64, 3, PixelType::kFloat32, 3));   // Already S×S.
  images.push_back(MakeImage(33, 47, 1, PixelType::kUint8, 4));     // Grey 8-bit.
  images.push_back(MakeImage(120, 90, 3, PixelType::kUint16, 5));   // RGB 16-bit.
  images.push_back(MakeImage(64, 100, 1, PixelType::kFloat32, 6));  // Grey float.
  const BatchScores scores = MustScore(*engine, images);
  ExpectWellFormed(scores, 6, 8, 64);
  EXPECT_FALSE(scores.small_batch);
}

TEST(MuscEngineTest, PixelTypesEncodingTheSamePictureScoreTheSame) {
  // Grey pictures with values v/255: uint8 v, uint16 257·v, float v/255, as grey or replicated
  // RGB, are the same image after decoding; at S×S no resize is involved.
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  const int64_t n = 5;
  ImageSet reference, mixed;
  const PixelType types[] = {PixelType::kUint8, PixelType::kUint16, PixelType::kFloat32,
                             PixelType::kUint8, PixelType::kUint16};
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t seed = 40 + static_cast<uint32_t>(i);
    reference.push_back(MakeImage(64, 64, 1, PixelType::kFloat32, seed, i == 2));
    mixed.push_back(MakeImage(64, 64, 1, types[i], seed, i == 2));
  }
  const BatchScores a = MustScore(*engine, reference);
  const BatchScores b = MustScore(*engine, mixed);
  EXPECT_LT(MaxAbsDiff(a.patch_scores, b.patch_scores), 1e-5);
  EXPECT_LT(MaxAbsDiff(a.raw_scores, b.raw_scores), 1e-5);
  EXPECT_LT(MaxAbsDiff(a.final_scores, b.final_scores), 1e-4);
}

TEST(MuscEngineTest, InvalidImagesAreRejectedAndNothingIsAdded) {
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  std::unique_ptr<ScoringBatch> batch = engine->NewBatch();
  const ImageSet good = ProductImages(2);
  ASSERT_TRUE(batch->Add(Views(good)).ok());
  ASSERT_EQ(batch->size(), 2);

  std::vector<ImageView> bad_views;
  ImageView no_data = good[0]->view;
  no_data.data = nullptr;
  bad_views.push_back(no_data);
  ImageView two_channels = good[0]->view;
  two_channels.channels = 2;
  bad_views.push_back(two_channels);
  ImageView empty = good[0]->view;
  empty.height = 0;
  bad_views.push_back(empty);
  ImageView negative = good[0]->view;
  negative.width = -4;
  bad_views.push_back(negative);
  for (const ImageView& bad : bad_views) {
    // The bad image comes after a good one: the whole call fails and adds nothing.
    const std::vector<ImageView> call = {good[1]->view, bad};
    EXPECT_EQ(batch->Add(call).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(batch->size(), 2);
  }
  const ImageSet more = ProductImages(3);
  ASSERT_TRUE(batch->Add({more[2]->view}).ok());
  EXPECT_EQ(batch->size(), 3);
  absl::StatusOr<BatchScores> scores = batch->Score();
  ASSERT_TRUE(scores.ok()) << scores.status();
  ExpectWellFormed(*scores, 3, 8, 64);
}

// ---------------------------------------------------------------------------------------------
// Results

TEST(MuscEngineTest, SmallBatchFlag) {
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  for (int64_t n : {2, 3, 4, 5, 6}) {
    SCOPED_TRACE(testing::Message() << "N = " << n);
    const BatchScores scores = MustScore(*engine, ProductImages(n));
    ExpectWellFormed(scores, n, 8, 64);
    EXPECT_EQ(scores.small_batch, n < 5);  // floor(0.3·(N−1)) = 0 for N ≤ 4.
  }
  // A wider interval has no small batches from N = 2 on (floor(1.0·1) = 1).
  ScoringOptions wide;
  wide.interval_high = 1.0;
  absl::StatusOr<std::unique_ptr<ScoringBatch>> batch = engine->NewBatch(wide);
  ASSERT_TRUE(batch.ok());
  const ImageSet two = ProductImages(2);
  ASSERT_TRUE((*batch)->Add(Views(two)).ok());
  absl::StatusOr<BatchScores> scores = (*batch)->Score();
  ASSERT_TRUE(scores.ok());
  EXPECT_FALSE(scores->small_batch);
}

TEST(MuscEngineTest, RawScoresAreTheMaximaOfTheMaps) {
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  const BatchScores s = MustScore(*engine, ProductImages(6, 3));
  ExpectWellFormed(s, 6, 8, 64);
  const size_t per_map = 64 * 64, per_grid = 8 * 8;
  for (int64_t i = 0; i < 6; ++i) {
    const float map_max =
        *std::max_element(s.maps.begin() + i * per_map, s.maps.begin() + (i + 1) * per_map);
    EXPECT_EQ(s.raw_scores[i], map_max) << "image " << i;
    // With S − 1 = 63 a multiple of G − 1 = 7, the map passes through every grid value, and
    // bilinear interpolation never exceeds them: the max of the map is the max of the grid.
    const float grid_max = *std::max_element(s.patch_scores.begin() + i * per_grid,
                                             s.patch_scores.begin() + (i + 1) * per_grid);
    EXPECT_NEAR(s.raw_scores[i], grid_max, 1e-6) << "image " << i;
  }
}

TEST(MuscEngineTest, KeepMapsOffGivesTheSameScoresWithoutMaps) {
  EngineOptions options = DefaultOptions();
  std::unique_ptr<MuscEngine> with_maps = MakeEngine(options);
  options.scoring.keep_maps = false;
  std::unique_ptr<MuscEngine> without = MakeEngine(options);
  ASSERT_NE(with_maps, nullptr);
  ASSERT_NE(without, nullptr);
  const ImageSet images = ProductImages(7, 1);
  const BatchScores a = MustScore(*with_maps, images);
  const BatchScores b = MustScore(*without, images);
  ExpectWellFormed(b, 7, 8, 64, /*with_maps=*/false);
  EXPECT_EQ(MaxAbsDiff(a.patch_scores, b.patch_scores), 0.0);
  EXPECT_LT(MaxAbsDiff(a.raw_scores, b.raw_scores), 1e-6);
  EXPECT_LT(MaxAbsDiff(a.final_scores, b.final_scores), 1e-5);
}

TEST(MuscEngineTest, RsCinOffReturnsRawScores) {
  EngineOptions options = DefaultOptions();
  options.scoring.rscin_windows = {0};
  std::unique_ptr<MuscEngine> engine = MakeEngine(options);
  ASSERT_NE(engine, nullptr);
  const BatchScores s = MustScore(*engine, ProductImages(6, 2));
  EXPECT_EQ(s.final_scores, s.raw_scores);
  options.scoring.rscin_windows = {};
  engine = MakeEngine(options);
  ASSERT_NE(engine, nullptr);
  const BatchScores t = MustScore(*engine, ProductImages(6, 2));
  EXPECT_EQ(t.final_scores, t.raw_scores);
  EXPECT_EQ(t.raw_scores, s.raw_scores);
}

TEST(MuscEngineTest, FinalScoresWithWindowOneAreNormalisedRawScores) {
  EngineOptions options = DefaultOptions();
  options.scoring.rscin_windows = {1};
  std::unique_ptr<MuscEngine> engine = MakeEngine(options);
  ASSERT_NE(engine, nullptr);
  const BatchScores s = MustScore(*engine, ProductImages(6, 4));
  const float lo = *std::min_element(s.raw_scores.begin(), s.raw_scores.end());
  const float hi = *std::max_element(s.raw_scores.begin(), s.raw_scores.end());
  ASSERT_GT(hi, lo);
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(s.final_scores[i], (s.raw_scores[i] - lo) / (hi - lo), 1e-6);
  }
}

TEST(MuscEngineTest, PermutingTheBatchPermutesTheResults) {
  std::unique_ptr<MuscEngine> engine = MakeEngine(DefaultOptions());
  ASSERT_NE(engine, nullptr);
  const int64_t n = 7;
  const ImageSet images = ProductImages(n, 2);
  const std::vector<int64_t> perm = {3, 0, 6, 2, 5, 1, 4};
  std::vector<ImageView> permuted_views;
  for (int64_t p : perm) permuted_views.push_back(images[p]->view);
  const BatchScores a = MustScore(*engine, images);
  absl::StatusOr<BatchScores> b = engine->Score(permuted_views);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_LT(MaxAbsDiff(b->patch_scores, PermuteBlocks(a.patch_scores, perm, 64)), 1e-5);
  EXPECT_LT(MaxAbsDiff(b->maps, PermuteBlocks(a.maps, perm, 64 * 64)), 1e-5);
  EXPECT_LT(MaxAbsDiff(b->raw_scores, PermuteBlocks(a.raw_scores, perm, 1)), 1e-5);
  EXPECT_LT(MaxAbsDiff(b->final_scores, PermuteBlocks(a.final_scores, perm, 1)), 1e-4);
}

TEST(MuscEngineTest, AddingInPiecesEqualsOneShot) {
  EngineOptions options = DefaultOptions();
  options.backbone_batch_size = 3;
  std::unique_ptr<MuscEngine> engine = MakeEngine(options);
  ASSERT_NE(engine, nullptr);
  const ImageSet images = ProductImages(8, 5);
  const BatchScores one_shot = MustScore(*engine, images);
  const std::vector<ImageView> views = Views(images);

  std::unique_ptr<ScoringBatch> batch = engine->NewBatch();
  EXPECT_EQ(batch->size(), 0);
  ASSERT_TRUE(batch->Add(absl::MakeConstSpan(views).subspan(0, 1)).ok());
  ASSERT_TRUE(batch->Add({}).ok());  // Empty additions are harmless.
  ASSERT_TRUE(batch->Add(absl::MakeConstSpan(views).subspan(1, 4)).ok());
  EXPECT_EQ(batch->size(), 5);
  ASSERT_TRUE(batch->Add(absl::MakeConstSpan(views).subspan(5)).ok());
  EXPECT_EQ(batch->size(), 8);
  absl::StatusOr<BatchScores> pieces = batch->Score();
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  ExpectWellFormed(*pieces, 8, 8, 64);
  EXPECT_LT(MaxAbsDiff(pieces->patch_scores, one_shot.patch_scores), 1e-5);
  EXPECT_LT(MaxAbsDiff(pieces->maps, one_shot.maps), 1e-5);
  EXPECT_LT(MaxAbsDiff(pieces->raw_scores, one_shot.raw_scores), 1e-5);
  EXPECT_LT(MaxAbsDiff(pieces->final_scores, one_shot.final_scores), 1e-4);
  EXPECT_EQ(pieces->small_batch, one_shot.small_batch);
}

TEST(MuscEngineTest, BackboneBatchSizeDoesNotChangeResults) {
  const ImageSet images = ProductImages(6, 0);
  std::vector<BatchScores> results;
  for (int64_t size : {1, 4, 16}) {
    EngineOptions options = DefaultOptions();
    options.backbone_batch_size = size;
    std::unique_ptr<MuscEngine> engine = MakeEngine(options);
    ASSERT_NE(engine, nullptr);
    results.push_back(MustScore(*engine, images));
  }
  for (const BatchScores& r : results) {
    EXPECT_LT(MaxAbsDiff(r.patch_scores, results[0].patch_scores), 1e-5);
    EXPECT_LT(MaxAbsDiff(r.final_scores, results[0].final_scores), 1e-4);
  }
}

TEST(MuscEngineTest, BlockBudgetDoesNotChangeResults) {
  // At S = 128 the grid is 16×16 (L = 256): one image pair's similarities take 256 KiB and the
  // 30 images' distance rows 30 KiB each, so the 1 MiB minimum budget cannot hold every image's
  // rows at once and MSM works in several stripes (see mutual_scoring.h).
  const int64_t n = 30;
  ImageSet images;
  for (int64_t i = 0; i < n; ++i) {
    images.push_back(
        MakeImage(128, 128, 3, PixelType::kUint8, 300 + static_cast<uint32_t>(i), i == 7));
  }
  std::vector<BatchScores> results;
  for (int64_t budget : {int64_t{1} << 20, int64_t{3} << 20, int64_t{512} << 20}) {
    EngineOptions options = DefaultOptions();
    options.backbone.input_size = 128;
    options.backbone.layers = {2, 4};
    options.scoring.degrees = {1, 3};
    options.scoring.block_budget_bytes = budget;
    std::unique_ptr<MuscEngine> engine = MakeEngine(options);
    ASSERT_NE(engine, nullptr);
    results.push_back(MustScore(*engine, images));
    ExpectWellFormed(results.back(), n, 16, 128);
  }
  for (const BatchScores& r : results) {
    EXPECT_LT(MaxAbsDiff(r.patch_scores, results.back().patch_scores), 1e-6);
    EXPECT_LT(MaxAbsDiff(r.raw_scores, results.back().raw_scores), 1e-6);
    EXPECT_LT(MaxAbsDiff(r.final_scores, results.back().final_scores), 1e-5);
  }
}

TEST(MuscEngineTest, PerBatchScoringOptionsMatchAnEngineConfiguredWithThem) {
  ScoringOptions custom;
  custom.degrees = {1, 3};
  custom.interval_low = 0.1;
  custom.interval_high = 0.6;
  custom.rscin_windows = {1, 2};
  EngineOptions options = DefaultOptions();
  std::unique_ptr<MuscEngine> engine = MakeEngine(options);
  options.scoring = custom;
  std::unique_ptr<MuscEngine> configured = MakeEngine(options);
  ASSERT_NE(engine, nullptr);
  ASSERT_NE(configured, nullptr);
  const ImageSet images = ProductImages(8, 6);
  absl::StatusOr<std::unique_ptr<ScoringBatch>> batch = engine->NewBatch(custom);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_TRUE((*batch)->Add(Views(images)).ok());
  absl::StatusOr<BatchScores> a = (*batch)->Score();
  ASSERT_TRUE(a.ok()) << a.status();
  const BatchScores b = MustScore(*configured, images);
  EXPECT_EQ(MaxAbsDiff(a->patch_scores, b.patch_scores), 0.0);
  EXPECT_EQ(MaxAbsDiff(a->final_scores, b.final_scores), 0.0);
  // And they differ from the default options' scores.
  const BatchScores d = MustScore(*engine, images);
  EXPECT_GT(MaxAbsDiff(a->patch_scores, d.patch_scores), 1e-4);
}

TEST(MuscEngineTest, SameSeedSameScoresDifferentSeedDifferentScores) {
  const ImageSet images = ProductImages(5, 1);
  std::unique_ptr<MuscEngine> a = MakeEngine(DefaultOptions(3));
  std::unique_ptr<MuscEngine> b = MakeEngine(DefaultOptions(3));
  std::unique_ptr<MuscEngine> c = MakeEngine(DefaultOptions(4));
  ASSERT_TRUE(a && b && c);
  const BatchScores sa = MustScore(*a, images), sb = MustScore(*b, images);
  const BatchScores sc = MustScore(*c, images);
  EXPECT_EQ(sa.patch_scores, sb.patch_scores);
  EXPECT_EQ(sa.final_scores, sb.final_scores);
  EXPECT_GT(MaxAbsDiff(sa.patch_scores, sc.patch_scores), 1e-4);
}

// ---------------------------------------------------------------------------------------------
// The whole pipeline against the naive stages, on the same backbone's features.

struct PipelineCase {
  int64_t n;
  int64_t input_size;           // 0 = the model's default (64).
  std::vector<int64_t> layers;  // Empty = default.
  std::vector<int64_t> degrees;
  double low, high;
  std::vector<int64_t> windows;
};

class MuscEnginePipelineTest : public ::testing::TestWithParam<PipelineCase> {};

TEST_P(MuscEnginePipelineTest, MatchesNaivePipeline) {
  const PipelineCase pc = GetParam();
  EngineOptions options = DefaultOptions(21);
  options.backbone.input_size = pc.input_size;
  options.backbone.layers = pc.layers;
  options.scoring.degrees = pc.degrees;
  options.scoring.interval_low = pc.low;
  options.scoring.interval_high = pc.high;
  options.scoring.rscin_windows = pc.windows;
  std::unique_ptr<MuscEngine> engine = MakeEngine(options);
  ASSERT_NE(engine, nullptr);
  // Mixed sizes and types, so preprocessing is on the path too.
  ImageSet images;
  for (int64_t i = 0; i < pc.n; ++i) {
    const PixelType type = i % 3 == 0   ? PixelType::kUint8
                           : i % 3 == 1 ? PixelType::kFloat32
                                        : PixelType::kUint16;
    images.push_back(MakeImage(64 + 8 * (i % 2), 64 - 4 * (i % 3), 3, type,
                               200 + static_cast<uint32_t>(i), i == pc.n / 2));
  }
  const BatchScores got = MustScore(*engine, images);
  const int64_t s = engine->input_size();

  // Reference: the same backbone and the core's preprocessing (each tested on its own), then
  // naive LNAMD, MSM, maps, max and RsCIN.
  absl::StatusOr<std::unique_ptr<Backbone>> backbone = CreateBackbone(options.backbone);
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  std::vector<at::Tensor> inputs;
  for (const auto& image : images) {
    const ImageView& v = image->view;
    at::Tensor pixels;
    if (v.type == PixelType::kUint8) {
      pixels = at::from_blob(image->u8.data(), {v.height, v.width, v.channels}, at::kByte)
                   .to(at::kFloat) /
               255.0;
    } else if (v.type == PixelType::kUint16) {
      std::vector<float> f;
      for (uint16_t x : image->u16) f.push_back(static_cast<float>(x) / 65535.0f);
      pixels = at::from_blob(f.data(), {v.height, v.width, v.channels}, at::kFloat).clone();
    } else {
      pixels =
          at::from_blob(image->f32.data(), {v.height, v.width, v.channels}, at::kFloat).clone();
    }
    inputs.push_back(PreprocessImage(pixels, (*backbone)->preprocess_spec(),
                                     /*source_is_8bit=*/v.type == PixelType::kUint8));
  }
  BackboneFeatures features;
  {
    c10::InferenceMode guard;
    features = (*backbone)->Forward(at::stack(inputs, 0));
  }
  const at::Tensor patch = naive::PatchScores(features.layer_maps, pc.degrees, pc.low, pc.high);
  const int64_t grid = patch.size(1);
  const at::Tensor maps = naive::ResizeBilinear(patch.unsqueeze(1), s, s, true).squeeze(1);
  const at::Tensor raw = naive::MaxOfMaps(maps);
  const at::Tensor final_scores = naive::Rescore(raw, features.image_embedding, pc.windows);

  ExpectWellFormed(got, pc.n, grid, s);
  const bool empty_interval = std::floor(pc.low * static_cast<double>(pc.n - 1)) ==
                              std::floor(pc.high * static_cast<double>(pc.n - 1));
  EXPECT_EQ(got.small_batch, empty_interval);
  auto as_vector = [](const at::Tensor& t) {
    const at::Tensor f = t.to(at::kFloat).contiguous();
    return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  };
  const double patch_err = MaxAbsDiff(got.patch_scores, as_vector(patch));
  EXPECT_LT(patch_err, 1e-5);
  EXPECT_LT(MaxAbsDiff(got.maps, as_vector(maps)), 1e-5);
  const double raw_err = MaxAbsDiff(got.raw_scores, as_vector(raw));
  EXPECT_LT(raw_err, 1e-5);
  // RsCIN min-max normalises: an error e in raw scores becomes up to ~2e/(max − min).
  const double spread = (raw.max() - raw.min()).item<double>();
  ASSERT_GT(spread, 1e-4);
  EXPECT_LT(MaxAbsDiff(got.final_scores, as_vector(final_scores)), 1e-5 + 4 * raw_err / spread);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, MuscEnginePipelineTest,
    ::testing::Values(PipelineCase{8, 0, {}, {1, 3, 5}, 0.0, 0.3, {1, 2, 3}},
                      PipelineCase{12, 0, {}, {1, 3, 5}, 0.0, 0.3, {1, 8, 9}},
                      PipelineCase{3, 0, {}, {1, 3, 5}, 0.0, 0.3, {1, 2, 3}},  // Widened.
                      PipelineCase{7, 48, {2, 4}, {1, 5}, 0.1, 0.5, {2}},
                      PipelineCase{6, 0, {3}, {3}, 0.0, 1.0, {}}));

TEST(MuscEngineBackboneTest, TinyRandomModelIsTheSeededTinyVit) {
  // "vit-tiny-random" is TinyVitConfig() with RandomVitWeights(config, seed).
  BackboneOptions options;
  options.model = "vit-tiny-random";
  options.seed = 9;
  absl::StatusOr<std::unique_ptr<Backbone>> backbone = CreateBackbone(options);
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  const VitConfig config = TinyVitConfig();
  VisionTransformer vit("tiny", config, RandomVitWeights(config, 9),
                        (*backbone)->preprocess_spec());
  EXPECT_EQ((*backbone)->preprocess_spec().input_size, 64);
  const at::Tensor images = naive::Randn({2, 3, 64, 64}, 1);
  c10::InferenceMode guard;
  const BackboneFeatures a = (*backbone)->Forward(images);
  const BackboneFeatures b = vit.Forward(images);
  ASSERT_EQ(a.layer_maps.size(), b.layer_maps.size());
  for (size_t l = 0; l < a.layer_maps.size(); ++l) {
    EXPECT_TRUE(a.layer_maps[l].equal(b.layer_maps[l]));
  }
  EXPECT_TRUE(a.image_embedding.equal(b.image_embedding));
}

}  // namespace
}  // namespace musc
