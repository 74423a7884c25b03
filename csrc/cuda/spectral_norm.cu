// fastgan::spectral_norm_* on CUDA.
//
// Power iteration for all layers of one dtype (up to kMaxLayers per batch)
// with the same few launches per step, however many layers there are:
//   load     u, v -> float64 working copies                 (block per layer)
//   w_v      u_raw = W v: one warp per row of W_mat, rows of every layer in
//            one work list of row blocks                     (bisection on a table)
//   norm_u   u = u_raw / max(|u_raw|, eps), v_raw = 0        (block per layer)
//   wt_u     v_raw += W^T u: a thread per column over a chunk of rows,
//            tiles of every layer in one work list, one atomicAdd per column
//   norm_v   v = v_raw / max(|v_raw|, eps), sigma = v_raw . v, state (block per layer)
// Sums accumulate in float64; u and v are rounded to the weight's dtype when
// they are formed, as on the CPU. The layer table travels as a kernel
// argument (no host-to-device copy).
//
// Normalisation and its backward are elementwise passes (plus one float64
// dot product for the backward).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <map>
#include <vector>

#include "../common/spectral_norm.h"
#include "../common/tensor_list.h"

namespace fastgan::cuda {
namespace {

using spectral_norm::MatrixShape;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerChunk = 32;  // rows a wt_u thread sums before its atomicAdd
// 32 x 80 bytes + block prefixes stay well inside the 4 KiB argument limit.
constexpr int kMaxLayers = 32;

struct LayerTable {
  void* weight[kMaxLayers];
  void* u[kMaxLayers];
  void* v[kMaxLayers];
  int64_t a[kMaxLayers], h[kMaxLayers], b[kMaxLayers];
  int64_t scratch[kMaxLayers];  // u_raw (H), u_used (H), v_raw (K), v_used (K)
  int64_t state[kMaxLayers];    // this layer's u in the state (v follows)
  int32_t sigma_index[kMaxLayers];
  int32_t first_block[kMaxLayers + 1];
  int32_t col_tiles[kMaxLayers];  // wt_u: column tiles per row chunk
  int32_t num_layers;
};

__device__ __forceinline__ int find_layer(const LayerTable& t) {
  const int32_t block = static_cast<int32_t>(blockIdx.x);
  int lo = 0;
  int hi = t.num_layers - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (t.first_block[mid] <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

__device__ __forceinline__ double block_sum(double x) {
  __shared__ double partial[kWarps];
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x += __shfl_down_sync(0xffffffffu, x, o);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < kWarps; ++w) total += partial[w];
  return total;
}

// Block l: float64 copies of u and v.
template <typename T>
__global__ void __launch_bounds__(kThreads) load_kernel(const LayerTable t, double* scratch) {
  const int l = blockIdx.x;
  const int64_t h = t.h[l];
  const int64_t k = t.a[l] * t.b[l];
  double* base = scratch + t.scratch[l];
  const T* u = static_cast<const T*>(t.u[l]);
  const T* v = static_cast<const T*>(t.v[l]);
  for (int64_t i = threadIdx.x; i < h; i += kThreads) base[h + i] = static_cast<double>(u[i]);
  for (int64_t i = threadIdx.x; i < k; i += kThreads) base[2 * h + k + i] = static_cast<double>(v[i]);
}

// u_raw[row] = W_mat[row] . v_used, a warp per row, kWarps rows per block.
template <typename T>
__global__ void __launch_bounds__(kThreads) w_v_kernel(const LayerTable t, double* scratch) {
  const int l = find_layer(t);
  const int64_t h = t.h[l], a = t.a[l], b = t.b[l];
  const int64_t row = static_cast<int64_t>(blockIdx.x - t.first_block[l]) * kWarps + threadIdx.x / 32;
  if (row >= h) return;
  const int lane = threadIdx.x % 32;
  const T* w = static_cast<const T*>(t.weight[l]);
  double* base = scratch + t.scratch[l];
  const double* v_used = base + 2 * h + a * b;
  double acc = 0;
  for (int64_t ai = 0; ai < a; ++ai) {
    const T* r = w + (ai * h + row) * b;
    const double* vr = v_used + ai * b;
    for (int64_t j = lane; j < b; j += 32) acc += static_cast<double>(r[j]) * vr[j];
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) acc += __shfl_down_sync(0xffffffffu, acc, o);
  if (lane == 0) base[row] = acc;
}

// Block l: u = u_raw / max(|u_raw|, eps) (rounded to T), v_raw = 0. With
// eval set, writes sigma = u . u_raw instead and leaves u as it is.
template <typename T>
__global__ void __launch_bounds__(kThreads) norm_u_kernel(
    const LayerTable t, double* scratch, double* state, double eps, bool eval) {
  const int l = blockIdx.x;
  const int64_t h = t.h[l];
  const int64_t k = t.a[l] * t.b[l];
  double* base = scratch + t.scratch[l];
  const double* u_raw = base;
  double* u_used = base + h;
  if (eval) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < h; i += kThreads) s += u_used[i] * u_raw[i];
    s = block_sum(s);
    if (threadIdx.x == 0) state[t.sigma_index[l]] = static_cast<double>(static_cast<T>(s));
    for (int64_t i = threadIdx.x; i < h; i += kThreads) state[t.state[l] + i] = u_used[i];
    for (int64_t i = threadIdx.x; i < k; i += kThreads) state[t.state[l] + h + i] = base[2 * h + k + i];
    return;
  }
  double sq = 0;
  for (int64_t i = threadIdx.x; i < h; i += kThreads) sq += u_raw[i] * u_raw[i];
  const double denom = fmax(sqrt(block_sum(sq)), eps);
  T* u = static_cast<T*>(t.u[l]);
  for (int64_t i = threadIdx.x; i < h; i += kThreads) {
    const T r = static_cast<T>(u_raw[i] / denom);
    u[i] = r;
    u_used[i] = static_cast<double>(r);
  }
  for (int64_t i = threadIdx.x; i < k; i += kThreads) base[2 * h + i] = 0.0;
}

// v_raw[c] += sum over a chunk of rows of u_used[row] * W_mat[row, c]: a
// thread per column c = a * B + b (consecutive threads, consecutive b).
template <typename T>
__global__ void __launch_bounds__(kThreads) wt_u_kernel(const LayerTable t, double* scratch) {
  const int l = find_layer(t);
  const int64_t h = t.h[l], a = t.a[l], b = t.b[l];
  const int32_t local = blockIdx.x - t.first_block[l];
  const int64_t chunk = local / t.col_tiles[l];
  const int64_t col = static_cast<int64_t>(local % t.col_tiles[l]) * kThreads + threadIdx.x;
  if (col >= a * b) return;
  const int64_t ai = col / b;
  const int64_t bi = col - ai * b;
  const T* w = static_cast<const T*>(t.weight[l]);
  double* base = scratch + t.scratch[l];
  const double* u_used = base + h;
  const int64_t r0 = chunk * kRowsPerChunk;
  const int64_t r1 = r0 + kRowsPerChunk < h ? r0 + kRowsPerChunk : h;
  double acc = 0;
  for (int64_t row = r0; row < r1; ++row) {
    acc += u_used[row] * static_cast<double>(w[(ai * h + row) * b + bi]);
  }
  atomicAdd(base + 2 * h + col, acc);
}

// Block l: v = v_raw / max(|v_raw|, eps) (rounded to T), sigma = v_raw . v,
// and the layer's part of the state.
template <typename T>
__global__ void __launch_bounds__(kThreads) norm_v_kernel(
    const LayerTable t, double* scratch, double* state, double eps) {
  const int l = blockIdx.x;
  const int64_t h = t.h[l];
  const int64_t k = t.a[l] * t.b[l];
  double* base = scratch + t.scratch[l];
  const double* v_raw = base + 2 * h;
  double* v_used = base + 2 * h + k;
  double sq = 0;
  for (int64_t i = threadIdx.x; i < k; i += kThreads) sq += v_raw[i] * v_raw[i];
  const double denom = fmax(sqrt(block_sum(sq)), eps);
  T* v = static_cast<T*>(t.v[l]);
  double s = 0;
  for (int64_t i = threadIdx.x; i < k; i += kThreads) {
    const T r = static_cast<T>(v_raw[i] / denom);
    v[i] = r;
    v_used[i] = static_cast<double>(r);
    s += v_raw[i] * v_used[i];
    state[t.state[l] + h + i] = v_used[i];
  }
  s = block_sum(s);
  if (threadIdx.x == 0) state[t.sigma_index[l]] = static_cast<double>(static_cast<T>(s));
  for (int64_t i = threadIdx.x; i < h; i += kThreads) state[t.state[l] + i] = base[h + i];
}

struct LayerRef {
  int32_t index;
  at::Tensor weight, u, v;
  MatrixShape shape;
  int64_t state_offset;
};

template <typename T>
void run_batch(
    const std::vector<LayerRef>& layers, int64_t n_iter, double eps, double* state,
    cudaStream_t stream) {
  LayerTable t;
  t.num_layers = static_cast<int32_t>(layers.size());
  int64_t scratch_size = 0;
  int64_t rows_blocks = 0, tile_blocks = 0;
  std::vector<int32_t> first_w_v(layers.size() + 1), first_wt_u(layers.size() + 1);
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerRef& r = layers[i];
    const MatrixShape& s = r.shape;
    t.weight[i] = r.weight.data_ptr();
    t.u[i] = r.u.data_ptr();
    t.v[i] = r.v.data_ptr();
    t.a[i] = s.a;
    t.h[i] = s.h;
    t.b[i] = s.b;
    t.scratch[i] = scratch_size;
    t.state[i] = r.state_offset;
    t.sigma_index[i] = r.index;
    scratch_size += 2 * s.h + 2 * s.cols();
    const int64_t tiles = (s.cols() + kThreads - 1) / kThreads;
    t.col_tiles[i] = static_cast<int32_t>(tiles > 0 ? tiles : 1);
    first_w_v[i] = static_cast<int32_t>(rows_blocks);
    first_wt_u[i] = static_cast<int32_t>(tile_blocks);
    rows_blocks += s.cols() > 0 ? (s.h + kWarps - 1) / kWarps : 0;
    tile_blocks += s.cols() > 0 ? ((s.h + kRowsPerChunk - 1) / kRowsPerChunk) * tiles : 0;
    TORCH_CHECK(
        rows_blocks < INT32_MAX && tile_blocks < INT32_MAX, spectral_norm::kPowerIteration,
        ": weights are too large");
  }
  first_w_v[layers.size()] = static_cast<int32_t>(rows_blocks);
  first_wt_u[layers.size()] = static_cast<int32_t>(tile_blocks);
  at::Tensor scratch = at::zeros(
      {scratch_size > 0 ? scratch_size : 1},
      at::TensorOptions().dtype(at::kDouble).device(layers[0].weight.device()));
  double* sp = scratch.data_ptr<double>();
  const int n_layers = t.num_layers;
  const auto use = [&](const std::vector<int32_t>& first) {
    for (size_t i = 0; i <= layers.size(); ++i) t.first_block[i] = first[i];
  };

  load_kernel<T><<<n_layers, kThreads, 0, stream>>>(t, sp);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto w_v = [&] {
    if (rows_blocks == 0) return;
    use(first_w_v);
    w_v_kernel<T><<<static_cast<unsigned>(rows_blocks), kThreads, 0, stream>>>(t, sp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  if (n_iter == 0) {
    w_v();
    norm_u_kernel<T><<<n_layers, kThreads, 0, stream>>>(t, sp, state, eps, /*eval=*/true);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  for (int64_t it = 0; it < n_iter; ++it) {
    w_v();
    norm_u_kernel<T><<<n_layers, kThreads, 0, stream>>>(t, sp, state, eps, /*eval=*/false);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (tile_blocks > 0) {
      use(first_wt_u);
      wt_u_kernel<T><<<static_cast<unsigned>(tile_blocks), kThreads, 0, stream>>>(t, sp);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    norm_v_kernel<T><<<n_layers, kThreads, 0, stream>>>(t, sp, state, eps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

at::Tensor power_iteration(
    at::TensorList weights, at::TensorList us, at::TensorList vs, at::IntArrayRef dims,
    int64_t n_iter, double eps) {
  const std::vector<MatrixShape> shapes =
      spectral_norm::check_power_iteration(weights, us, vs, dims, n_iter, eps);
  const c10::Device device =
      common_device(weights, c10::DeviceType::CUDA, spectral_norm::kPowerIteration);
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  int64_t total = 0;
  const std::vector<int64_t> offsets = spectral_norm::state_offsets(shapes, &total);
  at::Tensor state = at::empty({total}, at::TensorOptions().dtype(at::kDouble).device(device));

  std::map<at::ScalarType, std::vector<LayerRef>> by_dtype;
  std::vector<std::pair<at::Tensor, at::Tensor>> write_back;
  for (size_t i = 0; i < weights.size(); ++i) {
    LayerRef r{static_cast<int32_t>(i), weights[i].contiguous(), us[i], vs[i], shapes[i], offsets[i]};
    for (at::Tensor* buf : {&r.u, &r.v}) {
      if (!buf->is_contiguous()) {
        at::Tensor copy = buf->contiguous();
        write_back.emplace_back(*buf, copy);
        *buf = copy;
      }
    }
    by_dtype[weights[i].scalar_type()].push_back(std::move(r));
  }
  double* st = state.data_ptr<double>();
  for (const auto& entry : by_dtype) {
    const auto& group = entry.second;
    for (size_t begin = 0; begin < group.size(); begin += kMaxLayers) {
      const size_t end = std::min(group.size(), begin + kMaxLayers);
      std::vector<LayerRef> batch(group.begin() + begin, group.begin() + end);
      AT_DISPATCH_FLOATING_TYPES_AND2(
          at::kHalf, at::kBFloat16, entry.first, spectral_norm::kPowerIteration,
          [&] { run_batch<scalar_t>(batch, n_iter, eps, st, stream); });
    }
  }
  if (n_iter > 0) {
    for (const auto& [original, copy] : write_back) original.copy_(copy);
  }
  return state;
}

template <typename T>
__global__ void scale_kernel(const T* w, T* out, const double* state, int64_t index, int64_t n) {
  using Acc = at::opmath_type<T>;
  const Acc s = static_cast<Acc>(static_cast<T>(state[index]));
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = static_cast<T>(static_cast<Acc>(w[i]) / s);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

at::Tensor scale(
    const at::Tensor& weight, const at::Tensor& state, int64_t index, int64_t offset,
    int64_t dim) {
  spectral_norm::check_scale(weight, state, index, offset, dim, spectral_norm::kScale);
  const c10::cuda::CUDAGuard guard(weight.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(w.sizes(), w.options());
  const int64_t n = w.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), spectral_norm::kScale, [&] {
    scale_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(
        w.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), state.const_data_ptr<double>(),
        index, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) dot_kernel(const T* g, const T* w, int64_t n, double* out) {
  double acc = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    acc += static_cast<double>(g[i]) * static_cast<double>(w[i]);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) atomicAdd(out, acc);
}

template <typename T>
__global__ void scale_backward_kernel(
    const T* g, T* out, const double* state, const double* gw, int64_t index, int64_t offset,
    int64_t h, int64_t b, int64_t n) {
  const double sigma = state[index];
  const double coef = *gw / (sigma * sigma);
  const double* u = state + offset;
  const double* v = state + offset + h;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // i = (a * H + row) * B + bi
    const int64_t bi = i % b;
    const int64_t ah = i / b;
    const int64_t row = ah % h;
    const int64_t a = ah / h;
    out[i] = static_cast<T>(static_cast<double>(g[i]) / sigma - coef * u[row] * v[a * b + bi]);
  }
}

at::Tensor scale_backward(
    const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& state, int64_t index,
    int64_t offset, int64_t dim) {
  const MatrixShape s = spectral_norm::check_scale(
      weight, state, index, offset, dim, spectral_norm::kScaleBackward);
  spectral_norm::check_grad(grad, weight, spectral_norm::kScaleBackward);
  const c10::cuda::CUDAGuard guard(weight.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor g = grad.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor out = at::empty(w.sizes(), w.options());
  const int64_t n = w.numel();
  if (n == 0) return out;
  at::Tensor gw = at::zeros({1}, state.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, w.scalar_type(), spectral_norm::kScaleBackward, [&] {
        const unsigned blocks = std::min<unsigned>(grid_for(n), 1024);
        dot_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            g.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), n, gw.data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        scale_backward_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(
            g.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), state.const_data_ptr<double>(),
            gw.const_data_ptr<double>(), index, offset, s.h, s.b, n);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("spectral_norm_power_iteration", &power_iteration);
  m.impl("spectral_norm_scale", &scale);
  m.impl("spectral_norm_scale_backward", &scale_backward);
}

}  // namespace fastgan::cuda
