// Labelled evaluation sets on disk: MVTec AD layout (also MVTec 3D-AD RGB), BTAD and VisA's CSV
// split.
#ifndef MUSC_EVAL_DATASET_H_
#define MUSC_EVAL_DATASET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace musc {

struct LabelledImage {
  std::string path;
  std::string id;  // Unique within the set, e.g. "cut/003.png".
  bool anomalous = false;
  std::string mask_path;  // Empty: no mask (all pixels normal).
};

struct EvalSet {
  std::string category;
  std::string layout;  // "mvtec", "btad" or "visa".
  std::vector<LabelledImage> images;
};

// `root` is a category folder (holding test/ — MVTec, BTAD — or a VisA root with
// split_csv/1cls.csv); with `category` set, root/<category> (MVTec, BTAD) or the rows of that
// object (VisA). Only the test split is returned. Errors: unreadable folder, no images, a mask
// without its image, an anomalous image type without masks is allowed (image metrics only).
absl::StatusOr<EvalSet> LoadEvalSet(const std::string& root, const std::string& category);

}  // namespace musc

#endif  // MUSC_EVAL_DATASET_H_
