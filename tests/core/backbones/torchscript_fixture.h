// Test fixtures in PyTorch's own file formats, written with LibTorch so the tests need no Python:
// TorchScript archives shaped like OpenAI's CLIP files, and torch.save()-style pickled archives.
// Kept in one translation unit because the TorchScript headers are slow to compile.
#ifndef MUSC_TESTS_CORE_BACKBONES_TORCHSCRIPT_FIXTURE_H_
#define MUSC_TESTS_CORE_BACKBONES_TORCHSCRIPT_FIXTURE_H_

#include <string>

#include "core/backbones/tensor_map.h"

namespace musc {

// Saves a TorchScript module whose tree follows the dotted names: "a.b.w" becomes parameter "w" of
// submodule "b" of submodule "a" of the root. `buffers` are registered as buffers. Tensors are
// stored as given (dtype included). Throws c10::Error on failure.
void SaveTorchScriptModuleTree(const std::string& path, const TensorMap& parameters,
                               const TensorMap& buffers = {});

// Whether OpenAI's CLIP archives store this `visual.*` parameter (name without the prefix) in
// fp16. Their convert_weights() halves conv, linear and attention weights and `proj`, and leaves
// LayerNorm parameters and the class/position embeddings in fp32.
bool OpenAiStoresHalf(const std::string& visual_name);

// Saves `visual` (CLIP image-tower weights named as in core/backbones/vision_transformer.h, without
// the "visual." prefix) as a TorchScript archive mirroring OpenAI's ViT-*.pt files: the image tower
// under the root's "visual" submodule (conv1, ln_pre, transformer.resblocks.N.{ln_1, attn with
// in_proj_* and out_proj, ln_2, mlp.{c_fc, gelu, c_proj}}, ln_post, class_embedding,
// positional_embedding, proj), fp16 where OpenAI stores fp16, plus a few small text-tower
// parameters at the root (positional_embedding, text_projection, logit_scale, ...), so that
// readers have to tell the towers apart.
void SaveOpenAiClipArchive(const std::string& path, const TensorMap& visual);

// Writes `tensors` as torch.save(state_dict) would: a zip archive holding data.pkl (a dict of
// tensors) and the tensor storages, without TorchScript code.
void SavePickledStateDict(const std::string& path, const TensorMap& tensors);

}  // namespace musc

#endif  // MUSC_TESTS_CORE_BACKBONES_TORCHSCRIPT_FIXTURE_H_
