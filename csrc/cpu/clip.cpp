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
#include <bit>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <vector>

#include "../common/clip.h"
#include "../common/tensor_list.h"
#include "vectorize.h"

namespace fastgan::cpu {
namespace {

// The count runs in integers as wide as the element (32 bits for float32),
// so it vectorises in the same lanes; blocks of at most 2^30 elements keep
// the 32-bit count from overflowing.
constexpr int64_t kCountBlock = int64_t{1} << 30;

// When the tensors hold more than the L2 caches do, spans are swept in 1 KiB
// blocks, each of which first prefetches the lines 4 KiB ahead: the compare
// and count make the loop long enough that the out-of-order window alone
// keeps too few cache misses in flight, and without the prefetches the
// counting sweep fell up to 10% behind a plain clamp on a critic larger than
// the last-level cache. Data that the caches hold is swept without them.
constexpr int64_t kPrefetchMinBytes = int64_t{8} << 20;
constexpr int64_t kBlockBytes = 1024;
constexpr int64_t kAheadBytes = 4096;
constexpr int64_t kLineBytes = 64;

// Written so that it compiles to max, min, an integer compare and a subtract
// per vector: the operand order of the selects matches maxps/minps, which
// return their second operand (v itself) when v is NaN, and an element was
// clipped exactly when the clamp changed its bits (so NaN, -0.0 and elements
// already at a bound are not counted). The compare runs on the integer
// ports, beside the float max and min. n < kCountBlock.
template <typename T>
FASTGAN_ALWAYS_INLINE inline int64_t clip_block(T* x, int64_t n, T lo, T hi) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  Bits unchanged = 0;
  FASTGAN_UNROLL
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T above_lo = lo > v ? lo : v;
    const T r = hi < above_lo ? hi : above_lo;
    x[i] = r;
    unchanged += std::bit_cast<Bits>(v) == std::bit_cast<Bits>(r);
  }
  return n - static_cast<int64_t>(unchanged);
}

template <typename T>
FASTGAN_ALWAYS_INLINE inline int64_t clip_span_generic(T* x, int64_t n, T lo, T hi, bool prefetch) {
  int64_t clipped = 0;
  if (!prefetch) {
    for (int64_t start = 0; start < n; start += kCountBlock) {
      clipped += clip_block(x + start, std::min(n - start, kCountBlock), lo, hi);
    }
    return clipped;
  }
  constexpr int64_t block = kBlockBytes / sizeof(T);
  constexpr int64_t ahead = kAheadBytes / sizeof(T);
  constexpr int64_t line = kLineBytes / sizeof(T);
  int64_t start = 0;
  for (; start + block <= n; start += block) {
    for (int64_t k = start + ahead; k < start + ahead + block; k += line) {
      __builtin_prefetch(x + std::min(k, n - 1), 1, 3);
    }
    clipped += clip_block(x + start, block, lo, hi);
  }
  return clipped + clip_block(x + start, n - start, lo, hi);
}

FASTGAN_CPU_CLONES int64_t clip_span(float* x, int64_t n, float lo, float hi, bool prefetch) {
  return clip_span_generic(x, n, lo, hi, prefetch);
}

FASTGAN_CPU_CLONES int64_t clip_span(double* x, int64_t n, double lo, double hi, bool prefetch) {
  return clip_span_generic(x, n, lo, hi, prefetch);
}

// float16 / bfloat16: compare in float, and write back either the element
// itself or a bound that is already in the storage type (no rounding).
template <typename T>
int64_t clip_span(T* x, int64_t n, T lo, T hi, bool /*prefetch*/) {
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
    const at::Tensor& t, int64_t offset, int64_t n, double clip_value, bool prefetch) {
  int64_t clipped = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, t.scalar_type(), "fastgan::clip_", [&] {
        const auto hi = static_cast<scalar_t>(clip_value);
        const auto lo = static_cast<scalar_t>(-clip_value);
        clipped = clip_span(t.data_ptr<scalar_t>() + offset, n, lo, hi, prefetch);
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
  int64_t bytes = 0;
  for (size_t i = 0; i < flat.size(); ++i) {
    starts[i + 1] = starts[i] + flat[i].numel();
    bytes += flat[i].numel() * static_cast<int64_t>(flat[i].element_size());
  }
  const bool prefetch = bytes >= kPrefetchMinBytes;

  const int64_t clipped = at::parallel_reduce(
      0, starts.back(), kGrain, int64_t{0},
      [&](int64_t begin, int64_t end, int64_t acc) {
        // Every tensor in `flat` is non-empty, so `starts` increases
        // strictly and the tensor holding `begin` is found by bisection.
        size_t i = std::upper_bound(starts.begin(), starts.end(), begin) -
            starts.begin() - 1;
        for (int64_t pos = begin; pos < end; ++i) {
          const int64_t stop = std::min(end, starts[i + 1]);
          acc += clip_range(flat[i], pos - starts[i], stop - pos, clip_value, prefetch);
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
