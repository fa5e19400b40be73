#include "server/images/image_assembler.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace musc {

v1::ImageAck ImageAssembler::Reject(const std::string& id, absl::StatusCode code,
                                    const std::string& message) {
  if (ServerMetrics* metrics = manager_->metrics(); metrics != nullptr && !product_.empty()) {
    metrics->ImageRejected(product_, code);
  }
  v1::ImageAck ack;
  ack.set_client_image_id(id);
  ack.set_accepted(false);
  ack.set_error_code(static_cast<int32_t>(code));
  ack.set_error_message(message);
  return ack;
}

void ImageAssembler::CountReceived(int64_t encoded_bytes) {
  if (ServerMetrics* metrics = manager_->metrics(); metrics != nullptr && !product_.empty()) {
    metrics->ImageReceived(product_, encoded_bytes);
  }
}

void ImageAssembler::Reset() {
  current_id_.clear();
  buffer_.clear();
  buffer_.shrink_to_fit();
  metadata_.clear();
  oversized_ = false;
  image_bytes_ = 0;
}

std::vector<v1::ImageAck> ImageAssembler::Feed(const v1::AddImagesRequest& chunk,
                                               Session& session) {
  std::vector<v1::ImageAck> acks;
  product_ = session.product().name;
  if (chunk.client_image_id().empty()) {
    CountReceived(static_cast<int64_t>(chunk.data().size()));
    acks.push_back(Reject("", absl::StatusCode::kInvalidArgument,
                          "client_image_id is required on every chunk"));
    return acks;
  }
  if (!current_id_.empty() && chunk.client_image_id() != current_id_) {
    CountReceived(image_bytes_);
    acks.push_back(Reject(current_id_, absl::StatusCode::kInvalidArgument,
                          absl::StrCat("image '", current_id_, "' ended without last_chunk (a new ",
                                       "image id started)")));
    Reset();
  }
  if (current_id_.empty()) {
    current_id_ = chunk.client_image_id();
    metadata_.insert(chunk.metadata().begin(), chunk.metadata().end());
  }
  image_bytes_ += static_cast<int64_t>(chunk.data().size());
  if (!oversized_) {
    if (static_cast<int64_t>(buffer_.size() + chunk.data().size()) > limits_.max_bytes) {
      // Keep reading the image's chunks (the stream stays in step) but drop their bytes.
      oversized_ = true;
      buffer_.clear();
      buffer_.shrink_to_fit();
    } else {
      buffer_.append(chunk.data());
    }
  }
  if (chunk.last_chunk()) acks.push_back(Complete(session));
  return acks;
}

std::vector<v1::ImageAck> ImageAssembler::Finish() {
  std::vector<v1::ImageAck> acks;
  if (!current_id_.empty()) {
    CountReceived(image_bytes_);
    acks.push_back(
        Reject(current_id_, absl::StatusCode::kInvalidArgument,
               absl::StrCat("stream ended before the last chunk of image '", current_id_, "'")));
    Reset();
  }
  return acks;
}

v1::ImageAck ImageAssembler::Complete(Session& session) {
  const std::string id = current_id_;
  CountReceived(image_bytes_);
  if (oversized_) {
    Reset();
    return Reject(
        id, absl::StatusCode::kInvalidArgument,
        absl::StrCat("image '", id, "' is larger than the limit of ", limits_.max_bytes, " bytes"));
  }
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<DecodedImage> decoded = DecodeImage(buffer_, limits_);
  const double decode_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (ServerMetrics* metrics = manager_->metrics(); metrics != nullptr) {
    metrics->ImageDecoded(product_, decode_seconds);
  }
  if (!decoded.ok()) {
    Reset();
    return Reject(id, decoded.status().code(),
                  absl::StrCat("image '", id, "': ", decoded.status().message()));
  }
  SessionImage image;
  image.client_id = id;
  image.pixels = std::move(decoded->pixels);
  image.metadata = std::move(metadata_);
  image.encoded_bytes = static_cast<int64_t>(buffer_.size());
  image.decode_seconds = decode_seconds;
  image.encoded = std::move(buffer_);  // For the spool; the session drops it once stored.
  const int width = image.pixels.cols;
  const int height = image.pixels.rows;
  Reset();
  absl::StatusOr<uint32_t> index = manager_->AddImage(session, std::move(image));
  if (!index.ok()) {
    return Reject(id, index.status().code(), std::string(index.status().message()));
  }
  v1::ImageAck ack;
  ack.set_client_image_id(id);
  ack.set_accepted(true);
  ack.set_index(*index);
  ack.set_width(static_cast<uint32_t>(width));
  ack.set_height(static_cast<uint32_t>(height));
  return ack;
}

}  // namespace musc
