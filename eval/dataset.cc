#include "eval/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

bool IsImage(const fs::path& p) {
  const std::string ext = absl::AsciiStrToLower(p.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" ||
         ext == ".tiff";
}

absl::StatusOr<std::vector<fs::path>> ListImages(const fs::path& dir) {
  std::error_code error;
  fs::directory_iterator it(dir, error);
  if (error) {
    return absl::NotFoundError(
        absl::StrCat("cannot read folder ", dir.string(), ": ", error.message()));
  }
  std::vector<fs::path> files;
  for (const auto& entry : it) {
    if (entry.is_regular_file() && IsImage(entry.path())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// A mask for `image` of defect type `type` under ground_truth/: MVTec names it <stem>_mask.*,
// BTAD <stem>.*.
std::string FindMask(const fs::path& ground_truth, const std::string& type, const fs::path& image) {
  const fs::path dir = ground_truth / type;
  for (const std::string& stem : {image.stem().string() + "_mask", image.stem().string()}) {
    for (const char* ext : {".png", ".bmp", ".tif", ".jpg"}) {
      const fs::path candidate = dir / (stem + ext);
      if (fs::exists(candidate)) return candidate.string();
    }
  }
  return "";
}

absl::StatusOr<EvalSet> LoadFolderLayout(const fs::path& category_dir) {
  const fs::path test = category_dir / "test";
  if (!fs::is_directory(test)) {
    return absl::NotFoundError(absl::StrCat(category_dir.string(),
                                            " has no test/ folder (expected an MVTec-AD or BTAD "
                                            "category, or a VisA root with split_csv/1cls.csv)"));
  }
  EvalSet set;
  set.category = category_dir.filename().string();
  set.layout = "mvtec";
  std::vector<fs::path> types;
  for (const auto& entry : fs::directory_iterator(test)) {
    if (entry.is_directory()) types.push_back(entry.path());
  }
  std::sort(types.begin(), types.end());
  const fs::path ground_truth = category_dir / "ground_truth";
  std::set<std::string> used_masks;
  for (const fs::path& type_dir : types) {
    const std::string type = type_dir.filename().string();
    const bool good = type == "good" || type == "ok";
    if (type == "ok" || type == "ko") set.layout = "btad";
    MUSC_ASSIGN_OR_RETURN(std::vector<fs::path> files, ListImages(type_dir));
    for (const fs::path& f : files) {
      LabelledImage image;
      image.path = f.string();
      image.id = type + "/" + f.filename().string();
      image.anomalous = !good;
      if (!good) image.mask_path = FindMask(ground_truth, type, f);
      if (!image.mask_path.empty()) used_masks.insert(fs::canonical(image.mask_path).string());
      set.images.push_back(std::move(image));
    }
  }
  // Every mask must belong to an image: a stray mask means a mismatched or incomplete copy.
  if (fs::is_directory(ground_truth)) {
    for (const auto& entry : fs::recursive_directory_iterator(ground_truth)) {
      if (entry.is_regular_file() && IsImage(entry.path()) &&
          used_masks.count(fs::canonical(entry.path()).string()) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("mask ", entry.path().string(), " has no matching test image"));
      }
    }
  }
  if (set.images.empty()) {
    return absl::NotFoundError(absl::StrCat("no test images under ", test.string()));
  }
  return set;
}

// VisA: split_csv/1cls.csv with columns object,split,label,image,mask (paths relative to root).
absl::StatusOr<EvalSet> LoadVisa(const fs::path& root, const std::string& category) {
  std::ifstream csv(root / "split_csv" / "1cls.csv");
  if (!csv)
    return absl::NotFoundError(absl::StrCat("cannot read ", root.string(), "/split_csv/1cls.csv"));
  EvalSet set;
  set.category = category;
  set.layout = "visa";
  std::string line;
  std::getline(csv, line);  // Header.
  int row = 1;
  while (std::getline(csv, line)) {
    ++row;
    if (line.empty()) continue;
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    if (cells.size() < 4) {
      return absl::InvalidArgumentError(absl::StrCat("1cls.csv row ", row,
                                                     ": expected at least 4 "
                                                     "columns (object,split,label,image[,mask])"));
    }
    if (cells[1] != "test" || (!category.empty() && cells[0] != category)) continue;
    LabelledImage image;
    image.path = (root / cells[3]).string();
    image.id = cells[3];
    image.anomalous = cells[2] != "normal";
    if (cells.size() > 4 && !cells[4].empty()) image.mask_path = (root / cells[4]).string();
    if (!fs::exists(image.path)) {
      return absl::NotFoundError(absl::StrCat("1cls.csv row ", row, ": missing ", image.path));
    }
    if (!image.mask_path.empty() && !fs::exists(image.mask_path)) {
      return absl::NotFoundError(
          absl::StrCat("1cls.csv row ", row, ": missing mask ", image.mask_path));
    }
    set.images.push_back(std::move(image));
  }
  if (set.images.empty()) {
    return absl::NotFoundError(absl::StrCat("no test rows for '", category, "' in 1cls.csv"));
  }
  return set;
}

}  // namespace

absl::StatusOr<EvalSet> LoadEvalSet(const std::string& root, const std::string& category) {
  const fs::path base(root);
  std::error_code error;
  if (!fs::is_directory(base, error)) {
    return absl::NotFoundError(absl::StrCat("cannot read folder ", root));
  }
  if (fs::exists(base / "split_csv" / "1cls.csv")) return LoadVisa(base, category);
  return LoadFolderLayout(category.empty() ? base : base / category);
}

}  // namespace musc
