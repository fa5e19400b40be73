// One product's line (docs/LINE_MODE.md): images arrive one by one through ScoreImage, are scored
// in arrival order on the runner's own thread against the product's rolling bank, decided by the
// product's label-free policy and answered; then they join the bank (unless judged anomalous and
// the product keeps those out). The first `warmup_images` wait and are scored as one batch.
//
// With a state directory the line survives restarts: each image that joins the bank is kept there
// as the encoded bytes it arrived as (written durably before its answer is sent), the decision
// window after every image, and a restart rebuilds the bank by extracting those images again
// (deterministic, so the bank is the same) instead of warming up anew.
#ifndef MUSC_SERVER_LINE_LINE_RUNNER_H_
#define MUSC_SERVER_LINE_LINE_RUNNER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <opencv2/core.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/line_scorer.h"
#include "musc/v1/musc_service.pb.h"
#include "server/images/image_decoder.h"
#include "server/product_config.h"
#include "server/results/decision_policy.h"
#include "server/server_metrics.h"

namespace musc {

struct LineRequest {
  std::string client_id;
  cv::Mat pixels;  // Decoded (see image_decoder.h).
  std::map<std::string, std::string> metadata;
  std::string encoded;  // The bytes as received: kept in the state directory if it joins the bank.
  v1::MapOptions map_options;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
  // Called exactly once, from the runner's thread (or from Submit when refused at once).
  std::function<void(absl::StatusOr<v1::ScoreImageResponse>)> done;
};

class LineRunner {
 public:
  // Images waiting beyond this are refused with RESOURCE_EXHAUSTED: a line that cannot keep up
  // must say so rather than answer ever later.
  static constexpr size_t kMaxQueued = 256;

  // `product`, `engine` and `metrics` (may be null) must outlive the runner.
  // `state_dir` empty: the line lives in memory only. Otherwise the bank and decision window are
  // restored from it here (before serving) and kept in it; `limits` decode the restored images.
  static absl::StatusOr<std::unique_ptr<LineRunner>> Create(const ProductConfig* product,
                                                            MuscEngine* engine,
                                                            ServerMetrics* metrics,
                                                            const std::string& state_dir = "",
                                                            const DecodeLimits& limits = {});
  ~LineRunner();  // Answers what is still waiting with UNAVAILABLE, then stops.

  void Submit(LineRequest request);
  // Whether images that join the bank are kept on disk (LineRequest::encoded is needed).
  bool keeps_images() const { return !state_dir_.empty(); }

 private:
  LineRunner(const ProductConfig* product, std::unique_ptr<LineScorer> scorer,
             ServerMetrics* metrics, std::string state_dir);
  // Rebuilds the bank and the decision window from the state directory.
  absl::Status Restore(const DecodeLimits& limits);
  // Admits the features and keeps the image's bytes in the state directory.
  absl::Status AdmitAndKeep(LineScorer::FeaturesPtr features, uint64_t sequence,
                            const std::string& encoded);
  // The decision window, after each answer. Failures are logged, never fatal: the answer stands.
  void KeepWindow();
  void Loop();
  void Process(LineRequest request);
  // The gathered warm-up images, scored as one batch and answered in arrival order.
  void FinishWarmup();
  void Answer(LineRequest& request, const LineImageScore& score, const Decision& decision,
              v1::LineState state);

  const ProductConfig* const product_;
  const std::unique_ptr<LineScorer> scorer_;
  ServerMetrics* const metrics_;
  LineDecider decider_;
  uint64_t sequence_ = 0;  // Images answered so far (the result's index).
  const std::string state_dir_;
  std::deque<uint64_t> kept_;  // Sequence numbers of the bank's images in the state directory.
  std::vector<LineRequest> warmup_;  // Admitted, waiting for the warm-up batch.

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<LineRequest> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// The line runners of a server, by product name.
using LineRunners = std::map<std::string, std::unique_ptr<LineRunner>>;

}  // namespace musc

#endif  // MUSC_SERVER_LINE_LINE_RUNNER_H_
