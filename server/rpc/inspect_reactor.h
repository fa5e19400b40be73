// Inspect: one stream for a whole batch. A start message creates the session, images follow
// (each acknowledged as ResultEvent.ack), the client's half-close seals the batch, then the
// results stream as in StreamResults.
#ifndef MUSC_SERVER_RPC_INSPECT_REACTOR_H_
#define MUSC_SERVER_RPC_INSPECT_REACTOR_H_

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
#include "server/rpc/result_events.h"

namespace musc {

class InspectReactor final : public grpc::ServerBidiReactor<v1::InspectRequest, v1::ResultEvent>,
                             public SessionWatcher,
                             public std::enable_shared_from_this<InspectReactor> {
 public:
  // Starts reading. `call` holds the stream's slot; the product to authorise arrives with the
  // start message. The reactor owns itself until OnDone; once sealed, the session holds it
  // weakly.
  static InspectReactor* Start(CallContext call, DecodeLimits limits);

  InspectReactor(CallContext call, DecodeLimits limits)
      : call_(std::move(call)), intake_(&call_.sessions(), limits) {}

  void OnSessionChanged() override { Pump(); }
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Where the stream is; the one write in flight (writing_) is orthogonal. Events (acks) pending
  // are always written first, whatever the state. Every transition happens under mu_:
  //   kReading     --OnReadDone(true), few events pending-->  kReading (the next read starts)
  //   kReading     --OnReadDone(true), kMaxPendingAcks-->     kReadPaused
  //   kReadPaused  --OnWriteDone(true), fewer pending-->      kReading (the next read starts)
  //   kReading     --OnReadDone(false) after start-->         kSealing (Seal runs unlocked; the
  //                                                           stream must not finish meanwhile)
  //   kReading     --OnReadDone(false) without start,
  //                  or a refused request (the session
  //                  is cancelled)-->                         kClosing
  //   kSealing     --sealed-->                                kResults (the session's watcher)
  //   kSealing     --Seal failed (session cancelled)-->       kClosing with Seal's error
  //   kResults     --Pump: SessionFinished to write-->        kWritingLast
  //   kWritingLast --OnWriteDone(true)-->                     kFinished, OK
  //   kResults     --Pump: building a result failed-->        kFinished with that error
  //   kClosing     --Pump: every ack written-->               kFinishedUnsealed, final_status_
  //   any but kWritingLast --OnCancel-->                      kFinished(Unsealed), CANCELLED; or
  //                                                           kCancelled while a write is in
  //                                                           flight. Before kResults the
  //                                                           session is cancelled too.
  //   kCancelled   --OnWriteDone(true)-->                     kFinished, CANCELLED
  //   any write    --OnWriteDone(false)-->                    kFinished(Unsealed), CANCELLED
  //                                                           "write failed"
  // The stream finishes in kFinishedUnsealed when it ends before its batch was sealed, so that a
  // cancellation arriving afterwards still cancels the session (its images would never be
  // scored).
  enum class State {
    kReading,
    kReadPaused,
    kSealing,
    kResults,
    kWritingLast,
    kClosing,
    kCancelled,
    kFinishedUnsealed,
    kFinished,
  };

  // Whether the batch was not sealed (yet) in `state`: a cancellation then cancels the session.
  static bool Unsealed(State state);
  bool Finished() const { return state_ == State::kFinished || state_ == State::kFinishedUnsealed; }

  void PushAck(v1::ImageAck ack);
  // Handles request_ (under mu_). A non-OK status ends the stream.
  absl::Status Accept();
  // Seals the batch after the client's half-close (mu_ not held); then the results phase.
  void Seal();
  void Pump();
  void FinishLocked(const grpc::Status& status);

  const CallContext call_;  // Holds the stream's slot.
  std::shared_ptr<InspectReactor> self_;
  std::mutex mu_;
  ImageIntake intake_;
  std::shared_ptr<Session> session_;
  v1::MapOptions options_;
  v1::InspectRequest request_;
  v1::ResultEvent event_;  // The one being written.
  std::deque<v1::ResultEvent> pending_;
  ResultCursor cursor_;
  grpc::Status final_status_ = grpc::Status::OK;
  State state_ = State::kReading;
  bool writing_ = false;
};

}  // namespace musc

#endif  // MUSC_SERVER_RPC_INSPECT_REACTOR_H_
