#include "base/file_io.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/test_support.h"

namespace musc {
namespace {

TEST(FileIoTest, ReadsEveryByteIncludingNulsAndNoTrailingChange) {
  testing::ScratchDir dir;
  const std::string path = dir.path() + "/bytes.bin";
  std::string bytes("a\0b\r\n\xff", 6);
  bytes += std::string(100000, 'x');  // Larger than any stream buffer.
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
  }
  const absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);
}

TEST(FileIoTest, MissingFileIsNotFoundAndNamesThePath) {
  testing::ScratchDir dir;
  const std::string path = dir.path() + "/absent.txt";
  const absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(read.status().message().find(path), std::string::npos) << read.status();
}

}  // namespace
}  // namespace musc
