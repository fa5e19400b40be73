#include "tests/core/musc/naive_reference.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

namespace musc {
namespace naive {
namespace {

at::Tensor Double(const at::Tensor& t) { return t.to(at::kDouble).contiguous(); }

// PyTorch's source coordinate for linear interpolation (aten/src/ATen/native/UpSample.h).
double SourceIndex(int64_t dst, int64_t in, int64_t out, bool align_corners) {
  if (align_corners) {
    if (out <= 1) return 0.0;
    return static_cast<double>(dst) * static_cast<double>(in - 1) / static_cast<double>(out - 1);
  }
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double src = scale * (static_cast<double>(dst) + 0.5) - 0.5;
  return src < 0.0 ? 0.0 : src;
}

}  // namespace

at::Tensor LayerNormPerImage(const at::Tensor& maps) {
  TORCH_CHECK(maps.dim() == 4, "naive LayerNormPerImage: N×C×H×W expected");
  const at::Tensor x = Double(maps);
  at::Tensor out = at::empty_like(x);
  const int64_t n = x.size(0);
  const int64_t count = x.numel() / std::max<int64_t>(n, 1);
  const double* src = x.data_ptr<double>();
  double* dst = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const double* a = src + i * count;
    double mean = 0.0;
    for (int64_t k = 0; k < count; ++k) mean += a[k];
    mean /= static_cast<double>(count);
    double var = 0.0;
    for (int64_t k = 0; k < count; ++k) var += (a[k] - mean) * (a[k] - mean);
    var /= static_cast<double>(count);
    const double inv = 1.0 / std::sqrt(var + 1e-5);
    for (int64_t k = 0; k < count; ++k) dst[i * count + k] = (a[k] - mean) * inv;
  }
  return out;
}

at::Tensor MeanPoolCountPad(const at::Tensor& maps, int64_t r) {
  TORCH_CHECK(maps.dim() == 4 && r >= 1 && r % 2 == 1, "naive MeanPoolCountPad: bad input");
  const at::Tensor x = Double(maps);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t pad = (r - 1) / 2;
  at::Tensor out = at::zeros({n, c, h, w}, x.options());
  const auto in = x.accessor<double, 4>();
  auto o = out.accessor<double, 4>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t xx = 0; xx < w; ++xx) {
          double sum = 0.0;
          for (int64_t dy = -pad; dy <= pad; ++dy) {
            for (int64_t dx = -pad; dx <= pad; ++dx) {
              const int64_t yy = y + dy, xs = xx + dx;
              if (yy >= 0 && yy < h && xs >= 0 && xs < w) sum += in[i][ch][yy][xs];
              // Outside the map: a padded zero, still counted in the r·r below.
            }
          }
          o[i][ch][y][xx] = sum / static_cast<double>(r * r);
        }
      }
    }
  }
  return out;
}

at::Tensor ResizeBilinear(const at::Tensor& maps, int64_t out_h, int64_t out_w,
                          bool align_corners) {
  TORCH_CHECK(maps.dim() == 4, "naive ResizeBilinear: N×C×H×W expected");
  const at::Tensor x = Double(maps);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor out = at::zeros({n, c, out_h, out_w}, x.options());
  const auto in = x.accessor<double, 4>();
  auto o = out.accessor<double, 4>();
  for (int64_t oy = 0; oy < out_h; ++oy) {
    const double sy = SourceIndex(oy, h, out_h, align_corners);
    const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(sy), h - 1);
    const int64_t y1 = std::min<int64_t>(y0 + 1, h - 1);
    const double ly = sy - static_cast<double>(y0);
    for (int64_t ox = 0; ox < out_w; ++ox) {
      const double sx = SourceIndex(ox, w, out_w, align_corners);
      const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(sx), w - 1);
      const int64_t x1 = std::min<int64_t>(x0 + 1, w - 1);
      const double lx = sx - static_cast<double>(x0);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t ch = 0; ch < c; ++ch) {
          o[i][ch][oy][ox] = (1 - ly) * ((1 - lx) * in[i][ch][y0][x0] + lx * in[i][ch][y0][x1]) +
                             ly * ((1 - lx) * in[i][ch][y1][x0] + lx * in[i][ch][y1][x1]);
        }
      }
    }
  }
  return out;
}

namespace {

double CubicNear(double x, double a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }  // |x| ≤ 1
double CubicFar(double x, double a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }  // 1..2

// The four taps' weights for fractional offset t ∈ [0, 1).
void CubicWeights(double t, double w[4]) {
  const double a = -0.75;
  w[0] = CubicFar(t + 1, a);
  w[1] = CubicNear(t, a);
  w[2] = CubicNear(1 - t, a);
  w[3] = CubicFar(2 - t, a);
}

}  // namespace

at::Tensor ResizeBicubic(const at::Tensor& maps, int64_t out_h, int64_t out_w, double ratio_h,
                         double ratio_w) {
  TORCH_CHECK(maps.dim() == 4, "naive ResizeBicubic: N×C×H×W expected");
  const at::Tensor x = Double(maps);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (ratio_h <= 0) ratio_h = static_cast<double>(h) / static_cast<double>(out_h);
  if (ratio_w <= 0) ratio_w = static_cast<double>(w) / static_cast<double>(out_w);
  at::Tensor out = at::zeros({n, c, out_h, out_w}, x.options());
  const auto in = x.accessor<double, 4>();
  auto o = out.accessor<double, 4>();
  auto clamp = [](int64_t v, int64_t size) { return std::min(std::max<int64_t>(v, 0), size - 1); };
  for (int64_t oy = 0; oy < out_h; ++oy) {
    const double sy = (static_cast<double>(oy) + 0.5) * ratio_h - 0.5;  // Not clamped (cubic).
    const int64_t y0 = static_cast<int64_t>(std::floor(sy));
    double wy[4];
    CubicWeights(sy - static_cast<double>(y0), wy);
    for (int64_t ox = 0; ox < out_w; ++ox) {
      const double sx = (static_cast<double>(ox) + 0.5) * ratio_w - 0.5;
      const int64_t x0 = static_cast<int64_t>(std::floor(sx));
      double wx[4];
      CubicWeights(sx - static_cast<double>(x0), wx);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t ch = 0; ch < c; ++ch) {
          double sum = 0.0;
          for (int ky = 0; ky < 4; ++ky) {
            double row = 0.0;
            for (int kx = 0; kx < 4; ++kx) {
              row += wx[kx] * in[i][ch][clamp(y0 - 1 + ky, h)][clamp(x0 - 1 + kx, w)];
            }
            sum += wy[ky] * row;
          }
          o[i][ch][oy][ox] = sum;
        }
      }
    }
  }
  return out;
}

at::Tensor NormaliseRows(const at::Tensor& rows) {
  TORCH_CHECK(rows.dim() == 2, "naive NormaliseRows: M×D expected");
  at::Tensor x = Double(rows).clone();
  const int64_t m = x.size(0), d = x.size(1);
  double* p = x.data_ptr<double>();
  for (int64_t i = 0; i < m; ++i) {
    double sq = 0.0;
    for (int64_t k = 0; k < d; ++k) sq += p[i * d + k] * p[i * d + k];
    const double norm = std::sqrt(sq);
    for (int64_t k = 0; k < d; ++k) p[i * d + k] /= norm;
  }
  return x;
}

at::Tensor AggregateNeighbourhood(const at::Tensor& normed_maps, int64_t r, int64_t grid_h,
                                  int64_t grid_w) {
  at::Tensor x = MeanPoolCountPad(normed_maps, r);
  if (x.size(2) != grid_h || x.size(3) != grid_w) {
    x = ResizeBilinear(x, grid_h, grid_w, /*align_corners=*/false);
  }
  const int64_t n = x.size(0), c = x.size(1);
  const auto in = x.accessor<double, 4>();
  at::Tensor z = at::zeros({n * grid_h * grid_w, c}, x.options());
  auto o = z.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t y = 0; y < grid_h; ++y) {
      for (int64_t xx = 0; xx < grid_w; ++xx) {
        const int64_t row = (i * grid_h + y) * grid_w + xx;
        for (int64_t ch = 0; ch < c; ++ch) o[row][ch] = in[i][ch][y][xx];
      }
    }
  }
  return NormaliseRows(z).view({n, grid_h * grid_w, c});
}

Ranks IntervalRanks(int64_t n_images, double interval_low, double interval_high) {
  const double others = static_cast<double>(n_images - 1);
  Ranks ranks;
  ranks.begin = static_cast<int64_t>(std::floor(interval_low * others));
  ranks.end = static_cast<int64_t>(std::floor(interval_high * others));
  if (ranks.begin > ranks.end) std::swap(ranks.begin, ranks.end);
  if (ranks.begin == ranks.end) {
    ranks.begin = std::min(ranks.begin, n_images - 2);
    ranks.end = ranks.begin + 1;
  }
  return ranks;
}

at::Tensor PatchToImageDistances(const at::Tensor& z) {
  TORCH_CHECK(z.dim() == 3, "naive PatchToImageDistances: N×L×C expected");
  const at::Tensor x = Double(z);
  const int64_t n = x.size(0), l = x.size(1), c = x.size(2);
  at::Tensor out = at::empty({n, l, n}, x.options());
  const double* zp = x.data_ptr<double>();
  double* d = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < l; ++p) {
      const double* a = zp + (i * l + p) * c;
      for (int64_t j = 0; j < n; ++j) {
        double best = std::numeric_limits<double>::infinity();
        if (j != i) {
          for (int64_t q = 0; q < l; ++q) {
            const double* b = zp + (j * l + q) * c;
            double sq = 0.0;
            for (int64_t k = 0; k < c; ++k) sq += (a[k] - b[k]) * (a[k] - b[k]);
            best = std::min(best, std::sqrt(sq));
          }
        }
        d[(i * l + p) * n + j] = best;
      }
    }
  }
  return out;
}

at::Tensor MutualScores(const at::Tensor& z, double interval_low, double interval_high) {
  const int64_t n = z.size(0), l = z.size(1);
  const Ranks ranks = IntervalRanks(n, interval_low, interval_high);
  const at::Tensor d = PatchToImageDistances(z);
  const double* dp = d.data_ptr<double>();
  at::Tensor out = at::zeros({n, l}, d.options());
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < l; ++p) {
      std::vector<double> values;
      for (int64_t j = 0; j < n; ++j) {
        if (j != i) values.push_back(dp[(i * l + p) * n + j]);
      }
      std::sort(values.begin(), values.end());
      double sum = 0.0;
      for (int64_t k = ranks.begin; k < ranks.end; ++k) sum += values[k];
      o[i * l + p] = sum / static_cast<double>(ranks.end - ranks.begin);
    }
  }
  return out;
}

at::Tensor PatchScores(const std::vector<at::Tensor>& layer_maps,
                       const std::vector<int64_t>& degrees, double interval_low,
                       double interval_high) {
  TORCH_CHECK(!layer_maps.empty() && !degrees.empty(), "naive PatchScores: nothing to score");
  const int64_t n = layer_maps[0].size(0);
  const int64_t gh = layer_maps[0].size(2), gw = layer_maps[0].size(3);
  at::Tensor sum = at::zeros({n, gh * gw}, at::kDouble);
  for (const at::Tensor& maps : layer_maps) {
    const at::Tensor normed = LayerNormPerImage(maps);
    for (int64_t r : degrees) {
      sum += MutualScores(AggregateNeighbourhood(normed, r, gh, gw), interval_low, interval_high);
    }
  }
  return (sum / static_cast<double>(layer_maps.size() * degrees.size())).view({n, gh, gw});
}

at::Tensor Rescore(const at::Tensor& raw, const at::Tensor& features,
                   const std::vector<int64_t>& windows) {
  const at::Tensor scores = Double(raw);
  if (!features.defined() || windows.empty() ||
      std::find(windows.begin(), windows.end(), 0) != windows.end()) {
    return scores.clone();
  }
  const int64_t n = scores.size(0);
  const at::Tensor f = Double(features);
  const int64_t dim = f.size(1);
  const double* s = scores.data_ptr<double>();
  const double* fp = f.data_ptr<double>();

  // c: min-max normalised raw scores (all zero when they are all equal).
  const double lo = *std::min_element(s, s + n);
  const double hi = *std::max_element(s, s + n);
  std::vector<double> c(n, 0.0);
  if (hi > lo) {
    for (int64_t i = 0; i < n; ++i) c[i] = (s[i] - lo) / (hi - lo);
  }
  // W = F·Fᵀ.
  std::vector<std::vector<double>> w(n, std::vector<double>(n, 0.0));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t k = 0; k < dim; ++k) w[i][j] += fp[i * dim + k] * fp[j * dim + k];
    }
  }
  at::Tensor out = at::zeros({n}, at::kDouble);
  double* o = out.data_ptr<double>();
  for (int64_t window : windows) {
    const int64_t kept = std::min(window, n);
    for (int64_t i = 0; i < n; ++i) {
      std::vector<int64_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return w[i][a] > w[i][b]; });
      double row_sum = 0.0, weighted = 0.0;
      for (int64_t k = 0; k < kept; ++k) {
        row_sum += w[i][order[k]];
        weighted += w[i][order[k]] * c[order[k]];
      }
      o[i] += weighted / row_sum;
    }
  }
  for (int64_t i = 0; i < n; ++i) o[i] /= static_cast<double>(windows.size());
  return out;
}

at::Tensor MaxOfMaps(const at::Tensor& maps) {
  const at::Tensor x = Double(maps);
  const int64_t n = x.size(0);
  const int64_t count = x.numel() / n;
  const double* p = x.data_ptr<double>();
  at::Tensor out = at::empty({n}, x.options());
  for (int64_t i = 0; i < n; ++i) {
    out.data_ptr<double>()[i] = *std::max_element(p + i * count, p + (i + 1) * count);
  }
  return out;
}

at::Tensor Randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::kFloat);
}

at::Tensor UnitRows(int64_t n, int64_t l, int64_t c, uint64_t seed) {
  return NormaliseRows(Randn({n * l, c}, seed)).to(at::kFloat).view({n, l, c}).contiguous();
}

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.sizes() == b.sizes(), "MaxAbsDiff: shapes differ: ", a.sizes(), " vs ", b.sizes());
  if (a.numel() == 0) return 0.0;
  const at::Tensor x = Double(a), y = Double(b);
  const double* p = x.data_ptr<double>();
  const double* q = y.data_ptr<double>();
  double worst = 0.0;
  for (int64_t k = 0; k < x.numel(); ++k) {
    const double diff = std::abs(p[k] - q[k]);
    if (!(diff <= worst)) worst = diff;  // Also propagates NaN.
  }
  return worst;
}

}  // namespace naive
}  // namespace musc
