#include "tests/core/backbones/torchscript_fixture.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Dict.h>
#include <ATen/ops/randn.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/api/compilation_unit.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

namespace musc {
namespace {

std::vector<std::string> Split(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', start)) {
    parts.push_back(name.substr(start, dot - start));
    start = dot + 1;
  }
  parts.push_back(name.substr(start));
  return parts;
}

// Builds the module tree lazily: every dotted prefix of a tensor name is one submodule, with its
// own class (named after its path, so the classes are distinct in the shared compilation unit).
class ModuleTreeBuilder {
 public:
  ModuleTreeBuilder()
      : unit_(std::make_shared<torch::jit::CompilationUnit>()),
        root_(c10::QualifiedName("__torch__.musc_fixture.Root"), unit_) {}

  torch::jit::Module& ModuleAt(const std::vector<std::string>& path) {
    torch::jit::Module* current = &root_;
    std::string key;
    for (const std::string& part : path) {
      key += key.empty() ? part : "_" + part;
      auto it = modules_.find(key);
      if (it == modules_.end()) {
        torch::jit::Module child(c10::QualifiedName("__torch__.musc_fixture.M_" + key), unit_);
        current->register_module(part, child);
        it = modules_.emplace(key, child).first;
      }
      current = &it->second;
    }
    return *current;
  }

  void Add(const std::string& name, const at::Tensor& value, bool is_buffer) {
    std::vector<std::string> path = Split(name);
    const std::string leaf = path.back();
    path.pop_back();
    ModuleAt(path).register_parameter(leaf, value, is_buffer);
  }

  const torch::jit::Module& root() const { return root_; }

 private:
  std::shared_ptr<torch::jit::CompilationUnit> unit_;
  torch::jit::Module root_;
  std::map<std::string, torch::jit::Module> modules_;
};

}  // namespace

void SaveTorchScriptModuleTree(const std::string& path, const TensorMap& parameters,
                               const TensorMap& buffers) {
  ModuleTreeBuilder builder;
  for (const auto& [name, value] : parameters) builder.Add(name, value, /*is_buffer=*/false);
  for (const auto& [name, value] : buffers) builder.Add(name, value, /*is_buffer=*/true);
  builder.root().save(path);
}

bool OpenAiStoresHalf(const std::string& name) {
  if (name == "proj" || name == "conv1.weight") return true;
  for (const char* part : {".attn.", ".mlp."}) {
    if (name.find(part) != std::string::npos) return true;
  }
  return false;
}

void SaveOpenAiClipArchive(const std::string& path, const TensorMap& visual) {
  ModuleTreeBuilder builder;
  int64_t depth = 0;
  for (const auto& [name, value] : visual) {
    builder.Add("visual." + name, OpenAiStoresHalf(name) ? value.to(at::kHalf) : value,
                /*is_buffer=*/false);
    if (name.rfind("transformer.resblocks.", 0) == 0) {
      depth = std::max<int64_t>(depth, std::stoll(Split(name)[2]) + 1);
    }
  }
  // QuickGELU sits between c_fc and c_proj as a parameterless submodule, as in OpenAI's tree.
  for (int64_t b = 0; b < depth; ++b) {
    builder.ModuleAt({"visual", "transformer", "resblocks", std::to_string(b), "mlp", "gelu"});
  }
  // A sliver of the text tower, with a root-level positional_embedding that must not be mistaken
  // for the image tower's.
  at::Generator gen = at::detail::createCPUGenerator(7);
  builder.Add("positional_embedding", at::randn({5, 8}, gen), false);
  builder.Add("text_projection", at::randn({8, 4}, gen).to(at::kHalf), false);
  builder.Add("logit_scale", at::randn({}, gen), false);
  builder.Add("token_embedding.weight", at::randn({10, 8}, gen).to(at::kHalf), false);
  builder.Add("transformer.resblocks.0.attn.in_proj_weight", at::randn({24, 8}, gen).to(at::kHalf),
              false);
  builder.Add("ln_final.weight", at::randn({8}, gen), false);
  builder.root().save(path);
}

void SavePickledStateDict(const std::string& path, const TensorMap& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, value] : tensors) dict.insert(name, value);
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  TORCH_CHECK(out.good(), "could not write ", path);
}

}  // namespace musc
