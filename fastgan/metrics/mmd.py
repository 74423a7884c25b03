"""Kernel maximum mean discrepancy between two sample sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor

from fastgan._checks import float_tensor, positive

__all__ = ["mmd2", "rbf_kernel", "median_bandwidth"]

Bandwidths = Union[float, Sequence[float], Tensor]


def _bandwidths(bandwidths: Bandwidths) -> list[float]:
    if isinstance(bandwidths, Tensor):
        if bandwidths.dim() > 1:
            raise ValueError(f"`bandwidths` must be a number or a 1-D sequence, got shape {tuple(bandwidths.shape)}")
        values: list[object] = bandwidths.reshape(-1).tolist()
    elif isinstance(bandwidths, Sequence) and not isinstance(bandwidths, str):
        values = list(bandwidths)
    else:
        values = [bandwidths]
    if not values:
        raise ValueError("`bandwidths` is empty")
    return [positive(v, "bandwidths") for v in values]


def _check_samples(t: object, name: str) -> Tensor:
    return float_tensor(t, name, min_dims=2)


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """|a - b|^2 in float64, from the differences themselves (torch.cdist's
    direct mode, no (n, m, d) intermediate): no cancellation for clouds far
    from the origin or bandwidths far below the clouds' spread, no overflow
    for large clouds."""
    return torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist").square()


def rbf_kernel(x: Tensor, y: Tensor, bandwidths: Bandwidths = 1.0) -> Tensor:
    r"""Sum of Gaussian kernels :math:`k(a, b) = \sum_\sigma \exp(-\|a - b\|^2 / (2\sigma^2))`.

    ``x``: (..., n, d), ``y``: (..., m, d); returns the (..., n, m) Gram matrix.
    """
    x = _check_samples(x, "x")
    y = _check_samples(y, "y")
    sq = _squared_distances(x, y)
    sigmas = _bandwidths(bandwidths)
    out = torch.exp(sq * (-0.5 / sigmas[0] ** 2))
    for s in sigmas[1:]:
        out = out + torch.exp(sq * (-0.5 / s**2))
    return out.to(torch.promote_types(x.dtype, y.dtype))


def mmd2(x: Tensor, y: Tensor, bandwidths: Bandwidths = 1.0, *, unbiased: bool = True) -> Tensor:
    r"""Squared maximum mean discrepancy between samples ``x`` ~ P and ``y`` ~ Q.

    :math:`\mathrm{MMD}^2(P, Q) = E[k(x, x')] - 2 E[k(x, y)] + E[k(y, y')]` with the
    multi-bandwidth RBF kernel of :func:`rbf_kernel` (one bandwidth, or the sum over
    several, which is again a characteristic kernel). ``unbiased=True`` gives the
    U-statistic

    .. math:: \frac{1}{n(n-1)}\sum_{i \ne j} k(x_i, x_j)
              + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j)
              - \frac{2}{nm}\sum_{i, j} k(x_i, y_j),

    an unbiased estimate that can be slightly negative when P = Q (needs n, m >= 2);
    ``unbiased=False`` the biased V-statistic (all pairs, never negative).

    ``x``: (..., n, d), ``y``: (..., m, d) with broadcasting batch dimensions; returns
    shape (...). Differentiable (usable as an MMD-GAN loss or a training monitor);
    memory O(n^2 + m^2 + nm) per batch element.
    """
    x = _check_samples(x, "x")
    y = _check_samples(y, "y")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"`x` has {x.shape[-1]} features and `y` has {y.shape[-1]}")
    n, m = x.shape[-2], y.shape[-2]
    least = 2 if unbiased else 1
    for name, size in (("x", n), ("y", m)):
        if size < least:
            raise ValueError(f"`{name}` has {size} samples; mmd2(unbiased={unbiased}) needs at least {least}")
    k_xx = rbf_kernel(x, x, bandwidths)
    k_yy = rbf_kernel(y, y, bandwidths)
    k_xy = rbf_kernel(x, y, bandwidths)
    if unbiased:
        xx = (k_xx.sum((-1, -2)) - k_xx.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))
        yy = (k_yy.sum((-1, -2)) - k_yy.diagonal(dim1=-2, dim2=-1).sum(-1)) / (m * (m - 1))
    else:
        xx = k_xx.mean((-1, -2))
        yy = k_yy.mean((-1, -2))
    return xx + yy - 2.0 * k_xy.mean((-1, -2))


def median_bandwidth(x: Tensor, y: Tensor) -> float:
    """The median distance between distinct points of ``x`` and ``y`` pooled (the median
    heuristic for an RBF bandwidth). ``x``: (n, d), ``y``: (m, d)."""
    x = _check_samples(x, "x")
    y = _check_samples(y, "y")
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError("`x` and `y` must be (n, d) and (m, d) for median_bandwidth")
    z = torch.cat([x, y.to(x.dtype)])
    d = _squared_distances(z, z).sqrt()
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    if iu.shape[1] == 0:
        raise ValueError("median_bandwidth needs at least two points in all")
    med = float(d[iu[0], iu[1]].median())
    if med <= 0:
        raise ValueError("all points coincide; the median distance is 0")
    return med
