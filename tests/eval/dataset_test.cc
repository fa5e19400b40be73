#include "eval/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/test_support.h"

namespace musc {
namespace {

namespace fs = std::filesystem;
using ::musc::testing::ScratchDir;

void Touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
}

TEST(DatasetTest, MvtecLayoutWithMasksAndGoodImages) {
  ScratchDir dir;
  const fs::path cat = fs::path(dir.path()) / "bottle";
  Touch(cat / "test/good/000.png");
  Touch(cat / "test/crack/000.png");
  Touch(cat / "test/crack/001.png");
  Touch(cat / "ground_truth/crack/000_mask.png");
  Touch(cat / "ground_truth/crack/001_mask.png");
  absl::StatusOr<EvalSet> set = LoadEvalSet(dir.path(), "bottle");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->layout, "mvtec");
  ASSERT_EQ(set->images.size(), 3u);
  EXPECT_EQ(set->images[0].id, "crack/000.png");
  EXPECT_TRUE(set->images[0].anomalous);
  EXPECT_EQ(fs::path(set->images[0].mask_path).filename(), "000_mask.png");
  EXPECT_FALSE(set->images[2].anomalous);
  EXPECT_TRUE(set->images[2].mask_path.empty());
}

TEST(DatasetTest, BtadLayoutNamesMasksLikeTheirImages) {
  ScratchDir dir;
  const fs::path cat = fs::path(dir.path()) / "01";
  Touch(cat / "test/ok/0000.bmp");
  Touch(cat / "test/ko/0001.bmp");
  Touch(cat / "ground_truth/ko/0001.png");
  absl::StatusOr<EvalSet> set = LoadEvalSet(cat.string(), "");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->layout, "btad");
  ASSERT_EQ(set->images.size(), 2u);
  EXPECT_EQ(set->images[0].id, "ko/0001.bmp");
  EXPECT_TRUE(set->images[0].anomalous);
  EXPECT_EQ(fs::path(set->images[0].mask_path).filename(), "0001.png");
  EXPECT_FALSE(set->images[1].anomalous);
}

TEST(DatasetTest, VisaCsvSplitSelectsTheCategorysTestRows) {
  ScratchDir dir;
  const fs::path root(dir.path());
  Touch(root / "candle/Data/Images/Normal/0000.JPG");
  Touch(root / "candle/Data/Images/Anomaly/0001.JPG");
  Touch(root / "candle/Data/Masks/Anomaly/0001.png");
  Touch(root / "pcb1/Data/Images/Normal/0000.JPG");
  fs::create_directories(root / "split_csv");
  std::ofstream(root / "split_csv/1cls.csv")
      << "object,split,label,image,mask\n"
      << "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
      << "candle,test,normal,candle/Data/Images/Normal/0000.JPG,\n"
      << "candle,test,anomaly,candle/Data/Images/Anomaly/0001.JPG,"
         "candle/Data/Masks/Anomaly/0001.png\n"
      << "pcb1,test,normal,pcb1/Data/Images/Normal/0000.JPG,\n";
  absl::StatusOr<EvalSet> set = LoadEvalSet(root.string(), "candle");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->layout, "visa");
  ASSERT_EQ(set->images.size(), 2u);
  EXPECT_FALSE(set->images[0].anomalous);
  EXPECT_TRUE(set->images[1].anomalous);
  EXPECT_EQ(fs::path(set->images[1].mask_path).filename(), "0001.png");
  // A row naming a file that is not there is an error, not a silent skip.
  std::ofstream(root / "split_csv/1cls.csv", std::ios::app)
      << "candle,test,anomaly,candle/Data/Images/Anomaly/9999.JPG,\n";
  absl::StatusOr<EvalSet> broken = LoadEvalSet(root.string(), "candle");
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kNotFound);
}

TEST(DatasetTest, ErrorsNameThePath) {
  EXPECT_EQ(LoadEvalSet("/nonexistent/data", "").status().code(), absl::StatusCode::kNotFound);
  ScratchDir dir;
  Touch(fs::path(dir.path()) / "x/readme.txt");
  absl::StatusOr<EvalSet> none = LoadEvalSet(dir.path(), "x");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find("no test/ folder"), std::string::npos);
}

}  // namespace
}  // namespace musc
