// The images of one AddImages or Inspect stream into its session: the assembler reassembles and
// decodes them, the intake adds each decoded one to the session, and every image, accepted or
// refused, gets one acknowledgement. The RPC layer's half of uploading, so that the image library
// (server/images/) need not know sessions.
#ifndef MUSC_SERVER_RPC_IMAGE_INTAKE_H_
#define MUSC_SERVER_RPC_IMAGE_INTAKE_H_

#include <cstddef>
#include <vector>

#include "musc/v1/musc_service.pb.h"
#include "server/batch/session_manager.h"
#include "server/images/image_assembler.h"

namespace musc {

// Acknowledgements (or events) waiting for the client beyond which a stream stops reading until
// the client catches up.
inline constexpr size_t kMaxPendingAcks = 64;

class ImageIntake {
 public:
  // `sessions` must outlive the intake.
  ImageIntake(SessionManager* sessions, DecodeLimits limits)
      : sessions_(sessions), assembler_(sessions->metrics(), limits) {}

  // Consumes one chunk for `session`; returns the acknowledgements it completed, in order.
  std::vector<v1::ImageAck> Feed(const v1::AddImagesRequest& chunk, Session& session);
  // The stream ended: an unfinished image is refused.
  std::vector<v1::ImageAck> Finish();

 private:
  std::vector<v1::ImageAck> AcknowledgeAll(std::vector<AssemblerOutput> completed,
                                           Session* session);

  SessionManager* const sessions_;
  ImageAssembler assembler_;
};

}  // namespace musc

#endif  // MUSC_SERVER_RPC_IMAGE_INTAKE_H_
