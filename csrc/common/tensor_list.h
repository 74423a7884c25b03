// Helpers for ops that take a list of tensors and update them in place
// (host code, shared by the CPU and CUDA kernels).
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "checks.h"

namespace fastgan {

// The tensors of a list as flat runs of memory that an elementwise in-place
// kernel can sweep front to back.
//
// A tensor that is non-overlapping and dense (contiguous, channels_last,
// transposed, ...) is used as it is: its elements fill [data_ptr, data_ptr +
// numel) in some order, and an elementwise op does not care which. Any other
// tensor (a strided slice, say) is swept through a contiguous copy that
// `write_back()` copies into the original afterwards.
class FlatTensorList {
 public:
  FlatTensorList(at::TensorList tensors, const char* op_name) {
    flat_.reserve(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const at::Tensor& t = tensors[i];
      check_writable(t, op_name, {"tensors", static_cast<int64_t>(i)});
      if (t.numel() == 0) {
        continue;
      }
      if (t.is_non_overlapping_and_dense()) {
        flat_.push_back(t);
      } else {
        at::Tensor copy = t.contiguous();
        flat_.push_back(copy);
        write_back_.emplace_back(t, std::move(copy));
      }
    }
  }

  // Non-empty tensors, each one dense run of numel() elements at data_ptr().
  const std::vector<at::Tensor>& tensors() const { return flat_; }

  // Copies the results of the sweep into the tensors that were not dense.
  void write_back() const {
    for (const auto& [original, copy] : write_back_) {
      original.copy_(copy);
    }
  }

 private:
  std::vector<at::Tensor> flat_;
  std::vector<std::pair<at::Tensor, at::Tensor>> write_back_;
};

// Checks that every tensor of the list lives on `device_type` and on one
// device, and returns that device.
inline c10::Device common_device(
    at::TensorList tensors, c10::DeviceType device_type, const char* op_name) {
  TORCH_CHECK(!tensors.empty(), op_name, ": `tensors` is empty");
  const c10::Device device = tensors[0].device();
  for (size_t i = 0; i < tensors.size(); ++i) {
    TORCH_CHECK(
        tensors[i].device() == device && device.type() == device_type,
        op_name, ": tensors[", i, "] is on ", tensors[i].device(),
        " but this kernel handles tensors on one ",
        c10::DeviceTypeName(device_type), " device (", device, ")");
  }
  return device;
}

}  // namespace fastgan
