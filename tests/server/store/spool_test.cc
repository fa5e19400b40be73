// The spool in process (server/store/spool.h): a session written through its SessionStore calls
// reads back field for field; the files keep their format; temp files and record-less directories
// are removed at start; damaged or missing files are reported as docs/RELIABILITY.md says (what
// recovery does with them: recovery_test.cc).
#include "server/store/spool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/file_io.h"
#include "server/store/spool_codec.h"
#include "tests/test_support.h"

namespace musc {
namespace {

namespace fs = std::filesystem;
using ::musc::testing::MessageHas;
using ::musc::testing::ScratchDir;

constexpr char kId[] = "widget:0123456789abcdef0123456789abcdef";

Clock::time_point At(int64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

SessionRecord OpenRecord() {
  SessionRecord r;
  r.id = kId;
  r.product = "widget";
  r.seal_policy.at_count = 3;
  r.seal_policy.idle_seconds = 2.5;
  r.labels = {{"line", "4"}, {"shift", "night"}};
  r.state = v1::OPEN;
  r.create_time = At(1'700'000'000'123'456'789);
  return r;
}

SessionImage Image(uint32_t index) {
  SessionImage image;
  image.index = index;
  image.client_id = "part-" + std::to_string(index);
  image.width = 96 + static_cast<int>(index);
  image.height = 80;
  image.decode_seconds = 0.001 * (index + 1);
  image.metadata = {{"camera", "top"}, {"n", std::to_string(index)}};
  // Bytes with NULs and high bits: stored as they are, whatever they are.
  image.encoded =
      std::string("\x89PNG\0\xff", 6) + std::string(100 + index, static_cast<char>(index));
  image.encoded_bytes = static_cast<int64_t>(image.encoded.size());
  return image;
}

std::vector<SessionResult> Results(int n) {
  std::vector<SessionResult> results(n);
  for (int i = 0; i < n; ++i) {
    SessionResult& r = results[i];
    r.index = static_cast<uint32_t>(n - 1 - i);  // Results need not be in image order.
    r.raw_score = 0.25f + 0.125f * i;
    r.final_score = 1.0f / (3 + i);
    if (i != 1) {  // One result without a map (maps not kept).
      r.map.create(4, 4, CV_32FC1);
      for (int p = 0; p < 16; ++p) r.map.at<float>(p / 4, p % 4) = 0.1f * p + i;
    }
    r.decision.decided = i != 2;
    r.decision.is_anomalous = i == 0;
    r.decision.threshold = 0.75f;
    if (i == 0) r.decision.mask_threshold = 0.5f;
    r.decision.policy = ThresholdKindName(i == 0 ? ThresholdKind::kRobust : ThresholdKind::kFixed);
    r.decision.scores_used = 17 + i;
    r.decision.alarm = i == 0;
    r.decision.anomalous_fraction = 0.375;
  }
  return results;
}

std::unique_ptr<Spool> OpenSpool(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(dir, DecodeLimits{});
  EXPECT_TRUE(spool.ok()) << spool.status();
  return spool.ok() ? *std::move(spool) : nullptr;
}

void ExpectSameRecord(const SessionRecord& got, const SessionRecord& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.product, want.product);
  EXPECT_EQ(got.seal_policy.at_count, want.seal_policy.at_count);
  EXPECT_EQ(got.seal_policy.idle_seconds, want.seal_policy.idle_seconds);
  EXPECT_EQ(got.labels, want.labels);
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.create_time, want.create_time);
  EXPECT_EQ(got.seal_time, want.seal_time);
  EXPECT_EQ(got.start_time, want.start_time);
  EXPECT_EQ(got.finish_time, want.finish_time);
  EXPECT_EQ(got.image_count, want.image_count);
  EXPECT_EQ(got.small_batch, want.small_batch);
  EXPECT_EQ(got.timings.SerializeAsString(), want.timings.SerializeAsString())
      << got.timings.DebugString() << " vs " << want.timings.DebugString();
}

void ExpectSameImage(const SessionImage& got, const SessionImage& want) {
  EXPECT_EQ(got.index, want.index);
  EXPECT_EQ(got.client_id, want.client_id);
  EXPECT_EQ(got.width, want.width);
  EXPECT_EQ(got.height, want.height);
  EXPECT_EQ(got.decode_seconds, want.decode_seconds);
  EXPECT_EQ(got.metadata, want.metadata);
  EXPECT_EQ(got.encoded, want.encoded);
  EXPECT_EQ(got.encoded_bytes, want.encoded_bytes);
  EXPECT_TRUE(got.pixels.empty());  // Pixels are never stored.
}

void ExpectSameResults(const std::vector<SessionResult>& got,
                       const std::vector<SessionResult>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].index, want[i].index);
    EXPECT_EQ(got[i].raw_score, want[i].raw_score);
    EXPECT_EQ(got[i].final_score, want[i].final_score);
    ASSERT_EQ(got[i].map.empty(), want[i].map.empty());
    if (!want[i].map.empty()) {
      ASSERT_EQ(got[i].map.type(), CV_32FC1);
      ASSERT_EQ(got[i].map.size(), want[i].map.size());
      EXPECT_EQ(std::memcmp(got[i].map.data, want[i].map.data, want[i].map.total() * sizeof(float)),
                0);
    }
    const Decision& g = got[i].decision;
    const Decision& w = want[i].decision;
    EXPECT_EQ(g.decided, w.decided);
    EXPECT_EQ(g.is_anomalous, w.is_anomalous);
    EXPECT_EQ(g.threshold, w.threshold);
    EXPECT_EQ(g.mask_threshold, w.mask_threshold);
    EXPECT_EQ(g.policy, w.policy);  // The same static name, not just equal text.
    EXPECT_EQ(g.scores_used, w.scores_used);
    EXPECT_EQ(g.alarm, w.alarm);
    EXPECT_EQ(g.anomalous_fraction, w.anomalous_fraction);
  }
}

TEST(SpoolStoreTest, SessionWrittenThroughTheStoreReadsBackFieldForField) {
  ScratchDir scratch;
  SessionRecord record = OpenRecord();
  std::vector<SessionImage> images = {Image(0), Image(1), Image(2)};
  const std::vector<SessionResult> results = Results(3);
  {
    std::unique_ptr<Spool> spool = OpenSpool(scratch.path());
    ASSERT_NE(spool, nullptr);
    SessionStore& store = *spool;  // Written through the interface the session uses.
    ASSERT_TRUE(store.CreateSession(record).ok());
    EXPECT_TRUE(fs::is_directory(scratch.Path("sessions") + "/" + kId + "/images"));
    for (const SessionImage& image : images) ASSERT_TRUE(store.AppendImage(kId, image).ok());

    // Each record replaces the last: the one read back is the latest.
    absl::StatusOr<SessionRecord> open = spool->ReadRecord(kId);
    ASSERT_TRUE(open.ok()) << open.status();
    ExpectSameRecord(*open, record);

    record.state = v1::SEALED;
    record.seal_time = At(1'700'000'001'000'000'001);
    record.image_count = images.size();
    ASSERT_TRUE(store.UpdateState(record).ok());
    ASSERT_TRUE(store.WriteResults(kId, results).ok());
    record.state = v1::DONE;
    record.error = "unicode \xc3\xa9 and \"quotes\"";
    record.start_time = At(1'700'000'002'000'000'002);
    record.finish_time = At(1'700'000'003'000'000'003);
    record.small_batch = true;
    record.timings.set_queue_seconds(0.5);
    record.timings.set_backbone_seconds(1.25);
    ASSERT_TRUE(store.UpdateState(record).ok());
  }
  // A new spool on the same directory, as after a restart.
  std::unique_ptr<Spool> spool = OpenSpool(scratch.path());
  ASSERT_NE(spool, nullptr);
  absl::StatusOr<std::vector<std::string>> ids = spool->CleanAndListSessions();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, std::vector<std::string>{kId});
  absl::StatusOr<SessionRecord> read = spool->ReadRecord(kId);
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSameRecord(*read, record);
  absl::StatusOr<uint32_t> count = spool->CountImages(kId);
  ASSERT_TRUE(count.ok()) << count.status();
  ASSERT_EQ(*count, 3u);
  for (uint32_t i = 0; i < *count; ++i) {
    SCOPED_TRACE(i);
    absl::StatusOr<SessionImage> image = spool->ReadImage(kId, i);
    ASSERT_TRUE(image.ok()) << image.status();
    ExpectSameImage(*image, images[i]);
  }
  absl::StatusOr<std::vector<SessionResult>> stored = spool->ReadResults(kId, 3);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ExpectSameResults(*stored, results);

  // Remove: nothing of the session is left.
  ASSERT_TRUE(spool->Remove(kId).ok());
  EXPECT_FALSE(fs::exists(spool->SessionDir(kId)));
  ids = spool->CleanAndListSessions();
  ASSERT_TRUE(ids.ok());
  EXPECT_TRUE(ids->empty());
}

TEST(SpoolStoreTest, FilesKeepTheirFormat) {
  ScratchDir scratch;
  std::unique_ptr<Spool> spool = OpenSpool(scratch.path());
  ASSERT_NE(spool, nullptr);
  SessionRecord record = OpenRecord();
  ASSERT_TRUE(spool->CreateSession(record).ok());
  SessionImage image = Image(0);
  image.encoded = "ab";
  image.metadata = {{"k", "v"}};
  ASSERT_TRUE(spool->AppendImage(kId, image).ok());

  // The record: readable JSON, keys sorted, times in ns since the epoch, every timing by name.
  absl::StatusOr<std::string> text = ReadFileToString(spool->SessionDir(kId) + "/session.json");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, std::string(R"({
  "create_time_ns": 1700000000123456789,
  "error": "",
  "finish_time_ns": 0,
  "format": 1,
  "id": "widget:0123456789abcdef0123456789abcdef",
  "image_count": 0,
  "labels": {
    "line": "4",
    "shift": "night"
  },
  "product": "widget",
  "seal_policy": {
    "at_count": 3,
    "idle_seconds": 2.5
  },
  "seal_time_ns": 0,
  "small_batch": false,
  "start_time_ns": 0,
  "state": "OPEN",
  "timings": {
    "backbone_seconds": 0.0,
    "decode_seconds": 0.0,
    "lnamd_seconds": 0.0,
    "maps_seconds": 0.0,
    "msm_seconds": 0.0,
    "preprocess_seconds": 0.0,
    "queue_seconds": 0.0,
    "rscin_seconds": 0.0
  }
}
)")) << *text;

  // The image file: magic, index, width, height, decode seconds, client id, metadata, bytes, as
  // little-endian fields and length-prefixed strings, then the checksum.
  absl::StatusOr<std::string> file = ReadFileToString(spool->ImagePath(kId, 0));
  ASSERT_TRUE(file.ok()) << file.status();
  std::string want = "MUSCIMG1";
  auto put = [&want](const auto& value) {
    want.append(reinterpret_cast<const char*>(&value), sizeof(value));
  };
  auto str = [&](const std::string& s) {
    put(uint64_t{s.size()});
    want += s;
  };
  put(uint32_t{0});
  put(uint32_t{96});
  put(uint32_t{80});
  put(0.001);
  str("part-0");
  put(uint64_t{1});
  str("k");
  str("v");
  str("ab");
  ASSERT_EQ(file->size(), want.size() + sizeof(uint64_t));
  EXPECT_EQ(file->substr(0, want.size()), want);
  // The checksum covers every byte before it: change one and the file is damaged.
  EXPECT_EQ(file->substr(0, want.size()), EncodeImageFile(image).substr(0, want.size()));
}

// A record as the format-1 writer before the spool's split wrote it (a DONE session of musc-server
// at commit 6f3ee8c): it loads, and is written back byte for byte.
TEST(SpoolStoreTest, ReadsARecordWrittenBeforeAndWritesItBackTheSame) {
  const std::string text = R"({
  "create_time_ns": 1796235217944724226,
  "error": "",
  "finish_time_ns": 1796235221611521456,
  "format": 1,
  "id": "tire:eb85759ea3a90f6af2b5e4b62600386a",
  "image_count": 6,
  "labels": {},
  "product": "tire",
  "seal_policy": {
    "at_count": 0,
    "idle_seconds": 0.0
  },
  "seal_time_ns": 1796235218301398560,
  "small_batch": false,
  "start_time_ns": 1796235218308619992,
  "state": "DONE",
  "timings": {
    "backbone_seconds": 0.760731922,
    "decode_seconds": 0.17086486999999997,
    "lnamd_seconds": 0.197867906,
    "maps_seconds": 0.008320151,
    "msm_seconds": 0.979764372,
    "preprocess_seconds": 1.315828421,
    "queue_seconds": 0.007222023,
    "rscin_seconds": 0.002011736
  }
}
)";
  absl::StatusOr<SessionRecord> record = DecodeSessionRecord(text);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->id, "tire:eb85759ea3a90f6af2b5e4b62600386a");
  EXPECT_EQ(record->product, "tire");
  EXPECT_EQ(record->state, v1::DONE);
  EXPECT_EQ(record->error, "");
  EXPECT_EQ(record->image_count, 6u);
  EXPECT_TRUE(record->labels.empty());
  EXPECT_EQ(record->seal_policy.at_count, 0u);
  EXPECT_EQ(record->create_time, At(1796235217944724226));
  EXPECT_EQ(record->seal_time, At(1796235218301398560));
  EXPECT_EQ(record->start_time, At(1796235218308619992));
  EXPECT_EQ(record->finish_time, At(1796235221611521456));
  EXPECT_FALSE(record->small_batch);
  EXPECT_EQ(record->timings.decode_seconds(), 0.17086486999999997);
  EXPECT_EQ(record->timings.rscin_seconds(), 0.002011736);
  EXPECT_EQ(EncodeSessionRecord(*record), text);
}

TEST(SpoolStoreTest, StartRemovesTempFilesAndSessionsWithoutARecord) {
  ScratchDir scratch;
  std::unique_ptr<Spool> spool = OpenSpool(scratch.path());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->CreateSession(OpenRecord()).ok());
  ASSERT_TRUE(spool->AppendImage(kId, Image(0)).ok());
  const std::string dir = spool->SessionDir(kId);
  // Interrupted writes: an image, a record, results.
  scratch.Write("sessions/" + std::string(kId) + "/images/1.img.tmp", "half an image");
  scratch.Write("sessions/" + std::string(kId) + "/session.json.tmp", "{\"half");
  scratch.Write("sessions/" + std::string(kId) + "/results.bin.tmp", "MUSCRES1");
  // A crash during CreateSession (or Remove): a directory without its record.
  const std::string orphan = scratch.Path("sessions/widget:ffffffffffffffffffffffffffffffff");
  fs::create_directories(orphan + "/images");
  scratch.Write("sessions/widget:ffffffffffffffffffffffffffffffff/images/0.img", "x");

  absl::StatusOr<std::vector<std::string>> ids = spool->CleanAndListSessions();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, std::vector<std::string>{kId});
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(fs::exists(dir + "/images/1.img.tmp"));
  EXPECT_FALSE(fs::exists(dir + "/session.json.tmp"));
  EXPECT_FALSE(fs::exists(dir + "/results.bin.tmp"));
  // What was complete stays.
  EXPECT_TRUE(fs::exists(dir + "/session.json"));
  EXPECT_TRUE(fs::exists(dir + "/images/0.img"));
  absl::StatusOr<uint32_t> count = spool->CountImages(kId);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1u);
}

TEST(SpoolStoreTest, DamagedOrMissingFilesAreReportedNotTrusted) {
  ScratchDir scratch;
  std::unique_ptr<Spool> spool = OpenSpool(scratch.path());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->CreateSession(OpenRecord()).ok());
  for (uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(spool->AppendImage(kId, Image(i)).ok());
  ASSERT_TRUE(spool->WriteResults(kId, Results(3)).ok());
  const std::string dir = spool->SessionDir(kId);

  // One flipped byte in an image file: the checksum catches it.
  absl::StatusOr<std::string> bytes = ReadFileToString(spool->ImagePath(kId, 1));
  ASSERT_TRUE(bytes.ok());
  (*bytes)[bytes->size() / 2] ^= 0x01;
  scratch.Write("sessions/" + std::string(kId) + "/images/1.img", *bytes);
  absl::StatusOr<SessionImage> damaged = spool->ReadImage(kId, 1);
  EXPECT_EQ(damaged.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(MessageHas(damaged.status(), "1.img is damaged"));
  EXPECT_TRUE(spool->ReadImage(kId, 0).ok());
  // A file holding another index than its name says.
  ASSERT_TRUE(fs::copy_file(spool->ImagePath(kId, 0), spool->ImagePath(kId, 1),
                            fs::copy_options::overwrite_existing));
  EXPECT_EQ(spool->ReadImage(kId, 1).status().code(), absl::StatusCode::kDataLoss);

  // Results: the wrong image count, a truncated file, no file.
  EXPECT_TRUE(spool->ReadResults(kId, 3).ok());
  EXPECT_EQ(spool->ReadResults(kId, 4).status().code(), absl::StatusCode::kDataLoss);
  absl::StatusOr<std::string> results = ReadFileToString(dir + "/results.bin");
  ASSERT_TRUE(results.ok());
  scratch.Write("sessions/" + std::string(kId) + "/results.bin",
                results->substr(0, results->size() - 1));
  EXPECT_EQ(spool->ReadResults(kId, 3).status().code(), absl::StatusCode::kDataLoss);
  fs::remove(dir + "/results.bin");
  EXPECT_EQ(spool->ReadResults(kId, 3).status().code(), absl::StatusCode::kNotFound);

  // A missing image: the files are not numbered 0..n-1.
  fs::remove(spool->ImagePath(kId, 1));
  absl::StatusOr<uint32_t> count = spool->CountImages(kId);
  EXPECT_EQ(count.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(MessageHas(count.status(), "not numbered 0..n-1"));

  // The record: not JSON, a missing field, an unknown state, another session's id.
  const std::string record_name = "sessions/" + std::string(kId) + "/session.json";
  scratch.Write(record_name, "{not json");
  EXPECT_TRUE(MessageHas(spool->ReadRecord(kId).status(), "not JSON"));
  SessionRecord other = OpenRecord();
  std::string text = EncodeSessionRecord(other);
  scratch.Write(record_name, text.substr(0, text.find("\"error\"")) +
                                 text.substr(text.find("\"finish_time_ns\"")));
  EXPECT_EQ(spool->ReadRecord(kId).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(MessageHas(spool->ReadRecord(kId).status(), "error"));
  text.replace(text.find("\"OPEN\""), 6, "\"LIMBO\"");
  scratch.Write(record_name, text);
  EXPECT_TRUE(MessageHas(spool->ReadRecord(kId).status(), "unknown state 'LIMBO'"));
  other.id = "widget:99999999999999999999999999999999";
  scratch.Write(record_name, EncodeSessionRecord(other));
  EXPECT_TRUE(MessageHas(spool->ReadRecord(kId).status(), "names another session"));
  fs::remove(dir + "/session.json");
  EXPECT_EQ(spool->ReadRecord(kId).status().code(), absl::StatusCode::kNotFound);
}

TEST(SpoolStoreTest, FailedCreateLeavesNothing) {
  ScratchDir scratch;
  std::unique_ptr<Spool> spool = OpenSpool(scratch.path());
  ASSERT_NE(spool, nullptr);
  // The record's path is taken by a directory: the record cannot be renamed into place.
  fs::create_directories(spool->SessionDir(kId) + "/session.json/blocker");
  absl::Status status = spool->CreateSession(OpenRecord());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(MessageHas(status, "spool not writable"));
  EXPECT_FALSE(fs::exists(spool->SessionDir(kId)));
}

}  // namespace
}  // namespace musc
