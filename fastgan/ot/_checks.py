"""Input checks shared by fastgan's optimal-transport functions."""

from __future__ import annotations

import math

import torch

from fastgan._tensors import check_dense


def float_tensor(t: object, name: str) -> torch.Tensor:
    """``t`` if it is a float32 or float64 Tensor, else a TypeError naming ``name``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a Tensor, got {type(t).__name__}")
    check_dense(t, name)
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"`{name}` has dtype {t.dtype}; expected float32 or float64")
    return t


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite, from its min and max in one pass
    (``torch.aminmax`` propagates NaN; an infinity is the min or the max)."""
    if t.numel() == 0 or not t.is_floating_point():
        return True
    return bool(torch.isfinite(torch.stack(torch.aminmax(t.detach()))).all())


def check_finite(t: torch.Tensor, name: str) -> None:
    """ValueError naming ``name`` if ``t`` holds NaN or infinite values."""
    if not all_finite(t):
        raise ValueError(f"`{name}` contains NaN or infinite values")


def mass_tolerance(dtype: torch.dtype, count: int) -> float:
    """The relative mass difference accepted between two sides of ``count`` weights in ``dtype``:
    1e-6, or about sqrt(count) rounding errors where the dtype cannot resolve that."""
    return max(1e-6, 4 * torch.finfo(dtype).eps * math.sqrt(count))


def check_weights(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], *, same_mass: bool = True) -> None:
    """Finite, non-negative weights (..., n) and (..., m) with positive masses per problem,
    equal unless ``same_mass`` is False (unbalanced transport)."""
    for w, name in zip((a, b), names):
        check_finite(w, name)
        if bool((w < 0).any()):
            raise ValueError(f"`{name}` has negative weights")
    ma, mb = a.detach().sum(-1), b.detach().sum(-1)
    if bool((ma <= 0).any()) or bool((mb <= 0).any()):
        raise ValueError(f"`{names[0]}` or `{names[1]}` has zero total mass")
    if not same_mass:
        return
    gap = float(((ma - mb).abs() / torch.maximum(ma, mb)).max()) if ma.numel() else 0.0
    if gap > mass_tolerance(a.dtype, a.shape[-1] + b.shape[-1]):
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` have unequal mass (relative difference {gap:.3g}); "
            "balanced optimal transport needs equal masses"
        )


def power_of_two_scale(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A power of two s per problem (shape (..., 1, 1), detached) with
    max(|x|, |y|) / s in [1, 2): dividing clouds (..., n, d) by it is exact,
    and keeps their distances to the p representable at any finite scale."""
    m = torch.maximum(x.detach().abs().amax(dim=(-2, -1), keepdim=True), y.detach().abs().amax(dim=(-2, -1), keepdim=True))
    _, exponent = torch.frexp(m)
    s = torch.ldexp(torch.ones_like(m), exponent - 1)
    return torch.where(torch.isfinite(m) & (m > 0), s, torch.ones_like(m))


def root(total: torch.Tensor, p: float) -> torch.Tensor:
    """total^(1/p), with gradient 0 (not NaN) where total = 0."""
    positive_total = total > 0
    safe = torch.where(positive_total, total, torch.ones_like(total))
    return torch.where(positive_total, safe.pow(1.0 / p), torch.zeros_like(total))


def check_clouds(x: object, y: object, names: tuple[str, str]) -> None:
    """Two float32/float64 point clouds (n, d) / (B, n, d) of one dtype, with
    points and features, sharing batch and feature sizes; else an error naming them."""
    for t, name in zip((x, y), names):
        float_tensor(t, name)
        if t.dim() not in (2, 3):
            raise ValueError(f"`{name}` must be (n, d) or (B, n, d), got shape {tuple(t.shape)}")
        if t.shape[-2] == 0 or t.shape[-1] == 0:
            raise ValueError(f"`{name}` needs at least one point and one feature, got shape {tuple(t.shape)}")
    if x.dim() != y.dim() or x.shape[-1] != y.shape[-1] or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(
            f"`{names[0]}` {tuple(x.shape)} and `{names[1]}` {tuple(y.shape)} must share batch and feature dimensions"
        )
    if x.dtype != y.dtype:
        raise TypeError(f"`{names[0]}` has dtype {x.dtype} but `{names[1]}` has {y.dtype}")
