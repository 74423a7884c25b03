// fastgan::clip_ on CUDA: multi-tensor apply, a whole critic per launch.
//
// The host lays the tensors of one dtype end to end in fixed-size chunks and
// passes a table of (pointer, numel, first chunk) by value as the kernel
// argument; block b finds its tensor by bisection over the table and sweeps
// one chunk with 16-byte vector loads. Each block adds its count with a
// single atomic. A launch holds up to kMaxTensors tensors, so a model with
// fewer tensors of one dtype costs one memset of the 8-byte count and one
// kernel launch.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <map>
#include <vector>

#include "../common/clip.h"
#include "../common/tensor_list.h"

namespace fastgan::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;  // elements per block: 16 per thread
static_assert(kChunk % (kThreads * 8) == 0, "whole 16-byte vectors per thread");
// 128 x (8 + 8 + 4) bytes keeps the table inside the 4 KiB kernel-argument
// limit of every CUDA version torch supports.
constexpr int kMaxTensors = 128;

struct ChunkTable {
  void* data[kMaxTensors];
  int64_t numel[kMaxTensors];
  int32_t first_chunk[kMaxTensors + 1];
  int32_t num_tensors;
};

template <typename T>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

template <typename T, typename Acc>
__device__ __forceinline__ int clip_one(T& x, Acc lo, Acc hi) {
  const Acc v = static_cast<Acc>(x);
  x = static_cast<T>(clip::clamp(v, lo, hi));
  return clip::is_clipped(v, lo, hi);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) clip_kernel(
    const ChunkTable table, const T lo_t, const T hi_t,
    unsigned long long* __restrict__ count) {
  using Acc = at::opmath_type<T>;
  const Acc lo = static_cast<Acc>(lo_t);
  const Acc hi = static_cast<Acc>(hi_t);

  // Tensor t owns chunks [first_chunk[t], first_chunk[t + 1]).
  const int32_t chunk = static_cast<int32_t>(blockIdx.x);
  int t_lo = 0;
  int t_hi = table.num_tensors - 1;
  while (t_lo < t_hi) {
    const int mid = (t_lo + t_hi + 1) / 2;
    if (table.first_chunk[mid] <= chunk) {
      t_lo = mid;
    } else {
      t_hi = mid - 1;
    }
  }
  const int64_t begin =
      static_cast<int64_t>(chunk - table.first_chunk[t_lo]) * kChunk;
  const int64_t left = table.numel[t_lo] - begin;
  const int64_t n = left < kChunk ? left : kChunk;
  T* x = static_cast<T*>(table.data[t_lo]) + begin;

  int clipped = 0;
  int64_t scalar_from = 0;
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    // Every load of the chunk is issued before any store, so each thread
    // keeps kPerThread 16-byte loads in flight.
    using V = Vec16<T>;
    constexpr int kPerThread = kChunk / (kThreads * V::kSize);
    const int n_vec = static_cast<int>(n / V::kSize);
    V* xv = reinterpret_cast<V*>(x);
    V a[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int i = threadIdx.x + j * kThreads;
      if (i < n_vec) {
        a[j] = xv[i];
      }
    }
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int i = threadIdx.x + j * kThreads;
      if (i < n_vec) {
#pragma unroll
        for (int k = 0; k < V::kSize; ++k) {
          clipped += clip_one(a[j].v[k], lo, hi);
        }
        xv[i] = a[j];
      }
    }
    scalar_from = static_cast<int64_t>(n_vec) * V::kSize;
  }
  for (int64_t i = scalar_from + threadIdx.x; i < n; i += kThreads) {
    clipped += clip_one(x[i], lo, hi);
  }

  // Block sum: warp shuffles, then one atomic per block.
  __shared__ int warp_sums[kThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    clipped += __shfl_down_sync(0xffffffffu, clipped, offset);
  }
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) {
    warp_sums[warp] = clipped;
  }
  __syncthreads();
  if (warp == 0) {
    clipped = lane < kThreads / 32 ? warp_sums[lane] : 0;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      clipped += __shfl_down_sync(0xffffffffu, clipped, offset);
    }
    if (lane == 0 && clipped != 0) {
      atomicAdd(count, static_cast<unsigned long long>(clipped));
    }
  }
}

template <typename T>
void launch_clip(
    const std::vector<at::Tensor>& tensors, double clip_value,
    unsigned long long* count, cudaStream_t stream) {
  const T hi = static_cast<T>(clip_value);
  const T lo = static_cast<T>(-clip_value);
  ChunkTable table;
  int32_t chunks = 0;
  table.num_tensors = 0;
  const auto flush = [&] {
    if (table.num_tensors == 0) {
      return;
    }
    table.first_chunk[table.num_tensors] = chunks;
    clip_kernel<T><<<chunks, kThreads, 0, stream>>>(table, lo, hi, count);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    table.num_tensors = 0;
    chunks = 0;
  };
  for (const at::Tensor& t : tensors) {
    const int64_t numel = t.numel();
    const int64_t t_chunks = (numel + kChunk - 1) / kChunk;
    TORCH_CHECK(
        t_chunks < INT32_MAX, clip::kOpName, ": a tensor of ", numel,
        " elements is too large");
    if (table.num_tensors == kMaxTensors ||
        static_cast<int64_t>(chunks) + t_chunks > INT32_MAX) {
      flush();
    }
    const int i = table.num_tensors++;
    table.data[i] = t.data_ptr();
    table.numel[i] = numel;
    table.first_chunk[i] = chunks;
    chunks += static_cast<int32_t>(t_chunks);
  }
  flush();
}

at::Tensor clip_(at::TensorList tensors, double clip_value) {
  clip::check_args(tensors, clip_value);
  const c10::Device device =
      common_device(tensors, c10::DeviceType::CUDA, clip::kOpName);
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  const FlatTensorList list(tensors, clip::kOpName);
  at::Tensor count =
      at::empty({}, at::TensorOptions().dtype(at::kLong).device(device));
  auto* count_ptr = reinterpret_cast<unsigned long long*>(count.data_ptr());
  C10_CUDA_CHECK(cudaMemsetAsync(count_ptr, 0, sizeof(int64_t), stream));

  // One launch (or a few, past kMaxTensors) per dtype present.
  std::map<at::ScalarType, std::vector<at::Tensor>> by_dtype;
  for (const at::Tensor& t : list.tensors()) {
    by_dtype[t.scalar_type()].push_back(t);
  }
  for (const auto& entry : by_dtype) {
    const std::vector<at::Tensor>& group = entry.second;
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, entry.first, "fastgan::clip_",
        [&] { launch_clip<scalar_t>(group, clip_value, count_ptr, stream); });
  }

  list.write_back();
  return count;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("clip_", &clip_);
}

}  // namespace fastgan::cuda
