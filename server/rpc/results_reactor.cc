#include "server/rpc/results_reactor.h"

#include <optional>
#include <utility>

namespace musc {

ResultsReactor* ResultsReactor::Start(CallContext call, std::shared_ptr<Session> session,
                                      v1::MapOptions options) {
  auto reactor =
      std::make_shared<ResultsReactor>(std::move(call), std::move(session), std::move(options));
  reactor->self_ = reactor;
  reactor->session_->AddWatcher(reactor);
  reactor->Pump();
  return reactor.get();
}

void ResultsReactor::OnWriteDone(bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    if (state_ == State::kWritingLast) return FinishLocked(grpc::Status::OK);
    if (state_ == State::kCancelling) return FinishLocked(grpc::Status::CANCELLED);
    state_ = State::kIdle;
  }
  Pump();
}

void ResultsReactor::OnCancel() {
  std::lock_guard<std::mutex> lock(mu_);
  switch (state_) {
    case State::kIdle:
      return FinishLocked(grpc::Status::CANCELLED);
    case State::kWriting:
      state_ = State::kCancelling;
      return;
    case State::kWritingLast:  // Its completion finishes the stream.
    case State::kCancelling:
    case State::kFinished:
      return;
  }
}

void ResultsReactor::OnDone() {
  // Released outside any lock; the object may live on briefly in a notifying thread.
  std::shared_ptr<ResultsReactor> keep = std::move(self_);
}

void ResultsReactor::Pump() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ != State::kIdle) return;
  std::optional<v1::ResultEvent> event;
  bool is_final = false;
  if (absl::Status s = NextResultEvent(*session_, options_, cursor_, &event, &is_final); !s.ok()) {
    return FinishLocked(ToGrpc(s));
  }
  if (!event) return;  // Nothing new; a session change will call again.
  event_ = *std::move(event);
  state_ = is_final ? State::kWritingLast : State::kWriting;
  lock.unlock();
  StartWrite(&event_);
}

void ResultsReactor::FinishLocked(const grpc::Status& status) {
  if (state_ == State::kFinished) return;
  state_ = State::kFinished;
  Finish(status);
}

}  // namespace musc
