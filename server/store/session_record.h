// The values a batch session is persisted as: its record (everything but its images and results),
// its accepted images and its results. They live in the store, below server/batch/, so that the
// session hands them to the store (server/store/session_store.h) and the store reads them back
// without either including the other's classes: server/batch/session.h includes this header, the
// spool never includes session.h (only recovery.cc, which rebuilds sessions, does).
#ifndef MUSC_SERVER_STORE_SESSION_RECORD_H_
#define MUSC_SERVER_STORE_SESSION_RECORD_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <opencv2/core.hpp>
#include <string>

#include "musc/v1/musc_service.pb.h"
#include "server/product_config.h"
#include "server/results/decision_policy.h"

namespace musc {

using Clock = std::chrono::system_clock;

// A session as its record says, rewritten on each state change (session.json in the spool).
struct SessionRecord {
  std::string id;
  std::string product;  // The product's name.
  SealPolicyConfig seal_policy;
  std::map<std::string, std::string> labels;
  v1::SessionState state = v1::OPEN;
  std::string error;
  // Clock::time_point{} when the session has not reached that step.
  Clock::time_point create_time, seal_time, start_time, finish_time;
  size_t image_count = 0;  // Images accepted when the record was written.
  bool small_batch = false;
  v1::StageTimings timings;
};

// One accepted image. Written to the store once, when it is accepted.
struct SessionImage {
  std::string client_id;
  uint32_t index = 0;
  cv::Mat pixels;  // Decoded RGB or grey, 8/16-bit; released once the session is final. Not stored.
  int width = 0;   // Original size, kept after the pixels are released.
  int height = 0;
  std::map<std::string, std::string> metadata;
  int64_t encoded_bytes = 0;
  double decode_seconds = 0;
  // The bytes as received: stored with the image, then dropped by the session (the pixels are
  // what scoring needs); read back from the store, they are decoded again when needed.
  std::string encoded;
};

// The scores of one image, kept raw so each stream can encode maps the way it asks for.
struct SessionResult {
  uint32_t index = 0;
  float raw_score = 0;
  float final_score = 0;
  cv::Mat map;        // CV_32FC1, S×S (empty when maps were not kept).
  Decision decision;  // From the product's decision policy (decided=false when it has none).
};

}  // namespace musc

#endif  // MUSC_SERVER_STORE_SESSION_RECORD_H_
