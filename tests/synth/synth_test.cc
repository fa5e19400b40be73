#include "synth/synth.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace musc {
namespace {

namespace fs = std::filesystem;

// A fresh, empty folder per test under the test temp dir, removed afterwards.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::path(testing::TempDir()) / ("musc_synth_" + name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

SynthOptions SmallOptions(const fs::path& out, ProductKind kind) {
  SynthOptions options;
  options.out_dir = out.string();
  options.category = kind == ProductKind::kTexture ? "fabric" : "flange";
  options.kind = kind;
  options.size = 96;
  options.good_count = 3;
  options.defective_count = 2;
  options.defect_types = KnownDefectTypes();
  return options;
}

// Relative path → file bytes, for every file under `root`.
std::map<std::string, std::string> ReadTree(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    files[fs::relative(entry.path(), root).generic_string()] =
        std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return files;
}

// Largest per-channel absolute difference per pixel, CV_8UC1.
cv::Mat MaxChannelDiff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  std::vector<cv::Mat> channels;
  cv::split(diff, channels);
  cv::Mat out = channels[0];
  for (size_t c = 1; c < channels.size(); ++c) out = cv::max(out, channels[c]);
  return out;
}

uint64_t PixelHash(const cv::Mat& image) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int y = 0; y < image.rows; ++y) {
    const uint8_t* row = image.ptr<uint8_t>(y);
    for (size_t i = 0; i < image.cols * image.elemSize(); ++i) {
      h ^= row[i];
      h *= 0x100000001B3ull;
    }
  }
  return h;
}

class SynthKindTest : public testing::TestWithParam<ProductKind> {};

INSTANTIATE_TEST_SUITE_P(Kinds, SynthKindTest,
                         testing::Values(ProductKind::kTexture, ProductKind::kObject),
                         [](const testing::TestParamInfo<ProductKind>& info) {
                           return std::string(ProductKindName(info.param));
                         });

TEST_P(SynthKindTest, SameSeedWritesByteIdenticalFiles) {
  TempDir a("same_a"), b("same_b");
  ASSERT_TRUE(WriteSyntheticCategory(SmallOptions(a.path(), GetParam())).ok());
  ASSERT_TRUE(WriteSyntheticCategory(SmallOptions(b.path(), GetParam())).ok());
  const auto files_a = ReadTree(a.path());
  const auto files_b = ReadTree(b.path());
  EXPECT_EQ(files_a.size(), 3u + 4u * 2u * 2u);  // good + (image + mask) per defective image.
  ASSERT_EQ(files_a.size(), files_b.size());
  for (const auto& [name, bytes] : files_a) {
    ASSERT_TRUE(files_b.count(name)) << name;
    EXPECT_TRUE(bytes == files_b.at(name)) << name << " differs between two runs";
  }
}

TEST_P(SynthKindTest, DifferentSeedsGiveDifferentImages) {
  SynthOptions options = SmallOptions("unused", GetParam());
  for (const std::string type : {"good", "scratch", "spot", "missing", "crack"}) {
    options.seed = 1;
    const absl::StatusOr<SynthSample> one = RenderSyntheticSample(options, type, 0);
    options.seed = 2;
    const absl::StatusOr<SynthSample> two = RenderSyntheticSample(options, type, 0);
    ASSERT_TRUE(one.ok() && two.ok()) << type;
    EXPECT_GT(cv::norm(one->image, two->image, cv::NORM_L1), 0.0) << type;
    if (type != "good") {
      EXPECT_GT(cv::norm(one->mask, two->mask, cv::NORM_L1), 0.0) << type;
    }
  }
  // Within one seed, images differ from each other too.
  options.seed = 1;
  EXPECT_GT(cv::norm(RenderSyntheticSample(options, "good", 0)->image,
                     RenderSyntheticSample(options, "good", 1)->image, cv::NORM_L1),
            0.0);
}

TEST_P(SynthKindTest, LayoutIsMvtecAd) {
  TempDir dir("layout");
  SynthOptions options = SmallOptions(dir.path(), GetParam());
  options.defect_types = {"scratch", "missing"};
  ASSERT_TRUE(WriteSyntheticCategory(options).ok());
  const fs::path root = dir.path() / options.category;

  std::set<std::string> top;
  for (const auto& entry : fs::directory_iterator(root)) top.insert(entry.path().filename());
  EXPECT_EQ(top, (std::set<std::string>{"test", "ground_truth"}));  // No train/ by default.
  std::set<std::string> test_types, mask_types;
  for (const auto& entry : fs::directory_iterator(root / "test")) {
    test_types.insert(entry.path().filename());
  }
  for (const auto& entry : fs::directory_iterator(root / "ground_truth")) {
    mask_types.insert(entry.path().filename());
  }
  EXPECT_EQ(test_types, (std::set<std::string>{"good", "scratch", "missing"}));
  EXPECT_EQ(mask_types, (std::set<std::string>{"scratch", "missing"}));  // None for good.

  for (const std::string type : {"good", "scratch", "missing"}) {
    const int count = type == "good" ? options.good_count : options.defective_count;
    std::set<std::string> names, mask_names;
    for (const auto& entry : fs::directory_iterator(root / "test" / type)) {
      names.insert(entry.path().filename());
    }
    std::set<std::string> expected, expected_masks;
    for (int i = 0; i < count; ++i) {
      char name[16];
      std::snprintf(name, sizeof(name), "%03d", i);
      expected.insert(std::string(name) + ".png");
      expected_masks.insert(std::string(name) + "_mask.png");
    }
    EXPECT_EQ(names, expected) << type;
    if (type == "good") continue;
    for (const auto& entry : fs::directory_iterator(root / "ground_truth" / type)) {
      mask_names.insert(entry.path().filename());
    }
    EXPECT_EQ(mask_names, expected_masks) << type;
    for (int i = 0; i < count; ++i) {
      char stem[16];
      std::snprintf(stem, sizeof(stem), "%03d", i);
      const cv::Mat image = cv::imread(
          (root / "test" / type / (std::string(stem) + ".png")).string(), cv::IMREAD_UNCHANGED);
      const cv::Mat mask =
          cv::imread((root / "ground_truth" / type / (std::string(stem) + "_mask.png")).string(),
                     cv::IMREAD_UNCHANGED);
      ASSERT_FALSE(image.empty());
      ASSERT_FALSE(mask.empty());
      EXPECT_EQ(image.type(), CV_8UC3);
      EXPECT_EQ(mask.type(), CV_8UC1);
      EXPECT_EQ(image.size(), cv::Size(options.size, options.size));
      EXPECT_EQ(mask.size(), image.size());
      EXPECT_EQ(cv::countNonZero(mask) + cv::countNonZero(mask == 0), mask.total());
      EXPECT_EQ(cv::countNonZero(mask == 255), cv::countNonZero(mask));  // Only 0 and 255.
      // What was written is what RenderSyntheticSample renders.
      const absl::StatusOr<SynthSample> sample = RenderSyntheticSample(options, type, i);
      ASSERT_TRUE(sample.ok());
      EXPECT_EQ(cv::norm(image, sample->image, cv::NORM_INF), 0.0);
      EXPECT_EQ(cv::norm(mask, sample->mask, cv::NORM_INF), 0.0);
    }
  }
}

TEST_P(SynthKindTest, TrainFolderOnRequest) {
  TempDir dir("train");
  SynthOptions options = SmallOptions(dir.path(), GetParam());
  options.train_good_count = 2;
  ASSERT_TRUE(WriteSyntheticCategory(options).ok());
  const fs::path train = dir.path() / options.category / "train" / "good";
  EXPECT_TRUE(fs::exists(train / "000.png"));
  EXPECT_TRUE(fs::exists(train / "001.png"));
  EXPECT_FALSE(fs::exists(train / "002.png"));
  // The train images are other images than the test ones.
  const cv::Mat train0 = cv::imread((train / "000.png").string());
  const cv::Mat test0 = cv::imread((dir.path() / options.category / "test/good/000.png").string());
  EXPECT_GT(cv::norm(train0, test0, cv::NORM_L1), 0.0);
}

// The mask is the painted shape: outside it the pixels are bit-for-bit those of the image
// rendered without the defect, and inside it (nearly) every pixel visibly changed.
TEST_P(SynthKindTest, MaskIsExactlyThePaintedRegion) {
  SynthOptions options = SmallOptions("unused", GetParam());
  options.size = 256;
  for (const std::string& type : KnownDefectTypes()) {
    for (int index = 0; index < 6; ++index) {
      const absl::StatusOr<SynthSample> sample = RenderSyntheticSample(options, type, index);
      ASSERT_TRUE(sample.ok());
      const cv::Mat& mask = sample->mask;
      ASSERT_EQ(mask.size(), sample->image.size());
      const int area = cv::countNonZero(mask);
      EXPECT_GT(area, 30) << type << " " << index;
      // Comparable to MVTec defects, not giant: under 3 % of the image.
      EXPECT_LT(area, 0.03 * options.size * options.size) << type << " " << index;
      const cv::Mat diff = MaxChannelDiff(sample->image, sample->clean);
      // Changed at all ⊆ mask (tolerance 0: the noise is keyed by position).
      EXPECT_EQ(cv::countNonZero((diff > 0) & (mask == 0)), 0) << type << " " << index;
      // Mask ⊆ changed beyond a small tolerance, up to rim pixels whose partial coverage lands
      // on a similar colour (a dark hole over a dark gap between yarns). The sensor noise is the
      // same in both renders, so even a 3-level change is the defect's.
      constexpr int kTolerance = 2;
      const int changed = cv::countNonZero((diff > kTolerance) & (mask > 0));
      EXPECT_GE(changed, 0.85 * area) << type << " " << index << ": " << changed << "/" << area;
    }
  }
}

// Defect sizes scale with the image, but never below what leaves a visible, non-empty mask.
TEST_P(SynthKindTest, MasksAreNeverEmptyEvenInSmallImages) {
  SynthOptions options = SmallOptions("unused", GetParam());
  for (const int size : {32, 64}) {
    options.size = size;
    for (const std::string& type : KnownDefectTypes()) {
      for (int index = 0; index < 40; ++index) {
        const absl::StatusOr<SynthSample> sample = RenderSyntheticSample(options, type, index);
        ASSERT_TRUE(sample.ok());
        EXPECT_GE(cv::countNonZero(sample->mask), 3) << size << " " << type << " " << index;
      }
    }
  }
}

TEST_P(SynthKindTest, GoodImagesVarySlightlyButAreAlike) {
  SynthOptions options = SmallOptions("unused", GetParam());
  options.size = 128;
  std::vector<cv::Mat> images;
  for (int i = 0; i < 6; ++i) {
    const absl::StatusOr<SynthSample> sample = RenderSyntheticSample(options, "good", i);
    ASSERT_TRUE(sample.ok());
    EXPECT_TRUE(sample->mask.empty());
    EXPECT_EQ(cv::norm(sample->image, sample->clean, cv::NORM_INF), 0.0);
    images.push_back(sample->image);
  }
  cv::Scalar mean0, std0;
  cv::meanStdDev(images[0], mean0, std0);
  for (size_t i = 1; i < images.size(); ++i) {
    EXPECT_GT(cv::norm(images[i], images[0], cv::NORM_L1), 0.0);
    cv::Scalar mean, std;
    cv::meanStdDev(images[i], mean, std);
    for (int c = 0; c < 3; ++c) {
      EXPECT_NEAR(mean[c], mean0[c], 12.0) << i;
      EXPECT_NEAR(std[c], std0[c], 0.25 * std0[c]) << i;
    }
  }
}

// Pixel values are a pure function of the options: pinned here so that a change in rendering
// (or a platform that computes differently) is noticed. Update the values only on purpose.
TEST(SynthTest, PixelsArePinned) {
  SynthOptions options;
  options.size = 64;
  options.seed = 7;
  std::vector<uint64_t> hashes;
  for (const ProductKind kind : {ProductKind::kTexture, ProductKind::kObject}) {
    options.kind = kind;
    for (const std::string type : {"good", "scratch", "spot", "missing"}) {
      const absl::StatusOr<SynthSample> sample = RenderSyntheticSample(options, type, 3);
      ASSERT_TRUE(sample.ok());
      hashes.push_back(PixelHash(sample->image));
    }
  }
  const std::vector<uint64_t> expected = {2405871998112861211ull,  15276583778519203079ull,
                                          12790071659186155049ull, 6988190245880074439ull,
                                          12016360091404356991ull, 5028908438283994953ull,
                                          6950985080187528099ull,  17423159610827209090ull};
  EXPECT_EQ(hashes, expected);
}

TEST(SynthTest, ParsesKinds) {
  EXPECT_EQ(*ParseProductKind("texture"), ProductKind::kTexture);
  EXPECT_EQ(*ParseProductKind("object"), ProductKind::kObject);
  const absl::StatusOr<ProductKind> bad = ParseProductKind("liquid");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("liquid"), absl::string_view::npos);
}

TEST(SynthTest, RejectsBadOptionsWithClearStatuses) {
  TempDir dir("bad");
  const auto expect_invalid = [](const SynthOptions& options, const std::string& needle) {
    const absl::Status status = WriteSyntheticCategory(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(needle), absl::string_view::npos) << status;
  };
  SynthOptions base = SmallOptions(dir.path(), ProductKind::kTexture);

  SynthOptions o = base;
  o.size = 0;
  expect_invalid(o, "size");
  o = base;
  o.defect_types = {"scratch", "dent"};
  expect_invalid(o, "unknown defect type 'dent'");
  o = base;
  o.defect_types = {"spot", "spot"};
  expect_invalid(o, "twice");
  o = base;
  o.good_count = -1;
  expect_invalid(o, "negative");
  o = base;
  o.good_count = 0;
  o.defective_count = 0;
  expect_invalid(o, "nothing to generate");
  o = base;
  o.defect_types = {};
  expect_invalid(o, "no defect types");
  o = base;
  o.category = "a/b";
  expect_invalid(o, "category");
  o = base;
  o.out_dir = "";
  expect_invalid(o, "out_dir");
  EXPECT_FALSE(RenderSyntheticSample(base, "dent", 0).ok());
  EXPECT_FALSE(RenderSyntheticSample(base, "scratch", 0, /*train=*/true).ok());
  EXPECT_TRUE(fs::is_empty(dir.path()));  // Nothing written for rejected options.
}

TEST(SynthTest, UnwritableFolderIsAnError) {
  TempDir dir("unwritable");
  // A regular file where a folder is needed fails for every user, root included (unlike
  // permission bits).
  const fs::path file = dir.path() / "file";
  std::ofstream(file) << "x";
  SynthOptions options = SmallOptions(file / "sub", ProductKind::kObject);
  const absl::Status status = WriteSyntheticCategory(options);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("cannot create directory"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find(file.string()), absl::string_view::npos) << status;
}

TEST(SynthTest, RefusesToMixWithAnExistingCategoryUnlessOverwriting) {
  TempDir dir("existing");
  SynthOptions options = SmallOptions(dir.path(), ProductKind::kTexture);
  options.good_count = 5;
  ASSERT_TRUE(WriteSyntheticCategory(options).ok());
  options.good_count = 2;
  const absl::Status again = WriteSyntheticCategory(options);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  options.overwrite = true;
  ASSERT_TRUE(WriteSyntheticCategory(options).ok());
  // No stale images from the larger first run.
  const fs::path good = dir.path() / options.category / "test" / "good";
  EXPECT_TRUE(fs::exists(good / "001.png"));
  EXPECT_FALSE(fs::exists(good / "002.png"));
}

}  // namespace
}  // namespace musc
