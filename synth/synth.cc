#include "synth/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace musc {
namespace {

namespace fs = std::filesystem;

constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------------------------------------
// Randomness. splitmix64 is tiny, passes BigCrush and is specified by its integer arithmetic
// alone, so every platform produces the same stream; <random>'s distributions and cv::RNG give
// no such promise across library versions. Samples are keyed by hashing, not drawn in sequence,
// so an image (and every pixel's noise) depends only on its own key.

uint64_t Fmix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Mix(uint64_t a, uint64_t b) { return Fmix(Fmix(a) ^ b); }

uint64_t HashString(std::string_view s) {  // FNV-1a.
  uint64_t h = 0xCBF29CE484222325ull;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

double ToUnit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

class Rng {
 public:
  explicit Rng(uint64_t key) : state_(key) {}
  uint64_t Next() { return Fmix(state_++); }
  double Uniform() { return ToUnit(Next()); }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  int Index(int n) { return static_cast<int>(Next() % static_cast<uint64_t>(n)); }
  bool Chance(double p) { return Uniform() < p; }

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------------------------------------
// Deterministic math: only + − × ÷ and floor, which IEEE 754 rounds exactly, so results do not
// depend on the platform's libm (whose sin/cos may differ in the last bit between versions).

double Sin(double x) {
  const double k = std::floor(x / (2.0 * kPi) + 0.5);
  double r = x - k * (2.0 * kPi);  // [-π, π]
  if (r > kPi / 2) r = kPi - r;
  if (r < -kPi / 2) r = -kPi - r;  // [-π/2, π/2]: the Taylor series to r^17 is exact to 1e-13.
  const double r2 = r * r;
  double sum = 1.0;
  for (int n = 17; n >= 3; n -= 2) sum = 1.0 - r2 / (n * (n - 1)) * sum;
  return r * sum;
}

double Cos(double x) { return Sin(x + kPi / 2); }

double Clamp01(double x) { return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x); }

double SmoothStep(double e0, double e1, double x) {
  const double t = Clamp01((x - e0) / (e1 - e0));
  return t * t * (3.0 - 2.0 * t);
}

double Fade(double t) { return t * t * t * (t * (t * 6.0 - 15.0) + 10.0); }

double Lattice(uint64_t key, int64_t i, int64_t j) {
  return ToUnit(Mix(Mix(key, static_cast<uint64_t>(i)), static_cast<uint64_t>(j)));
}

// Value noise in [0, 1], smooth, one lattice cell per unit.
double ValueNoise(uint64_t key, double x, double y) {
  const double fx = std::floor(x), fy = std::floor(y);
  const auto ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
  const double tx = Fade(x - fx), ty = Fade(y - fy);
  const double a = Lattice(key, ix, iy), b = Lattice(key, ix + 1, iy);
  const double c = Lattice(key, ix, iy + 1), d = Lattice(key, ix + 1, iy + 1);
  const double top = a + (b - a) * tx, bottom = c + (d - c) * tx;
  return top + (bottom - top) * ty;
}

double ValueNoise1(uint64_t key, double x) { return ValueNoise(key, x, 0.0); }

double Fbm(uint64_t key, double x, double y, int octaves) {
  double sum = 0.0, weight = 0.0, amplitude = 1.0;
  for (int o = 0; o < octaves; ++o) {
    sum += amplitude * ValueNoise(Mix(key, static_cast<uint64_t>(o)), x, y);
    weight += amplitude;
    amplitude *= 0.5;
    x *= 2.0;
    y *= 2.0;
  }
  return sum / weight;
}

struct Rgb {
  double r = 0, g = 0, b = 0;
};
Rgb operator*(const Rgb& c, double s) { return {c.r * s, c.g * s, c.b * s}; }
Rgb Lerp(const Rgb& a, const Rgb& b, double t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
double Luma(const Rgb& c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; }

// ---------------------------------------------------------------------------------------------
// Products: noise-free colour at a point (pixel centres are at +0.5), in 0..255 RGB.

class Product {
 public:
  virtual ~Product() = default;
  // The product as photographed.
  virtual Rgb Shade(double x, double y) const = 0;
  // Coverage of the product's surface at the point (where surface defects can lie), 0..1.
  virtual double Surface(double x, double y) const = 0;
  // What shows where material is missing.
  virtual Rgb Backing(double x, double y) const = 0;
};

// Plain-weave fabric. The whole category is one bolt of cloth (yarn tints and slow shading keyed
// by the category's key); each image is a different crop of it, slightly rotated, which is the
// natural variation of a texture inspection camera.
class Fabric : public Product {
 public:
  Fabric(int size, uint64_t cloth_key, Rng& rng)
      : size_(size), period_(size / 24.0), key_(cloth_key) {
    const double theta = rng.Uniform(-2.0, 2.0) * kPi / 180.0;
    cos_ = Cos(theta);
    sin_ = Sin(theta);
    u0_ = rng.Uniform(0.0, 4000.0);
    v0_ = rng.Uniform(0.0, 4000.0);
  }

  Rgb Shade(double x, double y) const override {
    const double dx = x - size_ / 2.0, dy = y - size_ / 2.0;
    const double u = cos_ * dx - sin_ * dy + u0_, v = sin_ * dx + cos_ * dy + v0_;
    const double su = u / period_, sv = v / period_;
    const double fu0 = std::floor(su), fv0 = std::floor(sv);
    const auto iu = static_cast<int64_t>(fu0), iv = static_cast<int64_t>(fv0);
    const bool warp_on_top = ((iu + iv) & 1) == 0;
    // Across/along the yarn that is on top in this cell.
    const double across = warp_on_top ? su - fu0 : sv - fv0;
    const double along = warp_on_top ? sv - fv0 : su - fu0;
    const double along_px = warp_on_top ? v : u, across_px = warp_on_top ? u : v;
    const int64_t thread = warp_on_top ? iu : iv;
    // Round yarn 90 % of the pitch wide, diving under its neighbours at the cell ends.
    const double a = (across - 0.5) / 0.45;
    const double height = std::sqrt(std::max(0.0, 1.0 - a * a));
    const double e = 2.0 * along - 1.0;
    const double dive = 1.0 - 0.35 * e * e * e * e;
    double lum = 0.22 + 0.78 * height * dive;
    // Twisted fibres: fine striations slanted along the yarn.
    const double fibre = ValueNoise(Mix(key_, warp_on_top ? 11 : 12),
                                    (along_px + 0.9 * across_px) * 0.5, across_px * 1.7);
    lum *= 0.80 + 0.40 * fibre;
    // Each yarn is dyed slightly differently; the cloth shades slowly over larger distances.
    lum *= 0.93 + 0.14 * Lattice(Mix(key_, warp_on_top ? 21 : 22), thread, 0);
    lum *= 0.90 + 0.20 * Fbm(Mix(key_, 31), u / (7.0 * period_), v / (7.0 * period_), 2);
    const Rgb warp{176, 154, 120}, weft{168, 150, 122};
    return (warp_on_top ? warp : weft) * lum;
  }

  double Surface(double, double) const override { return 1.0; }

  Rgb Backing(double x, double y) const override {  // Dark backing fabric seen through a hole.
    const double n = ValueNoise(Mix(key_, 41), x / 3.0, y / 3.0);
    return Rgb{34, 30, 28} * (0.8 + 0.4 * n);
  }

 private:
  int size_;
  double period_;
  uint64_t key_;
  double cos_, sin_, u0_, v0_;
};

// A turned steel flange (ring with a bore and six bolt holes) on a dark table, lit from the
// upper left. Lathe marks are concentric (they depend on the radius only), so the part looks
// the same at any rotation except for where its holes are.
class Flange : public Product {
 public:
  Flange(int size, uint64_t part_key, Rng& rng) : size_(size), key_(part_key) {
    const double s = size * rng.Uniform(0.98, 1.02);
    cx_ = size / 2.0 + rng.Uniform(-0.02, 0.02) * size;
    cy_ = size / 2.0 + rng.Uniform(-0.02, 0.02) * size;
    outer_ = 0.37 * s;
    inner_ = 0.15 * s;
    hole_ = 0.038 * s;
    chamfer_ = 0.018 * s;
    hole_chamfer_ = 0.012 * s;
    const double rotation = rng.Uniform(-kPi, kPi);
    const double bolt_circle = 0.262 * s;
    for (int k = 0; k < 6; ++k) {
      holes_[k][0] = cx_ + bolt_circle * Cos(rotation + k * kPi / 3.0);
      holes_[k][1] = cy_ + bolt_circle * Sin(rotation + k * kPi / 3.0);
    }
    const double light = (-135.0 + rng.Uniform(-4.0, 4.0)) * kPi / 180.0;
    light_cos_ = Cos(light);
    light_sin_ = Sin(light);
  }

  Rgb Shade(double x, double y) const override { return ShadeWith(x, y, /*holes=*/true); }
  double Surface(double x, double y) const override {
    return Clamp01(0.5 - MetalDistance(x, y, /*holes=*/true));
  }
  Rgb Backing(double x, double y) const override { return Table(x, y); }

  // The part as if its holes had never been drilled (the look of a "missing hole" defect).
  Rgb ShadeWithoutHoles(double x, double y) const { return ShadeWith(x, y, /*holes=*/false); }

  int hole_count() const { return 6; }
  double hole_x(int k) const { return holes_[k][0]; }
  double hole_y(int k) const { return holes_[k][1]; }
  double hole_radius() const { return hole_; }
  double hole_chamfer() const { return hole_chamfer_; }
  double cx() const { return cx_; }
  double cy() const { return cy_; }
  double outer() const { return outer_; }
  double inner() const { return inner_; }
  double chamfer() const { return chamfer_; }

 private:
  // Signed distance to the metal in pixels, negative inside.
  double MetalDistance(double x, double y, bool holes) const {
    const double r = std::sqrt((x - cx_) * (x - cx_) + (y - cy_) * (y - cy_));
    double sd = std::max(r - outer_, inner_ - r);
    if (holes) sd = std::max(sd, -(NearestHole(x, y) - hole_));
    return sd;
  }

  double NearestHole(double x, double y, int* which = nullptr) const {
    double best = 1e300;
    for (int k = 0; k < 6; ++k) {
      const double d = std::sqrt((x - holes_[k][0]) * (x - holes_[k][0]) +
                                 (y - holes_[k][1]) * (y - holes_[k][1]));
      if (d < best) {
        best = d;
        if (which != nullptr) *which = k;
      }
    }
    return best;
  }

  Rgb Table(double x, double y) const {
    const double dx = x - cx_, dy = y - cy_;
    const double r = std::sqrt(dx * dx + dy * dy);
    const double half = size_ / 2.0;
    const double vx = (x - half) / half, vy = (y - half) / half;
    double lum = (1.0 - 0.18 * (vx * vx + vy * vy)) *
                 (0.92 + 0.16 * Fbm(Mix(key_, 51), x / 24.0, y / 24.0, 2));
    if (r < outer_) {
      lum *= 0.5;  // Seen through the bore or a hole: in the part's shadow.
    } else {
      const double t = Clamp01(1.0 - (r - outer_) / (0.06 * size_));
      lum *= 1.0 - 0.4 * t * t;  // Contact shadow around the part.
    }
    return Rgb{40, 43, 48} * lum;
  }

  Rgb ShadeWith(double x, double y, bool holes) const {
    const double coverage = Clamp01(0.5 - MetalDistance(x, y, holes));
    const Rgb table = Table(x, y);
    if (coverage <= 0.0) return table;
    const double dx = x - cx_, dy = y - cy_;
    const double r = std::max(1e-9, std::sqrt(dx * dx + dy * dy));
    const double ct = dx / r, st = dy / r;
    // Brushed steel reflects most where the marks run across the light: cos 2(θ − λ).
    const double cos2l = light_cos_ * light_cos_ - light_sin_ * light_sin_;
    const double sin2l = 2.0 * light_cos_ * light_sin_;
    const double aniso = (ct * ct - st * st) * cos2l + 2.0 * ct * st * sin2l;
    const double lathe =
        0.6 * ValueNoise1(Mix(key_, 61), r * 0.9) + 0.4 * ValueNoise1(Mix(key_, 62), r * 0.23);
    double lum = 0.64 + 0.14 * aniso + 0.18 * (lathe - 0.5);
    // Chamfers: tilted faces whose brightness follows their normal's angle to the light.
    const double facing_out = ct * light_cos_ + st * light_sin_;
    const double w_outer = 1.0 - SmoothStep(0.75, 1.0, (outer_ - r) / chamfer_);
    lum += w_outer * (0.42 * facing_out - 0.06 - (lum - 0.64));
    const double w_inner = 1.0 - SmoothStep(0.75, 1.0, (r - inner_) / chamfer_);
    lum += w_inner * (-0.42 * facing_out - 0.06 - (lum - 0.64));
    if (holes) {
      int k = 0;
      const double d = std::max(1e-9, NearestHole(x, y, &k));
      const double w_hole = 1.0 - SmoothStep(0.75, 1.0, (d - hole_) / hole_chamfer_);
      const double facing =
          -((x - holes_[k][0]) / d * light_cos_ + (y - holes_[k][1]) / d * light_sin_);
      lum += w_hole * (0.38 * facing - 0.1 - (lum - 0.64));
    }
    const Rgb metal = Rgb{170, 171, 176} * std::max(0.1, lum);
    return Lerp(table, metal, coverage);
  }

  int size_;
  uint64_t key_;
  double cx_, cy_, outer_, inner_, hole_, chamfer_, hole_chamfer_;
  double holes_[6][2];
  double light_cos_, light_sin_;
};

// ---------------------------------------------------------------------------------------------
// Defects: a painted opacity per pixel (0 outside the painted shape) and the colour painted.

struct Defect {
  cv::Mat alpha;  // CV_64F size × size.
  std::function<Rgb(double x, double y, const Rgb& clean)> paint;
};

// Below this geometric coverage a pixel is left untouched: the mask then only holds pixels that
// carry a visible part of the defect, instead of a faint antialiased halo.
constexpr double kMinCoverage = 0.25;

// Opacity = opacity × (coverage of `inside` by 4×4 subsamples) × product surface coverage, over
// the box [x0, x1) × [y0, y1). Returns the painted area in pixels.
double PaintShape(const std::function<bool(double, double)>& inside, double x0, double y0,
                  double x1, double y1, const std::function<double(double, double)>& surface,
                  double opacity, cv::Mat* alpha) {
  const int n = alpha->rows;
  const int ix0 = std::max(0, static_cast<int>(std::floor(x0))),
            iy0 = std::max(0, static_cast<int>(std::floor(y0)));
  const int ix1 = std::min(n, static_cast<int>(std::ceil(x1)) + 1),
            iy1 = std::min(n, static_cast<int>(std::ceil(y1)) + 1);
  double area = 0.0;
  for (int y = iy0; y < iy1; ++y) {
    for (int x = ix0; x < ix1; ++x) {
      int hits = 0;
      for (int sy = 0; sy < 4; ++sy) {
        for (int sx = 0; sx < 4; ++sx) {
          if (inside(x + (sx + 0.5) / 4.0, y + (sy + 0.5) / 4.0)) ++hits;
        }
      }
      if (hits == 0) continue;
      const double coverage = hits / 16.0 * surface(x + 0.5, y + 0.5);
      if (coverage < kMinCoverage) continue;
      alpha->at<double>(y, x) = std::max(alpha->at<double>(y, x), opacity * coverage);
      area += 1.0;
    }
  }
  return area;
}

struct Point {
  double x, y;
};

// A stroke: a polyline with a half-width per vertex (linearly interpolated along segments).
struct Stroke {
  std::vector<Point> points;
  std::vector<double> half_widths;

  bool Inside(double x, double y) const {
    for (size_t i = 0; i + 1 < points.size(); ++i) {
      const Point& a = points[i];
      const Point& b = points[i + 1];
      const double ex = b.x - a.x, ey = b.y - a.y;
      const double len2 = ex * ex + ey * ey;
      const double t = len2 > 0 ? Clamp01(((x - a.x) * ex + (y - a.y) * ey) / len2) : 0.0;
      const double px = a.x + t * ex - x, py = a.y + t * ey - y;
      const double hw = half_widths[i] + t * (half_widths[i + 1] - half_widths[i]);
      if (px * px + py * py <= hw * hw) return true;
    }
    return false;
  }
  void Bounds(double* x0, double* y0, double* x1, double* y1) const {
    double w = 0.0;
    for (double h : half_widths) w = std::max(w, h);
    *x0 = *y0 = 1e300;
    *x1 = *y1 = -1e300;
    for (const Point& p : points) {
      *x0 = std::min(*x0, p.x - w);
      *y0 = std::min(*y0, p.y - w);
      *x1 = std::max(*x1, p.x + w);
      *y1 = std::max(*y1, p.y + w);
    }
  }
};

// A gently curved scratch: a quadratic Bézier, tapered at both ends.
// Lines are at least this wide whatever the image size: a thinner one would leave no pixel with
// the minimum coverage in small images, i.e. an empty mask.
constexpr double kMinLineWidth = 1.5;

Stroke CurvedLine(Point mid, Point direction, double length, double width, double bend) {
  width = std::max(width, kMinLineWidth);
  const double c = direction.x, s = direction.y;
  const Point p0{mid.x - c * length / 2, mid.y - s * length / 2};
  const Point p2{mid.x + c * length / 2, mid.y + s * length / 2};
  const Point p1{mid.x - s * bend * length, mid.y + c * bend * length};
  Stroke stroke;
  constexpr int kSegments = 32;
  for (int i = 0; i <= kSegments; ++i) {
    const double t = static_cast<double>(i) / kSegments, u = 1.0 - t;
    stroke.points.push_back({u * u * p0.x + 2 * u * t * p1.x + t * t * p2.x,
                             u * u * p0.y + 2 * u * t * p1.y + t * t * p2.y});
    const double e = 2.0 * t - 1.0;
    stroke.half_widths.push_back(width / 2.0 * (1.0 - 0.65 * e * e * e * e));
  }
  return stroke;
}

// A crack: a jagged random walk that thins towards its tip.
Stroke JaggedLine(Point start, double angle, double length, double width, Rng& rng) {
  width = std::max(width, kMinLineWidth);
  Stroke stroke;
  const double step = std::max(1.5, length / 18.0);
  const int steps = static_cast<int>(length / step);
  Point p = start;
  for (int i = 0; i <= steps; ++i) {
    stroke.points.push_back(p);
    stroke.half_widths.push_back(width / 2.0 * (1.0 - 0.6 * i / std::max(1, steps)));
    angle += rng.Uniform(-0.6, 0.6);
    p = {p.x + step * Cos(angle), p.y + step * Sin(angle)};
  }
  return stroke;
}

// An irregular blob: a few overlapping soft balls with a noisy rim (a stain, a frayed hole).
struct Blob {
  std::vector<Point> centres;
  std::vector<double> radii;
  uint64_t rim_key;
  double rim_scale;     // Pixels per rim-noise cell.
  double rim_strength;  // 0 = smooth outline.

  bool Inside(double x, double y) const {
    double field = 0.0;
    for (size_t i = 0; i < centres.size(); ++i) {
      const double dx = x - centres[i].x, dy = y - centres[i].y;
      const double q = 1.0 - (dx * dx + dy * dy) / (radii[i] * radii[i]);
      if (q > 0) field += q * q * q;
    }
    field += rim_strength * (ValueNoise(rim_key, x / rim_scale, y / rim_scale) - 0.5);
    return field >= 0.3;
  }
  void Bounds(double* x0, double* y0, double* x1, double* y1) const {
    *x0 = *y0 = 1e300;
    *x1 = *y1 = -1e300;
    for (size_t i = 0; i < centres.size(); ++i) {
      *x0 = std::min(*x0, centres[i].x - radii[i]);
      *y0 = std::min(*y0, centres[i].y - radii[i]);
      *x1 = std::max(*x1, centres[i].x + radii[i]);
      *y1 = std::max(*y1, centres[i].y + radii[i]);
    }
  }
};

Blob MakeBlob(Point centre, double radius, int balls, double rim_scale, double rim_strength,
              Rng& rng) {
  Blob blob{{}, {}, rng.Next(), rim_scale, rim_strength};
  for (int i = 0; i < balls; ++i) {
    const double a = rng.Uniform(-kPi, kPi), d = i == 0 ? 0.0 : rng.Uniform(0.2, 0.55) * radius;
    blob.centres.push_back({centre.x + d * Cos(a), centre.y + d * Sin(a)});
    blob.radii.push_back(radius * (i == 0 ? 1.2 : rng.Uniform(0.6, 0.95)));
  }
  return blob;
}

double PaintStroke(const Stroke& stroke, const std::function<double(double, double)>& surface,
                   double opacity, cv::Mat* alpha) {
  double x0, y0, x1, y1;
  stroke.Bounds(&x0, &y0, &x1, &y1);
  return PaintShape([&](double x, double y) { return stroke.Inside(x, y); }, x0, y0, x1, y1,
                    surface, opacity, alpha);
}

double PaintBlob(const Blob& blob, const std::function<double(double, double)>& surface,
                 double opacity, cv::Mat* alpha) {
  double x0, y0, x1, y1;
  blob.Bounds(&x0, &y0, &x1, &y1);
  return PaintShape([&](double x, double y) { return blob.Inside(x, y); }, x0, y0, x1, y1, surface,
                    opacity, alpha);
}

// Colour shifts of a stain keep the shading underneath (it is on the surface, not a sticker).
std::function<Rgb(double, double, const Rgb&)> Stain(Rgb colour, double reference_luma) {
  return [colour, reference_luma](double, double, const Rgb& clean) {
    return colour * (0.55 + 0.45 * Luma(clean) / reference_luma);
  };
}

std::function<Rgb(double, double, const Rgb&)> Darken(double factor) {
  return [factor](double, double, const Rgb& clean) { return clean * factor; };
}

std::function<Rgb(double, double, const Rgb&)> Solid(Rgb colour) {
  return [colour](double, double, const Rgb& clean) {
    // A little of the surface's shading shows through, so the line is not flat.
    return Lerp(colour, clean, 0.15);
  };
}

// Places a defect: `attempt` paints into a fresh alpha and returns the painted area; a placement
// is kept once it paints at least `min_area` pixels (objects clip defects to their surface).
// Retries come from the same stream, so the result is still a function of the key.
Defect Place(int size, double min_area, const std::function<double(cv::Mat*)>& attempt) {
  min_area = std::max(min_area, 3.0);
  Defect defect;
  for (int tries = 0; tries < 64; ++tries) {
    defect.alpha = cv::Mat::zeros(size, size, CV_64F);
    if (attempt(&defect.alpha) >= min_area) break;
  }
  return defect;
}

Defect MakeFabricDefect(const Fabric& fabric, std::string_view type, int size, Rng& rng) {
  const double unit = size / 256.0;  // Defect sizes are designed at 256 px and scale with it.
  const auto surface = [&fabric](double x, double y) { return fabric.Surface(x, y); };
  const auto anywhere = [&](double margin) {
    return Point{rng.Uniform(margin, size - margin), rng.Uniform(margin, size - margin)};
  };
  Defect defect;
  if (type == "scratch") {  // A stray or pulled thread.
    const bool bright = rng.Chance(0.5);
    defect = Place(size, 40 * unit, [&](cv::Mat* alpha) {
      // Lying across the weave (20°..70° off the yarn axes): a thread along a yarn axis hides
      // among the yarns' own dark gaps and bright crowns, for a human as for a CNN.
      const double a = rng.Uniform(20.0, 70.0) * kPi / 180.0 + rng.Index(4) * kPi / 2;
      const double bend = (rng.Chance(0.5) ? 1.0 : -1.0) * rng.Uniform(0.08, 0.25);
      const Stroke s = CurvedLine(anywhere(0.2 * size), {Cos(a), Sin(a)},
                                  rng.Uniform(0.2, 0.3) * size, rng.Uniform(2.6, 3.4) * unit, bend);
      return PaintStroke(s, surface, 0.95, alpha);
    });
    defect.paint = bright ? Solid({236, 230, 214}) : Solid({28, 24, 20});
  } else if (type == "spot") {
    static constexpr Rgb kStains[] = {{70, 42, 26}, {172, 44, 40}, {48, 78, 160}, {34, 31, 29}};
    const Rgb colour = kStains[rng.Index(4)];
    defect = Place(size, 60 * unit * unit, [&](cv::Mat* alpha) {
      const Blob b = MakeBlob(anywhere(0.12 * size), rng.Uniform(0.035, 0.055) * size, 4,
                              3.0 * unit, 0.25, rng);
      return PaintBlob(b, surface, 0.88, alpha);
    });
    defect.paint = Stain(colour, 120.0);
  } else if (type == "missing") {  // A hole in the weave showing the backing; frayed rim.
    defect = Place(size, 90 * unit * unit, [&](cv::Mat* alpha) {
      const Blob b =
          MakeBlob(anywhere(0.12 * size), rng.Uniform(0.04, 0.06) * size, 3, 2.0 * unit, 0.45, rng);
      return PaintBlob(b, surface, 1.0, alpha);
    });
    defect.paint = [&fabric](double x, double y, const Rgb&) { return fabric.Backing(x, y); };
  } else {  // crack: a cut through the cloth.
    defect = Place(size, 25 * unit, [&](cv::Mat* alpha) {
      const Stroke s = JaggedLine(anywhere(0.2 * size), rng.Uniform(-kPi, kPi),
                                  rng.Uniform(0.12, 0.2) * size, 2.4 * unit, rng);
      return PaintStroke(s, surface, 0.92, alpha);
    });
    defect.paint = Darken(0.18);
  }
  return defect;
}

Defect MakeFlangeDefect(const Flange& part, std::string_view type, int size, Rng& rng) {
  const double unit = size / 256.0;
  const auto surface = [&part](double x, double y) { return part.Surface(x, y); };
  // A point on the ring's flat face, away from its edges.
  const auto on_face = [&]() {
    const double a = rng.Uniform(-kPi, kPi);
    const double r =
        rng.Uniform(part.inner() + part.chamfer() * 1.5, part.outer() - part.chamfer() * 1.5);
    return Point{part.cx() + r * Cos(a), part.cy() + r * Sin(a)};
  };
  Defect defect;
  if (type == "scratch") {
    const bool bright = rng.Chance(0.5);
    defect = Place(size, 45 * unit, [&](cv::Mat* alpha) {
      const Point mid = on_face();
      // Mostly along the ring (a part dragged over a burr), up to 50° off the tangent: the
      // radial unit vector turned by ±90° ± 50°.
      const double rx = mid.x - part.cx(), ry = mid.y - part.cy();
      const double rl = std::sqrt(rx * rx + ry * ry);
      const double turn = (rng.Chance(0.5) ? 1.0 : -1.0) * kPi / 2 + rng.Uniform(-0.87, 0.87);
      const double c = Cos(turn), s = Sin(turn);
      const Point dir{(rx * c - ry * s) / rl, (rx * s + ry * c) / rl};
      const Stroke stroke = CurvedLine(mid, dir, rng.Uniform(0.14, 0.24) * size,
                                       rng.Uniform(1.8, 2.6) * unit, rng.Uniform(-0.2, 0.2));
      return PaintStroke(stroke, surface, 0.9, alpha);
    });
    defect.paint = bright ? Solid({238, 238, 242}) : Darken(0.3);
  } else if (type == "spot") {  // Rust, oil, corrosion.
    static constexpr Rgb kStains[] = {{150, 76, 38}, {52, 46, 40}, {78, 128, 104}};
    const Rgb colour = kStains[rng.Index(3)];
    defect = Place(size, 60 * unit * unit, [&](cv::Mat* alpha) {
      const Blob b =
          MakeBlob(on_face(), rng.Uniform(0.028, 0.045) * size, 4, 3.0 * unit, 0.25, rng);
      return PaintBlob(b, surface, 0.88, alpha);
    });
    defect.paint = Stain(colour, 110.0);
  } else if (type == "missing") {
    if (rng.Chance(0.5)) {  // A bolt hole never drilled: the solid face shows instead.
      const int k = rng.Index(part.hole_count());
      const double r = part.hole_radius() + part.hole_chamfer();
      const double hx = part.hole_x(k), hy = part.hole_y(k);
      defect.alpha = cv::Mat::zeros(size, size, CV_64F);
      PaintShape(
          [&](double x, double y) { return (x - hx) * (x - hx) + (y - hy) * (y - hy) <= r * r; },
          hx - r, hy - r, hx + r, hy + r, [](double, double) { return 1.0; }, 1.0, &defect.alpha);
      defect.paint = [&part](double x, double y, const Rgb&) {
        return part.ShadeWithoutHoles(x, y);
      };
    } else {  // A piece bitten out of the rim: the table shows through.
      defect = Place(size, 80 * unit * unit, [&](cv::Mat* alpha) {
        const double a = rng.Uniform(-kPi, kPi);
        const double rb = rng.Uniform(0.045, 0.065) * size;
        const double d = part.outer() + 0.35 * rb;
        const double bx = part.cx() + d * Cos(a), by = part.cy() + d * Sin(a);
        return PaintShape(
            [&](double x, double y) {
              return (x - bx) * (x - bx) + (y - by) * (y - by) <= rb * rb;
            },
            bx - rb, by - rb, bx + rb, by + rb, surface, 1.0, alpha);
      });
      defect.paint = [&part](double x, double y, const Rgb&) { return part.Backing(x, y); };
    }
  } else {  // crack: from the bore or the rim into the face.
    defect = Place(size, 25 * unit, [&](cv::Mat* alpha) {
      const double a = rng.Uniform(-kPi, kPi);
      const bool from_rim = rng.Chance(0.5);
      const double r = from_rim ? part.outer() - 1.0 : part.inner() + 1.0;
      const Point start{part.cx() + r * Cos(a), part.cy() + r * Sin(a)};
      const double heading = a + (from_rim ? kPi : 0.0) + rng.Uniform(-0.5, 0.5);
      const Stroke s = JaggedLine(start, heading, rng.Uniform(0.08, 0.14) * size, 2.0 * unit, rng);
      return PaintStroke(s, surface, 0.92, alpha);
    });
    defect.paint = Darken(0.2);
  }
  return defect;
}

// ---------------------------------------------------------------------------------------------
// Camera: exposure jitter and sensor noise, keyed by pixel position so that the image with and
// without its defect differ only where the defect was painted.

struct Camera {
  double gain, offset, noise_sigma;
  uint64_t noise_key;
};

uint8_t Expose(double value, const Camera& camera, uint64_t pixel_channel) {
  // Irwin–Hall: the sum of four uniforms, rescaled to unit variance, is a close enough Gaussian
  // for sensor noise and needs no log/cos.
  const uint64_t h = Mix(camera.noise_key, pixel_channel);
  double sum = 0.0;
  for (int i = 0; i < 4; ++i) sum += static_cast<double>((h >> (16 * i)) & 0xFFFF) / 65536.0;
  const double noise = (sum - 2.0) * 1.7320508075688772;
  const double v =
      std::floor(camera.gain * value + camera.offset + camera.noise_sigma * noise + 0.5);
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

bool ValidCategoryName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of("/\\") == std::string_view::npos;
}

absl::Status WriteImage(const fs::path& path, const cv::Mat& image) {
  try {
    if (!cv::imwrite(path.string(), image, {cv::IMWRITE_PNG_COMPRESSION, 6})) {
      return absl::InternalError(absl::StrCat("cannot write ", path.string()));
    }
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("cannot write ", path.string(), ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status MakeDirectory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("cannot create directory ", dir.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

std::string Numbered(int index, std::string_view suffix) {
  char name[32];
  std::snprintf(name, sizeof(name), "%03d", index);
  return absl::StrCat(name, std::string(suffix));
}

}  // namespace

absl::StatusOr<ProductKind> ParseProductKind(std::string_view name) {
  if (name == "texture") return ProductKind::kTexture;
  if (name == "object") return ProductKind::kObject;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown product kind '", std::string(name), "' (known: texture, object)"));
}

std::string_view ProductKindName(ProductKind kind) {
  return kind == ProductKind::kObject ? "object" : "texture";
}

const std::vector<std::string>& KnownDefectTypes() {
  static const std::vector<std::string> kTypes = {"scratch", "spot", "missing", "crack"};
  return kTypes;
}

namespace {

// Everything but the output folder, which rendering alone does not need.
absl::Status ValidateContentOptions(const SynthOptions& options) {
  if (!ValidCategoryName(options.category)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "category '", options.category, "' must be one non-empty path component (no '/')"));
  }
  if (options.kind != ProductKind::kTexture && options.kind != ProductKind::kObject) {
    return absl::InvalidArgumentError("unknown product kind");
  }
  if (options.size < 32 || options.size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("size must be in 32..4096 pixels, got ", options.size));
  }
  const auto& known = KnownDefectTypes();
  for (size_t i = 0; i < options.defect_types.size(); ++i) {
    const std::string& type = options.defect_types[i];
    if (std::find(known.begin(), known.end(), type) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown defect type '", type, "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
    if (std::find(options.defect_types.begin(), options.defect_types.begin() + i, type) !=
        options.defect_types.begin() + i) {
      return absl::InvalidArgumentError(absl::StrCat("defect type '", type, "' given twice"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSynthOptions(const SynthOptions& options) {
  if (options.out_dir.empty()) return absl::InvalidArgumentError("out_dir is empty");
  if (absl::Status s = ValidateContentOptions(options); !s.ok()) return s;
  if (options.good_count < 0 || options.defective_count < 0 || options.train_good_count < 0) {
    return absl::InvalidArgumentError("image counts must not be negative");
  }
  if (options.defective_count > 0 && options.defect_types.empty()) {
    return absl::InvalidArgumentError(
        "defective_count > 0 but no defect types (set defective_count to 0 for good images only)");
  }
  const int64_t defective = static_cast<int64_t>(options.defective_count) *
                            static_cast<int64_t>(options.defect_types.size());
  if (options.good_count + defective + options.train_good_count == 0) {
    return absl::InvalidArgumentError("nothing to generate: every image count is 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<SynthSample> RenderSyntheticSample(const SynthOptions& options,
                                                  std::string_view type, int index, bool train) {
  if (absl::Status s = ValidateContentOptions(options); !s.ok()) return s;
  const auto& known = KnownDefectTypes();
  const bool good = type == "good";
  if (!good && std::find(known.begin(), known.end(), type) == known.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown defect type '", std::string(type), "'"));
  }
  if (index < 0) return absl::InvalidArgumentError("index must not be negative");
  if (train && !good) return absl::InvalidArgumentError("the train split holds good images only");

  const int size = options.size;
  const uint64_t category_key =
      Mix(Mix(options.seed, static_cast<uint64_t>(options.kind) + 1), 0x5EEDull);
  const uint64_t sample_key =
      Mix(Mix(Mix(category_key, HashString(train ? "train" : "test")), HashString(type)),
          static_cast<uint64_t>(index));
  Rng scene_rng(Mix(sample_key, 1));
  Rng defect_rng(Mix(sample_key, 2));

  std::unique_ptr<Product> product;
  const Flange* flange = nullptr;
  if (options.kind == ProductKind::kTexture) {
    product = std::make_unique<Fabric>(size, Mix(category_key, 3), scene_rng);
  } else {
    auto part = std::make_unique<Flange>(size, Mix(sample_key, 3), scene_rng);
    flange = part.get();
    product = std::move(part);
  }
  Camera camera;
  camera.gain = scene_rng.Uniform(0.95, 1.05);
  camera.offset = scene_rng.Uniform(-4.0, 4.0);
  camera.noise_sigma = 2.0;
  camera.noise_key = Mix(sample_key, 4);

  Defect defect;
  if (!good) {
    defect = flange != nullptr
                 ? MakeFlangeDefect(*flange, type, size, defect_rng)
                 : MakeFabricDefect(static_cast<const Fabric&>(*product), type, size, defect_rng);
  }

  SynthSample sample;
  sample.clean.create(size, size, CV_8UC3);
  if (!good) sample.mask = cv::Mat::zeros(size, size, CV_8UC1);
  for (int y = 0; y < size; ++y) {
    auto* row = sample.clean.ptr<cv::Vec3b>(y);
    for (int x = 0; x < size; ++x) {
      const Rgb c = product->Shade(x + 0.5, y + 0.5);
      const uint64_t pixel = (static_cast<uint64_t>(y) * size + x) * 3;
      row[x] = {Expose(c.b, camera, pixel + 2), Expose(c.g, camera, pixel + 1),
                Expose(c.r, camera, pixel)};
    }
  }
  sample.image = sample.clean.clone();
  if (good) return sample;
  for (int y = 0; y < size; ++y) {
    auto* row = sample.image.ptr<cv::Vec3b>(y);
    const double* alpha = defect.alpha.ptr<double>(y);
    uint8_t* mask = sample.mask.ptr<uint8_t>(y);
    for (int x = 0; x < size; ++x) {
      if (alpha[x] <= 0.0) continue;
      const Rgb clean = product->Shade(x + 0.5, y + 0.5);
      const Rgb c = Lerp(clean, defect.paint(x + 0.5, y + 0.5, clean), alpha[x]);
      const uint64_t pixel = (static_cast<uint64_t>(y) * size + x) * 3;
      row[x] = {Expose(c.b, camera, pixel + 2), Expose(c.g, camera, pixel + 1),
                Expose(c.r, camera, pixel)};
      mask[x] = 255;
    }
  }
  return sample;
}

absl::Status WriteSyntheticCategory(const SynthOptions& options) {
  if (absl::Status s = ValidateSynthOptions(options); !s.ok()) return s;
  const fs::path root = fs::path(options.out_dir) / options.category;
  std::error_code ec;
  if (fs::exists(root, ec) && !fs::is_directory(root, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(root.string(), " exists and is not a directory"));
  }
  if (fs::is_directory(root, ec) && !fs::is_empty(root, ec)) {
    if (!options.overwrite) {
      return absl::FailedPreconditionError(
          absl::StrCat(root.string(), " already holds files; choose another folder or overwrite"));
    }
    for (const char* sub : {"test", "ground_truth", "train"}) {
      fs::remove_all(root / sub, ec);
      if (ec) {
        return absl::Status(
            absl::ErrnoToStatusCode(ec.value()),
            absl::StrCat("cannot remove ", (root / sub).string(), ": ", ec.message()));
      }
    }
  }

  struct Split {
    std::string type;
    int count;
    bool train;
  };
  std::vector<Split> splits = {{"good", options.good_count, false}};
  for (const std::string& type : options.defect_types) {
    splits.push_back({type, options.defective_count, false});
  }
  if (options.train_good_count > 0) splits.push_back({"good", options.train_good_count, true});

  for (const Split& split : splits) {
    if (split.count == 0) continue;
    const fs::path images = root / (split.train ? "train" : "test") / split.type;
    const fs::path masks = root / "ground_truth" / split.type;
    if (absl::Status s = MakeDirectory(images); !s.ok()) return s;
    if (split.type != "good") {
      if (absl::Status s = MakeDirectory(masks); !s.ok()) return s;
    }
    for (int i = 0; i < split.count; ++i) {
      absl::StatusOr<SynthSample> sample =
          RenderSyntheticSample(options, split.type, i, split.train);
      if (!sample.ok()) return sample.status();
      if (absl::Status s = WriteImage(images / Numbered(i, ".png"), sample->image); !s.ok()) {
        return s;
      }
      if (!sample->mask.empty()) {
        if (absl::Status s = WriteImage(masks / Numbered(i, "_mask.png"), sample->mask); !s.ok()) {
          return s;
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace musc
