#include "server/rpc/upload_reactor.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace musc {

UploadReactor::UploadReactor(CallContext call, DecodeLimits limits)
    : call_(std::move(call)), intake_(&call_.sessions(), limits) {
  StartRead(&request_);
}

void UploadReactor::OnReadDone(bool ok) {
  bool read_more = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kFinished || state_ == State::kCancelled) return;
    if (!ok) {
      state_ = State::kClosing;
      for (v1::ImageAck& ack : intake_.Finish()) acks_.push_back(std::move(ack));
    } else if (absl::Status s = Accept(); !s.ok()) {
      state_ = State::kClosing;
      final_status_ = ToGrpc(s);
    } else {
      read_more = acks_.size() < kMaxPendingAcks;
      state_ = read_more ? State::kReading : State::kReadPaused;
    }
  }
  if (read_more) StartRead(&request_);
  Pump();
}

void UploadReactor::OnWriteDone(bool ok) {
  bool resume = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    if (state_ == State::kCancelled) return FinishLocked(grpc::Status::CANCELLED);
    if (state_ == State::kReadPaused && acks_.size() < kMaxPendingAcks) {
      state_ = State::kReading;
      resume = true;
    }
  }
  if (resume) StartRead(&request_);
  Pump();
}

void UploadReactor::OnCancel() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kFinished) return;
  if (writing_) {
    state_ = State::kCancelled;
  } else {
    FinishLocked(grpc::Status::CANCELLED);
  }
}

absl::Status UploadReactor::Accept() {
  if (session_ == nullptr) {
    if (request_.session_id().empty()) {
      return absl::InvalidArgumentError("the first AddImages message must carry session_id");
    }
    MUSC_ASSIGN_OR_RETURN(session_, call_.FindSession(Permission::kSubmit, request_.session_id()));
  } else if (!request_.session_id().empty() && request_.session_id() != session_->id()) {
    return absl::InvalidArgumentError(absl::StrCat("session_id changed within the stream (",
                                                   session_->id(), " → ", request_.session_id(),
                                                   ")"));
  }
  for (v1::ImageAck& ack : intake_.Feed(request_, *session_)) acks_.push_back(std::move(ack));
  return absl::OkStatus();
}

void UploadReactor::Pump() {
  std::unique_lock<std::mutex> lock(mu_);
  if (writing_ || state_ == State::kFinished || state_ == State::kCancelled) return;
  if (!acks_.empty()) {
    ack_ = std::move(acks_.front());
    acks_.pop_front();
    writing_ = true;
    lock.unlock();
    StartWrite(&ack_);
    return;
  }
  if (state_ == State::kClosing) FinishLocked(final_status_);
}

void UploadReactor::FinishLocked(const grpc::Status& status) {
  if (state_ == State::kFinished) return;
  state_ = State::kFinished;
  Finish(status);
}

}  // namespace musc
