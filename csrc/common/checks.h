// Checks of the tensors that kernels read or write through raw pointers
// (host code, shared by the CPU and CUDA kernels).
//
// A kernel that indexes a data pointer assumes a layout (contiguous, stride
// 1) and a range of valid indices; a registered op can be called with any
// tensor (torch.ops.fastgan.*, or a graph that torch.compile traced), so
// each assumption is checked here, with overflow-safe arithmetic, and a
// violation raises a ValueError / TypeError naming the argument.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <cstdint>
#include <ostream>

namespace fastgan {

// Whether [offset, offset + count) lies inside [0, size), decided without
// forming offset + count (which overflows for offsets near 2^63).
inline bool range_fits(int64_t offset, int64_t count, int64_t size) {
  return offset >= 0 && count >= 0 && offset <= size && count <= size - offset;
}

// a * b, or a ValueError when the product does not fit in int64 (a size
// product over an empty tensor's other dimensions can be that large).
inline int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t out = 0;
  TORCH_CHECK_VALUE(
      !c10::mul_overflows(a, b, &out), op, ": ", what, " overflows int64 (", a, " * ", b, ")");
  return out;
}

// `name` (an argument, or `name`[index] of a list) as an error message puts it.
struct ArgName {
  const char* name;
  int64_t index = -1;
};

inline std::ostream& operator<<(std::ostream& out, const ArgName& arg) {
  out << '`' << arg.name;
  if (arg.index >= 0) out << '[' << arg.index << ']';
  return out << '`';
}

// A tensor whose data pointer a kernel indexes with stride 1.
inline void check_contiguous(const at::Tensor& t, const char* op, ArgName arg) {
  TORCH_CHECK_VALUE(
      t.is_contiguous(), op, ": ", arg, " must be contiguous (the kernel reads its memory with "
      "stride 1), got shape ", t.sizes(), " with strides ", t.strides());
}

// A tensor that a kernel updates in place: no two of its elements may share
// memory (an expanded tensor), or the update is ill-defined.
inline void check_writable(const at::Tensor& t, const char* op, ArgName arg) {
  TORCH_CHECK_VALUE(
      at::has_internal_overlap(t) != at::MemOverlap::Yes, op, ": ", arg,
      " has internally overlapping memory (an expanded tensor, say) and is updated in place; "
      "pass a tensor with its own memory per element (strides ", t.strides(), ")");
}

// Two tensors that a kernel writes (or writes one of while reading the
// other) must not share memory.
inline void check_no_overlap(
    const at::Tensor& a, ArgName a_name, const at::Tensor& b, ArgName b_name, const char* op) {
  const at::MemOverlapStatus status = at::get_overlap_status(a, b);
  TORCH_CHECK_VALUE(
      status == at::MemOverlapStatus::No || status == at::MemOverlapStatus::TooHard ||
          a.numel() == 0 || b.numel() == 0,
      op, ": ", a_name, " and ", b_name, " share memory; the kernel writes one of them in place");
}

// The device every tensor argument of a call must share.
inline void check_same_device(
    const at::Tensor& t, ArgName arg, const at::Tensor& ref, ArgName ref_arg, const char* op) {
  TORCH_CHECK_VALUE(
      t.device() == ref.device(), op, ": ", arg, " is on ", t.device(), " but ", ref_arg, " is on ",
      ref.device());
}

}  // namespace fastgan
