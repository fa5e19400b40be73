// darknet-tiny on the real ml5 weights: feature shapes, determinism, BN folding against the
// unfolded network, the first two layers against naive loops written straight from the Keras
// layouts (including TF's 'same' max-pool padding on odd sizes), and the classifier end to end on
// real images. Skips when /work/shared's model (or data) directory is absent.
#include "core/backbones/darknet_tiny.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/formats/tfjs_manifest.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

const char kModelDir[] = MUSC_SHARED_DIR "/models/darknet-tiny-tfjs";
const char kDataDir[] = MUSC_SHARED_DIR "/data/mvtec3d-tire-rgb/test";

#define SKIP_WITHOUT_MODEL()                                                \
  if (!fs::exists(fs::path(kModelDir) / "model.json")) {                    \
    GTEST_SKIP() << "shared model directory " << kModelDir << " is absent"; \
  }

BackboneOptions ModelOptions() {
  BackboneOptions options;
  options.model = "darknet-tiny";
  options.weights_path = kModelDir;
  return options;
}

std::unique_ptr<DarknetTinyNetwork> Load(const BackboneOptions& options,
                                         DarknetTinyLoadOptions load = {}) {
  absl::StatusOr<std::unique_ptr<DarknetTinyNetwork>> net = CreateDarknetTinyNetwork(options, load);
  EXPECT_TRUE(net.ok()) << net.status();
  return net.ok() ? *std::move(net) : nullptr;
}

// Seeded uniform [0,1) images, like preprocessed pixels.
at::Tensor RandomImages(int64_t n, int64_t h, int64_t w, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.f, 1.f);
  std::vector<float> values(static_cast<size_t>(n * 3 * h * w));
  for (float& v : values) v = dist(rng);
  return at::from_blob(values.data(), {n, 3, h, w}, at::kFloat).clone();
}

// max |a − b| / max(1, max |b|): a scale-aware closeness for activations of any magnitude.
double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  const double diff = a.sub(b).abs().max().item<double>();
  return diff / std::max(1.0, b.abs().max().item<double>());
}

TEST(DarknetTinyTest, DefaultMapsAt224) {
  SKIP_WITHOUT_MODEL();
  c10::InferenceMode guard;
  auto net = Load(ModelOptions());
  ASSERT_NE(net, nullptr);
  EXPECT_EQ(net->name(), "darknet-tiny");
  EXPECT_EQ(net->num_feature_layers(), 15);
  EXPECT_EQ(net->total_stride(), 16);
  const PreprocessSpec& spec = net->preprocess_spec();
  EXPECT_EQ(spec.input_size, 224);
  EXPECT_EQ(spec.filter, ResizeFilter::kBilinear);
  EXPECT_EQ(spec.mean, (std::array<float, 3>{0.f, 0.f, 0.f}));
  EXPECT_EQ(spec.std, (std::array<float, 3>{1.f, 1.f, 1.f}));

  BackboneFeatures f = net->Forward(RandomImages(2, 224, 224, 1));
  ASSERT_EQ(f.layer_maps.size(), 2u);
  EXPECT_EQ(f.layer_maps[0].sizes(), (std::vector<int64_t>{2, 256, 28, 28}));  // Stride 8.
  EXPECT_EQ(f.layer_maps[1].sizes(), (std::vector<int64_t>{2, 512, 14, 14}));  // Stride 16.
  for (const at::Tensor& map : f.layer_maps) {
    EXPECT_EQ(map.scalar_type(), at::kFloat);
    EXPECT_TRUE(map.isfinite().all().item<bool>());
  }
  ASSERT_TRUE(f.image_embedding.defined());
  EXPECT_EQ(f.image_embedding.sizes(), (std::vector<int64_t>{2, 128}));
  const at::Tensor norms = f.image_embedding.norm(2, {1});
  EXPECT_NEAR(norms[0].item<float>(), 1.f, 1e-5);
  EXPECT_NEAR(norms[1].item<float>(), 1.f, 1e-5);
}

TEST(DarknetTinyTest, OtherInputSizesAndLayers) {
  SKIP_WITHOUT_MODEL();
  c10::InferenceMode guard;
  BackboneOptions options = ModelOptions();
  options.input_size = 256;
  options.layers = {15, 1, 6};
  auto net = Load(options);
  ASSERT_NE(net, nullptr);
  EXPECT_EQ(net->preprocess_spec().input_size, 256);
  BackboneFeatures f = net->Forward(RandomImages(1, 256, 256, 2));
  ASSERT_EQ(f.layer_maps.size(), 3u);
  EXPECT_EQ(f.layer_maps[0].sizes(), (std::vector<int64_t>{1, 128, 16, 16}));
  EXPECT_EQ(f.layer_maps[1].sizes(), (std::vector<int64_t>{1, 16, 256, 256}));
  EXPECT_EQ(f.layer_maps[2].sizes(), (std::vector<int64_t>{1, 128, 64, 64}));
}

TEST(DarknetTinyTest, RejectsBadOptions) {
  SKIP_WITHOUT_MODEL();
  {
    BackboneOptions options = ModelOptions();
    options.weights_path = "/nonexistent/darknet-tiny";
    absl::StatusOr<std::unique_ptr<Backbone>> b = CreateDarknetTinyBackbone(options);
    ASSERT_EQ(b.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(b.status().message().find("/nonexistent/darknet-tiny"), std::string::npos)
        << b.status();
  }
  {
    BackboneOptions options = ModelOptions();
    options.weights_path.clear();
    EXPECT_EQ(CreateDarknetTinyBackbone(options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  for (const std::vector<int64_t>& layers :
       {std::vector<int64_t>{0}, std::vector<int64_t>{16}, std::vector<int64_t>{-3},
        std::vector<int64_t>{10, 10}}) {
    BackboneOptions options = ModelOptions();
    options.layers = layers;
    absl::StatusOr<std::unique_ptr<Backbone>> b = CreateDarknetTinyBackbone(options);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << b.status();
  }
  for (int64_t size : {100, 8, -224, 4096}) {
    BackboneOptions options = ModelOptions();
    options.input_size = size;
    absl::StatusOr<std::unique_ptr<Backbone>> b = CreateDarknetTinyBackbone(options);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << size;
  }
}

TEST(DarknetTinyTest, MalformedInputThrowsC10Error) {
  SKIP_WITHOUT_MODEL();
  c10::InferenceMode guard;
  auto net = Load(ModelOptions());
  ASSERT_NE(net, nullptr);
  EXPECT_THROW(net->Forward(at::zeros({1, 1, 32, 32})), c10::Error);
  EXPECT_THROW(net->Forward(at::zeros({3, 32, 32})), c10::Error);
  EXPECT_THROW(net->Forward(at::zeros({1, 3, 32, 32}, at::kDouble)), c10::Error);
}

TEST(DarknetTinyTest, DeterministicAndBatchIndependent) {
  SKIP_WITHOUT_MODEL();
  c10::InferenceMode guard;
  auto net = Load(ModelOptions());
  ASSERT_NE(net, nullptr);
  const at::Tensor images = RandomImages(3, 224, 224, 3);
  BackboneFeatures a = net->Forward(images);
  BackboneFeatures b = net->Forward(images);
  for (size_t i = 0; i < a.layer_maps.size(); ++i) {
    EXPECT_TRUE(a.layer_maps[i].equal(b.layer_maps[i])) << "layer " << i;
  }
  EXPECT_TRUE(a.image_embedding.equal(b.image_embedding));
  // One image alone gives the same features as inside a batch (up to GEMM blocking order).
  BackboneFeatures single = net->Forward(images.narrow(0, 1, 1).contiguous());
  for (size_t i = 0; i < a.layer_maps.size(); ++i) {
    EXPECT_LT(RelativeError(single.layer_maps[i], a.layer_maps[i].narrow(0, 1, 1)), 1e-5);
  }
}

TEST(DarknetTinyTest, FoldedBatchNormEqualsUnfolded) {
  SKIP_WITHOUT_MODEL();
  c10::InferenceMode guard;
  auto folded = Load(ModelOptions());
  auto unfolded = Load(ModelOptions(), DarknetTinyLoadOptions{/*fold_batch_norm=*/false});
  ASSERT_NE(folded, nullptr);
  ASSERT_NE(unfolded, nullptr);
  // 72 is not a multiple of 16, so the last pool sees an odd size (9×9 → 5×5) as well.
  const at::Tensor images = RandomImages(2, 72, 72, 4);
  std::vector<at::Tensor> a = folded->AllFeatureLayers(images);
  std::vector<at::Tensor> b = unfolded->AllFeatureLayers(images);
  ASSERT_EQ(a.size(), 15u);
  ASSERT_EQ(b.size(), 15u);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].sizes(), b[i].sizes()) << "layer " << i + 1;
    EXPECT_LT(RelativeError(a[i], b[i]), 1e-4) << "layer " << i + 1;
  }
  EXPECT_LT(RelativeError(folded->ClassLogits(images), unfolded->ClassLogits(images)), 1e-4);
}

// Conv2D 'same' (stride 1) + BatchNormalization + LeakyReLU, written straight from the Keras
// definitions: kernel[dy][dx][ci][co] (H×W×in×out), zero padding of (k−1)/2 on every side.
std::vector<float> NaiveConvBnLeaky(const std::vector<float>& in, int64_t cin, int64_t h, int64_t w,
                                    const TfjsModel& model, const std::string& conv,
                                    const std::string& bn, double alpha, int64_t* cout) {
  const TfjsTensor& k = *model.FindWeight(conv + "/kernel");
  const int64_t kh = k.shape[0], kw = k.shape[1], co_n = k.shape[3];
  EXPECT_EQ(k.shape[2], cin);
  const auto& gamma = model.FindWeight(bn + "/gamma")->values;
  const auto& beta = model.FindWeight(bn + "/beta")->values;
  const auto& mean = model.FindWeight(bn + "/moving_mean")->values;
  const auto& var = model.FindWeight(bn + "/moving_variance")->values;
  std::vector<float> out(static_cast<size_t>(co_n * h * w));
  for (int64_t co = 0; co < co_n; ++co) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        double acc = 0;
        for (int64_t dy = 0; dy < kh; ++dy) {
          for (int64_t dx = 0; dx < kw; ++dx) {
            const int64_t sy = y + dy - (kh - 1) / 2, sx = x + dx - (kw - 1) / 2;
            if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
            for (int64_t ci = 0; ci < cin; ++ci) {
              acc += static_cast<double>(in[(ci * h + sy) * w + sx]) *
                     k.values[((dy * kw + dx) * cin + ci) * co_n + co];
            }
          }
        }
        double v = (acc - mean[co]) / std::sqrt(var[co] + 1e-3) * gamma[co] + beta[co];
        if (v < 0) v *= alpha;
        out[(co * h + y) * w + x] = static_cast<float>(v);
      }
    }
  }
  *cout = co_n;
  return out;
}

TEST(DarknetTinyTest, FirstLayersMatchNaiveLoops) {
  SKIP_WITHOUT_MODEL();
  c10::InferenceMode guard;
  absl::StatusOr<TfjsModel> model = LoadTfjsModel(kModelDir);
  ASSERT_TRUE(model.ok()) << model.status();
  auto net = Load(ModelOptions());
  ASSERT_NE(net, nullptr);
  // Odd sizes: the max-pool then needs TF's asymmetric 'same' padding (one extra row/column at
  // the bottom/right, ignored by the max), giving ceil(9/2)×ceil(11/2) = 5×6.
  const int64_t h = 9, w = 11;
  const at::Tensor images = RandomImages(1, h, w, 5);
  std::vector<float> pixels(images.data_ptr<float>(), images.data_ptr<float>() + 3 * h * w);

  int64_t c1 = 0;
  std::vector<float> a1 =
      NaiveConvBnLeaky(pixels, 3, h, w, *model, "conv2d_1", "batch_normalization_1", 0.1, &c1);
  const int64_t ph = (h + 1) / 2, pw = (w + 1) / 2;
  std::vector<float> pooled(static_cast<size_t>(c1 * ph * pw));
  for (int64_t c = 0; c < c1; ++c) {
    for (int64_t y = 0; y < ph; ++y) {
      for (int64_t x = 0; x < pw; ++x) {
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t sy = 2 * y; sy < std::min(2 * y + 2, h); ++sy) {
          for (int64_t sx = 2 * x; sx < std::min(2 * x + 2, w); ++sx) {
            m = std::max(m, a1[(c * h + sy) * w + sx]);
          }
        }
        pooled[(c * ph + y) * pw + x] = m;
      }
    }
  }
  int64_t c2 = 0;
  std::vector<float> a2 =
      NaiveConvBnLeaky(pooled, c1, ph, pw, *model, "conv2d_2", "batch_normalization_2", 0.1, &c2);

  std::vector<at::Tensor> layers = net->AllFeatureLayers(images);
  ASSERT_EQ(layers[0].sizes(), (std::vector<int64_t>{1, c1, h, w}));
  ASSERT_EQ(layers[1].sizes(), (std::vector<int64_t>{1, c2, ph, pw}));
  const at::Tensor n1 = at::from_blob(a1.data(), {1, c1, h, w}, at::kFloat);
  const at::Tensor n2 = at::from_blob(a2.data(), {1, c2, ph, pw}, at::kFloat);
  EXPECT_LT(RelativeError(layers[0], n1), 1e-5);
  EXPECT_LT(RelativeError(layers[1], n2), 1e-5);
}

// --- A minimal PNG reader (8-bit grey/RGB/RGBA, non-interlaced) so the classifier can be
// checked on real pictures without linking an image library into the core tests. Verified
// against an independent decoder: good/000.png sums to 27345751 over all RGB bytes.

class Inflater {
 public:
  Inflater(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  // zlib stream → bytes; false on malformed input.
  bool Run(std::vector<uint8_t>* out) {
    pos_ = 2;  // CMF, FLG; the Adler-32 trailer is not checked.
    bool last = false;
    while (!last && !error_) {
      last = Bits(1) == 1;
      const int type = Bits(2);
      if (type == 0) {
        if (bit_ != 0) {  // Stored blocks start on a byte boundary.
          bit_ = 0;
          ++pos_;
        }
        if (pos_ + 4 > size_) return false;
        const size_t len = data_[pos_] | (data_[pos_ + 1] << 8);
        pos_ += 4;
        if (pos_ + len > size_) return false;
        out->insert(out->end(), data_ + pos_, data_ + pos_ + len);
        pos_ += len;
      } else if (type == 1) {
        std::vector<int> lengths(288 + 30);
        for (int i = 0; i < 288; ++i) lengths[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
        for (int i = 0; i < 30; ++i) lengths[288 + i] = 5;
        if (!Codes(lengths.data(), 288, lengths.data() + 288, 30, out)) return false;
      } else if (type == 2) {
        if (!Dynamic(out)) return false;
      } else {
        return false;
      }
    }
    return !error_;
  }

 private:
  struct Huffman {
    std::vector<int> counts = std::vector<int>(16, 0);
    std::vector<int> symbols;
  };

  int Bits(int n) {
    int v = 0;
    for (int i = 0; i < n; ++i) {
      if (pos_ >= size_) {
        error_ = true;
        return 0;
      }
      v |= ((data_[pos_] >> bit_) & 1) << i;
      if (++bit_ == 8) {
        bit_ = 0;
        ++pos_;
      }
    }
    return v;
  }

  static Huffman Build(const int* lengths, int n) {
    Huffman h;
    h.symbols.assign(n, 0);
    for (int i = 0; i < n; ++i) ++h.counts[lengths[i]];
    h.counts[0] = 0;
    std::vector<int> offsets(16, 0);
    for (int len = 1; len < 16; ++len) offsets[len] = offsets[len - 1] + h.counts[len - 1];
    for (int i = 0; i < n; ++i) {
      if (lengths[i] != 0) h.symbols[offsets[lengths[i]]++] = i;
    }
    return h;
  }

  // Canonical Huffman decode, one bit at a time (as in zlib's puff.c).
  int Decode(const Huffman& h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; ++len) {
      code |= Bits(1);
      const int count = h.counts[len];
      if (code - count < first) return h.symbols[index + (code - first)];
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    error_ = true;
    return 0;
  }

  bool Codes(const int* lit_lengths, int nlit, const int* dist_lengths, int ndist,
             std::vector<uint8_t>* out) {
    static const int kLenBase[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                     15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                     67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const int kDistBase[30] = {
        1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
        193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    static const int kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    const Huffman lit = Build(lit_lengths, nlit), dist = Build(dist_lengths, ndist);
    while (!error_) {
      const int sym = Decode(lit);
      if (sym < 256) {
        out->push_back(static_cast<uint8_t>(sym));
      } else if (sym == 256) {
        return true;
      } else {
        if (sym - 257 >= 29) return false;
        const int len = kLenBase[sym - 257] + Bits(kLenExtra[sym - 257]);
        const int d = Decode(dist);
        if (d >= 30) return false;
        const size_t distance = static_cast<size_t>(kDistBase[d] + Bits(kDistExtra[d]));
        if (distance > out->size()) return false;
        for (int i = 0; i < len; ++i) out->push_back((*out)[out->size() - distance]);
      }
    }
    return false;
  }

  bool Dynamic(std::vector<uint8_t>* out) {
    static const int kOrder[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                   11, 4,  12, 3, 13, 2, 14, 1, 15};
    const int nlen = Bits(5) + 257, ndist = Bits(5) + 1, ncode = Bits(4) + 4;
    int code_lengths[19] = {};
    for (int i = 0; i < ncode; ++i) code_lengths[kOrder[i]] = Bits(3);
    const Huffman code = Build(code_lengths, 19);
    std::vector<int> lengths;
    while (static_cast<int>(lengths.size()) < nlen + ndist && !error_) {
      const int sym = Decode(code);
      if (sym < 16) {
        lengths.push_back(sym);
      } else {
        int value = 0, repeat = 0;
        if (sym == 16) {
          if (lengths.empty()) return false;
          value = lengths.back();
          repeat = 3 + Bits(2);
        } else if (sym == 17) {
          repeat = 3 + Bits(3);
        } else {
          repeat = 11 + Bits(7);
        }
        lengths.insert(lengths.end(), repeat, value);
      }
    }
    if (error_ || static_cast<int>(lengths.size()) != nlen + ndist) return false;
    return Codes(lengths.data(), nlen, lengths.data() + nlen, ndist, out);
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  int bit_ = 0;
  bool error_ = false;
};

// Returns 1×3×H×W float32 in [0,1] (grey replicated), or an undefined tensor on failure.
at::Tensor ReadPng(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  auto be32 = [&](size_t p) {
    return (uint32_t{file[p]} << 24) | (uint32_t{file[p + 1]} << 16) |
           (uint32_t{file[p + 2]} << 8) | file[p + 3];
  };
  if (file.size() < 33 || std::memcmp(file.data(), "\x89PNG\r\n\x1a\n", 8) != 0) return {};
  size_t pos = 8;
  uint32_t width = 0, height = 0;
  int channels = 0;
  std::vector<uint8_t> idat;
  while (pos + 12 <= file.size()) {
    const uint32_t len = be32(pos);
    const std::string type(file.begin() + pos + 4, file.begin() + pos + 8);
    if (pos + 12 + len > file.size()) return {};
    const uint8_t* chunk = file.data() + pos + 8;
    if (type == "IHDR") {
      width = be32(pos + 8);
      height = be32(pos + 12);
      const int depth = chunk[8], color = chunk[9], interlace = chunk[12];
      channels = color == 0 ? 1 : color == 2 ? 3 : color == 6 ? 4 : 0;
      if (depth != 8 || channels == 0 || interlace != 0) return {};
    } else if (type == "IDAT") {
      idat.insert(idat.end(), chunk, chunk + len);
    }
    pos += 12 + len;
  }
  std::vector<uint8_t> raw;
  if (channels == 0 || !Inflater(idat.data(), idat.size()).Run(&raw)) return {};
  const size_t stride = size_t{width} * channels;
  if (raw.size() != height * (stride + 1)) return {};
  std::vector<uint8_t> pixels(height * stride);
  for (size_t y = 0; y < height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* src = &raw[y * (stride + 1) + 1];
    uint8_t* row = &pixels[y * stride];
    const uint8_t* up = y > 0 ? &pixels[(y - 1) * stride] : nullptr;
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= static_cast<size_t>(channels) ? row[i - channels] : 0;
      const int b = up ? up[i] : 0;
      const int c = up && i >= static_cast<size_t>(channels) ? up[i - channels] : 0;
      int pred = 0;
      if (filter == 1) pred = a;
      if (filter == 2) pred = b;
      if (filter == 3) pred = (a + b) / 2;
      if (filter == 4) {
        const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
        pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
      }
      if (filter > 4) return {};
      row[i] = static_cast<uint8_t>(src[i] + pred);
    }
  }
  std::vector<float> chw(3 * height * size_t{width});
  for (size_t y = 0; y < height; ++y) {
    for (size_t x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int source = channels == 1 ? 0 : c;
        chw[(c * height + y) * width + x] = pixels[(y * width + x) * channels + source] / 255.f;
      }
    }
  }
  return at::from_blob(chw.data(), {1, 3, int64_t{height}, int64_t{width}}, at::kFloat).clone();
}

TEST(DarknetTinyTest, ClassifierOnRealImages) {
  SKIP_WITHOUT_MODEL();
  if (!fs::exists(fs::path(kDataDir) / "good/000.png")) {
    GTEST_SKIP() << "shared data directory " << kDataDir << " is absent";
  }
  c10::InferenceMode guard;
  auto net = Load(ModelOptions());
  ASSERT_NE(net, nullptr);

  std::vector<at::Tensor> images;
  for (const char* name : {"good/000.png", "cut/000.png", "hole/000.png", "good/001.png"}) {
    at::Tensor image = ReadPng(std::string(kDataDir) + "/" + name);
    ASSERT_TRUE(image.defined()) << name;
    if (images.empty()) {
      EXPECT_EQ(image.sizes(), (std::vector<int64_t>{1, 3, 800, 600}));
      // All RGB bytes of good/000.png sum to 27345751 (independent decoder).
      EXPECT_NEAR(image.mul(255).round().to(at::kDouble).sum().item<double>(), 27345751.0, 0.5);
    }
    // ml5 resizes with tf.image.resizeBilinear(alignCorners=true).
    images.push_back(at::upsample_bilinear2d(image, {224, 224}, /*align_corners=*/true));
  }
  // A synthetic control far from the tire pictures: a bright horizontal gradient.
  images.push_back(at::linspace(0, 1, 224).view({1, 1, 1, 224}).expand({1, 3, 224, 224}));
  at::Tensor batch = at::cat(images, 0).contiguous();

  const at::Tensor logits = net->ClassLogits(batch);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{5, 1000}));
  const at::Tensor probs = at::softmax(logits, 1);
  for (int64_t i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    EXPECT_NEAR(probs[i].sum().item<double>(), 1.0, 1e-4);
    EXPECT_GE(probs[i].min().item<float>(), 0.f);
    // Not degenerate: far from uniform (1/1000), logits spread out.
    EXPECT_GT(probs[i].max().item<float>(), 0.02f);
    EXPECT_GT(logits[i].std().item<float>(), 0.5f);
    const at::Tensor top = std::get<1>(probs[i].topk(5));
    std::cout << "image " << i << " top-5 classes:";
    for (int64_t k = 0; k < 5; ++k) {
      std::cout << " " << top[k].item<int64_t>() << " ("
                << probs[i][top[k].item<int64_t>()].item<float>() << ")";
    }
    std::cout << "\n";
  }
  // Different images → different outputs; the four tire images are closer to each other than
  // to the synthetic gradient.
  auto l1 = [&](int64_t a, int64_t b) { return probs[a].sub(probs[b]).abs().sum().item<double>(); };
  for (int64_t a = 0; a < 5; ++a) {
    for (int64_t b = a + 1; b < 5; ++b) EXPECT_GT(l1(a, b), 1e-3) << a << " vs " << b;
  }
  BackboneFeatures f = net->Forward(batch);
  const at::Tensor sim = f.image_embedding.matmul(f.image_embedding.t());
  for (int64_t i = 1; i < 4; ++i) {
    EXPECT_GT(sim[0][i].item<float>(), sim[0][4].item<float>()) << "tire image " << i;
  }
}

TEST(DarknetTinyTest, ForwardTiming) {
  SKIP_WITHOUT_MODEL();
  c10::InferenceMode guard;
  auto net = Load(ModelOptions());
  ASSERT_NE(net, nullptr);
  const at::Tensor images = RandomImages(8, 224, 224, 6);
  net->Forward(images);  // Warm-up (allocator, OpenBLAS threads).
  const auto start = std::chrono::steady_clock::now();
  const int kRepeats = 3;
  for (int i = 0; i < kRepeats; ++i) net->Forward(images);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
      (kRepeats * 8);
  std::cout << "darknet-tiny Forward at 224, batch 8, " << at::get_num_threads()
            << " intra-op threads: " << ms << " ms/image\n";
  RecordProperty("forward_ms_per_image", std::to_string(ms));
}

}  // namespace
}  // namespace musc
