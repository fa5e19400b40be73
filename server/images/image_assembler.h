// Reassembles chunked images from an AddImages (or Inspect) stream, decodes them with bounds and
// adds them to a session, producing one acknowledgement per image.
#ifndef MUSC_SERVER_IMAGES_IMAGE_ASSEMBLER_H_
#define MUSC_SERVER_IMAGES_IMAGE_ASSEMBLER_H_

#include <map>
#include <string>
#include <vector>

#include "musc/v1/musc_service.pb.h"
#include "server/batch/session_manager.h"
#include "server/images/image_decoder.h"

namespace musc {

class ImageAssembler {
 public:
  ImageAssembler(SessionManager* manager, DecodeLimits limits)
      : manager_(manager), limits_(limits) {}

  // Consumes one chunk; returns the acknowledgements it completed (usually zero or one; two when
  // a new image id interrupts an unfinished one).
  std::vector<v1::ImageAck> Feed(const v1::AddImagesRequest& chunk, Session& session);
  // The stream ended: an unfinished image is rejected.
  std::vector<v1::ImageAck> Finish();

 private:
  v1::ImageAck Complete(Session& session);
  v1::ImageAck Reject(const std::string& id, absl::StatusCode code, const std::string& message);
  // Every completed image, accepted or rejected, is counted once here.
  void CountReceived(int64_t encoded_bytes);
  void Reset();

  SessionManager* const manager_;
  const DecodeLimits limits_;
  std::string product_;  // Of the session being fed (for metrics).
  std::string current_id_;
  std::string buffer_;
  std::map<std::string, std::string> metadata_;
  bool oversized_ = false;
  int64_t image_bytes_ = 0;  // Received for the current image, kept or not.
};

}  // namespace musc

#endif  // MUSC_SERVER_IMAGES_IMAGE_ASSEMBLER_H_
