"""Argument checks of the ops that run Triton kernels, as the C++ kernels make them.

The Triton kernels are the CUDA implementations of registered ops
(``torch.ops.fastgan.*``), so they get whatever a caller passes, not only
what fastgan's wrappers pass. They index flat pointers, so every tensor they
read is checked here (dtype, device, shape) before it is made contiguous and
launched on; a violation raises a TypeError / ValueError naming the argument,
with the C++ kernels' messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
OT_DTYPES = (torch.float32, torch.float64)
_DTYPE_NAMES = {FLOAT_DTYPES: "float32, float64, float16 or bfloat16", OT_DTYPES: "float32 or float64"}


def check_dtype(t: torch.Tensor, name: str, op: str, allowed: tuple[torch.dtype, ...] = FLOAT_DTYPES) -> None:
    if t.dtype not in allowed:
        raise TypeError(f"{op}: `{name}` has dtype {t.dtype}; expected {_DTYPE_NAMES[allowed]}")


def check_like(t: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str, op: str) -> None:
    """``t`` has the dtype and device of ``ref``."""
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: `{name}` has dtype {t.dtype} but `{ref_name}` has {ref.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{op}: `{name}` is on {t.device} but `{ref_name}` is on {ref.device}")


def check_shape(t: torch.Tensor, shape: Sequence[int], name: str, op: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: `{name}` must have shape {list(shape)}, got {list(t.shape)}")


def check_bias_act(
    op: str, x: torch.Tensor, bias: torch.Tensor | None, dim: int, grad: torch.Tensor | None
) -> None:
    check_dtype(x, "x", op)
    if bias is not None:
        if x.dim() < 1:
            raise ValueError(f"{op}: `x` must have at least one dimension when a bias is given")
        if not -x.dim() <= dim < x.dim():
            raise IndexError(f"{op}: `dim`={dim} is out of range for `x` of shape {list(x.shape)}")
        check_like(bias, x, "bias", "x", op)
        check_shape(bias, (x.shape[dim],), "bias", op)
    if grad is not None:
        check_like(grad, x, "grad", "x", op)
        check_shape(grad, x.shape, "grad", op)


def check_interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> None:
    op = "fastgan::interpolate"
    if real.dim() < 1:
        raise ValueError(f"{op}: `real` must have a batch dimension")
    check_dtype(real, "real", op)
    check_like(fake, real, "fake", "real", op)
    check_like(eps, real, "eps", "real", op)
    check_shape(fake, real.shape, "fake", op)
    check_shape(eps, (real.shape[0],), "eps", op)


def check_grads(grads: torch.Tensor, op: str) -> None:
    if grads.dim() < 1 or grads.shape[0] == 0:
        raise ValueError(
            f"{op}: `grads` must have a batch dimension with at least one sample, got shape {list(grads.shape)}"
        )
    check_dtype(grads, "grads", op)


def check_penalty_backward(grad_penalty: torch.Tensor, grads: torch.Tensor, norms: torch.Tensor) -> None:
    op = "fastgan::penalty_from_gradients_backward"
    check_grads(grads, op)
    if grad_penalty.numel() != 1:
        raise ValueError(f"{op}: `grad_penalty` must hold one element, got shape {list(grad_penalty.shape)}")
    for t, name in ((grad_penalty, "grad_penalty"), (norms, "norms")):
        check_dtype(t, name, op)
        if t.device != grads.device:
            raise ValueError(f"{op}: `{name}` is on {t.device} but `grads` is on {grads.device}")
    check_shape(norms, (grads.shape[0],), "norms", op)


def check_points(x: torch.Tensor, y: torch.Tensor, p: int, op: str) -> tuple[int, int, int, int]:
    """(B, n, m, d) of point clouds x (B, n, d) and y (B, m, d)."""
    check_dtype(x, "x", op, OT_DTYPES)
    check_like(y, x, "y", "x", op)
    if x.dim() != 3:
        raise ValueError(f"{op}: `x` must have shape (B, n, d), got {list(x.shape)}")
    if y.dim() != 3:
        raise ValueError(f"{op}: `y` must have shape (B, m, d), got {list(y.shape)}")
    if y.shape[0] != x.shape[0] or y.shape[2] != x.shape[2]:
        raise ValueError(f"{op}: `x` {list(x.shape)} and `y` {list(y.shape)} must share the batch and feature sizes")
    if p not in (1, 2):
        raise ValueError(f"{op}: `p` must be 1 or 2, got {p}")
    return x.shape[0], x.shape[1], y.shape[1], x.shape[2]


def check_eps(eps: float, name: str, op: str) -> None:
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{op}: `{name}` must be finite and > 0, got {eps}")


def check_softmin(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, eps: float, p: int) -> None:
    op = "fastgan::sinkhorn_softmin"
    batch, n, m, _ = check_points(x, y, p, op)
    check_like(h, x, "h", "x", op)
    check_shape(h, (batch, m), "h", op)
    check_eps(eps, "eps", op)
    if batch * n and not m:
        raise ValueError(f"{op}: `y` has no points: the softmin over an empty set is +inf")


def check_sinkhorn_points(
    x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: int,
    eps_list: Sequence[float], tol: float, max_iter: int,
) -> None:
    op = "fastgan::sinkhorn_points"
    batch, n, m, _ = check_points(x, y, p, op)
    for t, name, shape in ((a, "a", (batch, n)), (b, "b", (batch, m))):
        check_like(t, x, name, "x", op)
        check_shape(t, shape, name, op)
    if not eps_list:
        raise ValueError(f"{op}: `eps_list` is empty")
    for e in eps_list:
        if not (math.isfinite(e) and e > 0):
            raise ValueError(f"{op}: `eps_list` holds {e}; every eps must be finite and > 0")
    if math.isnan(tol):
        raise ValueError(f"{op}: `tol` is NaN")
    if max_iter < len(eps_list):
        raise ValueError(
            f"{op}: `max_iter` ({max_iter}) must be at least the length of the eps schedule ({len(eps_list)})"
        )
    if n == 0 or m == 0:
        raise ValueError(f"{op}: `x` and `y` need at least one point each, got {list(x.shape)} and {list(y.shape)}")


def check_sinkhorn_points_backward(
    grad_cost: torch.Tensor, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    f: torch.Tensor, g: torch.Tensor, faa: torch.Tensor, gbb: torch.Tensor, p: int, eps: float,
) -> None:
    op = "fastgan::sinkhorn_points_backward"
    batch, n, m, _ = check_points(x, y, p, op)
    shapes = {
        "grad_cost": (grad_cost, (batch,)), "a": (a, (batch, n)), "b": (b, (batch, m)),
        "f": (f, (2, batch, n)), "g": (g, (2, batch, m)),
        "f_aa": (faa, (2, batch, n)), "g_bb": (gbb, (2, batch, m)),
    }
    debias = faa.numel() > 0
    for name, (t, shape) in shapes.items():
        check_like(t, x, name, "x", op)
        if debias or name not in ("f_aa", "g_bb"):
            check_shape(t, shape, name, op)
    if not debias and gbb.numel():
        raise ValueError(f"{op}: `f_aa` is empty (not debiased) but `g_bb` is not")
    check_eps(eps, "eps", op)
