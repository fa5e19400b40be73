// Uploads in process: the image library's assembler produces decoded images or refusals without
// knowing sessions; the RPC layer's intake adds the images to a session and acknowledges each.
#include "server/rpc/image_intake.h"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

#include "server/batch/session_manager.h"
#include "server/images/image_assembler.h"
#include "tests/server/test_images.h"

namespace musc {
namespace {

v1::AddImagesRequest Chunk(const std::string& id, const std::string& data, bool last) {
  v1::AddImagesRequest chunk;
  chunk.set_client_image_id(id);
  chunk.set_data(data);
  chunk.set_last_chunk(last);
  return chunk;
}

const v1::ImageAck& Refusal(const AssemblerOutput& output) {
  return std::get<v1::ImageAck>(output);
}

TEST(ImageAssemblerTest, ChunksBecomeOneDecodedImage) {
  ImageAssembler assembler(nullptr, DecodeLimits{});
  const std::string png = testing::TexturePng(1, false, 48, 40);
  const size_t half = png.size() / 2;
  v1::AddImagesRequest first = Chunk("a", png.substr(0, half), false);
  (*first.mutable_metadata())["camera"] = "left";
  EXPECT_TRUE(assembler.Feed(first, "p").empty());
  std::vector<AssemblerOutput> done = assembler.Feed(Chunk("a", png.substr(half), true), "p");
  ASSERT_EQ(done.size(), 1u);
  const AssembledImage& image = std::get<AssembledImage>(done[0]);
  EXPECT_EQ(image.client_id, "a");
  EXPECT_EQ(image.pixels.cols, 48);
  EXPECT_EQ(image.pixels.rows, 40);
  EXPECT_EQ(image.metadata.at("camera"), "left");
  EXPECT_EQ(image.encoded, png);
  EXPECT_EQ(image.encoded_bytes, static_cast<int64_t>(png.size()));
  EXPECT_TRUE(assembler.Finish().empty());
}

TEST(ImageAssemblerTest, RefusalsNameTheImage) {
  DecodeLimits limits;
  limits.max_bytes = 64;
  ImageAssembler assembler(nullptr, limits);

  std::vector<AssemblerOutput> done = assembler.Feed(Chunk("", "x", true), "p");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(Refusal(done[0]).error_message(), "client_image_id is required on every chunk");

  EXPECT_TRUE(assembler.Feed(Chunk("a", "xx", false), "p").empty());
  done = assembler.Feed(Chunk("b", std::string(100, 'x'), true), "p");
  ASSERT_EQ(done.size(), 2u);  // "a" interrupted, then "b" too large.
  EXPECT_EQ(Refusal(done[0]).client_image_id(), "a");
  EXPECT_EQ(Refusal(done[0]).error_message(),
            "image 'a' ended without last_chunk (a new image id started)");
  EXPECT_EQ(Refusal(done[1]).error_message(), "image 'b' is larger than the limit of 64 bytes");

  done = assembler.Feed(Chunk("c", "not an image", true), "p");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_FALSE(Refusal(done[0]).accepted());
  EXPECT_EQ(Refusal(done[0]).error_code(),
            static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Refusal(done[0]).error_message().rfind("image 'c': ", 0), 0u);

  EXPECT_TRUE(assembler.Feed(Chunk("d", "xx", false), "p").empty());
  done = assembler.Finish();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(Refusal(done[0]).error_message(), "stream ended before the last chunk of image 'd'");
}

TEST(ImageIntakeTest, DecodedImagesJoinTheSessionAndAreAcknowledged) {
  ProductConfig product;
  product.name = "p";
  SessionManager sessions({product}, /*scheduler=*/nullptr, SessionManagerOptions{});
  absl::StatusOr<std::shared_ptr<Session>> session = sessions.Create("p", std::nullopt, {});
  ASSERT_TRUE(session.ok()) << session.status();

  ImageIntake intake(&sessions, DecodeLimits{});
  std::vector<v1::ImageAck> acks =
      intake.Feed(Chunk("a", testing::TexturePng(2, false, 48, 40), true), **session);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_TRUE(acks[0].accepted()) << acks[0].error_message();
  EXPECT_EQ(acks[0].client_image_id(), "a");
  EXPECT_EQ(acks[0].index(), 0u);
  EXPECT_EQ(acks[0].width(), 48u);
  EXPECT_EQ(acks[0].height(), 40u);

  acks = intake.Feed(Chunk("b", "not an image", true), **session);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_FALSE(acks[0].accepted());

  // An image the session refuses is acknowledged with the session's error.
  sessions.StopAccepting();
  acks = intake.Feed(Chunk("c", testing::TexturePng(3, false, 48, 40), true), **session);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_FALSE(acks[0].accepted());
  EXPECT_EQ(acks[0].error_code(), static_cast<int32_t>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(acks[0].error_message(), "server is shutting down; not accepting images");
  EXPECT_EQ((*session)->image_count(), 1u);
}

}  // namespace
}  // namespace musc
