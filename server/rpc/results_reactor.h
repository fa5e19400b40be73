// StreamResults: a session's results as a server stream. Writes are driven by OnWriteDone and by
// session changes, at most one in flight.
#ifndef MUSC_SERVER_RPC_RESULTS_REACTOR_H_
#define MUSC_SERVER_RPC_RESULTS_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>

#include "musc/v1/musc_service.pb.h"
#include "server/batch/session.h"
#include "server/rpc/call_context.h"
#include "server/rpc/result_events.h"

namespace musc {

class ResultsReactor final : public grpc::ServerWriteReactor<v1::ResultEvent>,
                             public SessionWatcher,
                             public std::enable_shared_from_this<ResultsReactor> {
 public:
  // Starts streaming `session`'s results for `call` (which holds the stream's slot). The reactor
  // owns itself until OnDone; the session holds it weakly.
  static ResultsReactor* Start(CallContext call, std::shared_ptr<Session> session,
                               v1::MapOptions options);

  ResultsReactor(CallContext call, std::shared_ptr<Session> session, v1::MapOptions options)
      : call_(std::move(call)), session_(std::move(session)), options_(std::move(options)) {}

  void OnSessionChanged() override { Pump(); }
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Where the stream is. Every transition happens under mu_:
  //   kIdle        --Pump: an event is ready-->          kWriting (kWritingLast: SessionFinished)
  //   kIdle        --Pump: building the event failed-->  kFinished with that error
  //   kIdle        --OnCancel-->                         kFinished, CANCELLED
  //   kWriting     --OnWriteDone(true)-->                kIdle, then Pump
  //   kWriting     --OnCancel-->                         kCancelling
  //   kWritingLast --OnWriteDone(true)-->                kFinished, OK (even if cancelled
  //   meanwhile) kCancelling  --OnWriteDone(true)-->                kFinished, CANCELLED any write
  //   --OnWriteDone(false)-->               kFinished, CANCELLED "write failed"
  enum class State { kIdle, kWriting, kWritingLast, kCancelling, kFinished };

  void Pump();
  void FinishLocked(const grpc::Status& status);

  const CallContext call_;  // Holds the stream's slot.
  const std::shared_ptr<Session> session_;
  const v1::MapOptions options_;
  std::shared_ptr<ResultsReactor> self_;
  std::mutex mu_;
  State state_ = State::kIdle;
  ResultCursor cursor_;
  v1::ResultEvent event_;  // The one being written.
};

}  // namespace musc

#endif  // MUSC_SERVER_RPC_RESULTS_REACTOR_H_
