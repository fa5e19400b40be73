// Hostile and broken input through the real service: every kind of bad image sent into one
// session is refused with INVALID_ARGUMENT naming the image, and that same session then takes good
// images, seals and scores them: a bad image never poisons its session. Also the products-file
// inputs the fuzzer (fuzz/fuzz_products_config.cc) showed to be mishandled.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/product_config.h"
#include "tests/server/images/image_bytes.h"
#include "tests/server/server_process.h"
#include "tests/server/test_images.h"
#include "tests/test_support.h"

namespace musc::testing {
namespace {

constexpr char kProducts[] = R"(
products:
  - name: widget
    backbone: {model: vit-tiny-random, seed: 1, input_size: 64}
    scoring: {degrees: [1, 3]}
    batch: {min_images: 3, max_images: 40}
)";

std::string Encode(const cv::Mat& image, const std::string& ext) {
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(ext, image, bytes)) << ext;
  return std::string(bytes.begin(), bytes.end());
}

TEST(HostileInputTest, BadImagesAreRefusedByIdAndTheSessionStaysUsable) {
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(kProducts);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<MuscClient> client = server->Connect();
  v1::CreateSessionRequest create;
  create.set_product("widget");
  absl::StatusOr<v1::Session> session = client->CreateSession(create);
  ASSERT_TRUE(session.ok()) << session.status();

  const std::string png = TexturePng(1, false);
  const std::string jpeg = Encode(MakeTexture(2, false, 96, 80), ".jpg");
  const std::string tiff = Encode(MakeTexture(3, false, 96, 80), ".tiff");
  std::string random_bytes(1000, '\0');
  std::mt19937 rng(11);
  for (char& c : random_bytes) c = static_cast<char>(rng());
  std::string corrupt_png = png;
  corrupt_png[corrupt_png.find("IDAT") + 4] = '\0';  // The zlib header's compression method.

  // Each bad kind with a word its refusal must contain.
  const std::vector<std::pair<EncodedImage, std::string>> bad = {
      {{"zero-bytes", "", {}}, "empty"},
      {{"random-bytes", random_bytes, {}}, "unsupported image format"},
      {{"wrong-format", "GIF89a\x01\x02\x03\x04", {}}, "unsupported image format"},
      {{"truncated-png", png.substr(0, png.size() / 2), {}}, "PNG"},
      {{"truncated-jpeg", jpeg.substr(0, jpeg.size() - 2), {}}, "JPEG header: truncated"},
      {{"truncated-tiff", tiff.substr(0, tiff.size() / 2), {}}, "TIFF"},
      {{"corrupt-png", corrupt_png, {}}, "truncated or corrupt"},
      {{"bomb-png", MakePng(100000, 100000, 8, 0, {std::string(16, '\0')}), {}},
       "refused before decoding"},
  };
  std::vector<EncodedImage> bad_images;
  for (const auto& [image, reason] : bad) bad_images.push_back(image);
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client->AddImages(session->id(), bad_images);
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), bad.size());
  for (size_t i = 0; i < bad.size(); ++i) {
    const v1::ImageAck& ack = (*acks)[i];
    const std::string& id = bad[i].first.client_id;
    EXPECT_EQ(ack.client_image_id(), id);
    EXPECT_FALSE(ack.accepted()) << id;
    EXPECT_EQ(ack.error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument)) << id;
    EXPECT_NE(ack.error_message().find(absl::StrCat("'", id, "'")), std::string::npos)
        << id << ": " << ack.error_message();
    EXPECT_NE(ack.error_message().find(bad[i].second), std::string::npos)
        << id << ": " << ack.error_message();
  }

  // The same session, now with good images in every format and depth.
  const std::vector<EncodedImage> good = {
      {"good-png", TexturePng(4, false), {}},
      {"good-jpeg", jpeg, {}},
      {"good-tiff", tiff, {}},
      {"good-bmp", Encode(MakeTexture(5, false, 96, 80), ".bmp"), {}},
      {"good-grey16", TexturePng(6, true, 96, 80, /*grey16=*/true), {}},
  };
  acks = client->AddImages(session->id(), good);
  ASSERT_TRUE(acks.ok()) << acks.status();
  ASSERT_EQ(acks->size(), good.size());
  for (size_t i = 0; i < good.size(); ++i) {
    EXPECT_TRUE((*acks)[i].accepted()) << good[i].client_id << ": " << (*acks)[i].error_message();
    EXPECT_EQ((*acks)[i].index(), i) << "refused images must not take an index";
  }
  absl::StatusOr<v1::Session> sealed = client->SealSession(session->id());
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(sealed->image_count(), good.size());

  std::vector<v1::ImageResult> results;
  v1::Session final_session;
  absl::Status streamed =
      client->StreamResults(session->id(), {}, [&](const v1::ResultEvent& event) {
        if (event.has_result()) results.push_back(event.result());
        if (event.has_finished()) final_session = event.finished().session();
      });
  ASSERT_TRUE(streamed.ok()) << streamed;
  EXPECT_EQ(final_session.state(), v1::DONE) << final_session.error();
  ASSERT_EQ(results.size(), good.size());
  for (const v1::ImageResult& r : results) {
    EXPECT_EQ(r.map().width(), 96u) << r.client_image_id();
    EXPECT_EQ(r.map().height(), 80u) << r.client_image_id();
  }
}

// The products file: found by fuzz/fuzz_products_config.cc under UBSan.
TEST(HostileProductsTest, BlockBudgetOutOfRangeIsRefusedNotShifted) {
  for (const char* mib : {"-1", "0", "9223372036854775807", "1048577"}) {
    absl::StatusOr<std::vector<ProductConfig>> p = ParseProducts(
        absl::StrCat("products:\n  - name: a\n    scoring: {block_budget_mib: ", mib, "}\n"),
        "test.yaml", "/");
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << mib;
    EXPECT_TRUE(MessageHas(p.status(), "block_budget_mib")) << mib;
  }
  absl::StatusOr<std::vector<ProductConfig>> p = ParseProducts(
      "products:\n  - name: a\n    scoring: {block_budget_mib: 1048576}\n", "test.yaml", "/");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)[0].scoring.block_budget_bytes, int64_t{1} << 40);
}

TEST(HostileProductsTest, NotANumberIdleSecondsIsRefused) {
  for (const char* idle : {".nan", "-1", "-.inf"}) {
    absl::StatusOr<std::vector<ProductConfig>> p = ParseProducts(
        absl::StrCat("products:\n  - name: a\n    batch: {auto_seal: {idle_seconds: ", idle,
                     "}}\n"),
        "test.yaml", "/");
    EXPECT_TRUE(MessageHas(p.status(), "idle_seconds must be a number >= 0")) << idle;
  }
}

}  // namespace
}  // namespace musc::testing
