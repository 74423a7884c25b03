// fastgan::dropout_mask on the CPU: a dropout mask from a counter-based generator.
//
// Element i of the mask is 1 / (1 - p) when the top 32 bits of
// SplitMix64(key + (i + 1) * gamma) fall below (1 - p) * 2^32, and 0
// otherwise; key = SplitMix64's finaliser of the 64-bit seed. Each element
// depends on its index and the seed alone, so the loop vectorises, splits
// across threads without shared state, and gives the same mask on any
// number of threads. torch's CPU dropout draws one Bernoulli variate at a
// time from a Mersenne twister under a lock (about 9 ns an element on the
// 2-core VM); this is one multiply-xorshift hash per element.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <c10/util/bit_cast.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "vectorize.h"

namespace fastgan::cpu {
namespace {

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

// SplitMix64's output function (Steele, Lea and Flood 2014).
FASTGAN_ALWAYS_INLINE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// out[i - begin] for elements [begin, end): keep (or 0) by the hash of i.
template <typename T>
FASTGAN_ALWAYS_INLINE inline void fill_generic(
    T* out, int64_t begin, int64_t end, uint64_t key, uint64_t threshold, T keep) {
  const T zero = T(0);
  FASTGAN_UNROLL
  for (int64_t i = begin; i < end; ++i) {
    const uint64_t r = mix64(key + static_cast<uint64_t>(i + 1) * kGamma) >> 32;
    out[i - begin] = r < threshold ? keep : zero;
  }
}

FASTGAN_CPU_CLONES void fill(float* out, int64_t begin, int64_t end, uint64_t key, uint64_t threshold, float keep) {
  fill_generic(out, begin, end, key, threshold, keep);
}

FASTGAN_CPU_CLONES void fill(double* out, int64_t begin, int64_t end, uint64_t key, uint64_t threshold, double keep) {
  fill_generic(out, begin, end, key, threshold, keep);
}

// Half and bfloat16 masks as their 16-bit patterns (keep's, or +0's all-zero
// one): plain integers vectorise where c10's 16-bit float classes do not.
FASTGAN_CPU_CLONES void fill(uint16_t* out, int64_t begin, int64_t end, uint64_t key, uint64_t threshold, uint16_t keep) {
  fill_generic(out, begin, end, key, threshold, keep);
}

template <typename T>
void fill(T* out, int64_t begin, int64_t end, uint64_t key, uint64_t threshold, T keep) {
  static_assert(sizeof(T) == sizeof(uint16_t), "float and double have their own overloads");
  fill(reinterpret_cast<uint16_t*>(out), begin, end, key, threshold, c10::bit_cast<uint16_t>(keep));
}

at::Tensor dropout_mask(const at::Tensor& like, double p, int64_t seed) {
  TORCH_CHECK_VALUE(like.device().is_cpu(), "fastgan::dropout_mask: `like` must be a CPU tensor, got ", like.device());
  TORCH_CHECK_TYPE(
      at::isFloatingType(like.scalar_type()),
      "fastgan::dropout_mask: `like` must have a floating dtype, got ", like.scalar_type());
  TORCH_CHECK_VALUE(p >= 0.0 && p <= 1.0, "fastgan::dropout_mask: `p` must lie in [0, 1], got ", p);
  at::Tensor mask = at::empty(like.sizes(), like.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = mask.numel();
  if (n == 0) {
    return mask;
  }
  // Kept when the top 32 bits r of the hash satisfy r < threshold: probability
  // threshold / 2^32 = 1 - p to within 2^-33 (exactly 1 at p = 0, 0 at p = 1).
  const uint64_t threshold = static_cast<uint64_t>(std::llround(std::ldexp(1.0 - p, 32)));
  const uint64_t key = mix64(static_cast<uint64_t>(seed) ^ 0x6A09E667F3BCC909ull);
  const double keep = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mask.scalar_type(), "fastgan::dropout_mask", [&] {
    scalar_t* out = mask.data_ptr<scalar_t>();
    const auto keep_t = static_cast<scalar_t>(keep);
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      fill(out + begin, begin, end, key, threshold, keep_t);
    });
  });
  return mask;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("dropout_mask", &dropout_mask);
}

}  // namespace fastgan::cpu
