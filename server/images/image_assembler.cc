#include "server/images/image_assembler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/images/measured_decode.h"
#include "server/server_metrics.h"

namespace musc {
namespace {

// A refusal built without counting it: DecodeMeasured has counted it already.
v1::ImageAck RefusalAck(const std::string& id, absl::StatusCode code, const std::string& message) {
  v1::ImageAck ack;
  ack.set_client_image_id(id);
  ack.set_accepted(false);
  ack.set_error_code(static_cast<int32_t>(code));
  ack.set_error_message(message);
  return ack;
}

}  // namespace

v1::ImageAck AcceptedAck(const std::string& id, uint32_t index, int width, int height) {
  v1::ImageAck ack;
  ack.set_client_image_id(id);
  ack.set_accepted(true);
  ack.set_index(index);
  ack.set_width(static_cast<uint32_t>(width));
  ack.set_height(static_cast<uint32_t>(height));
  return ack;
}

v1::ImageAck ImageAssembler::Refuse(const std::string& id, absl::StatusCode code,
                                    const std::string& message) {
  if (metrics_ != nullptr && !product_.empty()) metrics_->ImageRejected(product_, code);
  return RefusalAck(id, code, message);
}

void ImageAssembler::CountReceived(int64_t encoded_bytes) {
  if (metrics_ != nullptr && !product_.empty()) metrics_->ImageReceived(product_, encoded_bytes);
}

void ImageAssembler::Reset() {
  current_id_.clear();
  buffer_.clear();
  buffer_.shrink_to_fit();
  metadata_.clear();
  oversized_ = false;
  image_bytes_ = 0;
}

std::vector<AssemblerOutput> ImageAssembler::Feed(const v1::AddImagesRequest& chunk,
                                                  const std::string& product) {
  std::vector<AssemblerOutput> completed;
  product_ = product;
  if (chunk.client_image_id().empty()) {
    CountReceived(static_cast<int64_t>(chunk.data().size()));
    completed.push_back(Refuse("", absl::StatusCode::kInvalidArgument,
                               "client_image_id is required on every chunk"));
    return completed;
  }
  if (!current_id_.empty() && chunk.client_image_id() != current_id_) {
    CountReceived(image_bytes_);
    completed.push_back(
        Refuse(current_id_, absl::StatusCode::kInvalidArgument,
               absl::StrCat("image '", current_id_,
                            "' ended without last_chunk (a new image id started)")));
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
  if (chunk.last_chunk()) completed.push_back(Complete());
  return completed;
}

std::vector<AssemblerOutput> ImageAssembler::Finish() {
  std::vector<AssemblerOutput> completed;
  if (!current_id_.empty()) {
    CountReceived(image_bytes_);
    completed.push_back(
        Refuse(current_id_, absl::StatusCode::kInvalidArgument,
               absl::StrCat("stream ended before the last chunk of image '", current_id_, "'")));
    Reset();
  }
  return completed;
}

AssemblerOutput ImageAssembler::Complete() {
  const std::string id = current_id_;
  CountReceived(image_bytes_);
  if (oversized_) {
    Reset();
    return Refuse(
        id, absl::StatusCode::kInvalidArgument,
        absl::StrCat("image '", id, "' is larger than the limit of ", limits_.max_bytes, " bytes"));
  }
  AssembledImage image;
  absl::StatusOr<DecodedImage> decoded =
      DecodeMeasured(buffer_, limits_, id, product_, metrics_, &image.decode_seconds);
  if (!decoded.ok()) {
    Reset();
    return RefusalAck(id, decoded.status().code(), std::string(decoded.status().message()));
  }
  image.client_id = id;
  image.pixels = std::move(decoded->pixels);
  image.metadata = std::move(metadata_);
  image.encoded_bytes = static_cast<int64_t>(buffer_.size());
  image.encoded = std::move(buffer_);
  Reset();
  return image;
}

}  // namespace musc
