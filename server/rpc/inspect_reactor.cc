#include "server/rpc/inspect_reactor.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace musc {

InspectReactor* InspectReactor::Start(CallContext call, DecodeLimits limits) {
  auto reactor = std::make_shared<InspectReactor>(std::move(call), limits);
  reactor->self_ = reactor;
  reactor->StartRead(&reactor->request_);
  return reactor.get();
}

bool InspectReactor::Unsealed(State state) {
  switch (state) {
    case State::kReading:
    case State::kReadPaused:
    case State::kSealing:
    case State::kClosing:
    case State::kFinishedUnsealed:
      return true;
    case State::kResults:
    case State::kWritingLast:
    case State::kCancelled:
    case State::kFinished:
      return false;
  }
  return false;
}

void InspectReactor::OnReadDone(bool ok) {
  bool read_more = false;
  bool seal = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (Finished() || state_ == State::kCancelled) return;
    if (!ok) {
      for (v1::ImageAck& ack : intake_.Finish()) PushAck(std::move(ack));
      if (session_ != nullptr) {
        state_ = State::kSealing;
        seal = true;
      } else {
        state_ = State::kClosing;
        final_status_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     "Inspect stream ended without a start message");
      }
    } else if (absl::Status s = Accept(); !s.ok()) {
      state_ = State::kClosing;
      final_status_ = ToGrpc(s);
      if (session_ != nullptr) session_->Cancel(std::string(s.message())).IgnoreError();
    } else {
      read_more = pending_.size() < kMaxPendingAcks;
      state_ = read_more ? State::kReading : State::kReadPaused;
    }
  }
  if (seal) Seal();
  if (read_more) StartRead(&request_);
  Pump();
}

void InspectReactor::Seal() {
  const absl::Status s = call_.sessions().Seal(session_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A cancellation meanwhile has decided the stream's end already.
    if (state_ == State::kSealing) {
      if (s.ok()) {
        state_ = State::kResults;
      } else {
        state_ = State::kClosing;
        final_status_ = ToGrpc(s);
      }
    }
  }
  if (s.ok()) {
    session_->AddWatcher(self_);
  } else {
    session_->Cancel(absl::StrCat("Inspect could not seal: ", s.message())).IgnoreError();
  }
}

void InspectReactor::OnWriteDone(bool ok) {
  bool resume = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    if (state_ == State::kWritingLast) return FinishLocked(grpc::Status::OK);
    if (state_ == State::kCancelled) return FinishLocked(grpc::Status::CANCELLED);
    if (state_ == State::kReadPaused && pending_.size() < kMaxPendingAcks) {
      state_ = State::kReading;
      resume = true;
    }
  }
  if (resume) StartRead(&request_);
  Pump();
}

void InspectReactor::OnCancel() {
  std::lock_guard<std::mutex> lock(mu_);
  // Images of a batch the client abandoned before sealing will never be scored.
  if (session_ != nullptr && Unsealed(state_)) {
    session_->Cancel("Inspect stream cancelled by the client").IgnoreError();
  }
  if (Finished() || state_ == State::kWritingLast) return;  // The last write finishes it.
  if (writing_) {
    state_ = State::kCancelled;
  } else {
    FinishLocked(grpc::Status::CANCELLED);
  }
}

void InspectReactor::OnDone() {
  // Released outside any lock; the object may live on briefly in a notifying thread.
  std::shared_ptr<InspectReactor> keep = std::move(self_);
}

void InspectReactor::PushAck(v1::ImageAck ack) {
  v1::ResultEvent event;
  *event.mutable_ack() = std::move(ack);
  pending_.push_back(std::move(event));
}

absl::Status InspectReactor::Accept() {
  if (session_ == nullptr) {
    if (!request_.has_start()) {
      return absl::InvalidArgumentError("the first Inspect message must be `start`");
    }
    const v1::InspectStart& start = request_.start();
    MUSC_RETURN_IF_ERROR(call_.May(Permission::kSubmit, start.product()));
    MUSC_ASSIGN_OR_RETURN(session_,
                          call_.sessions().Create(start.product(), SealPolicyConfig{},
                                                  {start.labels().begin(), start.labels().end()}));
    options_ = start.map_options();
    return absl::OkStatus();
  }
  if (!request_.has_image()) {
    return absl::InvalidArgumentError("after `start`, Inspect messages must carry `image`");
  }
  for (v1::ImageAck& ack : intake_.Feed(request_.image(), *session_)) PushAck(std::move(ack));
  return absl::OkStatus();
}

void InspectReactor::Pump() {
  std::unique_lock<std::mutex> lock(mu_);
  if (writing_ || Finished() || state_ == State::kCancelled) return;
  if (!pending_.empty()) {
    event_ = std::move(pending_.front());
    pending_.pop_front();
  } else if (state_ == State::kResults) {
    std::optional<v1::ResultEvent> event;
    bool is_final = false;
    if (absl::Status s = NextResultEvent(*session_, options_, cursor_, &event, &is_final);
        !s.ok()) {
      return FinishLocked(ToGrpc(s));
    }
    if (!event) return;  // Nothing new; a session change will call again.
    event_ = *std::move(event);
    if (is_final) state_ = State::kWritingLast;
  } else {
    if (state_ == State::kClosing) FinishLocked(final_status_);
    return;  // kReading, kReadPaused, kSealing: the next read or the seal calls again.
  }
  writing_ = true;
  lock.unlock();
  StartWrite(&event_);
}

void InspectReactor::FinishLocked(const grpc::Status& status) {
  if (Finished()) return;
  state_ = Unsealed(state_) ? State::kFinishedUnsealed : State::kFinished;
  Finish(status);
}

}  // namespace musc
