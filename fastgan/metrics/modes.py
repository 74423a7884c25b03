"""Mode-collapse metrics on low-dimensional Gaussian mixtures.

The true distribution is a mixture of isotropic Gaussians with standard deviation
``sigma`` around known centres (a ring of 8, a 5x5 grid: the 2-D data of VEEGAN and
PacGAN). As in those papers' 2-D experiments, a generated sample is of high quality
when it lies within ``threshold * sigma`` (3 sigma by default) of its nearest centre,
and a mode is covered when at least ``min_count`` high-quality samples are nearest to
it (one by default). Beside that count, ``modes_covered_strict`` asks each mode for a
share ``strict_share`` of the high-quality samples it should get (20 of 2,500 samples
on the 25-mode grid at the default 0.2): a mode visited by a stray sample or two
does not count. The reverse KL compares the histogram of high-quality samples over
modes with the true mixture weights.
"""

from __future__ import annotations

import math
from typing import Optional, TypedDict

import torch
from torch import Tensor

from fastgan._checks import float_tensor, positive, positive_int

__all__ = ["ModeMetrics", "mode_metrics", "ring_centres", "grid_centres", "sample_mixture"]


class ModeMetrics(TypedDict):
    """What :func:`mode_metrics` returns."""

    #: Number of modes with at least ``min_count`` high-quality samples.
    modes_covered: int
    #: Number of modes k with at least ``strict_share * N * w_k`` high-quality samples.
    modes_covered_strict: int
    #: Fraction of all samples within ``threshold * sigma`` of their nearest centre.
    high_quality_fraction: float
    #: KL(generated mode histogram || true weights); NaN when no sample is high quality.
    reverse_kl: float
    #: High-quality samples per mode, int64 of shape (K,).
    mode_counts: Tensor


def mode_metrics(
    samples: Tensor,
    centres: Tensor,
    sigma: float,
    *,
    weights: Optional[Tensor] = None,
    threshold: float = 3.0,
    min_count: int = 1,
    strict_share: float = 0.2,
) -> ModeMetrics:
    r"""Modes covered, high-quality fraction and reverse KL of generated samples.

    ``samples``: (N, d) generated points; ``centres``: (K, d) mode centres; ``sigma``:
    the standard deviation of each true mode; ``weights``: (K,) true mode probabilities
    (default uniform, 1/K each).

    Each sample is assigned to its nearest centre (Euclidean). With
    :math:`c_k` the number of high-quality samples (distance <= threshold * sigma)
    assigned to mode k and :math:`\hat q_k = c_k / \sum_j c_j`,

    * ``modes_covered`` = #{k : c_k >= min_count},
    * ``modes_covered_strict`` = #{k : c_k >= strict_share * N * w_k} (N samples: a mode
      holds at least ``strict_share`` of the high-quality samples it is expected to get),
    * ``high_quality_fraction`` = sum_k c_k / N,
    * ``reverse_kl`` = :math:`\sum_k \hat q_k \log(\hat q_k / w_k)`, finite even when
      modes are missing (the "reverse" direction puts the generated histogram first).
    """
    x = float_tensor(samples, "samples", dims=2)
    c = float_tensor(centres, "centres", dims=2)
    if x.shape[0] == 0:
        raise ValueError("`samples` is empty")
    if c.shape[0] == 0:
        raise ValueError("`centres` is empty")
    if x.shape[1] != c.shape[1]:
        raise ValueError(
            f"`samples` are {x.shape[1]}-dimensional but `centres` are {c.shape[1]}-dimensional"
        )
    sigma = positive(sigma, "sigma")
    threshold = positive(threshold, "threshold")
    min_count = positive_int(min_count, "min_count")
    strict_share = positive(strict_share, "strict_share")
    k = c.shape[0]
    if weights is None:
        w = torch.full((k,), 1.0 / k, dtype=torch.float64)
    else:
        w = float_tensor(weights, "weights", dims=1).double().cpu()
        if w.shape[0] != k:
            raise ValueError(f"`weights` has {w.shape[0]} entries for {k} centres")
        if bool((w <= 0).any()):
            raise ValueError("`weights` must be > 0 for every mode")
        if abs(w.sum().item() - 1.0) > 1e-6:
            raise ValueError(f"`weights` must sum to 1, got {w.sum().item():.6g}")

    dtype = torch.promote_types(x.dtype, c.dtype)
    # Differences taken directly (not |x|^2 + |c|^2 - 2 x.c, which cancels
    # for samples far from the origin).
    dist = torch.cdist(x.to(dtype), c.to(device=x.device, dtype=dtype), compute_mode="donot_use_mm_for_euclid_dist")
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= threshold * sigma
    counts = torch.bincount(nearest[good], minlength=k).cpu()
    n_good = int(counts.sum())
    if n_good == 0:
        reverse_kl = math.nan
    else:
        q = counts.double() / n_good
        reverse_kl = float((torch.special.xlogy(q, q) - torch.special.xlogy(q, w)).sum().clamp_min(0))
    return ModeMetrics(
        modes_covered=int((counts >= min_count).sum()),
        # the 1e-9 keeps 0.2 * 2500 / 25 = 20 from becoming 20.000000000000004
        modes_covered_strict=int((counts.double() >= strict_share * x.shape[0] * w - 1e-9).sum()),
        high_quality_fraction=n_good / x.shape[0],
        reverse_kl=reverse_kl,
        mode_counts=counts,
    )


def ring_centres(k: int = 8, radius: float = 2.0, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """``k`` centres evenly spaced on a circle of ``radius`` (VEEGAN ring: 8, radius 2, sigma 0.02)."""
    k = positive_int(k, "k")
    radius = positive(radius, "radius")
    angle = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).to(dtype)


def grid_centres(side: int = 5, spacing: float = 2.0, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """``side`` x ``side`` centres on a square grid centred at 0 (VEEGAN grid: 5, 2, sigma 0.05).

    The default gives coordinates -4, -2, 0, 2, 4.
    """
    side = positive_int(side, "side")
    spacing = positive(spacing, "spacing")
    axis = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(dtype)


def sample_mixture(
    centres: Tensor,
    sigma: float,
    n: int,
    *,
    weights: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """``n`` points from the mixture of N(centre_k, sigma^2 I) with probabilities ``weights``.

    Returns (n, d) in the dtype of ``centres``, on the CPU.
    """
    c = float_tensor(centres, "centres", dims=2).cpu()
    sigma = positive(sigma, "sigma")
    n = positive_int(n, "n", minimum=0)
    if c.shape[0] == 0:
        raise ValueError("`centres` is empty")
    if weights is None:
        w = torch.ones(c.shape[0], dtype=torch.float64)
    else:
        w = float_tensor(weights, "weights", dims=1).double().cpu()
        if w.shape[0] != c.shape[0] or bool((w < 0).any()) or w.sum() <= 0:
            raise ValueError("`weights` must hold one non-negative weight per centre, not all zero")
    return draw_mixture(c.double(), w, sigma, n, generator, c.dtype)


def draw_mixture(
    centres: Tensor, weights: Tensor, sigma: float, n: int, generator: Optional[torch.Generator], dtype: torch.dtype
) -> Tensor:
    """:func:`sample_mixture`'s draw from checked arguments: float64 ``centres`` (K, d) and ``weights`` (K,) on the CPU."""
    modes = torch.multinomial(weights, n, replacement=True, generator=generator)
    noise = torch.randn(n, centres.shape[1], generator=generator, dtype=torch.float64)
    return (centres[modes] + sigma * noise).to(dtype)
