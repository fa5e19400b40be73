// Reading the checkpoint files users actually have into a name → tensor map, and writing
// safetensors. The format is recognised by content, not by file extension:
//   - safetensors (Hugging Face, open_clip, converted DINO/DINOv2 weights): validated header
//     (core/formats/safetensors_format.h), then each tensor copied out of one memory mapping of the
//     file;
//   - TorchScript zip archives (OpenAI's CLIP files such as ViT-L-14-336px.pt): loaded with
//     torch::jit::load on the CPU, every parameter and buffer of the module tree, named by its
//     path ("visual.transformer.resblocks.0.attn.in_proj_weight").
// Plain torch.save() archives (e.g. the official DINO/DINOv2 .pth files) and pre-1.6 pickle files
// are recognised and refused with a message saying to convert them to safetensors: LibTorch 1.13's
// unpickler turns the OrderedDict of a state_dict into None, so it cannot read them.
#ifndef MUSC_CORE_BACKBONES_CHECKPOINT_IO_H_
#define MUSC_CORE_BACKBONES_CHECKPOINT_IO_H_

#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/backbones/tensor_map.h"

namespace musc {

// Reads every tensor of the checkpoint at `path` whose name starts with `keep_prefix` (all of
// them by default), keyed by its name in the file. Floating tensors (F16, BF16, F32, F64) come back
// as contiguous float32 on the CPU; integer and bool tensors keep their type. No tensor requires
// grad. Selecting a prefix (e.g. "visual.") avoids converting the rest of the file — the text
// tower of a CLIP archive — to float32.
// NotFoundError names a missing path; InvalidArgumentError a file in no supported format or with a
// malformed header; DataLossError a truncated or unreadable file.
absl::StatusOr<TensorMap> ReadCheckpoint(const std::string& path,
                                         std::string_view keep_prefix = {});

// Writes `tensors` (any device, any strides) as a safetensors file: F64/F32/F16/BF16 and the
// integer/bool types are stored as they are. Tensors are laid out by item size (largest first),
// then by name, so every tensor starts at a multiple of its item size; the header is padded with
// spaces so the data starts 8-byte aligned. `metadata` becomes "__metadata__". The file is written
// to a temporary name in the same directory and renamed into place, so readers never see a partial
// file.
absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace musc

#endif  // MUSC_CORE_BACKBONES_CHECKPOINT_IO_H_
