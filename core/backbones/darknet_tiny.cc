#include "core/backbones/darknet_tiny.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/leaky_relu.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "core/formats/tfjs_manifest.h"
#include "core/torch_status.h"

namespace musc {
namespace {

constexpr char kName[] = "darknet-tiny";
// Outputs of the 10th and 14th LeakyReLU: strides 8 and 16, the pair /work/shared/data/README.md
// reports MuSc figures for.
constexpr std::array<int64_t, 2> kDefaultLayers = {10, 14};

// TensorFlow's 'same' padding along one axis: the output has ceil(in / stride) positions and
// any odd padding goes at the end (bottom/right). PyTorch only pads symmetrically, so the
// asymmetric case is padded explicitly.
std::pair<int64_t, int64_t> SamePadding(int64_t in, int64_t kernel, int64_t stride,
                                        int64_t dilation) {
  const int64_t out = (in + stride - 1) / stride;
  const int64_t effective_kernel = (kernel - 1) * dilation + 1;
  const int64_t total = std::max<int64_t>((out - 1) * stride + effective_kernel - in, 0);
  return {total / 2, total - total / 2};
}

constexpr std::array<int64_t, 2> kNoPadding{0, 0};

struct Op {
  enum class Kind { kConv, kBatchNorm, kLeakyRelu, kMaxPool, kGlobalAvgPool };
  Kind kind = Kind::kConv;
  std::string layer;  // Keras layer name(s), for messages.

  // kConv: OIHW weight, optional bias (BN folded into both when folding).
  at::Tensor weight;
  at::Tensor bias;
  std::array<int64_t, 2> kernel{1, 1};
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> dilation{1, 1};
  KerasPadding padding = KerasPadding::kValid;

  // kBatchNorm (unfolded reference only).
  at::Tensor gamma, beta, mean, variance;
  double epsilon = 1e-3;

  // kLeakyRelu.
  double alpha = 0.3;
};

at::Tensor ToTensor(const TfjsTensor& t) {
  // from_blob does not copy; clone so the tensor owns its memory after the manifest is freed.
  return at::from_blob(const_cast<float*>(t.values.data()), t.shape, at::kFloat).clone();
}

at::Tensor Conv(const Op& op, const at::Tensor& x) {
  if (op.padding == KerasPadding::kValid) {
    return at::conv2d(x, op.weight, op.bias, op.stride, kNoPadding, op.dilation);
  }
  const auto [top, bottom] = SamePadding(x.size(2), op.kernel[0], op.stride[0], op.dilation[0]);
  const auto [left, right] = SamePadding(x.size(3), op.kernel[1], op.stride[1], op.dilation[1]);
  if (top == bottom && left == right) {
    const std::array<int64_t, 2> padding{top, left};
    return at::conv2d(x, op.weight, op.bias, op.stride, padding, op.dilation);
  }
  const at::Tensor padded = at::constant_pad_nd(x, {left, right, top, bottom}, 0.0);
  return at::conv2d(padded, op.weight, op.bias, op.stride, kNoPadding, op.dilation);
}

at::Tensor MaxPool(const Op& op, const at::Tensor& x) {
  if (op.padding == KerasPadding::kValid) {
    return at::max_pool2d(x, op.kernel, op.stride);
  }
  // TF's 'same' max-pool ignores padded cells, i.e. pads with −inf, and puts odd padding at the
  // end. With darknet-tiny's 2×2/2 pools on even sizes (any multiple of 16) it is zero.
  const auto [top, bottom] = SamePadding(x.size(2), op.kernel[0], op.stride[0], 1);
  const auto [left, right] = SamePadding(x.size(3), op.kernel[1], op.stride[1], 1);
  if (top == 0 && bottom == 0 && left == 0 && right == 0) {
    return at::max_pool2d(x, op.kernel, op.stride);
  }
  const at::Tensor padded =
      at::constant_pad_nd(x, {left, right, top, bottom}, -std::numeric_limits<double>::infinity());
  return at::max_pool2d(padded, op.kernel, op.stride);
}

class DarknetTiny final : public DarknetTinyNetwork {
 public:
  DarknetTiny(std::vector<Op> ops, std::vector<int64_t> layers, PreprocessSpec spec, int64_t stride)
      : ops_(std::move(ops)), layers_(std::move(layers)), spec_(spec), stride_(stride) {
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (ops_[i].kind == Op::Kind::kLeakyRelu) {
        ++num_leaky_;
        last_leaky_op_ = i;
      }
    }
    // Forward keeps only the selected layers and the last one (for the embedding): at large
    // inputs all 15 activations together would be ~11 MB per image at 224, ~1 GB at 2048.
    forward_keep_.assign(static_cast<size_t>(num_leaky_), false);
    for (int64_t layer : layers_) forward_keep_[layer - 1] = true;
    forward_keep_.back() = true;
    no_activations_.assign(static_cast<size_t>(num_leaky_), false);
  }

  const std::string& name() const override { return name_; }
  const PreprocessSpec& preprocess_spec() const override { return spec_; }
  int64_t num_feature_layers() const override { return num_leaky_; }
  int64_t total_stride() const override { return stride_; }

  BackboneFeatures Forward(const at::Tensor& images) override {
    std::vector<at::Tensor> all = Run(images, last_leaky_op_ + 1, nullptr, &forward_keep_);
    BackboneFeatures features;
    for (int64_t layer : layers_) features.layer_maps.push_back(all[layer - 1]);
    // Image embedding: the global average of the last LeakyReLU (128-D), i.e. exactly what the
    // classifier reads. Not the 1000 logits: those are an affine map of this vector whose shared
    // bias pulls every image towards the same direction (compressing the cosine similarities
    // RsCIN relies on) and whose axes are ImageNet classes, not appearance.
    const at::Tensor pooled = all.back().mean({2, 3});
    features.image_embedding = pooled.div(pooled.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12));
    return features;
  }

  void MoveTo(const at::Device& device) override {
    for (Op& op : ops_) {
      for (at::Tensor* t : {&op.weight, &op.bias, &op.gamma, &op.beta, &op.mean, &op.variance}) {
        if (t->defined()) *t = t->to(device);
      }
    }
  }

  std::vector<at::Tensor> AllFeatureLayers(const at::Tensor& images) override {
    return Run(images, last_leaky_op_ + 1, nullptr, nullptr);
  }

  at::Tensor ClassLogits(const at::Tensor& images) override {
    at::Tensor output;
    Run(images, ops_.size(), &output, &no_activations_);
    TORCH_CHECK(output.dim() == 2, kName, ": the model does not end in a global average pool");
    return output;
  }

 private:
  // Runs ops_[0, end) and returns the LeakyReLU outputs met, one entry per LeakyReLU (undefined
  // where `keep` is given and false); *output gets the last op's result.
  std::vector<at::Tensor> Run(const at::Tensor& images, size_t end, at::Tensor* output,
                              const std::vector<bool>* keep) const {
    TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, kName, ": expected N×3×H×W images, got ",
                images.sizes());
    TORCH_CHECK(images.scalar_type() == at::kFloat, kName, ": expected float32 images, got ",
                images.scalar_type());
    TORCH_CHECK(images.size(0) > 0 && images.size(2) > 0 && images.size(3) > 0, kName,
                ": empty image batch ", images.sizes());
    std::vector<at::Tensor> activations;
    at::Tensor x = images;
    for (size_t i = 0; i < end; ++i) {
      const Op& op = ops_[i];
      switch (op.kind) {
        case Op::Kind::kConv:
          x = Conv(op, x);
          break;
        case Op::Kind::kBatchNorm:
          x = at::batch_norm(x, op.gamma, op.beta, op.mean, op.variance, /*training=*/false,
                             /*momentum=*/0.0, op.epsilon, /*cudnn_enabled=*/false);
          break;
        case Op::Kind::kLeakyRelu:
          x = at::leaky_relu(x, op.alpha);
          activations.push_back(keep == nullptr || (*keep)[activations.size()] ? x : at::Tensor());
          break;
        case Op::Kind::kMaxPool:
          x = MaxPool(op, x);
          break;
        case Op::Kind::kGlobalAvgPool:
          x = x.mean({2, 3});
          break;
      }
    }
    if (output != nullptr) *output = x;
    return activations;
  }

  const std::string name_ = kName;
  std::vector<Op> ops_;
  std::vector<int64_t> layers_;
  PreprocessSpec spec_;
  int64_t stride_ = 1;
  int64_t num_leaky_ = 0;
  size_t last_leaky_op_ = 0;
  std::vector<bool> forward_keep_;
  std::vector<bool> no_activations_;  // ClassLogits keeps none.
};

// BN(conv(x)) = s·(W∗x + b − mean) + beta with s = gamma / sqrt(var + eps), so the folded conv has
// weight s·W (per output channel) and bias s·(b − mean) + beta. Computed in double, rounded once.
void FoldBatchNorm(const TfjsModel& model, const KerasLayer& bn, Op* conv) {
  const at::Tensor mean = ToTensor(*model.FindWeight(bn.name + "/moving_mean")).to(at::kDouble);
  const at::Tensor var = ToTensor(*model.FindWeight(bn.name + "/moving_variance")).to(at::kDouble);
  at::Tensor scale = var.add(bn.epsilon).rsqrt();
  if (bn.scale) scale = scale.mul(ToTensor(*model.FindWeight(bn.name + "/gamma")).to(at::kDouble));
  at::Tensor bias = conv->bias.defined() ? conv->bias.to(at::kDouble) : at::zeros_like(mean);
  bias = bias.sub(mean).mul(scale);
  if (bn.center) bias = bias.add(ToTensor(*model.FindWeight(bn.name + "/beta")).to(at::kDouble));
  conv->weight =
      conv->weight.to(at::kDouble).mul(scale.view({-1, 1, 1, 1})).to(at::kFloat).contiguous();
  conv->bias = bias.to(at::kFloat).contiguous();
  conv->layer += "+" + bn.name;
}

absl::Status Unsupported(const std::string& dir, const KerasLayer& layer, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(kName, ": ", dir, "/model.json: layer '",
                                                 layer.name, "' (", layer.class_name, "): ", what));
}

// Turns the Keras layer list into ops. Only a plain chain of the layer classes darknet-tiny uses
// is accepted; anything else is reported rather than approximated.
absl::StatusOr<std::vector<Op>> BuildOps(const TfjsModel& model, bool fold_batch_norm,
                                         int64_t* total_stride) {
  const std::string& dir = model.directory;
  std::vector<Op> ops;
  *total_stride = 1;
  if (model.layers.empty() || model.layers[0].class_name != "InputLayer") {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": ", dir, "/model.json: expected the first layer to be InputLayer"));
  }
  for (size_t i = 1; i < model.layers.size(); ++i) {
    const KerasLayer& layer = model.layers[i];
    const std::string& previous = model.layers[i - 1].name;
    if (layer.inbound != std::vector<std::string>{previous}) {
      return Unsupported(
          dir, layer,
          absl::StrCat("expected a plain chain with input '", previous, "', found inputs [",
                       absl::StrJoin(layer.inbound, ", "), "]"));
    }
    if (layer.data_format != "channels_last") {
      return Unsupported(dir, layer, "expected data_format channels_last");
    }
    Op op;
    op.layer = layer.name;
    if (layer.class_name == "Conv2D") {
      if (layer.activation != "linear") {
        return Unsupported(dir, layer,
                           absl::StrCat("expected activation linear, found ", layer.activation));
      }
      op.kind = Op::Kind::kConv;
      // Keras kernels are H×W×in×out; ATen wants out×in×H×W. Both are cross-correlations.
      op.weight = ToTensor(*model.FindWeight(layer.name + "/kernel")).permute({3, 2, 0, 1});
      op.weight = op.weight.contiguous();
      if (layer.use_bias) op.bias = ToTensor(*model.FindWeight(layer.name + "/bias"));
      op.kernel = layer.kernel_size;
      op.stride = layer.strides;
      op.dilation = layer.dilation_rate;
      op.padding = layer.padding;
      *total_stride *= layer.strides[0];
    } else if (layer.class_name == "BatchNormalization") {
      if (layer.axis != -1 && layer.axis != 3) {
        return Unsupported(dir, layer,
                           absl::StrCat("expected the channel axis (-1 or 3), found ", layer.axis));
      }
      if (fold_batch_norm && !ops.empty() && ops.back().kind == Op::Kind::kConv) {
        FoldBatchNorm(model, layer, &ops.back());
        continue;
      }
      op.kind = Op::Kind::kBatchNorm;
      op.mean = ToTensor(*model.FindWeight(layer.name + "/moving_mean"));
      op.variance = ToTensor(*model.FindWeight(layer.name + "/moving_variance"));
      if (layer.scale) op.gamma = ToTensor(*model.FindWeight(layer.name + "/gamma"));
      if (layer.center) op.beta = ToTensor(*model.FindWeight(layer.name + "/beta"));
      op.epsilon = layer.epsilon;
    } else if (layer.class_name == "LeakyReLU") {
      op.kind = Op::Kind::kLeakyRelu;
      op.alpha = layer.alpha;
    } else if (layer.class_name == "MaxPooling2D") {
      op.kind = Op::Kind::kMaxPool;
      op.kernel = layer.pool_size;
      op.stride = layer.strides;
      op.padding = layer.padding;
      *total_stride *= layer.strides[0];
    } else if (layer.class_name == "GlobalAveragePooling2D") {
      op.kind = Op::Kind::kGlobalAvgPool;
    } else {
      return Unsupported(dir, layer, "layer class not supported by the darknet-tiny runner");
    }
    if ((op.kind == Op::Kind::kConv || op.kind == Op::Kind::kMaxPool) &&
        layer.strides[0] != layer.strides[1]) {
      return Unsupported(dir, layer, "expected equal strides along H and W");
    }
    if (!ops.empty() && ops.back().kind == Op::Kind::kGlobalAvgPool) {
      return Unsupported(dir, layer, "expected nothing after the global average pool");
    }
    ops.push_back(std::move(op));
  }
  // The channel counts must chain: each conv's input channels equal the previous conv's filters.
  int64_t channels = 3;
  for (const Op& op : ops) {
    if (op.kind == Op::Kind::kConv) {
      if (op.weight.size(1) != channels) {
        return absl::InvalidArgumentError(
            absl::StrCat(kName, ": ", dir, "/model.json: layer '", op.layer, "' kernel expects ",
                         op.weight.size(1), " input channels, but its input has ", channels));
      }
      channels = op.weight.size(0);
    } else if (op.kind == Op::Kind::kBatchNorm && op.mean.size(0) != channels) {
      return absl::InvalidArgumentError(absl::StrCat(kName, ": ", dir, "/model.json: layer '",
                                                     op.layer, "' normalises ", op.mean.size(0),
                                                     " channels, but its input has ", channels));
    }
  }
  return ops;
}

absl::StatusOr<std::unique_ptr<DarknetTinyNetwork>> Build(const BackboneOptions& options,
                                                          const DarknetTinyLoadOptions& load) {
  if (options.weights_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": weights_path must name the directory holding model.json"));
  }
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(options.weights_path);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(kName, ": ", model.status().message()));
  }
  int64_t stride = 1;
  MUSC_ASSIGN_OR_RETURN(std::vector<Op> ops, BuildOps(*model, load.fold_batch_norm, &stride));
  const int64_t num_leaky = std::count_if(
      ops.begin(), ops.end(), [](const Op& op) { return op.kind == Op::Kind::kLeakyRelu; });
  if (num_leaky == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": ", options.weights_path, "/model.json has no LeakyReLU layer"));
  }

  const int64_t input_size =
      options.input_size == 0 ? kDarknetTinyDefaultInputSize : options.input_size;
  if (input_size < 2 * stride || input_size > kDarknetTinyMaxInputSize ||
      input_size % stride != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kName, ": input_size must be a multiple of the network stride ", stride, " in [",
        2 * stride, ", ", kDarknetTinyMaxInputSize, "], got ", options.input_size));
  }
  std::vector<int64_t> layers = options.layers;
  if (layers.empty()) layers.assign(kDefaultLayers.begin(), kDefaultLayers.end());
  std::set<int64_t> seen;
  for (int64_t layer : layers) {
    if (layer < 1 || layer > num_leaky) {
      return absl::InvalidArgumentError(
          absl::StrCat(kName, ": feature layer ", layer, " out of range: layers are the ",
                       num_leaky, " LeakyReLU outputs, numbered 1..", num_leaky));
    }
    if (!seen.insert(layer).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(kName, ": feature layer ", layer, " is listed twice"));
    }
  }
  return std::unique_ptr<DarknetTinyNetwork>(new DarknetTiny(
      std::move(ops), std::move(layers), DarknetTinyPreprocessSpec(input_size), stride));
}

}  // namespace

PreprocessSpec DarknetTinyPreprocessSpec(int64_t input_size) {
  // ml5-library src/ImageClassifier/darknet.js, preProcess(): tf.browser.fromPixels (RGB),
  // .toFloat().div(255), tf.image.resizeBilinear(..., alignCorners=true); no mean/std.
  PreprocessSpec spec;
  spec.input_size = input_size;
  spec.filter = ResizeFilter::kBilinear;
  spec.mean = {0.f, 0.f, 0.f};
  spec.std = {1.f, 1.f, 1.f};
  return spec;
}

absl::StatusOr<std::unique_ptr<DarknetTinyNetwork>> CreateDarknetTinyNetwork(
    const BackboneOptions& options, const DarknetTinyLoadOptions& load_options) {
  // Weight conversion runs ATen ops; a c10::Error there must not escape the Status boundary.
  try {
    return Build(options, load_options);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, absl::StrCat(kName, ": building the network failed"));
  }
}

absl::StatusOr<std::unique_ptr<Backbone>> CreateDarknetTinyBackbone(
    const BackboneOptions& options) {
  MUSC_ASSIGN_OR_RETURN(std::unique_ptr<DarknetTinyNetwork> network,
                        CreateDarknetTinyNetwork(options));
  return std::unique_ptr<Backbone>(std::move(network));
}

}  // namespace musc
