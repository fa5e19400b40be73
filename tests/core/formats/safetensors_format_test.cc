// safetensors header parsing: valid files built byte by byte, and every malformation the format
// rules out, each of which must give a clear error naming the file, the tensor and what was
// expected (never a crash: this suite also runs under ASan/UBSan).
#include "core/formats/safetensors_format.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace musc {
namespace {

constexpr char kFile[] = "model.safetensors";

// GoogleMock is not linked into this suite, so substring checks are spelled out.
::testing::AssertionResult MessageHas(const absl::Status& status, const std::string& part) {
  if (std::string(status.message()).find(part) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "error \"" << status << "\" lacks \"" << part << "\"";
}

// The 8-byte little-endian length, the header text, then the data section.
std::string FileBytes(const std::string& header, const std::string& data) {
  std::string bytes;
  uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) {
    bytes.push_back(static_cast<char>(length & 0xff));
    length >>= 8;
  }
  return bytes + header + data;
}

absl::StatusOr<SafetensorsHeader> ParseFile(const std::string& bytes) {
  return ParseSafetensorsHeader(bytes, bytes.size(), kFile);
}

// One tensor named "w" with the given entry JSON and `data_bytes` of data.
absl::StatusOr<SafetensorsHeader> ParseOne(const std::string& entry_json, size_t data_bytes) {
  return ParseFile(
      FileBytes(absl::StrCat(R"({"w":)", entry_json, "}"), std::string(data_bytes, '\x01')));
}

// Expects `status` to fail with `code` and a message naming the file and containing every part.
void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& parts) {
  ASSERT_FALSE(status.ok()) << "expected an error containing " << parts[0];
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_TRUE(MessageHas(status, kFile));
  for (const std::string& part : parts) EXPECT_TRUE(MessageHas(status, part));
}

constexpr char kValidHeader[] = R"({
  "__metadata__": {"format": "pt", "note": "made by hand"},
  "b.half": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]},
  "a.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
  "empty": {"dtype": "I64", "shape": [0, 5], "data_offsets": [32, 32]},
  "scalar": {"dtype": "BF16", "shape": [], "data_offsets": [32, 34]}
})";

TEST(SafetensorsFormatTest, ParsesValidHeader) {
  const std::string header = kValidHeader;
  const std::string bytes = FileBytes(header, std::string(34, '\0'));
  absl::StatusOr<SafetensorsHeader> parsed = ParseFile(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->data_start, 8 + header.size());
  EXPECT_EQ(parsed->metadata.size(), 2u);
  EXPECT_EQ(parsed->metadata.at("format"), "pt");
  EXPECT_EQ(parsed->metadata.at("note"), "made by hand");

  // In file order: by begin, then end, then name.
  ASSERT_EQ(parsed->tensors.size(), 4u);
  const SafetensorsEntry& a = parsed->tensors[0];
  EXPECT_EQ(a.name, "a.weight");
  EXPECT_EQ(a.dtype, "F32");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.begin, 0u);
  EXPECT_EQ(a.end, 24u);
  EXPECT_EQ(parsed->tensors[1].name, "b.half");
  EXPECT_EQ(parsed->tensors[2].name, "empty");
  EXPECT_EQ(parsed->tensors[2].shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(parsed->tensors[2].begin, parsed->tensors[2].end);
  EXPECT_EQ(parsed->tensors[3].name, "scalar");
  EXPECT_TRUE(parsed->tensors[3].shape.empty());
  EXPECT_EQ(parsed->tensors[3].end - parsed->tensors[3].begin, 2u);
}

TEST(SafetensorsFormatTest, AcceptsPaddingPrefixOnlyAndEmptyFiles) {
  // Trailing spaces pad the header to an aligned data section.
  const std::string padded = FileBytes(R"({"x":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})"
                                       "      ",
                                       "abc");
  absl::StatusOr<SafetensorsHeader> parsed = ParseFile(padded);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors.size(), 1u);

  // A reader may pass only the header bytes of a large file.
  const std::string big =
      FileBytes(R"({"x":{"dtype":"F64","shape":[1000],"data_offsets":[0,8000]}})", "");
  parsed = ParseSafetensorsHeader(big, big.size() + 8000, kFile);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors[0].end, 8000u);

  parsed = ParseFile(FileBytes("{}", ""));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->tensors.empty());
  EXPECT_TRUE(parsed->metadata.empty());

  parsed = ParseFile(FileBytes(R"({"__metadata__": null})", ""));
  ASSERT_TRUE(parsed.ok()) << parsed.status();

  // A zero dimension makes the tensor empty however large the others are.
  parsed = ParseOne(R"({"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]})", 0);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
}

TEST(SafetensorsFormatTest, DtypeSizes) {
  EXPECT_EQ(SafetensorsDtypeSize("F64"), 8u);
  EXPECT_EQ(SafetensorsDtypeSize("F32"), 4u);
  EXPECT_EQ(SafetensorsDtypeSize("BF16"), 2u);
  EXPECT_EQ(SafetensorsDtypeSize("F16"), 2u);
  EXPECT_EQ(SafetensorsDtypeSize("I64"), 8u);
  EXPECT_EQ(SafetensorsDtypeSize("BOOL"), 1u);
  EXPECT_EQ(SafetensorsDtypeSize("F8_E4M3"), 1u);
  EXPECT_EQ(SafetensorsDtypeSize("F4"), 0u);
  EXPECT_EQ(SafetensorsDtypeSize("f32"), 0u);
  EXPECT_EQ(SafetensorsDtypeSize(""), 0u);
}

TEST(SafetensorsFormatTest, RejectsBadLengthField) {
  ExpectError(ParseFile("").status(), absl::StatusCode::kDataLoss, {"8-byte header length"});
  ExpectError(ParseFile(std::string("\x02\0\0", 3)).status(), absl::StatusCode::kDataLoss,
              {"found 3 bytes"});

  // 2^40 bytes of header: over the 100 MB bound, refused before anything is read.
  std::string huge(8, '\0');
  huge[5] = 1;
  ExpectError(ParseFile(huge + "{}").status(), absl::StatusCode::kInvalidArgument,
              {"header length 1099511627776", "exceeds the limit of 100000000"});

  // A header longer than the file: a truncated download.
  std::string truncated =
      FileBytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "");
  truncated.resize(20);
  ExpectError(ParseFile(truncated).status(), absl::StatusCode::kDataLoss,
              {"declares 54 bytes", "only 12", "truncated"});

  // The caller passed fewer bytes than the header needs.
  const std::string whole = FileBytes("{}", "");
  ExpectError(
      ParseSafetensorsHeader(std::string_view(whole).substr(0, 9), whole.size(), kFile).status(),
      absl::StatusCode::kInvalidArgument, {"only the first 9 bytes", "needs 10"});
  ExpectError(ParseSafetensorsHeader(whole, whole.size() - 1, kFile).status(),
              absl::StatusCode::kInvalidArgument, {"bytes given for a file of only"});
}

TEST(SafetensorsFormatTest, RejectsMalformedJson) {
  ExpectError(ParseFile(FileBytes("", "")).status(), absl::StatusCode::kInvalidArgument,
              {"start with '{'", "empty header"});
  ExpectError(ParseFile(FileBytes(" {}", "")).status(), absl::StatusCode::kInvalidArgument,
              {"start with '{'", "0x20"});
  ExpectError(ParseFile(FileBytes("[1, 2]", "")).status(), absl::StatusCode::kInvalidArgument,
              {"start with '{'", "0x5b"});
  ExpectError(ParseFile(FileBytes(R"({"w": )", "")).status(), absl::StatusCode::kInvalidArgument,
              {"not valid JSON"});
  ExpectError(ParseFile(FileBytes("{} trailing", "")).status(), absl::StatusCode::kInvalidArgument,
              {"not valid JSON"});
  ExpectError(ParseFile(FileBytes("{\"\xff\xfe\": 1}", "")).status(),
              absl::StatusCode::kInvalidArgument, {"not valid JSON"});
  ExpectError(ParseFile(FileBytes(R"({"a":{"b":[[[[[[[[[[1]]]]]]]]]]}})", "")).status(),
              absl::StatusCode::kInvalidArgument, {"nests deeper than 8"});
  // Brackets inside strings do not count as nesting.
  EXPECT_TRUE(
      ParseFile(FileBytes(R"({"__metadata__":{"k":"[[[[[[[[[[[[\"{{{{{{{{{{"}})", "")).ok());
}

TEST(SafetensorsFormatTest, RejectsDuplicateKeys) {
  ExpectError(ParseFile(FileBytes(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                  R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                  "ab"))
                  .status(),
              absl::StatusCode::kInvalidArgument, {"key \"w\" more than once"});
  ExpectError(
      ParseOne(R"({"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]})", 1).status(),
      absl::StatusCode::kInvalidArgument, {"key \"dtype\" more than once"});
  // The same key in two different objects is fine.
  EXPECT_TRUE(ParseFile(FileBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                  R"("b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                  "ab"))
                  .ok());
}

TEST(SafetensorsFormatTest, RejectsBadEntries) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  ExpectError(ParseOne("[1, 2]", 0).status(), kInvalid,
              {"tensor \"w\"", "expected an object", "array of 2 elements"});
  // dtype.
  ExpectError(ParseOne(R"({"shape":[1],"data_offsets":[0,4]})", 4).status(), kInvalid,
              {"tensor \"w\"", "expected a string \"dtype\", found none"});
  ExpectError(ParseOne(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", 4).status(), kInvalid,
              {"tensor \"w\"", "\"dtype\", found 4"});
  ExpectError(ParseOne(R"({"dtype":"F128","shape":[1],"data_offsets":[0,16]})", 16).status(),
              kInvalid, {"tensor \"w\"", "expected a dtype among", "F32", "found \"F128\""});
  ExpectError(ParseOne(R"({"dtype":"F4","shape":[2],"data_offsets":[0,1]})", 1).status(), kInvalid,
              {"tensor \"w\"", "dtype F4", "not supported"});
  // shape.
  ExpectError(ParseOne(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})", 16).status(), kInvalid,
              {"tensor \"w\"", "expected an array \"shape\", found 4"});
  ExpectError(ParseOne(R"({"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]})", 0).status(),
              kInvalid, {"tensor \"w\"", "shape[1]", "non-negative integer", "found -1"});
  ExpectError(ParseOne(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", 8).status(),
              kInvalid, {"shape[0]", "found 2.0"});
  ExpectError(
      ParseOne(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]})", 0).status(),
      kInvalid, {"shape[0]", "below 2^63"});
  std::string high_rank = "[1";
  for (int i = 0; i < 64; ++i) high_rank += ",1";
  ExpectError(
      ParseOne(absl::StrCat(R"({"dtype":"U8","shape":)", high_rank, R"(],"data_offsets":[0,1]})"),
               1)
          .status(),
      kInvalid, {"at most 64 dimensions, found 65"});
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[4294967296,4294967296,4294967296],)"
                       R"("data_offsets":[0,0]})",
                       0)
                  .status(),
              kInvalid, {"tensor \"w\"", "more than 2^64 elements"});
  ExpectError(
      ParseOne(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]})", 0).status(),
      kInvalid, {"tensor \"w\"", "more than 2^64 bytes"});
  // data_offsets.
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[1]})", 1).status(), kInvalid,
              {"tensor \"w\"", "\"data_offsets\" [begin, end]", "found none"});
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1,2]})", 1).status(),
              kInvalid, {"found an array of 3 elements"});
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[1],"data_offsets":[-1,0]})", 1).status(), kInvalid,
              {"\"data_offsets\" [begin, end]"});
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[1],"data_offsets":[0,"1"]})", 1).status(),
              kInvalid, {"\"data_offsets\" [begin, end]"});
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[0],"data_offsets":[1,0]})", 1).status(), kInvalid,
              {"tensor \"w\"", "[1, 0] end before they begin"});
  ExpectError(ParseOne(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", 4).status(), kInvalid,
              {"tensor \"w\"", "shape [2] of F32 needs 8 bytes", "[0, 4] span 4"});
}

TEST(SafetensorsFormatTest, RejectsBadLayout) {
  // Offsets past the end of the file: truncated data.
  ExpectError(ParseOne(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 10).status(),
              absl::StatusCode::kDataLoss,
              {"tensor \"w\"", "[0, 16] extend past the data section of 10 bytes", "truncated"});
  // Overlap.
  ExpectError(ParseFile(FileBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                  std::string(12, '\0')))
                  .status(),
              absl::StatusCode::kInvalidArgument,
              {"tensor \"b\"", "[4, 12] overlap tensor \"a\" at [0, 8]"});
  // An empty tensor placed inside another one overlaps it too.
  ExpectError(ParseFile(FileBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                                  std::string(8, '\0')))
                  .status(),
              absl::StatusCode::kInvalidArgument, {"tensor \"e\"", "overlap tensor \"a\""});
  // A hole between tensors.
  ExpectError(ParseFile(FileBytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                  std::string(12, '\0')))
                  .status(),
              absl::StatusCode::kInvalidArgument,
              {"tensor \"b\"", "expected data to begin at byte 4", "found 8",
               "[4, 8) belong to no tensor"});
  // A hole at the start.
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[1],"data_offsets":[1,2]})", 2).status(),
              absl::StatusCode::kInvalidArgument,
              {"tensor \"w\"", "begin at byte 0 of the data section, found 1"});
  // Bytes after the last tensor.
  ExpectError(ParseOne(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})", 5).status(),
              absl::StatusCode::kInvalidArgument, {"cover 1 bytes", "has 5", "4 trailing bytes"});
  ExpectError(ParseFile(FileBytes("{}", "x")).status(), absl::StatusCode::kInvalidArgument,
              {"cover 0 bytes", "1 trailing bytes"});
}

TEST(SafetensorsFormatTest, RejectsBadMetadata) {
  ExpectError(ParseFile(FileBytes(R"({"__metadata__":["a"]})", "")).status(),
              absl::StatusCode::kInvalidArgument,
              {"__metadata__", "expected an object mapping strings to strings"});
  ExpectError(ParseFile(FileBytes(R"({"__metadata__":{"epoch":3}})", "")).status(),
              absl::StatusCode::kInvalidArgument,
              {"__metadata__", "key \"epoch\"", "expected a string, found 3"});
}

TEST(SafetensorsFormatTest, EncodedHeadersParseBack) {
  std::vector<SafetensorsEntry> entries = {
      {"visual.proj", "F32", {4, 2}, 0, 32}, {"visual.ln_post.weight", "F16", {4}, 32, 40},
      {"scalar", "BF16", {}, 40, 42},        {"empty", "F32", {0, 3}, 42, 42},
      {"mask", "BOOL", {3}, 42, 45},
  };
  absl::StatusOr<std::string> header =
      EncodeSafetensorsHeader(entries, {{"format", "pt"}, {"source", "musc"}});
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->size() % 8, 0u);  // The data section starts 8-byte aligned.

  const std::string bytes = *header + std::string(45, '\x7f');
  absl::StatusOr<SafetensorsHeader> parsed = ParseFile(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->data_start, header->size());
  EXPECT_EQ(parsed->metadata.at("source"), "musc");
  ASSERT_EQ(parsed->tensors.size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(parsed->tensors[i].name, entries[i].name);
    EXPECT_EQ(parsed->tensors[i].dtype, entries[i].dtype);
    EXPECT_EQ(parsed->tensors[i].shape, entries[i].shape);
    EXPECT_EQ(parsed->tensors[i].begin, entries[i].begin);
    EXPECT_EQ(parsed->tensors[i].end, entries[i].end);
  }

  header = EncodeSafetensorsHeader({}, {});
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(*header, FileBytes("{}      ", ""));
}

TEST(SafetensorsFormatTest, EncoderRefusesWhatCannotBeRead) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(EncodeSafetensorsHeader({{"__metadata__", "F32", {1}, 0, 4}}, {}).status().code(),
            kInvalid);
  absl::Status status =
      EncodeSafetensorsHeader({{"a", "F32", {1}, 0, 4}, {"a", "F32", {1}, 4, 8}}, {}).status();
  EXPECT_EQ(status.code(), kInvalid);
  EXPECT_TRUE(MessageHas(status, "more than once"));
  status = EncodeSafetensorsHeader({{"bad\xff", "F32", {1}, 0, 4}}, {}).status();
  EXPECT_EQ(status.code(), kInvalid);
  EXPECT_TRUE(MessageHas(status, "UTF-8"));
  status = EncodeSafetensorsHeader({{"a", "F32", {1}, 0, 4}}, {{"k", "\xc3"}}).status();
  EXPECT_TRUE(MessageHas(status, "UTF-8"));
  // Offsets that leave a hole, sizes that disagree with shapes, unknown dtypes.
  status = EncodeSafetensorsHeader({{"a", "F32", {1}, 4, 8}}, {}).status();
  EXPECT_EQ(status.code(), kInvalid);
  EXPECT_TRUE(MessageHas(status, "belong to no tensor"));
  EXPECT_FALSE(EncodeSafetensorsHeader({{"a", "F32", {3}, 0, 4}}, {}).ok());
  EXPECT_FALSE(EncodeSafetensorsHeader({{"a", "Q7", {1}, 0, 4}}, {}).ok());
}

// Deterministic mutations of a valid file (bytes flipped, truncated, header length changed): the
// parser must answer with a Status every time, and whatever it accepts must stay inside the file.
TEST(SafetensorsFormatTest, SurvivesCorruptedFiles) {
  const std::string valid = FileBytes(kValidHeader, std::string(34, '\0'));
  std::mt19937 rng(12345);
  int accepted = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 4) {
        case 0:
          bytes[at] = static_cast<char>(rng());
          break;
        case 1:
          bytes[at] = "{}[],:\"0123456789-e."[rng() % 20];
          break;
        case 2:
          bytes.resize(at);
          break;
        default:
          bytes[rng() % 8] = static_cast<char>(rng());
          break;
      }
      if (bytes.empty()) break;
    }
    absl::StatusOr<SafetensorsHeader> parsed = ParseFile(bytes);
    if (!parsed.ok()) {
      EXPECT_TRUE(MessageHas(parsed.status(), kFile));
      continue;
    }
    ++accepted;
    for (const SafetensorsEntry& entry : parsed->tensors) {
      EXPECT_LE(entry.begin, entry.end);
      EXPECT_LE(parsed->data_start + entry.end, bytes.size());
    }
  }
  EXPECT_LT(accepted, 4000);
}

}  // namespace
}  // namespace musc
