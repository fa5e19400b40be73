// musc-client: talk to a musc-server.
//   musc-client health   --server HOST:PORT
//   musc-client products --server HOST:PORT
//   musc-client score    --server HOST:PORT --product P --images DIR_OR_FILES... [--out DIR]
//                        [--json] [--threshold T] [--quiet]
//   musc-client eval     --server HOST:PORT --product P --data DIR [--category C] [--batch N]
//                        [--json]
//                        [--line [--seed S]]
//   musc-client line     --server HOST:PORT --product P --images DIR_OR_FILES... [--rate R]
//                        [--json] [--out DIR]
//   musc-client bench    --server HOST:PORT --product P --images DIR --sessions K --batch N
//   musc-client hash-token < TOKEN_FILE      (the sha256 to put in the server's tokens file)
// Security (every command): --tls_ca FILE [--tls_cert FILE --tls_key FILE] (or --tls for the
// system's roots); the bearer token from --token_file FILE or the MUSC_TOKEN environment variable.
#include <openssl/evp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "client/evaluation.h"
#include "client/line_replay.h"
#include "client/map_codec.h"
#include "client/musc_client.h"
#include "eval/metrics.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

bool IsImageFile(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" ||
         ext == ".tiff";
}

// Files named directly, plus image files found (recursively, sorted) in named directories.
std::vector<fs::path> ExpandImages(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const std::string& input : inputs) {
    if (fs::is_directory(input)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::recursive_directory_iterator(input)) {
        if (e.is_regular_file() && IsImageFile(e.path())) found.push_back(e.path());
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.emplace_back(input);
    }
  }
  return files;
}

// An unreadable file is sent as 0 bytes, which the server rejects ("image is empty") by name.
std::string ReadFile(const fs::path& p) {
  absl::StatusOr<std::string> bytes = ReadFileToString(p.string());
  return bytes.ok() ? *std::move(bytes) : std::string();
}

// A unique, readable id per file: its path relative to the common input root.
std::string ClientIdFor(const fs::path& file, const std::vector<std::string>& inputs) {
  for (const std::string& input : inputs) {
    if (fs::is_directory(input)) {
      const fs::path rel = fs::relative(file, input);
      if (!rel.empty() && rel.native()[0] != '.') return rel.string();
    }
  }
  return file.filename().string();
}

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled && isatty(STDERR_FILENO)) {}
  void Show(const std::string& what, uint32_t done, uint32_t total) {
    if (!enabled_) return;
    const int width = 30;
    const int filled = total > 0 ? static_cast<int>(width * done / total) : 0;
    std::fprintf(stderr, "\r%-10s [%s%s] %u/%u", what.c_str(), std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), done, total);
    std::fflush(stderr);
  }
  void Done() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
};

int Fail(const std::string& what, const absl::Status& s) {
  std::fprintf(stderr, "musc-client: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

int Health(MuscClient& client) {
  absl::StatusOr<bool> serving = client.IsServing();
  if (!serving.ok()) return Fail("health", serving.status());
  std::printf("%s\n", *serving ? "SERVING" : "NOT_SERVING");
  return *serving ? 0 : 3;
}

int Products(MuscClient& client) {
  absl::StatusOr<std::vector<v1::Product>> products = client.ListProducts();
  if (!products.ok()) return Fail("products", products.status());
  for (const v1::Product& p : *products) {
    // MSM mode and precisions: what decides a product's cost and memory per batch.
    const v1::ScoringConfig& sc = p.scoring();
    const std::string msm = sc.approximate_neighbours() > 0
                                ? absl::StrCat("approx(M=", sc.approximate_neighbours(), ")")
                                : "exact";
    std::printf("%-20s backbone=%s size=%d batch=%u..%u msm=%s tokens=%s gemm=%s  %s\n",
                p.name().c_str(), p.backbone().model().c_str(), p.backbone().input_size(),
                p.batch().min_images(), p.batch().max_images(), msm.c_str(),
                sc.token_dtype().c_str(), sc.gemm_dtype().c_str(), p.description().c_str());
  }
  return 0;
}

struct ScoreOptions {
  std::string product;
  std::vector<std::string> images;
  std::string out_dir;
  bool json = false;
  bool quiet = false;
  std::optional<double> threshold;
};

int Score(MuscClient& client, const ScoreOptions& o) {
  const std::vector<fs::path> files = ExpandImages(o.images);
  if (files.empty()) {
    std::fprintf(stderr, "musc-client: no image files found\n");
    return 2;
  }
  std::vector<EncodedImage> images;
  std::map<std::string, fs::path> path_of;
  for (const fs::path& f : files) {
    std::string id = ClientIdFor(f, o.images);
    path_of[id] = f;
    images.push_back({id, ReadFile(f), {}});
  }
  v1::CreateSessionRequest create;
  create.set_product(o.product);
  create.mutable_seal_policy();  // Manual seal: this command decides when the batch is complete.
  absl::StatusOr<v1::Session> session = client.CreateSession(create);
  if (!session.ok()) return Fail("create session", session.status());

  ProgressLine progress(!o.quiet);
  progress.Show("upload", 0, static_cast<uint32_t>(images.size()));
  absl::StatusOr<std::vector<v1::ImageAck>> acks = client.AddImages(session->id(), images);
  progress.Show("upload", static_cast<uint32_t>(images.size()),
                static_cast<uint32_t>(images.size()));
  progress.Done();
  if (!acks.ok()) return Fail("upload", acks.status());
  int rejected = 0;
  for (const v1::ImageAck& ack : *acks) {
    if (!ack.accepted()) {
      ++rejected;
      std::fprintf(stderr, "musc-client: rejected %s: %s\n", ack.client_image_id().c_str(),
                   ack.error_message().c_str());
    }
  }
  absl::StatusOr<v1::Session> sealed = client.SealSession(session->id());
  if (!sealed.ok()) return Fail("seal", sealed.status());

  v1::MapOptions map_options;
  map_options.set_encoding(o.out_dir.empty() ? v1::MAP_NONE : v1::FLOAT16);
  std::vector<v1::ImageResult> results;
  v1::Session final_session;
  absl::Status streamed =
      client.StreamResults(session->id(), map_options, [&](const v1::ResultEvent& e) {
        if (e.has_progress())
          progress.Show(e.progress().stage(), e.progress().done(), e.progress().total());
        if (e.has_result()) results.push_back(e.result());
        if (e.has_finished()) final_session = e.finished().session();
      });
  progress.Done();
  if (!streamed.ok()) return Fail("results", streamed);
  if (final_session.state() != v1::DONE) {
    std::fprintf(stderr, "musc-client: session %s ended %s: %s\n", session->id().c_str(),
                 v1::SessionState_Name(final_session.state()).c_str(),
                 final_session.error().c_str());
    return 1;
  }
  std::sort(results.begin(), results.end(),
            [](const auto& a, const auto& b) { return a.index() < b.index(); });

  if (!o.out_dir.empty()) fs::create_directories(o.out_dir);
  // One colour scale for the whole batch, so overlays can be compared with each other.
  float batch_min = 0, batch_max = 0;
  for (size_t k = 0; k < results.size(); ++k) {
    const v1::AnomalyMap& m = results[k].map();
    batch_min = k == 0 ? m.value_min() : std::min(batch_min, m.value_min());
    batch_max = k == 0 ? m.value_max() : std::max(batch_max, m.value_max());
  }
  if (!o.json) {
    std::printf("%-40s %10s %10s%s\n", "image", "raw", "final", o.threshold ? "  decision" : "");
  }
  for (const v1::ImageResult& r : results) {
    const bool anomalous = o.threshold && r.raw_score() >= *o.threshold;
    if (o.json) {
      nlohmann::json j = {{"image", r.client_image_id()},
                          {"raw_score", r.raw_score()},
                          {"final_score", r.final_score()}};
      if (o.threshold) j["anomalous"] = anomalous;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%-40s %10.5f %10.5f%s\n", r.client_image_id().c_str(), r.raw_score(),
                  r.final_score(), o.threshold ? (anomalous ? "  ANOMALOUS" : "  ok") : "");
    }
    if (!o.out_dir.empty() && r.has_map()) {
      cv::Mat values;
      if (absl::Status s = DecodeMap(r.map(), &values); !s.ok()) return Fail("map", s);
      std::string stem = r.client_image_id();
      std::replace(stem.begin(), stem.end(), '/', '_');
      stem = fs::path(stem).replace_extension().string();
      cv::imwrite((fs::path(o.out_dir) / (stem + "_map.tiff")).string(), values);
      const cv::Mat original = cv::imread(path_of[r.client_image_id()].string(), cv::IMREAD_COLOR);
      const cv::Mat overlay = HeatMapOverlay(original, values, batch_min, batch_max);
      cv::imwrite((fs::path(o.out_dir) / (stem + "_overlay.png")).string(), overlay);
    }
  }
  if (!o.json) {
    const v1::StageTimings& t = final_session.timings();
    std::printf(
        "\n%zu scored, %d rejected; session %s; backbone %.2f s, MuSc %.2f s, queue %.2f s\n",
        results.size(), rejected, final_session.id().c_str(), t.backbone_seconds(),
        t.lnamd_seconds() + t.msm_seconds() + t.maps_seconds() + t.rscin_seconds(),
        t.queue_seconds());
    if (!o.out_dir.empty()) std::printf("maps and overlays written to %s\n", o.out_dir.c_str());
  }
  return rejected > 0 ? 4 : 0;
}

struct EvalCommand {
  std::string data;
  std::string category;
  EvaluationOptions options;
  bool json = false;
};

int Eval(MuscClient& client, const EvalCommand& c) {
  absl::StatusOr<EvalSet> set = LoadEvalSet(c.data, c.category);
  if (!set.ok()) return Fail("eval", set.status());
  EvaluationOptions options = c.options;
  options.progress = options.progress && isatty(STDERR_FILENO);
  absl::StatusOr<EvaluationReport> r = Evaluate(client, *set, options);
  if (!r.ok()) return Fail("eval", r.status());
  const double ms_per_image = 1000.0 * r->seconds / static_cast<double>(r->n_images);
  if (!c.json) {
    std::printf("%s (%s layout): %lld images, maps %lld×%lld, %.1f s (%.1f ms/image)\n",
                set->category.c_str(), set->layout.c_str(), static_cast<long long>(r->n_images),
                static_cast<long long>(r->map_size), static_cast<long long>(r->map_size),
                r->seconds, ms_per_image);
    std::printf("image  AUROC %.4f  AP %.4f  F1-max %.4f\n", r->image_auroc, r->image_ap,
                r->image_f1max);
    if (r->has_pixel_metrics) {
      std::printf("pixel  AUROC %.4f  AP %.4f  F1-max %.4f  PRO %.4f\n", r->pixel_auroc,
                  r->pixel_ap, r->pixel_f1max, r->pro);
    }
    if (r->has_decisions) {
      std::printf(
          "label-free decisions on %lld images: precision %.4f  recall %.4f  F1 %.4f "
          "(oracle F1-max %.4f)\n",
          static_cast<long long>(r->decided_images), r->decision_precision, r->decision_recall,
          r->decision_f1, r->image_f1max);
    }
    if (c.options.line_mode) {
      std::printf("line latency p50 %.1f ms  p99 %.1f ms (after warm-up)\n",
                  1000 * r->line_latency_p50, 1000 * r->line_latency_p99);
    }
  }
  nlohmann::json j = {{"image_auroc", r->image_auroc},
                      {"image_ap", r->image_ap},
                      {"image_f1max", r->image_f1max},
                      {"n_images", r->n_images},
                      {"seconds", r->seconds}};
  j["mode"] = c.options.line_mode ? "line" : "batch";
  if (r->has_decisions) {
    j["decided_images"] = r->decided_images;
    j["decision_precision"] = r->decision_precision;
    j["decision_recall"] = r->decision_recall;
    j["decision_f1"] = r->decision_f1;
  }
  if (c.options.line_mode) {
    j["line_latency_p50"] = r->line_latency_p50;
    j["line_latency_p99"] = r->line_latency_p99;
  }
  if (r->has_pixel_metrics) {
    j["pixel_auroc"] = r->pixel_auroc;
    j["pixel_ap"] = r->pixel_ap;
    j["pixel_f1max"] = r->pixel_f1max;
    j["pro"] = r->pro;
  } else {
    j["pixel_auroc"] = j["pixel_ap"] = j["pixel_f1max"] = j["pro"] = nullptr;
  }
  if (c.json) std::printf("%s\n", j.dump().c_str());
  return 0;
}

struct LineCommand {
  std::string product;
  std::vector<std::string> images;
  double rate = 0;
  bool json = false;
  std::string out_dir;
};

// Replays a folder as a production line: each image scored on arrival, a verdict per part.
int Line(MuscClient& client, const LineCommand& c) {
  const std::vector<fs::path> files = ExpandImages(c.images);
  if (files.empty()) {
    std::fprintf(stderr, "musc-client: no image files found\n");
    return 2;
  }
  std::vector<EncodedImage> images;
  for (const fs::path& f : files) images.push_back({f.filename().string(), ReadFile(f), {}});
  LineReplayOptions options;
  options.product = c.product;
  options.rate = c.rate;
  options.map_options.set_encoding(c.out_dir.empty() ? v1::MAP_NONE : v1::FLOAT16);
  if (!c.out_dir.empty()) fs::create_directories(c.out_dir);
  int anomalous = 0;
  absl::StatusOr<LineReplayResult> result = ReplayLine(
      client, images, options, [&](size_t, const v1::ScoreImageResponse& response, double latency) {
        const v1::ImageResult& r = response.result();
        const v1::Decision& d = r.decision();
        anomalous += d.decided() && d.is_anomalous() ? 1 : 0;
        if (c.json) {
          nlohmann::json j = {{"image", r.client_image_id()},
                              {"sequence", r.index()},
                              {"raw_score", r.raw_score()},
                              {"latency_ms", 1000 * latency},
                              {"bank_images", response.line().bank_images()},
                              {"warmup", response.line().warmup()},
                              {"admitted", response.line().admitted()}};
          if (r.has_decision()) {
            j["decided"] = d.decided();
            j["is_anomalous"] = d.is_anomalous();
            j["threshold"] = d.threshold();
            j["policy"] = d.policy();
            j["alarm"] = d.alarm();
          }
          std::printf("%s\n", j.dump().c_str());
        } else {
          const char* verdict = !r.has_decision()  ? ""
                                : !d.decided()     ? "  (no verdict yet)"
                                : d.is_anomalous() ? "  ANOMALOUS"
                                                   : "  ok";
          std::printf("%-28s #%-5u raw %.4f%s%s  %.0f ms  bank %u%s\n", r.client_image_id().c_str(),
                      r.index(), r.raw_score(), verdict,
                      r.has_decision() && d.decided()
                          ? absl::StrCat(" (threshold ", d.threshold(), ")").c_str()
                          : "",
                      1000 * latency, response.line().bank_images(),
                      d.alarm() ? "  ALARM: many recent parts anomalous" : "");
        }
        std::fflush(stdout);
        if (!c.out_dir.empty() && r.has_map()) {
          cv::Mat values;
          if (DecodeMap(r.map(), &values).ok()) {
            const std::string stem = fs::path(r.client_image_id()).replace_extension().string();
            cv::imwrite((fs::path(c.out_dir) / (stem + "_map.tiff")).string(), values);
          }
        }
      });
  if (!result.ok()) return Fail("line", result.status());
  std::vector<double> latencies(result->latency_seconds.begin() + result->warmup_images,
                                result->latency_seconds.end());
  if (!c.json) {
    std::printf(
        "\n%zu images in %.1f s (%d in the warm-up batch); latency after warm-up p50 %.0f ms, "
        "p99 %.0f ms; %d judged anomalous\n",
        images.size(), result->seconds, result->warmup_images, 1000 * Percentile(latencies, 0.5),
        1000 * Percentile(latencies, 0.99), anomalous);
  }
  return 0;
}

struct BenchCommand {
  std::string product;
  std::vector<std::string> images;
  int sessions = 4;
  int batch = 16;
  double duration_seconds = 0;  // 0: one session per worker.
  std::string maps = "none";    // Map encoding requested: none, png8, png16, float16, default.
};

// "none", "default" (the product's own) or an encoding's proto name in any case ("png16").
absl::StatusOr<v1::MapEncoding> ParseMapEncoding(const std::string& name) {
  if (name == "none") return v1::MAP_NONE;
  if (name == "default") return v1::MAP_ENCODING_UNSPECIFIED;
  v1::MapEncoding encoding;
  if (!v1::MapEncoding_Parse(absl::AsciiStrToUpper(name), &encoding)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown map encoding '", name, "' (none, png8, png16, float16 or default)"));
  }
  return encoding;
}

// A load generator: K workers, each running sessions of N images one after another through its own
// connection (one round, or until --duration ends), while a probe measures the latency of control
// RPCs (GetSession, ListProducts) — they must stay fast while batches are scored. A full scoring
// queue (RESOURCE_EXHAUSTED on seal) is back-pressure the bench expects and retries; any other
// failure is an error. Last line: machine-readable totals.
int Bench(const std::string& server, const ClientOptions& options, const BenchCommand& c) {
  const std::vector<fs::path> files = ExpandImages(c.images);
  if (files.empty()) {
    std::fprintf(stderr, "musc-client: no image files found\n");
    return 2;
  }
  std::vector<std::string> bytes;
  for (const fs::path& f : files) bytes.push_back(ReadFile(f));
  using Clock = std::chrono::steady_clock;
  std::mutex mu;
  std::vector<double> end_to_end, seal_to_last, control;
  // Per session: seal-to-last-result time over the sum of the core's stage times for that batch
  // (preprocess, backbone, LNAMD, MSM, maps, RsCIN), i.e. what gRPC, map encoding, scheduling and
  // queueing add on top of the scoring itself. Decoding happens as images arrive, before the seal.
  std::vector<double> overhead_ratio;
  const absl::StatusOr<v1::MapEncoding> map_encoding = ParseMapEncoding(c.maps);
  if (!map_encoding.ok()) {
    std::fprintf(stderr, "musc-client: %s\n", map_encoding.status().ToString().c_str());
    return 2;
  }
  int failures = 0, sessions_done = 0, seal_retries = 0;
  std::map<std::string, int> errors_by_code;
  std::atomic<bool> stop_probe{false};
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(c.duration_seconds));
  std::string probe_session;  // A session the probe reads (any worker's first).

  auto run_session = [&](MuscClient& client, int worker, int round) {
    std::vector<EncodedImage> images;
    for (int i = 0; i < c.batch; ++i) {
      images.push_back({absl::StrCat("w", worker, "-r", round, "-", i),
                        bytes[(worker * c.batch + round + i) % bytes.size()],
                        {}});
    }
    const auto t0 = Clock::now();
    v1::CreateSessionRequest create;
    create.set_product(c.product);
    create.mutable_seal_policy();
    absl::StatusOr<v1::Session> s = client.CreateSession(create);
    absl::Status status = s.status();
    if (status.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      if (probe_session.empty()) probe_session = s->id();
    }
    if (status.ok()) status = client.AddImages(s->id(), images).status();
    // A full queue answers RESOURCE_EXHAUSTED and leaves the session OPEN: wait and seal again.
    int retries = 0;
    while (status.ok()) {
      status = client.SealSession(s->id()).status();
      if (status.code() != absl::StatusCode::kResourceExhausted) break;
      ++retries;
      status = absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const Clock::time_point sealed = Clock::now();
    Clock::time_point last = sealed;
    bool done = false;
    double core_seconds = 0;
    if (status.ok()) {
      v1::MapOptions maps;
      maps.set_encoding(*map_encoding);
      status = client.StreamResults(s->id(), maps, [&](const v1::ResultEvent& e) {
        if (e.has_result()) last = Clock::now();
        if (!e.has_finished()) return;
        done = e.finished().session().state() == v1::DONE;
        const v1::StageTimings& t = e.finished().session().timings();
        core_seconds = t.preprocess_seconds() + t.backbone_seconds() + t.lnamd_seconds() +
                       t.msm_seconds() + t.maps_seconds() + t.rscin_seconds();
      });
    }
    std::lock_guard<std::mutex> lock(mu);
    seal_retries += retries;
    if (!status.ok() || !done) {
      ++failures;
      ++errors_by_code[status.ok() ? "NOT_DONE" : absl::StatusCodeToString(status.code())];
      std::fprintf(stderr, "musc-client: worker %d session %d failed: %s\n", worker, round,
                   status.ok() ? "not DONE" : status.ToString().c_str());
      return;
    }
    ++sessions_done;
    end_to_end.push_back(std::chrono::duration<double>(last - t0).count());
    seal_to_last.push_back(std::chrono::duration<double>(last - sealed).count());
    if (core_seconds > 0) overhead_ratio.push_back(seal_to_last.back() / core_seconds);
  };

  std::thread probe([&] {
    std::unique_ptr<MuscClient> client = MuscClient::Connect(server, options);
    while (!stop_probe.load()) {
      std::string id;
      {
        std::lock_guard<std::mutex> lock(mu);
        id = probe_session;
      }
      const auto t0 = Clock::now();
      absl::Status s =
          id.empty() ? client->ListProducts().status() : client->GetSession(id).status();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      {
        std::lock_guard<std::mutex> lock(mu);
        if (s.ok()) {
          control.push_back(ms);
        } else {
          ++errors_by_code[absl::StrCat("control:", absl::StatusCodeToString(s.code()))];
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  std::vector<std::thread> threads;
  for (int k = 0; k < c.sessions; ++k) {
    threads.emplace_back([&, k] {
      std::unique_ptr<MuscClient> client = MuscClient::Connect(server, options);
      int round = 0;
      do {
        run_session(*client, k, round++);
      } while (Clock::now() < deadline);
    });
  }
  for (std::thread& t : threads) t.join();
  stop_probe = true;
  probe.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  int errors = 0;
  for (const auto& [code, n] : errors_by_code) errors += n;
  std::printf(
      "%d workers × sessions of %d images for %.1f s: %d sessions done, %d failed, "
      "%.2f images/s; %d seal retries on a full queue (back-pressure)\n",
      c.sessions, c.batch, wall, sessions_done, failures, sessions_done * c.batch / wall,
      seal_retries);
  for (const auto& [code, n] : errors_by_code) std::printf("  error %s: %d\n", code.c_str(), n);
  std::printf("end-to-end s:          p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n",
              Percentile(end_to_end, 0.5), Percentile(end_to_end, 0.9),
              Percentile(end_to_end, 0.99), Percentile(end_to_end, 1.0));
  std::printf("seal-to-last-result s: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n",
              Percentile(seal_to_last, 0.5), Percentile(seal_to_last, 0.9),
              Percentile(seal_to_last, 0.99), Percentile(seal_to_last, 1.0));
  std::printf("seal-to-last / core stage sum: p50 %.3f  max %.3f (1.000 = no serving overhead)\n",
              Percentile(overhead_ratio, 0.5), Percentile(overhead_ratio, 1.0));
  std::printf("control RPCs (%zu, during the load) ms: p50 %.1f  p99 %.1f  max %.1f\n",
              control.size(), Percentile(control, 0.5), Percentile(control, 0.99),
              Percentile(control, 1.0));
  std::printf(
      "bench: sessions=%d images=%d errors=%d seal_retries=%d control_p50_ms=%.1f "
      "control_p99_ms=%.1f seal_to_last_vs_core=%.3f\n",
      sessions_done, sessions_done * c.batch, errors, seal_retries, Percentile(control, 0.5),
      Percentile(control, 0.99), Percentile(overhead_ratio, 0.5));
  return errors == 0 ? 0 : 1;
}

struct SecurityFlags {
  bool tls = false;
  TlsFiles tls_files;
  std::string token_file;
};

// The connection options from the security flags. The token comes from a file or the MUSC_TOKEN
// environment variable, never from a flag of its own: command lines are visible to every user of
// the machine (ps, /proc).
absl::StatusOr<ClientOptions> ClientOptionsFrom(const SecurityFlags& flags) {
  ClientOptions options;
  if (flags.tls || !flags.tls_files.ca.empty() || !flags.tls_files.cert.empty() ||
      !flags.tls_files.key.empty()) {
    MUSC_ASSIGN_OR_RETURN(options.credentials, TlsChannelCredentials(flags.tls_files));
  }
  if (!flags.token_file.empty()) {
    MUSC_ASSIGN_OR_RETURN(options.bearer_token, ReadTokenFile(flags.token_file));
  } else if (const char* env = std::getenv("MUSC_TOKEN"); env != nullptr) {
    options.bearer_token = std::string(absl::StripAsciiWhitespace(env));
  }
  return options;
}

// Prints the lowercase hex SHA-256 of the token read from stdin (surrounding whitespace removed,
// as the client does when it sends a token), for the server's tokens file.
int HashToken() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  const std::string token(absl::StripAsciiWhitespace(input));
  if (token.empty()) {
    std::fprintf(stderr, "musc-client: hash-token: no token on stdin\n");
    return 2;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(token.data(), token.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    std::fprintf(stderr, "musc-client: hash-token: SHA-256 failed\n");
    return 1;
  }
  for (unsigned int i = 0; i < length; ++i) std::printf("%02x", digest[i]);
  std::printf("\n");
  return 0;
}

}  // namespace
}  // namespace musc

int main(int argc, char** argv) {
  CLI::App app{"musc-client: score images with a musc-server"};
  app.require_subcommand(1);
  std::string server = "127.0.0.1:50051";
  app.add_option("--server", server, "server address HOST:PORT")->capture_default_str();
  musc::SecurityFlags security;
  app.add_flag("--tls", security.tls, "use TLS, trusting the system's root certificates");
  app.add_option("--tls_ca", security.tls_files.ca, "use TLS, trusting this CA (PEM)");
  app.add_option("--tls_cert", security.tls_files.cert,
                 "client certificate (PEM) for servers that require mutual TLS");
  app.add_option("--tls_key", security.tls_files.key, "the key of --tls_cert (PEM)");
  app.add_option("--token_file", security.token_file,
                 "file holding the bearer token (default: the MUSC_TOKEN environment variable)");

  app.add_subcommand("health", "check the server's health (exit 0 when SERVING)");
  app.add_subcommand("products", "list the server's products");
  musc::ScoreOptions score;
  double threshold = 0;
  CLI::App* score_cmd = app.add_subcommand("score", "score a folder or files as one batch");
  score_cmd->add_option("--product", score.product, "product name")->required();
  score_cmd->add_option("--images", score.images, "image files and/or folders")->required();
  score_cmd->add_option("--out", score.out_dir, "write raw maps (float TIFF) and overlays here");
  score_cmd->add_flag("--json", score.json, "one JSON object per image");
  score_cmd->add_flag("--quiet", score.quiet, "no progress bars");
  CLI::Option* threshold_opt =
      score_cmd->add_option("--threshold", threshold, "raw-score threshold for a decision");
  musc::EvalCommand eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "evaluate on a labelled test split");
  eval_cmd->add_option("--product", eval.options.product, "product name")->required();
  eval_cmd->add_option("--data", eval.data, "category folder, dataset root, or VisA root")
      ->required();
  eval_cmd->add_option("--category", eval.category, "category under --data");
  eval_cmd->add_option("--batch", eval.options.batch_size,
                       "images per session (0 = the whole split, as in the paper)");
  eval_cmd->add_flag("--json", eval.json, "print one JSON object with the metrics");
  eval_cmd->add_flag("--line", eval.options.line_mode,
                     "line mode: score one image at a time against the product's bank");
  eval_cmd
      ->add_option("--seed", eval.options.shuffle_seed,
                   "line mode: the replay order's shuffle seed (0 = file order)")
      ->capture_default_str();
  musc::LineCommand line;
  CLI::App* line_cmd = app.add_subcommand("line", "replay images as a line: a verdict per part");
  line_cmd->add_option("--product", line.product, "product name (with line mode)")->required();
  line_cmd->add_option("--images", line.images, "image files and/or folders")->required();
  line_cmd->add_option("--rate", line.rate, "images per second (0 = back to back)")
      ->capture_default_str();
  line_cmd->add_flag("--json", line.json, "one JSON object per image");
  line_cmd->add_option("--out", line.out_dir, "write each raw map (float TIFF) here");
  musc::BenchCommand bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "load generator: K concurrent sessions");
  bench_cmd->add_option("--product", bench.product, "product name")->required();
  bench_cmd->add_option("--images", bench.images, "image files and/or folders")->required();
  bench_cmd->add_option("--sessions", bench.sessions, "concurrent sessions")->capture_default_str();
  bench_cmd->add_option("--batch", bench.batch, "images per session")->capture_default_str();
  bench_cmd
      ->add_option("--duration", bench.duration_seconds,
                   "keep each worker running sessions for this many seconds (0 = one each)")
      ->capture_default_str();
  bench_cmd
      ->add_option("--maps", bench.maps,
                   "map encoding to request: none, png8, png16, float16 or default (the product's)")
      ->capture_default_str();
  app.add_subcommand("hash-token",
                     "print the sha256 of the token on stdin, for the server's tokens file");
  CLI11_PARSE(app, argc, argv);
  if (*threshold_opt) score.threshold = threshold;
  if (app.got_subcommand("hash-token")) return musc::HashToken();
  absl::StatusOr<musc::ClientOptions> options = musc::ClientOptionsFrom(security);
  if (!options.ok()) {
    std::fprintf(stderr, "musc-client: %s\n", options.status().ToString().c_str());
    return 2;
  }
  if (app.got_subcommand("bench")) return musc::Bench(server, *options, bench);

  std::unique_ptr<musc::MuscClient> client = musc::MuscClient::Connect(server, *options);
  if (app.got_subcommand("health")) return musc::Health(*client);
  if (app.got_subcommand("products")) return musc::Products(*client);
  if (app.got_subcommand("eval")) return musc::Eval(*client, eval);
  if (app.got_subcommand("line")) return musc::Line(*client, line);
  return musc::Score(*client, score);
}
