#include "server/store/spool_codec.h"

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace musc {
namespace {

// Binary files hold floats and integers in the host's byte order, written and read in bulk; the
// spool is local to one machine, and every platform this builds for is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "spool files assume little-endian");

constexpr char kImageMagic[] = "MUSCIMG1";
constexpr char kResultsMagic[] = "MUSCRES1";
constexpr size_t kMagicSize = 8;
constexpr int kRecordFormat = 1;

// FNV-1a over a file's contents: rename makes files whole, the checksum catches a disk (or a
// copy) that returns other bytes than were written.
uint64_t Fnv1a(std::string_view data) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

class Writer {
 public:
  template <typename T>
  void Put(T value) {
    out_.append(reinterpret_cast<const char*>(&value), sizeof(value));
  }
  void Bytes(std::string_view b) { out_.append(b.data(), b.size()); }
  void Str(std::string_view s) {
    Put<uint64_t>(s.size());
    Bytes(s);
  }
  // Appends the checksum of everything so far and hands the buffer over.
  std::string Seal() {
    Put<uint64_t>(Fnv1a(out_));
    return std::move(out_);
  }

 private:
  std::string out_;
};

class Reader {
 public:
  // Checks the magic and the trailing checksum; the reader then covers the bytes in between.
  Reader(std::string_view data, const char* magic) {
    if (data.size() < kMagicSize + sizeof(uint64_t) ||
        data.substr(0, kMagicSize) != std::string_view(magic, kMagicSize)) {
      return;
    }
    uint64_t stored;
    std::memcpy(&stored, data.data() + data.size() - sizeof(stored), sizeof(stored));
    if (stored != Fnv1a(data.substr(0, data.size() - sizeof(stored)))) return;
    in_ = data.substr(kMagicSize, data.size() - kMagicSize - sizeof(stored));
    ok_ = true;
  }
  template <typename T>
  T Get() {
    T value{};
    if (!Need(sizeof(T))) return value;
    std::memcpy(&value, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string_view Bytes(uint64_t n) {
    if (!Need(n)) return {};
    std::string_view b = in_.substr(pos_, n);
    pos_ += n;
    return b;
  }
  std::string Str() { return std::string(Bytes(Get<uint64_t>())); }
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  bool Need(uint64_t n) {
    if (!ok_ || n > in_.size() - pos_) ok_ = false;
    return ok_;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = false;
};

int64_t ToNanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

Clock::time_point FromNanos(int64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

const char* PolicyName(const std::string& name) {
  // Decision::policy points at static names; give the recovered one the same.
  for (ThresholdKind k :
       {ThresholdKind::kFixed, ThresholdKind::kRobust, ThresholdKind::kQuantile}) {
    if (name == ThresholdKindName(k)) return ThresholdKindName(k);
  }
  return ThresholdKindName(ThresholdKind::kNone);
}

// Reads `name` from a session record, failing with the key's name when absent or mistyped.
template <typename T>
T Field(const nlohmann::json& j, const char* name) {
  return j.at(name).get<T>();
}

}  // namespace

std::string EncodeImageFile(const SessionImage& image) {
  Writer w;
  w.Bytes(std::string_view(kImageMagic, kMagicSize));
  w.Put<uint32_t>(image.index);
  w.Put<uint32_t>(static_cast<uint32_t>(image.width));
  w.Put<uint32_t>(static_cast<uint32_t>(image.height));
  w.Put<double>(image.decode_seconds);
  w.Str(image.client_id);
  w.Put<uint64_t>(image.metadata.size());
  for (const auto& [k, v] : image.metadata) {
    w.Str(k);
    w.Str(v);
  }
  w.Str(image.encoded);
  return w.Seal();
}

absl::StatusOr<SessionImage> DecodeImageFile(std::string_view data) {
  Reader r(data, kImageMagic);
  SessionImage image;
  image.index = r.Get<uint32_t>();
  image.width = static_cast<int>(r.Get<uint32_t>());
  image.height = static_cast<int>(r.Get<uint32_t>());
  image.decode_seconds = r.Get<double>();
  image.client_id = r.Str();
  const uint64_t entries = r.Get<uint64_t>();
  for (uint64_t i = 0; i < entries && r.ok(); ++i) {
    std::string k = r.Str();
    image.metadata[std::move(k)] = r.Str();
  }
  image.encoded = r.Str();
  if (!r.ok() || !r.at_end()) return absl::DataLossError("image file is damaged");
  image.encoded_bytes = static_cast<int64_t>(image.encoded.size());
  return image;
}

std::string EncodeResultsFile(const std::vector<SessionResult>& results) {
  Writer w;
  w.Bytes(std::string_view(kResultsMagic, kMagicSize));
  w.Put<uint64_t>(results.size());
  for (const SessionResult& r : results) {
    w.Put<uint32_t>(r.index);
    w.Put<float>(r.raw_score);
    w.Put<float>(r.final_score);
    const cv::Mat map = r.map.isContinuous() ? r.map : r.map.clone();
    w.Put<uint32_t>(static_cast<uint32_t>(map.rows));
    w.Put<uint32_t>(static_cast<uint32_t>(map.cols));
    w.Bytes(std::string_view(reinterpret_cast<const char*>(map.data),
                             map.empty() ? 0 : map.total() * sizeof(float)));
    const Decision& d = r.decision;
    w.Put<uint8_t>(d.decided);
    w.Put<uint8_t>(d.is_anomalous);
    w.Put<float>(d.threshold);
    w.Put<uint8_t>(d.mask_threshold.has_value());
    w.Put<float>(d.mask_threshold.value_or(0.0f));
    w.Str(d.policy);
    w.Put<uint64_t>(d.scores_used);
    w.Put<uint8_t>(d.alarm);
    w.Put<double>(d.anomalous_fraction);
  }
  return w.Seal();
}

absl::StatusOr<std::vector<SessionResult>> DecodeResultsFile(std::string_view data,
                                                             size_t image_count) {
  Reader r(data, kResultsMagic);
  std::vector<SessionResult> results(r.Get<uint64_t>());
  if (!r.ok() || results.size() != image_count) {
    return absl::DataLossError("results.bin is damaged or does not match the session's images");
  }
  for (SessionResult& out : results) {
    out.index = r.Get<uint32_t>();
    out.raw_score = r.Get<float>();
    out.final_score = r.Get<float>();
    const uint32_t rows = r.Get<uint32_t>();
    const uint32_t cols = r.Get<uint32_t>();
    const std::string_view pixels = r.Bytes(uint64_t{rows} * cols * sizeof(float));
    if (!r.ok() || out.index >= image_count) break;
    if (rows > 0 && cols > 0) {
      out.map.create(static_cast<int>(rows), static_cast<int>(cols), CV_32FC1);
      std::memcpy(out.map.data, pixels.data(), pixels.size());
    }
    Decision& d = out.decision;
    d.decided = r.Get<uint8_t>() != 0;
    d.is_anomalous = r.Get<uint8_t>() != 0;
    d.threshold = r.Get<float>();
    const bool has_mask = r.Get<uint8_t>() != 0;
    const float mask = r.Get<float>();
    if (has_mask) d.mask_threshold = mask;
    d.policy = PolicyName(r.Str());
    d.scores_used = r.Get<uint64_t>();
    d.alarm = r.Get<uint8_t>() != 0;
    d.anomalous_fraction = r.Get<double>();
  }
  if (!r.ok() || !r.at_end()) return absl::DataLossError("results.bin is damaged");
  return results;
}

std::string EncodeSessionRecord(const SessionRecord& record) {
  nlohmann::json j;
  j["format"] = kRecordFormat;
  j["id"] = record.id;
  j["product"] = record.product;
  j["state"] = v1::SessionState_Name(record.state);
  j["error"] = record.error;
  j["seal_policy"] = {{"at_count", record.seal_policy.at_count},
                      {"idle_seconds", record.seal_policy.idle_seconds}};
  j["labels"] = record.labels;
  j["create_time_ns"] = ToNanos(record.create_time);
  j["seal_time_ns"] = ToNanos(record.seal_time);
  j["start_time_ns"] = ToNanos(record.start_time);
  j["finish_time_ns"] = ToNanos(record.finish_time);
  j["image_count"] = record.image_count;
  j["small_batch"] = record.small_batch;
  nlohmann::json timings = nlohmann::json::object();
  // Every StageTimings field is a double: persisted by name, so new stages need no change here.
  const google::protobuf::Descriptor* d = record.timings.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    timings[d->field(i)->name()] =
        record.timings.GetReflection()->GetDouble(record.timings, d->field(i));
  }
  j["timings"] = timings;
  // Strings came through protobuf (valid UTF-8) or from the server; `replace` only guards the
  // dump against throwing.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

absl::StatusOr<SessionRecord> DecodeSessionRecord(std::string_view text) {
  const nlohmann::json j =
      nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("session.json is not JSON");

  SessionRecord record;
  std::string state_name;
  try {
    if (Field<int>(j, "format") != kRecordFormat) {
      return absl::DataLossError("session.json has an unknown format version");
    }
    record.id = Field<std::string>(j, "id");
    record.product = Field<std::string>(j, "product");
    state_name = Field<std::string>(j, "state");
    record.error = Field<std::string>(j, "error");
    record.seal_policy.at_count = j.at("seal_policy").at("at_count").get<uint32_t>();
    record.seal_policy.idle_seconds = j.at("seal_policy").at("idle_seconds").get<double>();
    record.labels = Field<std::map<std::string, std::string>>(j, "labels");
    record.create_time = FromNanos(Field<int64_t>(j, "create_time_ns"));
    record.seal_time = FromNanos(Field<int64_t>(j, "seal_time_ns"));
    record.start_time = FromNanos(Field<int64_t>(j, "start_time_ns"));
    record.finish_time = FromNanos(Field<int64_t>(j, "finish_time_ns"));
    record.image_count = Field<size_t>(j, "image_count");
    record.small_batch = Field<bool>(j, "small_batch");
    const google::protobuf::Descriptor* d = record.timings.GetDescriptor();
    for (const auto& [name, value] : j.at("timings").items()) {
      const google::protobuf::FieldDescriptor* f = d->FindFieldByName(name);
      if (f != nullptr) {
        record.timings.GetReflection()->SetDouble(&record.timings, f, value.get<double>());
      }
    }
  } catch (const nlohmann::json::exception& e) {  // A missing or mistyped field.
    return absl::DataLossError(absl::StrCat("session.json: ", e.what()));
  }
  if (!v1::SessionState_Parse(state_name, &record.state) ||
      record.state == v1::SESSION_STATE_UNSPECIFIED) {
    return absl::DataLossError(absl::StrCat("session.json: unknown state '", state_name, "'"));
  }
  return record;
}

}  // namespace musc
