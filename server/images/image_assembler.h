// Reassembles chunked images from an AddImages (or Inspect) stream and decodes them with bounds.
// Each completed image is either decoded (an AssembledImage, for the RPC layer to hand to its
// session) or refused (the acknowledgement to send). Sessions are none of its business: it
// depends on values only (scripts/check-includes.sh).
#ifndef MUSC_SERVER_IMAGES_IMAGE_ASSEMBLER_H_
#define MUSC_SERVER_IMAGES_IMAGE_ASSEMBLER_H_

#include <cstdint>
#include <map>
#include <opencv2/core.hpp>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "musc/v1/musc_service.pb.h"
#include "server/images/image_decoder.h"

namespace musc {

class ServerMetrics;

// One uploaded image, complete and decoded: everything a session keeps of it.
struct AssembledImage {
  std::string client_id;
  cv::Mat pixels;
  std::map<std::string, std::string> metadata;
  int64_t encoded_bytes = 0;
  double decode_seconds = 0;
  std::string encoded;  // The bytes as received (for the spool).
};

// What completing one image gave: the decoded image, or the acknowledgement refusing it.
using AssemblerOutput = std::variant<AssembledImage, v1::ImageAck>;

class ImageAssembler {
 public:
  // `metrics` may be null; otherwise it must outlive the assembler.
  ImageAssembler(ServerMetrics* metrics, DecodeLimits limits)
      : metrics_(metrics), limits_(limits) {}

  // Consumes one chunk of an image for `product` (the stream's session's, for metrics); returns
  // the images it completed, in order (usually zero or one; two when a new image id interrupts
  // an unfinished one).
  std::vector<AssemblerOutput> Feed(const v1::AddImagesRequest& chunk, const std::string& product);
  // The stream ended: an unfinished image is refused.
  std::vector<AssemblerOutput> Finish();

  // The acknowledgement refusing image `id` with `code` and `message`, counted in
  // musc_images_rejected_total: for the assembler's own refusals and for an assembled image the
  // session will not take.
  v1::ImageAck Refuse(const std::string& id, absl::StatusCode code, const std::string& message);

 private:
  AssemblerOutput Complete();
  // Every completed image, accepted or refused, is counted once here.
  void CountReceived(int64_t encoded_bytes);
  void Reset();

  ServerMetrics* const metrics_;
  const DecodeLimits limits_;
  std::string product_;  // Of the session being fed (for metrics).
  std::string current_id_;
  std::string buffer_;
  std::map<std::string, std::string> metadata_;
  bool oversized_ = false;
  int64_t image_bytes_ = 0;  // Received for the current image, kept or not.
};

// The acknowledgement of an image that its session took as number `index`.
v1::ImageAck AcceptedAck(const std::string& id, uint32_t index, int width, int height);

}  // namespace musc

#endif  // MUSC_SERVER_IMAGES_IMAGE_ASSEMBLER_H_
