r"""Distances between sample sets, for monitoring a generator during and after training.

Each compares generated samples with data samples, flattened to vectors
``(N, d)`` (images included), or batches of such sets ``(B, N, d)``:

================== ======================================================================
``"w1"``, ``"w2"`` exact Wasserstein distances :math:`W_p` (fastgan's exact OT solvers:
                   the assignment solver for equal sizes, network simplex otherwise)
``"sliced"``       sliced :math:`W_2` over random directions (sorting per direction)
``"sinkhorn"``     the debiased Sinkhorn divergence :math:`S_\varepsilon` (GeomLoss's
                   conventions: cost :math:`\|x - y\|^2 / 2`, blur 0.05)
``"mmd2"``         unbiased RBF-kernel :math:`\mathrm{MMD}^2` at the median-heuristic
                   bandwidth (seed 002's formula)
================== ======================================================================

The exact distances are what a WGAN critic estimates (Kantorovich–Rubinstein
duality for :math:`W_1`); they cost :math:`O(N^3)` worst case, fine for the
few thousand samples of a monitor. Everything here runs without gradients
unless asked: the underlying functions in :mod:`fastgan.ot` and
:func:`fastgan.metrics.mmd2` are differentiable when a loss needs them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["DISTANCES", "sample_distances", "wasserstein_distance"]

DISTANCES = ("w1", "w2", "sliced", "sinkhorn", "mmd2")


def _flat(t: object, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"`{name}` must be a Tensor, got {type(t).__name__}")
    if t.dim() < 2:
        raise ValueError(f"`{name}` must be (N, ...) samples, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"`{name}` must be floating point, got {t.dtype}")
    return t.reshape(t.shape[0], -1)


def wasserstein_distance(x: Tensor, y: Tensor, p: float = 1.0) -> Tensor:
    r"""Exact :math:`W_p` between the empirical distributions of ``x`` (N, ...) and ``y`` (M, ...).

    Samples are flattened to vectors; uniform weights. Equals POT's
    ``ot.emd2(a, b, cdist(x, y) ** p) ** (1 / p)``; differentiable once with
    respect to ``x`` and ``y`` (:func:`fastgan.ot.wasserstein`).
    """
    from fastgan import ot

    return ot.wasserstein(_flat(x, "x"), _flat(y, "y"), p=p)


def sample_distances(
    generated: Tensor,
    data: Tensor,
    which: Iterable[str] = DISTANCES,
    *,
    n_projections: int = 128,
    blur: float = 0.05,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    r"""Several distances between ``generated`` (N, ...) and ``data`` (M, ...) samples, as floats.

    Args:
        generated, data: samples (flattened to vectors); float32 or float64.
        which: names from :data:`DISTANCES`.
        n_projections: directions for ``"sliced"``.
        blur: the Sinkhorn divergence's blur (:math:`\varepsilon = \text{blur}^2`).
        generator: for the sliced directions (reproducible monitors).

    Returns:
        ``{name: value}`` in the order asked. Computed under ``torch.no_grad``.
    """
    from fastgan import metrics, ot

    x, y = _flat(generated, "generated"), _flat(data, "data")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`generated` has {x.shape[1]} features per sample but `data` has {y.shape[1]}")
    names = list(which)
    unknown = [n for n in names if n not in DISTANCES]
    if unknown:
        raise ValueError(f"unknown distances {unknown}; choose from {DISTANCES}")
    y = y.to(x.dtype)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name in names:
            if name == "w1":
                value = ot.wasserstein(x, y, p=1.0)
            elif name == "w2":
                value = ot.wasserstein(x, y, p=2.0)
            elif name == "sliced":
                value = ot.sliced_wasserstein(x, y, n_projections=n_projections, p=2.0, generator=generator)
            elif name == "sinkhorn":
                value = ot.sinkhorn_divergence(x, y, p=2, blur=blur)
            else:
                value = metrics.mmd2(x, y, metrics.median_bandwidth(x, y))
            out[name] = float(value)
    return out
