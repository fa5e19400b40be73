// Replays images as a production line through ScoreImage (docs/LINE_MODE.md): the warm-up images
// are sent together (they wait for each other on the server), then one image after another —
// back to back (rate 0: each waits for the previous answer, so the order is exact), or at a fixed
// rate with the answers arriving as they come (a camera does not wait for the server).
#ifndef MUSC_CLIENT_LINE_REPLAY_H_
#define MUSC_CLIENT_LINE_REPLAY_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/musc_client.h"

namespace musc {

struct LineReplayOptions {
  std::string product;
  double rate = 0;         // Images per second; 0 = back to back.
  int max_in_flight = 64;  // With a rate: calls outstanding at once before sending waits.
  v1::MapOptions map_options;
};

struct LineReplayResult {
  std::vector<v1::ScoreImageResponse> responses;  // In the order the images were given.
  std::vector<double> latency_seconds;            // Send to answer, per image.
  double seconds = 0;                             // First send to last answer.
  int warmup_images = 0;
};

// Called as answers arrive (from any thread, one at a time): the image's position and result.
using LineResultCallback =
    std::function<void(size_t index, const v1::ScoreImageResponse& response, double latency)>;

// Fails on the first image that fails (its id in the message); what was answered before stays
// in the bank on the server.
absl::StatusOr<LineReplayResult> ReplayLine(MuscClient& client,
                                            const std::vector<EncodedImage>& images,
                                            const LineReplayOptions& options,
                                            const LineResultCallback& on_result = nullptr);

}  // namespace musc

#endif  // MUSC_CLIENT_LINE_REPLAY_H_
