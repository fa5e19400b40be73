#include "core/backbones/vit_weight_names.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"

namespace musc {
namespace {

using Shape = std::vector<int64_t>;

// How one canonical tensor is stored in a checkpoint.
struct Source {
  enum Op {
    kCopy,       // One tensor, same shape.
    kConcat,     // Several tensors concatenated along dim 0 (HF's separate q, k, v).
    kTranspose,  // One 2-D tensor, transposed (HF's visual_projection).
  };
  Op op = kCopy;
  std::vector<std::string> names;
};

struct Mapping {
  std::string canonical;
  Shape shape;  // Canonical shape.
  Source source;
};

bool ConsumePrefix(absl::string_view* s, absl::string_view prefix) {
  if (!absl::StartsWith(*s, prefix)) return false;
  s->remove_prefix(prefix.size());
  return true;
}

// Splits "N.rest" into N and rest.
bool SplitBlock(absl::string_view s, std::string* index, absl::string_view* rest) {
  const size_t dot = s.find('.');
  if (dot == absl::string_view::npos) return false;
  *index = std::string(s.substr(0, dot));
  *rest = s.substr(dot + 1);
  return true;
}

Source Copy(std::string name) { return {Source::kCopy, {std::move(name)}}; }

Source QkvSplit(const std::string& base, const char* const (&parts)[3], const std::string& leaf) {
  Source s{Source::kConcat, {}};
  for (const char* p : parts) s.names.push_back(base + p + leaf);
  return s;
}

Source HfClipSource(const std::string& canonical) {
  static const std::string kEmb = "vision_model.embeddings.";
  if (canonical == "conv1.weight") return Copy(kEmb + "patch_embedding.weight");
  if (canonical == "class_embedding") return Copy(kEmb + "class_embedding");
  if (canonical == "positional_embedding") return Copy(kEmb + "position_embedding.weight");
  if (canonical == "proj") return {Source::kTranspose, {"visual_projection.weight"}};
  absl::string_view rest = canonical;
  if (ConsumePrefix(&rest, "ln_pre."))
    return Copy(absl::StrCat("vision_model.pre_layrnorm.", rest));
  if (ConsumePrefix(&rest, "ln_post.")) {
    return Copy(absl::StrCat("vision_model.post_layernorm.", rest));
  }
  std::string index;
  absl::string_view leaf;
  if (ConsumePrefix(&rest, "transformer.resblocks.") && SplitBlock(rest, &index, &leaf)) {
    const std::string base = "vision_model.encoder.layers." + index + ".";
    static const char* const kQkv[3] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
    if (leaf == "attn.in_proj_weight") return QkvSplit(base, kQkv, ".weight");
    if (leaf == "attn.in_proj_bias") return QkvSplit(base, kQkv, ".bias");
    if (ConsumePrefix(&leaf, "attn.out_proj."))
      return Copy(absl::StrCat(base, "self_attn.out_proj.", leaf));
    if (ConsumePrefix(&leaf, "ln_1.")) return Copy(absl::StrCat(base, "layer_norm1.", leaf));
    if (ConsumePrefix(&leaf, "ln_2.")) return Copy(absl::StrCat(base, "layer_norm2.", leaf));
    if (ConsumePrefix(&leaf, "mlp.c_fc.")) return Copy(absl::StrCat(base, "mlp.fc1.", leaf));
    if (ConsumePrefix(&leaf, "mlp.c_proj.")) return Copy(absl::StrCat(base, "mlp.fc2.", leaf));
  }
  TORCH_CHECK(false, "no Hugging Face CLIP name for '", canonical, "'");
}

Source HfDinoV2Source(const std::string& canonical) {
  if (canonical == "cls_token") return Copy("embeddings.cls_token");
  if (canonical == "pos_embed") return Copy("embeddings.position_embeddings");
  absl::string_view rest = canonical;
  if (ConsumePrefix(&rest, "patch_embed.proj.")) {
    return Copy(absl::StrCat("embeddings.patch_embeddings.projection.", rest));
  }
  if (ConsumePrefix(&rest, "norm.")) return Copy(absl::StrCat("layernorm.", rest));
  std::string index;
  absl::string_view leaf;
  if (ConsumePrefix(&rest, "blocks.") && SplitBlock(rest, &index, &leaf)) {
    const std::string base = "encoder.layer." + index + ".";
    static const char* const kQkv[3] = {"attention.attention.query", "attention.attention.key",
                                        "attention.attention.value"};
    if (leaf == "attn.qkv.weight") return QkvSplit(base, kQkv, ".weight");
    if (leaf == "attn.qkv.bias") return QkvSplit(base, kQkv, ".bias");
    if (ConsumePrefix(&leaf, "attn.proj."))
      return Copy(absl::StrCat(base, "attention.output.dense.", leaf));
    if (leaf == "ls1.gamma") return Copy(base + "layer_scale1.lambda1");
    if (leaf == "ls2.gamma") return Copy(base + "layer_scale2.lambda1");
    // norm1, norm2, mlp.fc1 and mlp.fc2 keep their leaf names.
    return Copy(absl::StrCat(base, leaf));
  }
  TORCH_CHECK(false, "no Hugging Face DINOv2 name for '", canonical, "'");
}

bool NamingFits(VitFamily family, VitWeightNaming naming) {
  const std::vector<VitWeightNaming> ok = NamingsOf(family);
  return std::find(ok.begin(), ok.end(), naming) != ok.end();
}

std::vector<Mapping> MappingsOf(const VitConfig& config, VitWeightNaming naming) {
  TORCH_CHECK(NamingFits(config.family, naming), "a ", VitFamilyName(config.family),
              " model has no checkpoints in the ", VitWeightNamingName(naming), " naming");
  std::vector<Mapping> out;
  for (auto& [canonical, shape] : ExpectedVitParameters(config)) {
    Source source;
    switch (naming) {
      case VitWeightNaming::kOpenAiClip:
        source = Copy("visual." + canonical);
        break;
      case VitWeightNaming::kHfClip:
        source = HfClipSource(canonical);
        break;
      case VitWeightNaming::kDino:
      case VitWeightNaming::kDinoV2:
        source = Copy(canonical);
        break;
      case VitWeightNaming::kHfDinoV2:
        source = HfDinoV2Source(canonical);
        break;
    }
    out.push_back({canonical, shape, std::move(source)});
  }
  return out;
}

// Tensors real checkpoints hold next to the vision tower's parameters, though the tower never
// reads them. DINOv2 registers mask_token (for masked training) in the backbone itself.
std::vector<std::pair<std::string, Shape>> UnusedTowerTensors(const VitConfig& config,
                                                              VitWeightNaming naming) {
  if (naming == VitWeightNaming::kDinoV2) return {{"mask_token", {1, config.width}}};
  if (naming == VitWeightNaming::kHfDinoV2) return {{"embeddings.mask_token", {1, config.width}}};
  return {};
}

std::vector<Shape> SourceShapes(const Mapping& m) {
  switch (m.source.op) {
    case Source::kCopy:
      return {m.shape};
    case Source::kTranspose:
      return {{m.shape[1], m.shape[0]}};
    case Source::kConcat: {
      Shape part = m.shape;
      part[0] /= static_cast<int64_t>(m.source.names.size());
      return std::vector<Shape>(m.source.names.size(), part);
    }
  }
  return {};
}

std::string ShapeString(at::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

// The patch-embedding weight's name in each naming: present in every checkpoint, unique to it.
const char* MarkerOf(VitWeightNaming naming) {
  switch (naming) {
    case VitWeightNaming::kOpenAiClip:
      return "visual.conv1.weight";
    case VitWeightNaming::kHfClip:
      return "vision_model.embeddings.patch_embedding.weight";
    case VitWeightNaming::kDino:
    case VitWeightNaming::kDinoV2:
      return "patch_embed.proj.weight";
    case VitWeightNaming::kHfDinoV2:
      return "embeddings.patch_embeddings.projection.weight";
  }
  return "";
}

}  // namespace

const char* VitWeightNamingName(VitWeightNaming naming) {
  switch (naming) {
    case VitWeightNaming::kOpenAiClip:
      return "openai-clip";
    case VitWeightNaming::kHfClip:
      return "hf-clip";
    case VitWeightNaming::kDino:
      return "dino";
    case VitWeightNaming::kDinoV2:
      return "dinov2";
    case VitWeightNaming::kHfDinoV2:
      return "hf-dinov2";
  }
  return "?";
}

std::vector<VitWeightNaming> NamingsOf(VitFamily family) {
  switch (family) {
    case VitFamily::kOpenAiClip:
      return {VitWeightNaming::kOpenAiClip, VitWeightNaming::kHfClip};
    case VitFamily::kDino:
      return {VitWeightNaming::kDino};
    case VitFamily::kDinoV2:
      return {VitWeightNaming::kDinoV2, VitWeightNaming::kHfDinoV2};
  }
  return {};
}

std::vector<std::pair<std::string, std::vector<int64_t>>> CheckpointVitTensors(
    const VitConfig& config, VitWeightNaming naming) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const Mapping& m : MappingsOf(config, naming)) {
    const std::vector<Shape> shapes = SourceShapes(m);
    for (size_t i = 0; i < m.source.names.size(); ++i)
      out.emplace_back(m.source.names[i], shapes[i]);
  }
  for (auto& extra : UnusedTowerTensors(config, naming)) out.push_back(std::move(extra));
  return out;
}

absl::StatusOr<DetectedVitNaming> DetectVitWeightNaming(const TensorMap& checkpoint,
                                                        VitFamily family) {
  std::vector<DetectedVitNaming> found;
  std::vector<std::string> markers;
  for (VitWeightNaming naming : NamingsOf(family)) {
    const std::string marker = MarkerOf(naming);
    if (std::find(markers.begin(), markers.end(), marker) == markers.end()) {
      markers.push_back(marker);
    }
    for (const auto& [name, tensor] : checkpoint) {
      if (!absl::EndsWith(name, marker)) continue;
      const std::string prefix = name.substr(0, name.size() - marker.size());
      if (!prefix.empty() && prefix.back() != '.') continue;
      found.push_back({naming, prefix});
    }
  }
  if (found.size() == 1) return found.front();
  if (found.empty()) {
    std::vector<std::string> first;
    for (const auto& entry : checkpoint) {
      if (first.size() == 5) break;
      first.push_back(entry.first);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "no ", VitFamilyName(family), " vision tower in the checkpoint: expected a tensor named ",
        absl::StrJoin(markers, " or "), " (optionally prefixed); it holds ", checkpoint.size(),
        " tensors", first.empty() ? "" : ", e.g. ", absl::StrJoin(first, ", ")));
  }
  std::vector<std::string> described;
  for (const DetectedVitNaming& d : found) {
    described.push_back(
        absl::StrCat(VitWeightNamingName(d.naming), " with prefix '", d.prefix, "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat("ambiguous checkpoint: it holds several ",
                                                 VitFamilyName(family), " vision towers (",
                                                 absl::StrJoin(described, "; "), ")"));
}

absl::StatusOr<CanonicalVitWeights> ToCanonicalVitWeights(const TensorMap& checkpoint,
                                                          const VitConfig& config,
                                                          VitWeightNaming naming,
                                                          std::string_view prefix) {
  if (!NamingFits(config.family, naming)) {
    return absl::InvalidArgumentError(absl::StrCat("a ", VitFamilyName(config.family),
                                                   " model cannot read the ",
                                                   VitWeightNamingName(naming), " naming"));
  }
  const std::string pre(prefix);
  CanonicalVitWeights result;
  std::set<std::string> used;
  std::vector<std::string> missing;
  bool missing_only_layer_scale = true;
  for (const Mapping& m : MappingsOf(config, naming)) {
    const std::vector<Shape> shapes = SourceShapes(m);
    std::vector<at::Tensor> parts;
    for (size_t i = 0; i < m.source.names.size(); ++i) {
      const std::string name = pre + m.source.names[i];
      const auto it = checkpoint.find(name);
      if (it == checkpoint.end()) {
        missing.push_back(name);
        missing_only_layer_scale &= absl::StrContains(name, "ls1.gamma") ||
                                    absl::StrContains(name, "ls2.gamma") ||
                                    absl::StrContains(name, "layer_scale");
        continue;
      }
      if (it->second.sizes() != at::IntArrayRef(shapes[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "' has shape ", ShapeString(it->second.sizes()), ", expected ",
            ShapeString(shapes[i]), " for a ", VitFamilyName(config.family), " ViT of width ",
            config.width, ", depth ", config.depth, ", patch ", config.patch_size, ", grid ",
            config.pretrained_grid, " (is the checkpoint for another model?)"));
      }
      used.insert(name);
      parts.push_back(it->second);
    }
    if (parts.size() != m.source.names.size()) continue;
    switch (m.source.op) {
      case Source::kCopy:
        result.weights[m.canonical] = parts[0];
        break;
      case Source::kConcat:
        result.weights[m.canonical] = at::cat(parts, 0);
        break;
      case Source::kTranspose:
        result.weights[m.canonical] = parts[0].t().contiguous();
        break;
    }
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 5);
    std::string message = absl::StrCat(
        "checkpoint (", VitWeightNamingName(naming), " naming", pre.empty() ? "" : ", prefix '",
        pre, pre.empty() ? "" : "'", ") lacks ", missing.size(), " tensor(s) the ",
        VitFamilyName(config.family), " vision tower needs: ",
        absl::StrJoin(missing.begin(), missing.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
        missing.size() > shown ? ", …" : "");
    if (missing_only_layer_scale) {
      absl::StrAppend(&message, " (only LayerScale is missing: is this a DINO (v1) checkpoint?)");
    }
    return absl::InvalidArgumentError(message);
  }
  for (const auto& entry : checkpoint) {
    if (!used.count(entry.first)) result.unused.push_back(entry.first);
  }
  return result;
}

absl::StatusOr<TensorMap> FromCanonicalVitWeights(const TensorMap& canonical,
                                                  const VitConfig& config, VitWeightNaming naming) {
  if (!NamingFits(config.family, naming)) {
    return absl::InvalidArgumentError(absl::StrCat("a ", VitFamilyName(config.family),
                                                   " model has no ", VitWeightNamingName(naming),
                                                   " naming"));
  }
  TensorMap out;
  for (const Mapping& m : MappingsOf(config, naming)) {
    const auto it = canonical.find(m.canonical);
    if (it == canonical.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing canonical tensor '", m.canonical, "'"));
    }
    if (it->second.sizes() != at::IntArrayRef(m.shape)) {
      return absl::InvalidArgumentError(
          absl::StrCat("canonical tensor '", m.canonical, "' has shape ",
                       ShapeString(it->second.sizes()), ", expected ", ShapeString(m.shape)));
    }
    const at::Tensor& t = it->second;
    switch (m.source.op) {
      case Source::kCopy:
        out[m.source.names[0]] = t;
        break;
      case Source::kConcat: {
        const int64_t parts = static_cast<int64_t>(m.source.names.size());
        const int64_t rows = t.size(0) / parts;
        for (int64_t i = 0; i < parts; ++i) {
          out[m.source.names[static_cast<size_t>(i)]] = t.narrow(0, i * rows, rows).contiguous();
        }
        break;
      }
      case Source::kTranspose:
        out[m.source.names[0]] = t.t().contiguous();
        break;
    }
  }
  for (const auto& [name, shape] : UnusedTowerTensors(config, naming)) {
    out[name] = at::zeros(shape, at::kFloat);
  }
  return out;
}

absl::StatusOr<CanonicalVitWeights> CanonicalizeVitCheckpoint(const TensorMap& checkpoint,
                                                              const VitConfig& config) {
  MUSC_ASSIGN_OR_RETURN(DetectedVitNaming detected,
                        DetectVitWeightNaming(checkpoint, config.family));
  return ToCanonicalVitWeights(checkpoint, config, detected.naming, detected.prefix);
}

}  // namespace musc
