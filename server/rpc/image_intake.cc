#include "server/rpc/image_intake.h"

#include <string>
#include <utility>

namespace musc {

std::vector<v1::ImageAck> ImageIntake::Feed(const v1::AddImagesRequest& chunk, Session& session) {
  return AcknowledgeAll(assembler_.Feed(chunk, session.product().name), &session);
}

std::vector<v1::ImageAck> ImageIntake::Finish() {
  // Only refusals come out of Finish: no session is needed.
  return AcknowledgeAll(assembler_.Finish(), nullptr);
}

std::vector<v1::ImageAck> ImageIntake::AcknowledgeAll(std::vector<AssemblerOutput> completed,
                                                      Session* session) {
  std::vector<v1::ImageAck> acks;
  acks.reserve(completed.size());
  for (AssemblerOutput& output : completed) {
    if (v1::ImageAck* refusal = std::get_if<v1::ImageAck>(&output); refusal != nullptr) {
      acks.push_back(std::move(*refusal));
      continue;
    }
    AssembledImage& assembled = std::get<AssembledImage>(output);
    SessionImage image;
    image.client_id = std::move(assembled.client_id);
    image.pixels = std::move(assembled.pixels);
    image.metadata = std::move(assembled.metadata);
    image.encoded_bytes = assembled.encoded_bytes;
    image.decode_seconds = assembled.decode_seconds;
    image.encoded = std::move(assembled.encoded);  // For the spool; dropped once stored.
    const std::string id = image.client_id;
    const int width = image.pixels.cols;
    const int height = image.pixels.rows;
    absl::StatusOr<uint32_t> index = sessions_->AddImage(*session, std::move(image));
    if (!index.ok()) {
      acks.push_back(
          assembler_.Refuse(id, index.status().code(), std::string(index.status().message())));
      continue;
    }
    acks.push_back(AcceptedAck(id, *index, width, height));
  }
  return acks;
}

}  // namespace musc
