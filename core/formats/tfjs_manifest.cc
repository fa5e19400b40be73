#include "core/formats/tfjs_manifest.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "core/formats/json_nesting.h"

// Shards are raw little-endian float32; they are copied with memcpy, which is only right on a
// little-endian host (every platform this project targets).
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tfjs_manifest.cc assumes a little-endian host"
#endif

namespace musc {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int64_t kMaxFilters = int64_t{1} << 20;
constexpr int64_t kMaxWindow = 1024;  // Kernel, pool, stride and dilation extents.

// A short rendering of a JSON value for error messages. The replace handler keeps dump() from
// throwing on invalid UTF-8 inside hostile strings.
std::string Show(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Reads config[key] into *out when present; `where` prefixes every message.
absl::Status ReadInt(const json& config, const char* key, int64_t lo, int64_t hi,
                     const std::string& where, int64_t* out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  bool ok = it->is_number_integer();
  if (ok && it->is_number_unsigned()) {
    ok = it->get<uint64_t>() <= static_cast<uint64_t>(hi);
  }
  if (ok) {
    const int64_t v = it->get<int64_t>();
    ok = v >= lo && v <= hi;
    if (ok) *out = v;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "config.", key, ": expected an integer in [", lo, ", ", hi, "], found ", Show(*it)));
  }
  return absl::OkStatus();
}

// Keras accepts either an int n (meaning n×n) or a pair [h, w].
absl::Status ReadPair(const json& config, const char* key, int64_t lo, int64_t hi,
                      const std::string& where, std::array<int64_t, 2>* out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  std::array<int64_t, 2> result{};
  bool ok = true;
  auto read_one = [&](const json& v, int64_t* dst) {
    if (!v.is_number_integer()) return false;
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) return false;
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) return false;
    *dst = x;
    return true;
  };
  if (it->is_array()) {
    ok = it->size() == 2 && read_one((*it)[0], &result[0]) && read_one((*it)[1], &result[1]);
  } else {
    ok = read_one(*it, &result[0]);
    result[1] = result[0];
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(where, "config.", key,
                                                   ": expected an integer in [", lo, ", ", hi,
                                                   "] or a pair of them, found ", Show(*it)));
  }
  *out = result;
  return absl::OkStatus();
}

absl::Status ReadBool(const json& config, const char* key, const std::string& where, bool* out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "config.", key, ": expected true or false, found ", Show(*it)));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadNumber(const json& config, const char* key, double lo, double hi,
                        const std::string& where, double* out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  bool ok = it->is_number();
  if (ok) {
    const double v = it->get<double>();
    ok = std::isfinite(v) && v >= lo && v <= hi;
    if (ok) *out = v;
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "config.", key, ": expected a number in [", lo, ", ", hi, "], found ", Show(*it)));
  }
  return absl::OkStatus();
}

absl::Status ReadString(const json& config, const char* key, const std::string& where,
                        std::string* out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "config.", key, ": expected a string, found ", Show(*it)));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadPadding(const json& config, const std::string& where, KerasPadding* out) {
  std::string padding = "valid";
  if (absl::Status s = ReadString(config, "padding", where, &padding); !s.ok()) return s;
  if (padding == "valid") {
    *out = KerasPadding::kValid;
  } else if (padding == "same") {
    *out = KerasPadding::kSame;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "config.padding: expected \"same\" or \"valid\", found \"", padding, "\""));
  }
  return absl::OkStatus();
}

// Inbound layer names of the first node, for both the Keras 2 format
// [[["conv2d_1", 0, 0, {}], ...]] and the Keras 3 one [{"args": [{"config": {"keras_history":
// ["conv2d_1", 0, 0]}}]}].
absl::Status ReadInbound(const json& layer, const std::string& where,
                         std::vector<std::string>* out) {
  auto it = layer.find("inbound_nodes");
  if (it == layer.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "inbound_nodes: expected an array, found ", Show(*it)));
  }
  if (it->empty()) return absl::OkStatus();
  const json& node = (*it)[0];
  auto bad = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     "inbound_nodes[0]: expected [[layer_name, node, tensor, kwargs], ...] or "
                     "{\"args\": [...]}, found ",
                     Show(node)));
  };
  if (node.is_array()) {
    for (const json& entry : node) {
      if (!entry.is_array() || entry.empty() || !entry[0].is_string()) return bad();
      out->push_back(entry[0].get<std::string>());
    }
    return absl::OkStatus();
  }
  if (node.is_object()) {
    auto args = node.find("args");
    if (args == node.end() || !args->is_array()) return bad();
    for (const json& arg : *args) {
      if (!arg.is_object()) continue;
      auto cfg = arg.find("config");
      if (cfg == arg.end() || !cfg->is_object()) continue;
      auto history = cfg->find("keras_history");
      if (history == cfg->end() || !history->is_array() || history->empty() ||
          !(*history)[0].is_string()) {
        return bad();
      }
      out->push_back((*history)[0].get<std::string>());
    }
    return absl::OkStatus();
  }
  return bad();
}

absl::StatusOr<KerasLayer> ParseLayer(const json& entry, size_t index, const std::string& label) {
  const std::string at_index = absl::StrCat(label, ": modelTopology layer #", index, ": ");
  if (!entry.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(at_index, "expected an object, found ", Show(entry)));
  }
  auto class_it = entry.find("class_name");
  if (class_it == entry.end() || !class_it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(at_index, "missing string \"class_name\""));
  }
  json empty_config = json::object();
  auto config_it = entry.find("config");
  if (config_it != entry.end() && !config_it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(at_index, "\"config\" is not an object: ", Show(*config_it)));
  }
  const json& config = config_it == entry.end() ? empty_config : *config_it;

  KerasLayer layer;
  layer.class_name = class_it->get<std::string>();
  // Keras writes the name beside class_name; some exporters only inside config.
  const json* name = nullptr;
  if (auto it = entry.find("name"); it != entry.end()) {
    name = &*it;
  } else if (auto in_config = config.find("name"); in_config != config.end()) {
    name = &*in_config;
  }
  if (name == nullptr || !name->is_string() || name->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(at_index, "(", layer.class_name, ") has no name"));
  }
  layer.name = name->get<std::string>();
  const std::string where =
      absl::StrCat(label, ": layer '", layer.name, "' (", layer.class_name, "): ");
  if (absl::Status s = ReadInbound(entry, where, &layer.inbound); !s.ok()) return s;
  if (absl::Status s = ReadString(config, "data_format", where, &layer.data_format); !s.ok()) {
    return s;
  }
  if (layer.data_format != "channels_last" && layer.data_format != "channels_first") {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "config.data_format: expected channels_last or channels_first, found \"",
        layer.data_format, "\""));
  }

  absl::Status s;
  if (layer.class_name == "Conv2D") {
    layer.filters = 0;
    if (s = ReadInt(config, "filters", 1, kMaxFilters, where, &layer.filters); !s.ok()) return s;
    if (layer.filters == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, "config.filters is missing"));
    }
    if (s = ReadPair(config, "kernel_size", 1, kMaxWindow, where, &layer.kernel_size); !s.ok()) {
      return s;
    }
    if (layer.kernel_size[0] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, "config.kernel_size is missing"));
    }
    if (s = ReadPair(config, "strides", 1, kMaxWindow, where, &layer.strides); !s.ok()) return s;
    if (s = ReadPair(config, "dilation_rate", 1, kMaxWindow, where, &layer.dilation_rate);
        !s.ok()) {
      return s;
    }
    if (s = ReadPadding(config, where, &layer.padding); !s.ok()) return s;
    if (s = ReadBool(config, "use_bias", where, &layer.use_bias); !s.ok()) return s;
    if (s = ReadString(config, "activation", where, &layer.activation); !s.ok()) return s;
  } else if (layer.class_name == "MaxPooling2D") {
    layer.pool_size = {2, 2};  // Keras' default.
    if (s = ReadPair(config, "pool_size", 1, kMaxWindow, where, &layer.pool_size); !s.ok()) {
      return s;
    }
    layer.strides = layer.pool_size;  // Keras: strides=None means strides = pool_size.
    if (s = ReadPair(config, "strides", 1, kMaxWindow, where, &layer.strides); !s.ok()) return s;
    if (s = ReadPadding(config, where, &layer.padding); !s.ok()) return s;
  } else if (layer.class_name == "LeakyReLU") {
    // Keras 3 renamed alpha to negative_slope.
    if (s = ReadNumber(config, "alpha", -1e6, 1e6, where, &layer.alpha); !s.ok()) return s;
    if (s = ReadNumber(config, "negative_slope", -1e6, 1e6, where, &layer.alpha); !s.ok()) {
      return s;
    }
  } else if (layer.class_name == "BatchNormalization") {
    auto axis = config.find("axis");
    if (axis != config.end() && axis->is_array()) {
      // Keras sometimes writes the axis as a one-element list.
      if (axis->size() != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "config.axis: expected one axis, found ", Show(*axis)));
      }
      json wrapped = {{"axis", (*axis)[0]}};
      if (s = ReadInt(wrapped, "axis", -8, 8, where, &layer.axis); !s.ok()) return s;
    } else if (s = ReadInt(config, "axis", -8, 8, where, &layer.axis); !s.ok()) {
      return s;
    }
    if (s = ReadNumber(config, "epsilon", 0.0, 1.0, where, &layer.epsilon); !s.ok()) return s;
    if (s = ReadBool(config, "center", where, &layer.center); !s.ok()) return s;
    if (s = ReadBool(config, "scale", where, &layer.scale); !s.ok()) return s;
  }
  return layer;
}

// The layer array inside modelTopology, accepting the Keras-converter layout
// ({model_config: {class_name, config}}) and the tfjs-saved one ({class_name, config}), for
// functional models (config.layers) and Sequential ones (config as the list, or config.layers).
absl::StatusOr<const json*> FindLayerArray(const json& root, const std::string& label,
                                           bool* sequential) {
  auto topo = root.find("modelTopology");
  if (topo == root.end() || !topo->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": missing object \"modelTopology\" (is this a TF.js layers model?)"));
  }
  const json* model = &*topo;
  auto model_config = topo->find("model_config");
  if (model_config != topo->end()) model = &*model_config;
  if (!model->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": modelTopology.model_config is not an object"));
  }
  auto class_it = model->find("class_name");
  auto config_it = model->find("config");
  if (class_it == model->end() || !class_it->is_string() || config_it == model->end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": modelTopology has no model class_name/config"));
  }
  *sequential = class_it->get<std::string>() == "Sequential";
  if (config_it->is_array()) return &*config_it;
  if (config_it->is_object()) {
    auto layers = config_it->find("layers");
    if (layers != config_it->end() && layers->is_array()) return &*layers;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(label, ": modelTopology's model config has no \"layers\" array"));
}

// A shard path must stay inside the model directory.
bool IsSafeRelativePath(const std::string& path) {
  if (path.empty() || path.front() == '/' || path.find('\\') != std::string::npos) return false;
  for (const auto& part : fs::path(path)) {
    if (part == "..") return false;
  }
  return true;
}

struct PendingWeight {
  std::string name;
  std::vector<int64_t> shape;
  int64_t elements = 0;
};

absl::StatusOr<std::vector<int64_t>> ParseShape(const json& shape, const std::string& where,
                                                int64_t* elements) {
  if (!shape.is_array() || shape.size() > static_cast<size_t>(kTfjsMaxRank)) {
    return absl::InvalidArgumentError(absl::StrCat(where, "shape: expected an array of at most ",
                                                   kTfjsMaxRank, " dimensions, found ",
                                                   Show(shape)));
  }
  std::vector<int64_t> dims;
  int64_t count = 1;
  for (const json& d : shape) {
    bool ok = d.is_number_integer() &&
              !(d.is_number_unsigned() &&
                d.get<uint64_t>() > static_cast<uint64_t>(kTfjsMaxTensorElements));
    const int64_t v = ok ? d.get<int64_t>() : 0;
    // Dividing first keeps the running product from overflowing.
    ok = ok && v >= 1 && v <= kTfjsMaxTensorElements / count;
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(where, "shape ", Show(shape),
                                                     ": expected positive dimensions with at most ",
                                                     kTfjsMaxTensorElements, " elements in all"));
    }
    count *= v;
    dims.push_back(v);
  }
  *elements = count;
  return dims;
}

absl::Status CheckShape(const TfjsModel& model, const KerasLayer& layer, const std::string& label,
                        const std::string& suffix, const std::vector<int64_t>& expected,
                        int wildcard_dim) {
  const std::string name = absl::StrCat(layer.name, "/", suffix);
  const TfjsTensor* t = model.FindWeight(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": layer '", layer.name, "' (",
                                                   layer.class_name, ") needs weight '", name,
                                                   "', which the weightsManifest does not list"));
  }
  bool ok = t->shape.size() == expected.size();
  for (size_t i = 0; ok && i < expected.size(); ++i) {
    ok = static_cast<int>(i) == wildcard_dim || t->shape[i] == expected[i];
  }
  if (!ok) {
    std::vector<std::string> want;
    for (size_t i = 0; i < expected.size(); ++i) {
      want.push_back(static_cast<int>(i) == wildcard_dim ? "?" : absl::StrCat(expected[i]));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        label, ": weight '", name, "' of layer '", layer.name, "' (", layer.class_name,
        "): expected shape [", absl::StrJoin(want, ","), "], found ", ShapeString(t->shape)));
  }
  return absl::OkStatus();
}

// Every layer class whose weights we know must have them all, with consistent shapes.
absl::Status CheckLayerWeights(const TfjsModel& model, const std::string& label) {
  for (const KerasLayer& layer : model.layers) {
    absl::Status s;
    if (layer.class_name == "Conv2D") {
      s = CheckShape(model, layer, label, "kernel",
                     {layer.kernel_size[0], layer.kernel_size[1], 0, layer.filters}, 2);
      if (s.ok() && layer.use_bias)
        s = CheckShape(model, layer, label, "bias", {layer.filters}, -1);
    } else if (layer.class_name == "BatchNormalization") {
      const TfjsTensor* mean = model.FindWeight(layer.name + "/moving_mean");
      const int64_t channels = mean != nullptr && mean->shape.size() == 1 ? mean->shape[0] : 0;
      s = CheckShape(model, layer, label, "moving_mean", {channels}, 0);
      if (s.ok()) s = CheckShape(model, layer, label, "moving_variance", {channels}, -1);
      if (s.ok() && layer.scale) s = CheckShape(model, layer, label, "gamma", {channels}, -1);
      if (s.ok() && layer.center) s = CheckShape(model, layer, label, "beta", {channels}, -1);
      if (s.ok()) {
        const std::vector<float>& var = model.FindWeight(layer.name + "/moving_variance")->values;
        for (size_t i = 0; i < var.size(); ++i) {
          if (var[i] < 0.f) {
            return absl::InvalidArgumentError(
                absl::StrCat(label, ": weight '", layer.name, "/moving_variance' element ", i,
                             ": expected a variance >= 0, found ", var[i]));
          }
        }
      }
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Reads one weight group's shards (a group may be split over several files; its tensors are laid
// out contiguously over their concatenation) and slices it into tensors.
absl::Status LoadGroup(const std::string& directory, size_t group_index,
                       const TfjsWeightGroup& group, std::vector<PendingWeight>& pending,
                       const std::string& label, TfjsModel* model) {
  int64_t expected_bytes = 0;
  std::vector<std::string> tensor_list;
  for (const PendingWeight& w : pending) {
    expected_bytes += w.elements * static_cast<int64_t>(sizeof(float));
    tensor_list.push_back(absl::StrCat(w.name, " ", ShapeString(w.shape)));
  }
  const std::string group_name = absl::StrCat(label, ": weightsManifest[", group_index, "]", " (",
                                              absl::StrJoin(group.paths, ", "), ")");
  std::vector<fs::path> files;
  int64_t found_bytes = 0;
  for (const std::string& p : group.paths) {
    fs::path file = fs::path(directory) / p;
    std::error_code ec;
    const bool regular = fs::is_regular_file(file, ec);
    if (ec || !regular) {
      return absl::NotFoundError(absl::StrCat(group_name, ": shard file ", file.string(),
                                              " does not exist or is not a regular file"));
    }
    const uintmax_t size = fs::file_size(file, ec);
    if (ec) {
      return absl::NotFoundError(
          absl::StrCat(group_name, ": cannot stat ", file.string(), ": ", ec.message()));
    }
    if (size > static_cast<uintmax_t>(kTfjsMaxTotalElements) * sizeof(float)) {
      return absl::DataLossError(absl::StrCat(group_name, ": shard file ", file.string(), " has ",
                                              size, " bytes; its tensors need ", expected_bytes));
    }
    found_bytes += static_cast<int64_t>(size);
    files.push_back(std::move(file));
  }
  if (found_bytes != expected_bytes) {
    return absl::DataLossError(
        absl::StrCat(group_name, ": the shard files hold ", found_bytes,
                     " bytes, but the manifest's tensors (", absl::StrJoin(tensor_list, ", "),
                     ") need ", expected_bytes, " bytes of float32 (truncated or wrong shard?)"));
  }

  std::vector<char> bytes(static_cast<size_t>(expected_bytes));
  size_t offset = 0;
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::error_code ec;
    const auto size = static_cast<std::streamsize>(fs::file_size(file, ec));
    if (!in || ec || (size > 0 && !in.read(bytes.data() + offset, size)) || in.gcount() != size) {
      return absl::DataLossError(
          absl::StrCat(group_name, ": could not read ", size, " bytes from ", file.string()));
    }
    offset += static_cast<size_t>(size);
  }

  offset = 0;
  for (PendingWeight& w : pending) {
    TfjsTensor tensor;
    tensor.shape = std::move(w.shape);
    tensor.values.resize(static_cast<size_t>(w.elements));
    std::memcpy(tensor.values.data(), bytes.data() + offset, tensor.values.size() * sizeof(float));
    offset += tensor.values.size() * sizeof(float);
    for (size_t i = 0; i < tensor.values.size(); ++i) {
      if (!std::isfinite(tensor.values[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat(group_name, ": tensor '", w.name, "' element ", i,
                         ": expected a finite float32, found ", tensor.values[i]));
      }
    }
    model->weights.emplace(w.name, std::move(tensor));
  }
  return absl::OkStatus();
}

absl::Status ParseWeights(const json& root, const std::string& directory, const std::string& label,
                          TfjsModel* model) {
  auto manifest = root.find("weightsManifest");
  if (manifest == root.end() || !manifest->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": missing array \"weightsManifest\""));
  }
  // Validate the whole manifest (names, dtypes, shapes, total size) before reading any shard, so
  // nothing is allocated for a manifest that will be rejected anyway.
  std::vector<std::vector<PendingWeight>> pending(manifest->size());
  std::set<std::string> names;
  int64_t total_elements = 0;
  for (size_t g = 0; g < manifest->size(); ++g) {
    const json& group = (*manifest)[g];
    const std::string where = absl::StrCat(label, ": weightsManifest[", g, "]: ");
    if (!group.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "expected an object"));
    }
    auto paths = group.find("paths");
    auto weights = group.find("weights");
    if (paths == group.end() || !paths->is_array() || paths->empty() || weights == group.end() ||
        !weights->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expected non-empty \"paths\" and a \"weights\" array"));
    }
    TfjsWeightGroup parsed;
    for (const json& p : *paths) {
      if (!p.is_string() || !IsSafeRelativePath(p.get<std::string>())) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "path ", Show(p), ": expected a relative file name inside ", directory));
      }
      parsed.paths.push_back(p.get<std::string>());
    }
    for (const json& w : *weights) {
      if (!w.is_object() || !w.contains("name") || !w["name"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "weight entry without a string name: ", Show(w)));
      }
      PendingWeight pw;
      pw.name = w["name"].get<std::string>();
      const std::string at =
          absl::StrCat(where, "tensor '", pw.name, "' (", absl::StrJoin(parsed.paths, ", "), "): ");
      auto dtype = w.find("dtype");
      if (dtype == w.end() || !dtype->is_string() || dtype->get<std::string>() != "float32") {
        return absl::InvalidArgumentError(absl::StrCat(at, "dtype: expected \"float32\", found ",
                                                       dtype == w.end() ? "none" : Show(*dtype)));
      }
      if (w.contains("quantization")) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, "quantised weights are not supported (expected plain float32)"));
      }
      auto shape = w.find("shape");
      if (shape == w.end()) {
        return absl::InvalidArgumentError(absl::StrCat(at, "missing \"shape\""));
      }
      MUSC_ASSIGN_OR_RETURN(std::vector<int64_t> dims, ParseShape(*shape, at, &pw.elements));
      pw.shape = std::move(dims);
      if (pw.elements > kTfjsMaxTotalElements - total_elements) {
        return absl::InvalidArgumentError(absl::StrCat(at, "the model's tensors exceed ",
                                                       kTfjsMaxTotalElements, " elements in all"));
      }
      total_elements += pw.elements;
      if (!names.insert(pw.name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, "the name appears more than once in the weightsManifest"));
      }
      parsed.weight_names.push_back(pw.name);
      pending[g].push_back(std::move(pw));
    }
    model->groups.push_back(std::move(parsed));
  }
  for (size_t g = 0; g < pending.size(); ++g) {
    if (absl::Status s = LoadGroup(directory, g, model->groups[g], pending[g], label, model);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const TfjsTensor* TfjsModel::FindWeight(std::string_view name) const {
  auto it = weights.find(std::string(name));
  return it == weights.end() ? nullptr : &it->second;
}

int64_t TfjsModel::total_parameters() const {
  int64_t total = 0;
  for (const auto& [name, tensor] : weights) total += static_cast<int64_t>(tensor.values.size());
  return total;
}

absl::StatusOr<TfjsModel> ParseTfjsModel(std::string_view model_json, const std::string& directory,
                                         const std::string& json_label) {
  // Before the parse: Show() renders values recursively, and a 60 KB model.json nested 30000 deep
  // overflowed the stack under ASan (found with fuzz/fuzz_tfjs_manifest.cc).
  if (JsonNestingDepth(model_json, kTfjsMaxJsonDepth) > kTfjsMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(json_label, ": JSON nested deeper than ", kTfjsMaxJsonDepth, " levels"));
  }
  const json root = json::parse(model_json.begin(), model_json.end(), /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(json_label, ": not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(json_label, ": expected a JSON object at the top level"));
  }
  TfjsModel model;
  model.directory = directory;

  bool sequential = false;
  MUSC_ASSIGN_OR_RETURN(const json* layers, FindLayerArray(root, json_label, &sequential));
  std::set<std::string> layer_names;
  for (size_t i = 0; i < layers->size(); ++i) {
    MUSC_ASSIGN_OR_RETURN(KerasLayer layer, ParseLayer((*layers)[i], i, json_label));
    if (!layer_names.insert(layer.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(json_label, ": layer name '", layer.name, "' appears twice"));
    }
    if (sequential && layer.inbound.empty() && !model.layers.empty()) {
      layer.inbound.push_back(model.layers.back().name);
    }
    model.layers.push_back(std::move(layer));
  }

  if (absl::Status s = ParseWeights(root, directory, json_label, &model); !s.ok()) return s;
  if (absl::Status s = CheckLayerWeights(model, json_label); !s.ok()) return s;
  return model;
}

absl::StatusOr<TfjsModel> LoadTfjsModel(const std::string& directory) {
  std::error_code ec;
  if (!fs::is_directory(directory, ec)) {
    return absl::NotFoundError(
        absl::StrCat("TF.js model directory ", directory, " does not exist or is not a directory"));
  }
  const fs::path json_path = fs::path(directory) / "model.json";
  const std::string label = json_path.string();
  if (!fs::is_regular_file(json_path, ec)) {
    return absl::NotFoundError(absl::StrCat(label, " does not exist"));
  }
  const uintmax_t size = fs::file_size(json_path, ec);
  if (ec || size > static_cast<uintmax_t>(kTfjsMaxModelJsonBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": expected at most ", kTfjsMaxModelJsonBytes, " bytes, found ",
                     ec ? std::string("unreadable size") : absl::StrCat(size)));
  }
  std::string text(static_cast<size_t>(size), '\0');
  std::ifstream in(json_path, std::ios::binary);
  if (!in || (size > 0 && !in.read(text.data(), static_cast<std::streamsize>(size)))) {
    return absl::NotFoundError(absl::StrCat(label, ": could not be read"));
  }
  return ParseTfjsModel(text, directory, label);
}

}  // namespace musc
