// libFuzzer target: the TensorFlow.js model reader (core/formats/tfjs_manifest.h): model.json, then
// the shard files its weightsManifest names. The input is model.json, optionally followed by a NUL
// byte and the bytes of shard "group1-shard1of1", then another NUL and "group2-shard1of1"
// (the seed corpus uses these names); the shards are written to a private temporary directory.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/formats/tfjs_manifest.h"

namespace {

namespace fs = std::filesystem;

fs::path* shard_dir = nullptr;

void RemoveShardDir() {
  std::error_code ignored;
  if (shard_dir != nullptr) fs::remove_all(*shard_dir, ignored);
}

void WriteShard(const std::string& name, std::string_view bytes) {
  std::ofstream out(*shard_dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::abort();  // The harness itself failed, not the code under test.
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  std::string pattern = (fs::temp_directory_path() / "musc_fuzz_tfjs_XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) std::abort();
  shard_dir = new fs::path(pattern);
  std::atexit(RemoveShardDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view parts[3];
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? input.find('\0') : std::string_view::npos;
    parts[i] = input.substr(0, end);
    input = end == std::string_view::npos ? std::string_view() : input.substr(end + 1);
  }
  // Both shards are rewritten every time (empty when absent), so no input depends on another.
  WriteShard("group1-shard1of1", parts[1]);
  WriteShard("group2-shard1of1", parts[2]);
  const absl::StatusOr<musc::TfjsModel> model =
      musc::ParseTfjsModel(parts[0], shard_dir->string(), "fuzz/model.json");
  if (model.ok()) (void)model->total_parameters();
  return 0;
}
