// The op surface of fastgan: every schema, declared once.
//
// Kernels register themselves per backend (csrc/cpu/<op>.cpp for CPU,
// csrc/cuda/<op>.cu for CUDA); fake (meta) implementations, autograd and the
// Python API live in the `fastgan` package.

#include <torch/library.h>

TORCH_LIBRARY(fastgan, m) {
  // Clamps every element of every tensor to [-clip_value, clip_value] in place
  // and returns, as a 0-dim int64 tensor on the tensors' device, how many
  // elements changed. All tensors must share one device; dtypes may mix.
  m.def("clip_(Tensor(a!)[] tensors, float clip_value) -> Tensor");
}

// Ops that are not differentiable skip autograd entirely. clip_ updates
// parameters in place like `p.data.clamp_` (no history, no version bump); the
// fallthrough also spares every call the autograd fallback's per-tensor
// bookkeeping (9 us of 14 for an 8-tensor critic, measured on the CPU).
TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("clip_", torch::CppFunction::makeFallthrough());
}
