// AddImages: reads image chunks into an existing session and answers one ImageAck per image;
// back-pressure pauses reading while too many acknowledgements wait for the client.
#ifndef MUSC_SERVER_RPC_UPLOAD_REACTOR_H_
#define MUSC_SERVER_RPC_UPLOAD_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "musc/v1/musc_service.pb.h"
#include "server/batch/session.h"
#include "server/images/image_decoder.h"
#include "server/rpc/call_context.h"
#include "server/rpc/image_intake.h"

namespace musc {

class UploadReactor final : public grpc::ServerBidiReactor<v1::AddImagesRequest, v1::ImageAck> {
 public:
  // Starts reading at once. `call` holds the stream's slot; the session (and so the product to
  // authorise) arrives with the first message. Deletes itself in OnDone.
  UploadReactor(CallContext call, DecodeLimits limits);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override { delete this; }

 private:
  // The stream's reading side and its end; the one write in flight (writing_) is orthogonal.
  // Every transition happens under mu_:
  //   kReading    --OnReadDone(true), few acks pending-->   kReading (the next read starts)
  //   kReading    --OnReadDone(true), kMaxPendingAcks-->    kReadPaused
  //   kReadPaused --OnWriteDone(true), fewer pending-->     kReading (the next read starts)
  //   kReading    --OnReadDone(false) (client half-closed)
  //               or a refused request-->                  kClosing
  //   kClosing    --Pump: every ack written-->              kFinished with final_status_
  //   any         --OnCancel, no write in flight-->         kFinished, CANCELLED
  //   any         --OnCancel, a write in flight-->          kCancelled
  //   kCancelled  --OnWriteDone(true)-->                    kFinished, CANCELLED
  //   any         --OnWriteDone(false)-->                   kFinished, CANCELLED "write failed"
  enum class State { kReading, kReadPaused, kClosing, kCancelled, kFinished };

  // Handles request_ (under mu_). A non-OK status ends the stream.
  absl::Status Accept();
  void Pump();
  void FinishLocked(const grpc::Status& status);

  const CallContext call_;  // Holds the stream's slot.
  std::mutex mu_;
  ImageIntake intake_;
  std::shared_ptr<Session> session_;
  v1::AddImagesRequest request_;
  v1::ImageAck ack_;  // The one being written.
  std::deque<v1::ImageAck> acks_;
  grpc::Status final_status_ = grpc::Status::OK;
  State state_ = State::kReading;
  bool writing_ = false;
};

}  // namespace musc

#endif  // MUSC_SERVER_RPC_UPLOAD_REACTOR_H_
