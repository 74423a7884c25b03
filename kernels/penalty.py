"""Triton kernels for the gradient penalty: interpolation, penalty forward and backward.

The CUDA implementations of ``fastgan::interpolate``,
``fastgan::penalty_from_gradients`` and its backward. One program per
(sample, block) for the elementwise kernels; one program per sample for the
per-sample sum of squares, accumulated in float32 (float64 for float64).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgan.kernels import _checks

BLOCK = 1024


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@triton.jit
def _interpolate_kernel(real_ptr, fake_ptr, eps_ptr, out_ptr, dim, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < dim
    offsets = row.to(tl.int64) * dim + cols
    e = tl.load(eps_ptr + row)
    r = tl.load(real_ptr + offsets, mask=mask)
    f = tl.load(fake_ptr + offsets, mask=mask)
    e_acc = e.to(tl.float32) if e.dtype != tl.float64 else e
    out = e_acc * r.to(e_acc.dtype) + (1 - e_acc) * f.to(e_acc.dtype)
    tl.store(out_ptr + offsets, out.to(r.dtype), mask=mask)


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``eps_i * real_i + (1 - eps_i) * fake_i`` (same contract as ``fastgan::interpolate``)."""
    _checks.check_interpolate(real, fake, eps)
    r, f, e = real.contiguous(), fake.contiguous(), eps.contiguous()
    out = torch.empty_like(r)
    batch = r.shape[0]
    dim = r.numel() // batch if batch else 0
    if r.numel():
        _interpolate_kernel[(batch, triton.cdiv(dim, BLOCK))](r, f, e, out, dim, BLOCK=BLOCK)
    return out


@triton.jit
def _sum_squares_kernel(g_ptr, norms_ptr, dim, BLOCK: tl.constexpr, ACC64: tl.constexpr):
    row = tl.program_id(0)
    base = row.to(tl.int64) * dim
    acc_type = tl.float64 if ACC64 else tl.float32
    acc = tl.zeros([BLOCK], dtype=acc_type)
    for start in range(0, dim, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        v = tl.load(g_ptr + base + cols, mask=cols < dim, other=0).to(acc_type)
        acc += v * v
    tl.store(norms_ptr + row, tl.sqrt(tl.sum(acc, axis=0)))


@triton.jit
def _scale_rows_kernel(g_ptr, factors_ptr, out_ptr, dim, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < dim
    offsets = row.to(tl.int64) * dim + cols
    factor = tl.load(factors_ptr + row)
    g = tl.load(g_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, (factor * g.to(factor.dtype)).to(g.dtype), mask=mask)


def penalty_from_gradients(grads: torch.Tensor, center: float, one_sided: bool):
    """``(mean_i phi(||g_i||), norms)``: same contract as ``fastgan::penalty_from_gradients``."""
    _checks.check_grads(grads, "fastgan::penalty_from_gradients")
    g = grads.contiguous()
    batch = g.shape[0]
    dim = g.numel() // batch
    acc = _acc_dtype(g.dtype)
    norms = torch.empty(batch, dtype=acc, device=g.device)
    _sum_squares_kernel[(batch,)](g, norms, dim, BLOCK=BLOCK, ACC64=acc == torch.float64)
    excess = norms - center
    if one_sided:
        excess = excess.clamp_min(0)
    return excess.square().mean(), norms


def penalty_from_gradients_backward(
    grad_penalty: torch.Tensor, grads: torch.Tensor, norms: torch.Tensor, center: float, one_sided: bool
) -> torch.Tensor:
    """``grad_penalty * phi'(n_i) / (n_i B) * g_i`` for every sample."""
    _checks.check_penalty_backward(grad_penalty, grads, norms)
    g = grads.contiguous()
    batch = g.shape[0]
    dim = g.numel() // batch
    acc = _acc_dtype(g.dtype)
    # The per-sample factor grad_penalty * phi'(n_i) / (n_i B), 0 where n_i = 0:
    # B numbers, computed with torch; the kernel scales each sample by its own.
    n = norms.to(acc)
    excess = n - center
    if one_sided:
        excess = excess.clamp_min(0)
    safe = torch.where(n > 0, n, torch.ones_like(n))
    factors = torch.where(n > 0, 2 * excess / safe, torch.zeros_like(n))
    factors = (factors * (grad_penalty.to(acc) / batch)).contiguous()
    out = torch.empty_like(g)
    if g.numel():
        _scale_rows_kernel[(batch, triton.cdiv(dim, BLOCK))](g, factors, out, dim, BLOCK=BLOCK)
    return out
