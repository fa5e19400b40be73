#include "server/store/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/batch/scheduler.h"
#include "server/batch/session_manager.h"
#include "server/log.h"
#include "server/results/decision_policy.h"
#include "server/store/durable_file.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

// Binary files hold floats and integers in the host's byte order, written and read in bulk; the
// spool is local to one machine, and every platform this builds for is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "spool files assume little-endian");

constexpr char kImageMagic[] = "MUSCIMG1";
constexpr char kResultsMagic[] = "MUSCRES1";
constexpr size_t kMagicSize = 8;
constexpr int kRecordFormat = 1;
constexpr char kRecordName[] = "session.json";
constexpr char kResultsName[] = "results.bin";
constexpr char kImagesDir[] = "images";

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

std::string EncodeResults(const std::vector<SessionResult>& results) {
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

absl::StatusOr<std::vector<SessionResult>> DecodeResults(std::string_view data,
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

std::string EncodeImage(const SessionImage& image) {
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

// The image's record and, in `encoded`, its bytes.
absl::StatusOr<SessionImage> DecodeImageFile(std::string_view data, std::string* encoded) {
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
  *encoded = r.Str();
  if (!r.ok() || !r.at_end()) return absl::DataLossError("image file is damaged");
  image.encoded_bytes = static_cast<int64_t>(encoded->size());
  return image;
}

// Reads `name` from a session record, failing with the key's name when absent or mistyped.
template <typename T>
T Field(const nlohmann::json& j, const char* name) {
  return j.at(name).get<T>();
}

bool IsTemp(const fs::path& p) { return absl::EndsWith(p.filename().string(), kTempFileSuffix); }

// The entries of `dir`, sorted; empty when it cannot be listed (*ec says why). Iterates with
// error codes: the throwing forms would escape as exceptions.
std::vector<fs::path> ListDir(const fs::path& dir, std::error_code* ec) {
  std::vector<fs::path> out;
  fs::directory_iterator it(dir, *ec);
  for (; !*ec && it != fs::directory_iterator(); it.increment(*ec)) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const std::string& dir, DecodeLimits limits,
                                                   ServerMetrics* metrics) {
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "sessions", ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("--spool_dir: cannot create ", dir, "/sessions: ", ec.message()));
  }
  auto spool = std::unique_ptr<Spool>(new Spool(dir, limits, metrics));
  // A spool that cannot be written is a configuration error: say so now, not at the first image.
  // A full disk is not (it may clear): start, refuse images with RESOURCE_EXHAUSTED meanwhile.
  absl::Status probe = WriteFileAtomic(dir, ".probe", "ok\n", "write to the spool");
  unlink((dir + "/.probe").c_str());
  if (probe.code() == absl::StatusCode::kResourceExhausted) {
    LogWarning(absl::StrCat("--spool_dir: ", probe.message()));
  } else if (!probe.ok()) {
    return absl::UnavailableError(absl::StrCat("--spool_dir: ", probe.message()));
  }
  return spool;
}

std::string Spool::SessionDir(const std::string& id) const { return dir_ + "/sessions/" + id; }

absl::Status Spool::Counted(absl::Status status) const {
  if (!status.ok()) {
    LogWarning(status.ToString());
    if (metrics_ != nullptr) {
      metrics_->SpoolWriteFailed(
          status.code() == absl::StatusCode::kResourceExhausted ? "disk_full" : "unwritable");
    }
  }
  return status;
}

absl::Status Spool::CreateSession(const Session& session) {
  const std::string dir = SessionDir(session.id_);
  const std::string what = absl::StrCat("create session ", session.id_);
  absl::Status status;
  for (const std::string& d : {dir, dir + "/" + kImagesDir}) {
    if (status.ok() && mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
      status = Counted(WriteError(what, d, errno));
    }
  }
  if (status.ok()) status = Counted(FsyncDir(dir, what));
  if (status.ok()) status = UpdateState(session);
  // The new directory's own entry: without it a power loss could drop the whole session.
  if (status.ok()) status = Counted(FsyncDir(dir_ + "/sessions", what));
  if (!status.ok()) {
    // The session was refused: drop what was made of it (a start would remove it too).
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  return status;
}

absl::Status Spool::AppendImage(const Session& session, const SessionImage& image) {
  return Counted(WriteFileAtomic(SessionDir(session.id_) + "/" + kImagesDir,
                                 absl::StrCat(image.index, ".img"), EncodeImage(image),
                                 absl::StrCat("store image '", image.client_id, "' of session ",
                                              session.id_, "; it was not accepted")));
}

absl::Status Spool::UpdateState(const Session& s) {
  nlohmann::json j;
  j["format"] = kRecordFormat;
  j["id"] = s.id_;
  j["product"] = s.product_->name;
  j["state"] = v1::SessionState_Name(s.state_);
  j["error"] = s.error_;
  j["seal_policy"] = {{"at_count", s.policy_.at_count}, {"idle_seconds", s.policy_.idle_seconds}};
  j["labels"] = s.labels_;
  j["create_time_ns"] = ToNanos(s.create_time_);
  j["seal_time_ns"] = ToNanos(s.seal_time_);
  j["start_time_ns"] = ToNanos(s.start_time_);
  j["finish_time_ns"] = ToNanos(s.finish_time_);
  j["image_count"] = s.images_.size();
  j["small_batch"] = s.small_batch_;
  nlohmann::json timings = nlohmann::json::object();
  // Every StageTimings field is a double: persisted by name, so new stages need no change here.
  const google::protobuf::Descriptor* d = s.timings_.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    timings[d->field(i)->name()] = s.timings_.GetReflection()->GetDouble(s.timings_, d->field(i));
  }
  j["timings"] = timings;
  // Strings came through protobuf (valid UTF-8) or from the server; `replace` only guards the
  // dump against throwing.
  const std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return Counted(WriteFileAtomic(SessionDir(s.id_), kRecordName, text,
                                 absl::StrCat("record the state of session ", s.id_)));
}

absl::Status Spool::WriteResults(const std::string& session_id,
                                 const std::vector<SessionResult>& results) {
  return Counted(WriteFileAtomic(SessionDir(session_id), kResultsName, EncodeResults(results),
                                 absl::StrCat("store the results of session ", session_id)));
}

absl::Status Spool::Remove(const std::string& session_id) {
  const std::string dir = SessionDir(session_id);
  const std::string record = dir + "/" + kRecordName;
  if (unlink(record.c_str()) != 0 && errno != ENOENT) {
    return WriteError(absl::StrCat("remove session ", session_id), record, errno);
  }
  if (absl::Status s = FsyncDir(dir, absl::StrCat("remove session ", session_id)); !s.ok()) {
    return s;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot remove ", dir, ": ", ec.message(), " (removed at the next start)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::shared_ptr<Session>>> Spool::LoadAll(
    const std::function<const ProductConfig*(const std::string&)>& find_product) {
  std::vector<std::shared_ptr<Session>> sessions;
  std::error_code ec;
  const std::vector<fs::path> dirs = ListDir(fs::path(dir_) / "sessions", &ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot list ", dir_, "/sessions: ", ec.message()));
  }
  for (const fs::path& dir : dirs) {
    if (!fs::is_directory(dir, ec)) continue;
    // Leftovers of writes a crash interrupted: never acknowledged, so never needed.
    for (const fs::path& sub : {dir, dir / kImagesDir}) {
      for (const fs::path& p : ListDir(sub, &ec)) {
        if (IsTemp(p)) fs::remove(p, ec);
      }
    }
    if (!fs::exists(dir / kRecordName, ec)) {
      // A crash during CreateSession (never acknowledged) or during Remove (retention ended).
      LogInfo(absl::StrCat("spool: removing ", dir.string(), " (no session record)"));
      fs::remove_all(dir, ec);
      continue;
    }
    absl::StatusOr<std::shared_ptr<Session>> session = LoadSession(dir.string(), find_product);
    if (!session.ok()) {
      LogError(absl::StrCat("spool: skipping ", dir.string(), ": ", session.status().message(),
                            " (left on disk for inspection)"));
      continue;
    }
    sessions.push_back(*std::move(session));
  }
  return sessions;
}

absl::StatusOr<std::shared_ptr<Session>> Spool::LoadSession(
    const std::string& session_dir,
    const std::function<const ProductConfig*(const std::string&)>& find_product) {
  absl::StatusOr<std::string> text = ReadFile(session_dir + "/" + kRecordName);
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("session.json is not JSON");

  std::string id, product_name, state_name, error;
  SealPolicyConfig policy;
  std::map<std::string, std::string> labels;
  int64_t create_ns, seal_ns, start_ns, finish_ns;
  size_t recorded_images;
  bool small_batch;
  v1::StageTimings timings;
  try {
    if (Field<int>(j, "format") != kRecordFormat) {
      return absl::DataLossError("session.json has an unknown format version");
    }
    id = Field<std::string>(j, "id");
    product_name = Field<std::string>(j, "product");
    state_name = Field<std::string>(j, "state");
    error = Field<std::string>(j, "error");
    policy.at_count = j.at("seal_policy").at("at_count").get<uint32_t>();
    policy.idle_seconds = j.at("seal_policy").at("idle_seconds").get<double>();
    labels = Field<std::map<std::string, std::string>>(j, "labels");
    create_ns = Field<int64_t>(j, "create_time_ns");
    seal_ns = Field<int64_t>(j, "seal_time_ns");
    start_ns = Field<int64_t>(j, "start_time_ns");
    finish_ns = Field<int64_t>(j, "finish_time_ns");
    recorded_images = Field<size_t>(j, "image_count");
    small_batch = Field<bool>(j, "small_batch");
    const google::protobuf::Descriptor* d = timings.GetDescriptor();
    for (const auto& [name, value] : j.at("timings").items()) {
      const google::protobuf::FieldDescriptor* f = d->FindFieldByName(name);
      if (f != nullptr) timings.GetReflection()->SetDouble(&timings, f, value.get<double>());
    }
  } catch (const nlohmann::json::exception& e) {  // A missing or mistyped field.
    return absl::DataLossError(absl::StrCat("session.json: ", e.what()));
  }
  if (fs::path(session_dir).filename().string() != id) {
    return absl::DataLossError(absl::StrCat("session.json names another session (", id, ")"));
  }
  const ProductConfig* product = find_product(product_name);
  if (product == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("product '", product_name, "' is not in the products file any more"));
  }
  v1::SessionState state;
  if (!v1::SessionState_Parse(state_name, &state) || state == v1::SESSION_STATE_UNSPECIFIED) {
    return absl::DataLossError(absl::StrCat("session.json: unknown state '", state_name, "'"));
  }

  // The images: <index>.img for 0..n-1, each written whole before it was acknowledged.
  std::map<uint32_t, std::string> files;
  std::error_code ec;
  for (const fs::path& p : ListDir(fs::path(session_dir) / kImagesDir, &ec)) {
    const std::string name = p.filename().string();
    uint32_t index;
    if (!absl::EndsWith(name, ".img") ||
        !absl::SimpleAtoi(name.substr(0, name.size() - 4), &index)) {
      continue;
    }
    files[index] = p.string();
  }
  if (ec) return absl::DataLossError(absl::StrCat("cannot list its images: ", ec.message()));
  if (!files.empty() && files.rbegin()->first != files.size() - 1) {
    return absl::DataLossError("its image files are not numbered 0..n-1");
  }
  // Images are only added while OPEN, and the record is rewritten on sealing: any later state
  // names exactly the images on disk.
  if (state != v1::OPEN && recorded_images != files.size()) {
    return absl::DataLossError(absl::StrCat("session.json names ", recorded_images,
                                            " images, the spool holds ", files.size()));
  }

  std::vector<SessionResult> results;
  if (state == v1::DONE) {
    absl::StatusOr<std::string> data = ReadFile(session_dir + "/" + kResultsName);
    absl::StatusOr<std::vector<SessionResult>> decoded =
        data.ok() ? DecodeResults(*data, files.size())
                  : absl::StatusOr<std::vector<SessionResult>>(data.status());
    if (decoded.ok()) {
      results = *std::move(decoded);
    } else {
      // The record says DONE only after results.bin was written, so this is damage: the images
      // are there, so score the batch again rather than lose it.
      LogWarning(absl::StrCat("spool: session ", id, ": ", decoded.status().message(),
                              "; scoring it again"));
      state = v1::SEALED;
    }
  }
  if (state == v1::RUNNING) state = v1::SEALED;  // Its scoring died with the process.
  const bool needs_pixels = state == v1::OPEN || state == v1::SEALED;

  auto session = std::make_shared<Session>(id, product, policy, std::move(labels), metrics_,
                                           FromNanos(create_ns));
  for (const auto& [index, path] : files) {
    absl::StatusOr<std::string> data = ReadFile(path);
    if (!data.ok()) return data.status();
    std::string encoded;
    absl::StatusOr<SessionImage> image = DecodeImageFile(*data, &encoded);
    if (!image.ok() || image->index != index) {
      return absl::DataLossError(absl::StrCat(path, " is damaged"));
    }
    if (needs_pixels) {
      absl::StatusOr<DecodedImage> decoded = DecodeImage(encoded, limits_);
      if (!decoded.ok()) {
        return absl::DataLossError(absl::StrCat(path, ": ", decoded.status().message()));
      }
      image->pixels = std::move(decoded->pixels);
    }
    session->client_ids_.insert(image->client_id);
    session->total_bytes_ += image->encoded_bytes;
    session->images_.push_back(*std::move(image));
  }
  session->state_ = state;
  session->error_ = error;
  session->small_batch_ = small_batch;
  session->seal_time_ = state == v1::OPEN ? Clock::time_point{} : FromNanos(seal_ns);
  session->start_time_ = state == v1::SEALED ? Clock::time_point{} : FromNanos(start_ns);
  session->finish_time_ = FromNanos(finish_ns);
  if (state == v1::DONE) {
    session->results_ = std::move(results);
    session->timings_ = timings;
  }
  // An idle timer restarts: the downtime was not the client's idleness.
  session->last_activity_ = Clock::now();
  session->spool_ = this;
  return session;
}

absl::Status RecoverSessions(Spool& spool, SessionManager& manager, Scheduler& scheduler,
                             ServerMetrics* metrics) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<std::shared_ptr<Session>>> sessions =
      spool.LoadAll([&manager](const std::string& name) { return manager.FindProduct(name); });
  if (!sessions.ok()) return sessions.status();
  // The queue's order before the restart: by seal time.
  std::stable_sort(sessions->begin(), sessions->end(),
                   [](const auto& a, const auto& b) { return a->seal_time() < b->seal_time(); });
  std::map<v1::SessionState, int> counts;
  for (const std::shared_ptr<Session>& session : *sessions) {
    const v1::SessionState state = session->state();
    ++counts[state];
    if (metrics != nullptr) metrics->SessionRecovered(state);
    manager.Adopt(session);
    if (state == v1::SEALED) {
      if (absl::Status s = scheduler.Enqueue(session, /*recovered=*/true); !s.ok()) {
        session->Fail(absl::StrCat("could not queue the batch after a restart: ", s.message()));
      }
    } else if (const uint32_t at_count = session->ToProto().seal_policy().at_count();
               state == v1::OPEN && at_count > 0 && session->image_count() >= at_count) {
      // The crash fell between the image that reached the auto-seal count and its seal.
      manager.Seal(session).IgnoreError();
    }
  }
  std::string summary;
  for (const auto& [state, n] : counts) {
    absl::StrAppend(&summary, summary.empty() ? "" : ", ", n, " ", v1::SessionState_Name(state));
  }
  LogInfo(absl::StrCat(
      "spool ", spool.dir(), ": recovered ", sessions->size(), " session(s)",
      summary.empty() ? "" : absl::StrCat(" (", summary, ")"), " in ",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), " s"));
  return absl::OkStatus();
}

}  // namespace musc
