// fastgan::clip_ on the CPU: one parallel region over all tensors.
//
// The tensors are laid end to end as one virtual flat array and split into
// equal ranges across threads, so a list of many small tensors balances as
// well as one big one; each thread sweeps its range once (read, clamp,
// count, write) with a vectorised loop.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "../common/clip.h"
#include "../common/tensor_list.h"
#include "vectorize.h"

namespace fastgan::cpu {
namespace {

// The count is kept in 32 bits inside a block of at most 2^30 elements so
// the compiler can vectorise it alongside the float compares.
constexpr int64_t kCountBlock = int64_t{1} << 30;

// Written so that it compiles to and (for |v|), compare, subtract, max and
// min per vector: |v| > hi counts the clipped elements because lo == -hi, and the
// operand order of the selects matches maxps/minps, which return their
// second operand (v itself) when v is NaN.
template <typename T>
inline int64_t clip_span_generic(T* x, int64_t n, T lo, T hi) {
  int64_t clipped = 0;
  for (int64_t start = 0; start < n; start += kCountBlock) {
    const int64_t stop = std::min(n, start + kCountBlock);
    int32_t block_clipped = 0;
    FASTGAN_UNROLL
    for (int64_t i = start; i < stop; ++i) {
      const T v = x[i];
      block_clipped += std::abs(v) > hi;
      const T above_lo = lo > v ? lo : v;
      x[i] = hi < above_lo ? hi : above_lo;
    }
    clipped += block_clipped;
  }
  return clipped;
}

FASTGAN_CPU_CLONES int64_t clip_span(float* x, int64_t n, float lo, float hi) {
  return clip_span_generic(x, n, lo, hi);
}

FASTGAN_CPU_CLONES int64_t clip_span(double* x, int64_t n, double lo, double hi) {
  return clip_span_generic(x, n, lo, hi);
}

// float16 / bfloat16: compare in float, and write back either the element
// itself or a bound that is already in the storage type (no rounding).
template <typename T>
int64_t clip_span(T* x, int64_t n, T lo, T hi) {
  const float lo_f = static_cast<float>(lo);
  const float hi_f = static_cast<float>(hi);
  int64_t clipped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(x[i]);
    const bool above = v > hi_f;
    const bool below = v < lo_f;
    clipped += static_cast<int64_t>(above | below);
    if (above) {
      x[i] = hi;
    } else if (below) {
      x[i] = lo;
    }
  }
  return clipped;
}

// Clips elements [offset, offset + n) of one dense tensor.
int64_t clip_range(
    const at::Tensor& t, int64_t offset, int64_t n, double clip_value) {
  int64_t clipped = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, t.scalar_type(), "fastgan::clip_", [&] {
        const auto hi = static_cast<scalar_t>(clip_value);
        const auto lo = static_cast<scalar_t>(-clip_value);
        clipped = clip_span(t.data_ptr<scalar_t>() + offset, n, lo, hi);
      });
  return clipped;
}

at::Tensor clip_(at::TensorList tensors, double clip_value) {
  clip::check_args(tensors, clip_value);
  common_device(tensors, c10::kCPU, clip::kOpName);
  const FlatTensorList list(tensors, clip::kOpName);
  const std::vector<at::Tensor>& flat = list.tensors();

  // starts[i]: where tensor i begins in the virtual flat array.
  std::vector<int64_t> starts(flat.size() + 1, 0);
  for (size_t i = 0; i < flat.size(); ++i) {
    starts[i + 1] = starts[i] + flat[i].numel();
  }

  const int64_t clipped = at::parallel_reduce(
      0, starts.back(), kGrain, int64_t{0},
      [&](int64_t begin, int64_t end, int64_t acc) {
        // Every tensor in `flat` is non-empty, so `starts` increases
        // strictly and the tensor holding `begin` is found by bisection.
        size_t i = std::upper_bound(starts.begin(), starts.end(), begin) -
            starts.begin() - 1;
        for (int64_t pos = begin; pos < end; ++i) {
          const int64_t stop = std::min(end, starts[i + 1]);
          acc += clip_range(flat[i], pos - starts[i], stop - pos, clip_value);
          pos = stop;
        }
        return acc;
      },
      std::plus<int64_t>());

  list.write_back();
  return at::scalar_tensor(clipped, at::TensorOptions().dtype(at::kLong));
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("clip_", &clip_);
}

}  // namespace fastgan::cpu
