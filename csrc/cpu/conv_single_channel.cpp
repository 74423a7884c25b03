// Convolutions of one-channel images on the CPU: the input gradient of a
// convolution with one input channel, which is also the transposed
// convolution with one output channel (an image generator's last layer).
//
// oneDNN runs this direction at a few GFLOP/s (a 32 -> 1 transposed
// convolution, 4x4 stride 2, 14 -> 28 pixels, batch 32: 1 ms on two threads,
// 2-3 ms on one), while the forward convolution and the weight gradient of the
// same layer run near the machine's peak. Here it is one batched matrix
// product (ATen's BLAS) into a patch matrix and a col2im pass that sums the
// patches back into each image plane; the forward stays oneDNN's.
//
// Layout: x (B, 1, H, W), weight (O, 1, kh, kw), y (B, O, Ho, Wo) with
// Ho = (H + 2 ph - kh) / sh + 1 (likewise Wo); patches cols (B, K, L), K =
// kh * kw (k = ky * kw + kx), L = Ho * Wo (l = i * Wo + j), cols[b, k, l]
// pairs with x[b, 0, sh i + ky - ph, sw j + kx - pw] (nothing outside the image).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../common/checks.h"

namespace fastgan::cpu {
namespace {

struct Geometry {
  int64_t batch, height, width, kh, kw, sh, sw, ph, pw, out_h, out_w;
  int64_t patch() const { return kh * kw; }
  int64_t plane() const { return out_h * out_w; }
};

// The output columns j whose input column sw j + kx - pw lies in [0, width).
inline void valid_columns(const Geometry& g, int64_t kx, int64_t& lo, int64_t& hi) {
  const int64_t first = g.pw - kx;  // sw j >= first
  lo = first <= 0 ? 0 : (first + g.sw - 1) / g.sw;
  const int64_t last = g.width - 1 + g.pw - kx;  // sw j <= last
  hi = last < 0 ? 0 : std::min(g.out_w, last / g.sw + 1);
  lo = std::min(lo, hi);
}

// x[b, 0, sh i + ky - ph, sw j + kx - pw] += cols[b, k, l]: each image is
// written by one task, so the sums need no atomics.
template <typename T>
void col2im(const T* cols, T* x, const Geometry& g) {
  const int64_t K = g.patch(), L = g.plane(), HW = g.height * g.width;
  at::parallel_for(0, g.batch, std::max<int64_t>(1, 4096 / std::max<int64_t>(K * L, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      T* img = x + b * HW;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t ky = k / g.kw, kx = k % g.kw;
        const T* row = cols + (b * K + k) * L;
        int64_t lo = 0, hi = 0;
        valid_columns(g, kx, lo, hi);
        for (int64_t i = 0; i < g.out_h; ++i) {
          const int64_t y = g.sh * i + ky - g.ph;
          if (y < 0 || y >= g.height) continue;
          T* dst = img + y * g.width;
          const T* src = row + i * g.out_w;
          for (int64_t j = lo; j < hi; ++j) dst[g.sw * j + kx - g.pw] += src[j];
        }
      }
    }
  });
}

constexpr const char* kConv = "conv2d_single_channel";
constexpr const char* kInputGrad = "conv2d_single_channel_input_grad";

void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(
      at::isFloatingType(t.scalar_type()), op, ": `", name, "` must be a floating-point tensor, got ",
      t.scalar_type());
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": `", name, "` must be on the CPU, got ", t.device());
}

void check_same(const at::Tensor& a, const at::Tensor& b, const char* op, const char* na, const char* nb) {
  TORCH_CHECK_TYPE(
      a.scalar_type() == b.scalar_type(), op, ": `", na, "` and `", nb, "` must share a dtype, got ",
      a.scalar_type(), " and ", b.scalar_type());
}

Geometry geometry(
    const char* op, int64_t batch, int64_t height, int64_t width, int64_t kh, int64_t kw, at::IntArrayRef stride,
    at::IntArrayRef padding) {
  TORCH_CHECK_VALUE(stride.size() == 2 && stride[0] > 0 && stride[1] > 0, op, ": `stride` must be two positive integers, got ", stride);
  TORCH_CHECK_VALUE(
      padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0, op, ": `padding` must be two non-negative integers, got ",
      padding);
  TORCH_CHECK_VALUE(kh > 0 && kw > 0, op, ": the kernel must be at least 1x1, got ", kh, "x", kw);
  Geometry g{batch, height, width, kh, kw, stride[0], stride[1], padding[0], padding[1], 0, 0};
  const int64_t span_h = height + 2 * g.ph - kh, span_w = width + 2 * g.pw - kw;
  TORCH_CHECK_VALUE(
      span_h >= 0 && span_w >= 0, op, ": the ", kh, "x", kw, " kernel of `weight` is larger than the padded ", height,
      "x", width, " input (`padding` ", padding, ")");
  g.out_h = span_h / g.sh + 1;
  g.out_w = span_w / g.sw + 1;
  return g;
}

// (B, 1, H, W) * (O, 1, kh, kw) -> (B, O, Ho, Wo): ATen's convolution (oneDNN
// runs this direction fast); the op exists so that its input gradient is the
// kernel below (autograd in fastgan/nn/conv.py).
at::Tensor conv2d_single_channel(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding) {
  check_float(x, kConv, "input");
  check_float(weight, kConv, "weight");
  check_same(x, weight, kConv, "input", "weight");
  TORCH_CHECK_VALUE(x.dim() == 4 && x.size(1) == 1, kConv, ": `input` must be (B, 1, H, W), got ", x.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == 1, kConv, ": `weight` must be (O, 1, kh, kw), got ", weight.sizes());
  geometry(kConv, x.size(0), x.size(2), x.size(3), weight.size(2), weight.size(3), stride, padding);
  return at::conv2d(x, weight, {}, stride, padding);
}

// The gradient of conv2d_single_channel with respect to its input: (B, O, Ho,
// Wo) -> (B, 1, H, W), a transposed convolution with one output channel.
at::Tensor conv2d_single_channel_input_grad(
    const at::Tensor& grad, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef input_size) {
  check_float(grad, kInputGrad, "grad");
  check_float(weight, kInputGrad, "weight");
  check_same(grad, weight, kInputGrad, "grad", "weight");
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == 1, kInputGrad, ": `weight` must be (O, 1, kh, kw), got ", weight.sizes());
  TORCH_CHECK_VALUE(
      input_size.size() == 2 && input_size[0] > 0 && input_size[1] > 0, kInputGrad,
      ": `input_size` must be two positive integers (H, W), got ", input_size);
  TORCH_CHECK_VALUE(grad.dim() == 4, kInputGrad, ": `grad` must be (B, O, Ho, Wo), got ", grad.sizes());
  const Geometry g = geometry(kInputGrad, grad.size(0), input_size[0], input_size[1], weight.size(2), weight.size(3), stride, padding);
  const int64_t O = weight.size(0);
  TORCH_CHECK_VALUE(
      grad.size(1) == O && grad.size(2) == g.out_h && grad.size(3) == g.out_w, kInputGrad, ": `grad` must be (B, ", O, ", ",
      g.out_h, ", ", g.out_w, ") for a ", input_size, " input, got ", grad.sizes());
  at::Tensor out = at::zeros({g.batch, 1, g.height, g.width}, grad.options());
  if (g.batch == 0) return out;
  const at::Tensor cols =
      at::matmul(weight.reshape({O, g.patch()}).t(), grad.reshape({g.batch, O, g.plane()})).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), kInputGrad, [&] {
    col2im(cols.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), g);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("conv2d_single_channel", &conv2d_single_channel);
  m.impl("conv2d_single_channel_input_grad", &conv2d_single_channel_input_grad);
}

}  // namespace fastgan::cpu
