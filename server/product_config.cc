#include "server/product_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "core/musc_engine.h"
#include "server/yaml_keys.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<v1::MapEncoding> ParseEncoding(const std::string& text, const std::string& where) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "png8") return v1::PNG8;
  if (t == "png16") return v1::PNG16;
  if (t == "float16") return v1::FLOAT16;
  if (t == "none") return v1::MAP_NONE;
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": map encoding '", text, "' is not one of png8, png16, float16, none"));
}

absl::Status ParseThreshold(const YAML::Node& node, const std::string& where,
                            ThresholdConfig* out) {
  if (absl::Status s = CheckKeys(node, {"policy", "threshold", "k", "expected_defect_rate"}, where);
      !s.ok()) {
    return s;
  }
  const std::string policy = node["policy"] ? node["policy"].as<std::string>() : "none";
  if (policy == "none") {
    out->kind = ThresholdKind::kNone;
  } else if (policy == "fixed") {
    out->kind = ThresholdKind::kFixed;
    if (!node["threshold"]) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": policy fixed needs 'threshold'"));
    }
  } else if (policy == "robust") {
    out->kind = ThresholdKind::kRobust;
  } else if (policy == "quantile") {
    out->kind = ThresholdKind::kQuantile;
    if (!node["expected_defect_rate"]) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": policy quantile needs 'expected_defect_rate'"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".policy: '", policy, "' is not one of none, fixed, robust, quantile"));
  }
  if (node["threshold"]) out->threshold = node["threshold"].as<double>();
  if (node["k"]) out->k = node["k"].as<double>();
  if (node["expected_defect_rate"]) {
    out->expected_defect_rate = node["expected_defect_rate"].as<double>();
  }
  return absl::OkStatus();
}

absl::Status ParseDecision(const YAML::Node& node, const std::string& where, DecisionConfig* out) {
  if (absl::Status s =
          CheckKeys(node, {"image", "mask", "window", "min_scores", "alarm_fraction"}, where);
      !s.ok()) {
    return s;
  }
  if (node["image"]) {
    if (absl::Status s = ParseThreshold(node["image"], where + ".image", &out->image); !s.ok()) {
      return s;
    }
  }
  if (node["mask"]) {
    if (absl::Status s = ParseThreshold(node["mask"], where + ".mask", &out->mask); !s.ok()) {
      return s;
    }
  }
  if (node["window"]) out->window = node["window"].as<size_t>();
  if (node["min_scores"]) out->min_scores = node["min_scores"].as<size_t>();
  if (node["alarm_fraction"]) out->alarm_fraction = node["alarm_fraction"].as<double>();
  if (absl::Status s = ValidateDecisionConfig(*out); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ProductConfig> ParseProduct(const YAML::Node& node, const std::string& where,
                                           const std::string& base_dir) {
  if (absl::Status s = CheckKeys(
          node, {"name", "description", "backbone", "scoring", "batch", "maps", "line", "decision"},
          where);
      !s.ok()) {
    return s;
  }
  ProductConfig p;
  if (!node["name"]) return absl::InvalidArgumentError(absl::StrCat(where, ": missing 'name'"));
  p.name = node["name"].as<std::string>();
  const std::string at = absl::StrCat(where, " (", p.name, ")");
  // The name is also a metric label, the value of the x-musc-product routing header and the
  // prefix of session ids ("<product>:<hex>"): keep it to characters that are safe in all three.
  if (p.name.empty() || p.name.size() > 128 ||
      !std::all_of(p.name.begin(), p.name.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
               c == '-';
      })) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": name '", p.name, "' must be 1..128 characters of A-Z a-z 0-9 . _ -"));
  }
  if (node["description"]) p.description = node["description"].as<std::string>();

  const YAML::Node backbone = node["backbone"] ? node["backbone"] : YAML::Node(YAML::NodeType::Map);
  if (absl::Status s = CheckKeys(backbone, {"model", "weights", "input_size", "layers", "seed"},
                                 at + ".backbone");
      !s.ok()) {
    return s;
  }
  // The paper's default backbone unless the product names one.
  p.backbone.model =
      backbone["model"] ? backbone["model"].as<std::string>() : DefaultBackboneModel();
  const std::vector<std::string> known = KnownBackboneModels();
  if (std::find(known.begin(), known.end(), p.backbone.model) == known.end()) {
    return absl::InvalidArgumentError(absl::StrCat(at, ".backbone.model: unknown model '",
                                                   p.backbone.model,
                                                   "' (known: ", absl::StrJoin(known, ", "), ")"));
  }
  if (backbone["weights"]) {
    fs::path weights = backbone["weights"].as<std::string>();
    if (weights.is_relative()) weights = fs::path(base_dir) / weights;
    p.backbone.weights_path = weights.lexically_normal().string();
  }
  if (backbone["input_size"]) p.backbone.input_size = backbone["input_size"].as<int64_t>();
  if (backbone["layers"]) p.backbone.layers = backbone["layers"].as<std::vector<int64_t>>();
  if (backbone["seed"]) p.backbone.seed = backbone["seed"].as<uint64_t>();

  if (const YAML::Node scoring = node["scoring"]) {
    if (absl::Status s = CheckKeys(scoring,
                                   {"degrees", "interval", "rscin_windows", "block_budget_mib",
                                    "approximate_neighbours", "token_dtype", "gemm_dtype"},
                                   at + ".scoring");
        !s.ok()) {
      return s;
    }
    if (scoring["degrees"]) p.scoring.degrees = scoring["degrees"].as<std::vector<int64_t>>();
    if (scoring["interval"]) {
      const auto interval = scoring["interval"].as<std::vector<double>>();
      if (interval.size() != 2) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ".scoring.interval: expected [low, high]"));
      }
      p.scoring.interval_low = interval[0];
      p.scoring.interval_high = interval[1];
    }
    if (scoring["rscin_windows"]) {
      p.scoring.rscin_windows = scoring["rscin_windows"].as<std::vector<int64_t>>();
    }
    if (scoring["block_budget_mib"]) {
      // Bounded before the shift: shifting a negative or huge value is undefined behaviour.
      const int64_t mib = scoring["block_budget_mib"].as<int64_t>();
      if (mib < 1 || mib > (int64_t{1} << 20)) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ".scoring.block_budget_mib: ", mib, " is not in 1..1048576"));
      }
      p.scoring.block_budget_bytes = mib << 20;
    }
    if (scoring["approximate_neighbours"]) {
      p.scoring.approximate_neighbours = scoring["approximate_neighbours"].as<int64_t>();
    }
    // Named types, refused with the message validation gave when they were strings:
    // "products[0].scoring: token_dtype 'int8' is invalid: expected fp32, bf16 or fp16".
    const auto parse_type = [&](const char* key, NumericType& field) -> absl::Status {
      if (!scoring[key]) return absl::OkStatus();
      absl::StatusOr<NumericType> type = ParseNumericType(scoring[key].as<std::string>());
      if (!type.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ".scoring: ", key, " ", type.status().message()));
      }
      field = *type;
      return absl::OkStatus();
    };
    MUSC_RETURN_IF_ERROR(parse_type("token_dtype", p.scoring.token_dtype));
    MUSC_RETURN_IF_ERROR(parse_type("gemm_dtype", p.scoring.gemm_dtype));
  }
  if (absl::Status s = ValidateScoringOptions(p.scoring); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(at, ".scoring: ", s.message()));
  }

  if (const YAML::Node batch = node["batch"]) {
    if (absl::Status s = CheckKeys(batch, {"min_images", "max_images", "auto_seal"}, at + ".batch");
        !s.ok()) {
      return s;
    }
    if (batch["min_images"]) p.min_images = batch["min_images"].as<uint32_t>();
    if (batch["max_images"]) p.max_images = batch["max_images"].as<uint32_t>();
    if (const YAML::Node seal = batch["auto_seal"]) {
      if (absl::Status s = CheckKeys(seal, {"at_count", "idle_seconds"}, at + ".batch.auto_seal");
          !s.ok()) {
        return s;
      }
      if (seal["at_count"]) p.auto_seal.at_count = seal["at_count"].as<uint32_t>();
      if (seal["idle_seconds"]) p.auto_seal.idle_seconds = seal["idle_seconds"].as<double>();
    }
  }
  if (p.min_images < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        at, ".batch.min_images: MuSc compares images with each other; the minimum is 2"));
  }
  if (p.max_images < p.min_images) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".batch: max_images ", p.max_images, " < min_images ", p.min_images));
  }
  if (!(p.auto_seal.idle_seconds >= 0)) {  // Also refuses NaN, which fails every comparison.
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".batch.auto_seal.idle_seconds must be a number >= 0"));
  }

  if (const YAML::Node maps = node["maps"]) {
    if (absl::Status s = CheckKeys(maps, {"encoding", "mask_threshold"}, at + ".maps"); !s.ok()) {
      return s;
    }
    if (maps["encoding"]) {
      MUSC_ASSIGN_OR_RETURN(v1::MapEncoding e, ParseEncoding(maps["encoding"].as<std::string>(),
                                                             at + ".maps.encoding"));
      p.map_encoding = e;
    }
    if (maps["mask_threshold"]) p.mask_threshold = maps["mask_threshold"].as<float>();
  }

  if (const YAML::Node decision = node["decision"]) {
    if (absl::Status s = ParseDecision(decision, at + ".decision", &p.decision); !s.ok()) return s;
  }
  if (const YAML::Node line = node["line"]) {
    if (absl::Status s =
            CheckKeys(line, {"bank_size", "warmup_images", "admit_anomalous"}, at + ".line");
        !s.ok()) {
      return s;
    }
    LineModeConfig l;
    if (line["bank_size"]) l.bank_size = line["bank_size"].as<uint32_t>();
    if (line["warmup_images"]) l.warmup_images = line["warmup_images"].as<uint32_t>();
    if (line["admit_anomalous"]) l.admit_anomalous = line["admit_anomalous"].as<bool>();
    if (l.bank_size < 2 || l.bank_size > 4096) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".line.bank_size must be 2..4096"));
    }
    if (l.warmup_images < 2 || l.warmup_images > l.bank_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".line.warmup_images must be 2..bank_size (", l.bank_size, ")"));
    }
    if (!l.admit_anomalous && p.decision.image.kind == ThresholdKind::kNone) {
      return absl::InvalidArgumentError(absl::StrCat(
          at, ".line.admit_anomalous: false needs a decision policy to judge parts anomalous"));
    }
    p.line = l;
  }
  return p;
}

}  // namespace

absl::StatusOr<std::vector<ProductConfig>> ParseProducts(const std::string& yaml_text,
                                                         const std::string& source_name,
                                                         const std::string& base_dir) {
  try {
    const YAML::Node root = YAML::Load(yaml_text);
    if (absl::Status s = CheckKeys(root, {"products"}, source_name); !s.ok()) return s;
    const YAML::Node list = root["products"];
    if (!list || !list.IsSequence() || list.size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_name, ": 'products' must be a non-empty list"));
    }
    std::vector<ProductConfig> products;
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      MUSC_ASSIGN_OR_RETURN(
          ProductConfig p,
          ParseProduct(list[i], absl::StrCat(source_name, ": products[", i, "]"), base_dir));
      if (!names.insert(p.name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(source_name, ": product '", p.name, "' is defined twice"));
      }
      products.push_back(std::move(p));
    }
    return products;
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports syntax and type-conversion errors by exception, with line and column.
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
}

absl::StatusOr<std::vector<ProductConfig>> LoadProductsFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open products file ", path));
  std::stringstream text;
  text << in.rdbuf();
  const std::string base = fs::absolute(path).parent_path().string();
  return ParseProducts(text.str(), path, base);
}

void ProductToProto(const ProductConfig& p, v1::Product* out) {
  out->set_name(p.name);
  out->set_description(p.description);
  v1::BackboneConfig* b = out->mutable_backbone();
  b->set_model(p.backbone.model);
  b->set_input_size(static_cast<int32_t>(p.backbone.input_size));
  for (int64_t l : p.backbone.layers) b->add_layers(static_cast<int32_t>(l));
  v1::ScoringConfig* s = out->mutable_scoring();
  for (int64_t r : p.scoring.degrees) s->add_degrees(static_cast<int32_t>(r));
  s->set_interval_low(p.scoring.interval_low);
  s->set_interval_high(p.scoring.interval_high);
  for (int64_t k : p.scoring.rscin_windows) s->add_rscin_windows(static_cast<int32_t>(k));
  s->set_block_budget_mib(p.scoring.block_budget_bytes >> 20);
  s->set_approximate_neighbours(static_cast<uint32_t>(p.scoring.approximate_neighbours));
  s->set_token_dtype(NumericTypeName(p.scoring.token_dtype));
  s->set_gemm_dtype(NumericTypeName(p.scoring.gemm_dtype));
  v1::BatchPolicy* batch = out->mutable_batch();
  batch->set_min_images(p.min_images);
  batch->set_max_images(p.max_images);
  batch->mutable_auto_seal()->set_at_count(p.auto_seal.at_count);
  batch->mutable_auto_seal()->set_idle_seconds(p.auto_seal.idle_seconds);
  out->mutable_default_map_options()->set_encoding(p.map_encoding);
  if (p.mask_threshold) out->mutable_default_map_options()->set_mask_threshold(*p.mask_threshold);
  if (p.line) {
    out->mutable_line()->set_bank_size(p.line->bank_size);
    out->mutable_line()->set_warmup_images(p.line->warmup_images);
    out->mutable_line()->set_admit_anomalous(p.line->admit_anomalous);
  }
  out->set_decision_policy(ThresholdKindName(p.decision.image.kind));
}

}  // namespace musc
