// Line mode: MuSc for a part as it arrives. A rolling bank holds the LNAMD features of a product's
// most recent M images; a new image is scored by mutual scoring against the bank — for each of its
// patches the minimum distance to every bank image, and the mean over the interval of those M
// sorted distances, exactly as batch MSM does with the bank as "the other images" — and may then
// join the bank (the oldest leaves). The score of an image against a bank of M equals its raw
// batch score in a batch made of the bank plus the image (tests/core/line_scorer_test.cc).
//
// RsCIN is not applied: it rescales scores relative to a batch, and a line has no batch; the
// raw score (the map's maximum) is comparable across images of the same product configuration.
//
// LibTorch-free on purpose (pimpl), like musc_engine.h.
#ifndef MUSC_CORE_LINE_SCORER_H_
#define MUSC_CORE_LINE_SCORER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/musc_engine.h"

namespace musc {

struct LineOptions {
  int64_t bank_size = 64;  // M: the most recent images scored against.
  // Degrees, interval, block budget and keep_maps are used; rscin_windows is ignored.
  ScoringOptions scoring;
  // Bank images compared per similarity GEMM: bounds the extra memory to
  // L × (chunk·L) floats (e.g. 784 × 8·784 × 4 B ≈ 20 MB).
  int64_t bank_chunk = 8;
};

struct LineImageScore {
  float raw_score = 0;              // Maximum of the map.
  int64_t map_size = 0;             // S: the map is S×S.
  std::vector<float> map;           // Empty unless scoring.keep_maps.
  int64_t grid_h = 0, grid_w = 0;   // Patch-score grid.
  std::vector<float> patch_scores;  // grid_h×grid_w.
  int64_t compared_images = 0;      // Bank images it was scored against.
  bool small_bank = false;          // Interval widened: too few images for it (like small_batch).
  StageTimings timings;
};

// Not thread-safe: one caller at a time (the server serialises a product's line).
class LineScorer {
 public:
  // Features of one image, ready to be scored or admitted. Opaque; the deleter lets callers
  // own them without seeing their LibTorch-typed definition.
  class Features;
  struct FeaturesDeleter {
    void operator()(Features* features) const;
  };
  using FeaturesPtr = std::unique_ptr<Features, FeaturesDeleter>;

  // `engine` must outlive the scorer; engines may be shared by scorers and batches.
  static absl::StatusOr<std::unique_ptr<LineScorer>> Create(MuscEngine* engine,
                                                            const LineOptions& options);
  ~LineScorer();
  LineScorer(const LineScorer&) = delete;
  LineScorer& operator=(const LineScorer&) = delete;

  // Preprocessing, backbone and LNAMD for one image.
  absl::StatusOr<FeaturesPtr> Extract(const ImageView& image);
  // Scores against the whole bank (FAILED_PRECONDITION when it is empty). The bank is unchanged.
  absl::StatusOr<LineImageScore> Score(const Features& features);
  // Scores every bank image against the other bank images — a MuSc batch of the bank — in
  // admission order (oldest first). Used once, when the first images of a line have gathered.
  absl::StatusOr<std::vector<LineImageScore>> ScoreBankAsBatch();
  // Adds the image to the bank; when it is full the oldest image leaves.
  absl::Status Admit(FeaturesPtr features);

  int64_t bank_images() const;
  int64_t bank_capacity() const;
  // Bytes held by the bank's feature tensors (M·layers·degrees·L·C·4 when full).
  int64_t bank_bytes() const;

 private:
  struct Impl;
  explicit LineScorer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace musc

#endif  // MUSC_CORE_LINE_SCORER_H_
