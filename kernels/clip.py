"""Triton kernel for weight clipping: clamp one flat tensor and count changes.

Each program clamps BLOCK elements and adds its count with one atomic. A
multi-tensor version would read tensor pointers from memory, which the Triton
interpreter cannot run, so this path takes one launch per tensor; fastgan's
CUDA kernel is the one-launch path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096


@triton.jit
def _clip_kernel(x_ptr, bounds_ptr, count_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < n
    x = tl.load(x_ptr + offsets, mask=in_range)
    # The bounds come from memory in the tensor's own dtype: a scalar argument
    # would be float32 and round a float64 clip value.
    lo = tl.load(bounds_ptr)
    hi = tl.load(bounds_ptr + 1)
    above = x > hi
    below = x < lo
    tl.store(x_ptr + offsets, tl.where(above, hi, tl.where(below, lo, x)), mask=in_range)
    clipped = tl.sum((above | below).to(tl.int64), axis=0)
    tl.atomic_add(count_ptr, clipped)


def clip_(tensors: list[torch.Tensor], clip_value: float) -> torch.Tensor:
    """Clamps each tensor to [-clip_value, clip_value] in place; returns the count.

    Same contract as ``fastgan::clip_``: tensors on one device, float dtypes,
    any layout (non-dense tensors go through a contiguous copy).
    """
    device = tensors[0].device
    count = torch.zeros((), dtype=torch.int64, device=device)
    bounds: dict[torch.dtype, torch.Tensor] = {}
    for t in tensors:
        if t.numel() == 0:
            continue
        if t.dtype not in bounds:
            bounds[t.dtype] = torch.tensor([-clip_value, clip_value], dtype=t.dtype, device=device)
        dense = t if t.is_contiguous() else t.contiguous()
        grid = (triton.cdiv(dense.numel(), BLOCK),)
        _clip_kernel[grid](dense, bounds[t.dtype], count, dense.numel(), BLOCK=BLOCK)
        if dense is not t:
            t.copy_(dense)
    return count
