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
