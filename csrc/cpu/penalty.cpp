// fastgan::penalty_from_gradients and fastgan::interpolate on the CPU.
//
// Interpolation: one read of real and fake, one write, samples in parallel.
// Forward: one read of the gradients (per-sample sum of squares, samples in
// parallel), then the B-term mean. Backward: one read and one write (each
// sample scaled by its factor). Sums accumulate in double for float32 and
// float64 gradients, in float for float16 / bfloat16.

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>

#include "../common/penalty.h"
#include "vectorize.h"

namespace fastgan::cpu {
namespace {

constexpr const char* kForward = "fastgan::penalty_from_gradients";
constexpr const char* kBackward = "fastgan::penalty_from_gradients_backward";
constexpr const char* kInterpolate = "fastgan::interpolate";

// Eight independent partial sums: without them the compiler may not
// reorder a floating-point sum, and the loop would run one element a cycle.
template <typename scalar_t, typename acc_t>
inline acc_t sum_of_squares_generic(const scalar_t* x, int64_t n) {
  acc_t lanes[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int k = 0; k < 8; ++k) {
      const acc_t v = static_cast<acc_t>(x[j + k]);
      lanes[k] += v * v;
    }
  }
  acc_t sum = 0;
  for (; j < n; ++j) {
    const acc_t v = static_cast<acc_t>(x[j]);
    sum += v * v;
  }
  for (int k = 0; k < 8; ++k) {
    sum += lanes[k];
  }
  return sum;
}

FASTGAN_CPU_CLONES double sum_of_squares(const float* x, int64_t n) {
  return sum_of_squares_generic<float, double>(x, n);
}

FASTGAN_CPU_CLONES double sum_of_squares(const double* x, int64_t n) {
  return sum_of_squares_generic<double, double>(x, n);
}

template <typename scalar_t>
float sum_of_squares(const scalar_t* x, int64_t n) {
  return sum_of_squares_generic<scalar_t, float>(x, n);
}

// Rows of `dim` elements per parallel task, so that a task holds about kGrain
// elements however the batch is shaped.
int64_t rows_per_task(int64_t dim) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(dim, 1));
}

std::tuple<at::Tensor, at::Tensor> penalty_from_gradients(
    const at::Tensor& grads, double center, bool one_sided) {
  penalty::check_grads(grads, kForward);
  const at::Tensor g = grads.contiguous();
  const int64_t batch = g.size(0);
  const int64_t dim = g.numel() / batch;
  const auto options = g.options().dtype(penalty::result_dtype(g.scalar_type()));
  at::Tensor norms = at::empty({batch}, options);
  at::Tensor result = at::empty({}, options);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), kForward, [&] {
    using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
    using out_t = at::opmath_type<scalar_t>;
    const scalar_t* data = g.const_data_ptr<scalar_t>();
    out_t* norm_data = norms.data_ptr<out_t>();
    at::parallel_for(0, batch, rows_per_task(dim), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t sum = sum_of_squares(data + i * dim, dim);
        norm_data[i] = static_cast<out_t>(std::sqrt(sum));
      }
    });
    acc_t total = 0;
    for (int64_t i = 0; i < batch; ++i) {
      total += penalty::phi<acc_t>(norm_data[i], center, one_sided);
    }
    *result.data_ptr<out_t>() = static_cast<out_t>(total / static_cast<acc_t>(batch));
  });
  return {result, norms};
}

at::Tensor penalty_from_gradients_backward(
    const at::Tensor& grad_penalty, const at::Tensor& grads, const at::Tensor& norms,
    double center, bool one_sided) {
  penalty::check_grads(grads, kBackward);
  penalty::check_backward(grad_penalty, grads, norms, kBackward);
  const at::Tensor g = grads.contiguous();
  const int64_t batch = g.size(0);
  const int64_t dim = g.numel() / batch;
  at::Tensor out = at::empty_like(g);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), kBackward, [&] {
    using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
    using out_t = at::opmath_type<scalar_t>;
    const at::Tensor n = norms.to(penalty::result_dtype(g.scalar_type())).contiguous();
    const out_t* norm_data = n.const_data_ptr<out_t>();
    const acc_t scale = grad_penalty.item<acc_t>() / static_cast<acc_t>(batch);
    const scalar_t* in = g.const_data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch, rows_per_task(dim), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const auto factor = static_cast<out_t>(
            scale * penalty::dphi_over_norm<acc_t>(norm_data[i], center, one_sided));
        const scalar_t* row = in + i * dim;
        scalar_t* out_row = o + i * dim;
        for (int64_t j = 0; j < dim; ++j) {
          out_row[j] = static_cast<scalar_t>(factor * static_cast<out_t>(row[j]));
        }
      }
    });
  });
  return out;
}

at::Tensor interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps) {
  penalty::check_interpolate(real, fake, eps, kInterpolate);
  const at::Tensor r = real.contiguous();
  const at::Tensor f = fake.contiguous();
  const at::Tensor e = eps.contiguous();
  at::Tensor out = at::empty_like(r);
  const int64_t batch = r.size(0);
  const int64_t dim = batch == 0 ? 0 : r.numel() / batch;
  if (r.numel() == 0) {
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), kInterpolate, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* rp = r.const_data_ptr<scalar_t>();
    const scalar_t* fp = f.const_data_ptr<scalar_t>();
    const scalar_t* ep = e.const_data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch, rows_per_task(dim), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const auto a = static_cast<acc_t>(ep[i]);
        const auto b = acc_t(1) - a;
        const scalar_t* rr = rp + i * dim;
        const scalar_t* fr = fp + i * dim;
        scalar_t* orow = o + i * dim;
        FASTGAN_UNROLL
        for (int64_t j = 0; j < dim; ++j) {
          orow[j] = static_cast<scalar_t>(
              a * static_cast<acc_t>(rr[j]) + b * static_cast<acc_t>(fr[j]));
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("interpolate", &interpolate);
  m.impl("penalty_from_gradients", &penalty_from_gradients);
  m.impl("penalty_from_gradients_backward", &penalty_from_gradients_backward);
}

}  // namespace fastgan::cpu
