"""Birthday-paradox estimate of a generator's support size (Arora & Zhang, 2017).

If a distribution is uniform on N points, a sample of about sqrt(N) points probably
holds a duplicate. Turned around: if batches of size s hold a near-duplicate pair with
probability >= 1/2, the distribution's support is about s^2 — small supports, i.e.
mode collapse, show up as collisions in small batches.
"""

from __future__ import annotations

import math
from typing import Optional, TypedDict

import torch
from torch import Tensor

from fastgan._checks import float_tensor, positive, positive_int

__all__ = ["BirthdayEstimate", "birthday_support", "collision_probability"]

_CHUNK_ELEMENTS = 1 << 24  # booleans gathered at once (16 MiB)


class BirthdayEstimate(TypedDict):
    """What :func:`birthday_support` returns."""

    #: Smallest batch size s whose batches hold a near-duplicate with probability >= 1/2
    #: (None when even the whole sample does so less than half the time).
    batch_size: Optional[int]
    #: s^2, the support size the test suggests (inf when ``batch_size`` is None).
    support: float
    #: s(s - 1) / (2 log 2): the N for which a uniform distribution on N points has
    #: collision probability 1/2 at batch size s (about 0.72 s^2; inf when None).
    support_uniform: float
    #: Per trial, the batch size at which the first near-duplicate appeared (float64,
    #: inf when none did); mean(collision_sizes <= s) is the collision probability at s.
    collision_sizes: Tensor


def collision_probability(batch_size: int, support: int) -> float:
    r"""Probability that ``batch_size`` i.i.d. draws from a uniform distribution on
    ``support`` points hold a repeat: :math:`1 - \prod_{i=1}^{s-1} (1 - i/N)`."""
    s = positive_int(batch_size, "batch_size")
    n = positive_int(support, "support")
    if s > n:
        return 1.0
    i = torch.arange(1, s, dtype=torch.float64)
    return float(-torch.expm1(torch.log1p(-i / n).sum()))


def birthday_support(
    samples: Tensor,
    threshold: float = 0.0,
    *,
    trials: int = 200,
    generator: Optional[torch.Generator] = None,
) -> BirthdayEstimate:
    r"""Support-size estimate of the distribution behind ``samples`` by the birthday paradox.

    ``samples``: (N, ...) generated samples (flattened to vectors); two samples are
    near-duplicates when their Euclidean distance is <= ``threshold`` (0: exact
    duplicates; for images pick a distance under which they look the same, or pass
    features of a similarity network). Each trial draws a random ordering of the
    samples; its collision size is the length of the shortest prefix holding a
    near-duplicate pair, so a prefix of length s is a batch of s samples drawn without
    replacement. The estimate is the median collision size s (the smallest s with
    collision probability >= 1/2 over the trials) and ``support`` = s^2; see
    :class:`BirthdayEstimate`. Sampling without replacement from the N samples makes
    the pairwise collision rate an unbiased estimate of the generator's.

    Cost: the N x N near-duplicate matrix (O(N^2 d) time, N^2 bytes) plus
    O(trials * s^2); N should be several times the expected s.
    """
    x = float_tensor(samples, "samples", min_dims=1)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"`samples` must hold at least 2 samples, got {n}")
    threshold = positive(threshold, "threshold", allow_zero=True)
    trials = positive_int(trials, "trials")
    flat = x.reshape(n, -1).double()
    # The direct (not matrix-product) distance keeps exact duplicates at distance 0.
    near = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist") <= threshold
    near = near.cpu()

    orders = torch.rand(trials, n, generator=generator).argsort(dim=1)
    sizes = torch.full((trials,), math.inf, dtype=torch.float64)
    pending = torch.arange(trials)
    m = min(n, 32)
    while pending.numel():
        earlier = torch.ones(m, m, dtype=torch.bool).tril(-1)  # row i, column j < i
        per_chunk = max(1, _CHUNK_ELEMENTS // (m * m))
        for chunk in pending.split(per_chunk):
            idx = orders[chunk, :m]
            hit = (near[idx[:, :, None], idx[:, None, :]] & earlier).any(-1)  # (t, m)
            found = hit.any(-1)
            first = hit.int().argmax(-1)  # first True row
            sizes[chunk[found]] = (first[found] + 1).double()
        pending = pending[torch.isinf(sizes[pending])]
        if m == n:
            break
        m = min(2 * m, n)

    ordered = sizes.sort().values
    s = ordered[math.ceil(trials / 2) - 1].item()
    if math.isinf(s):
        return BirthdayEstimate(
            batch_size=None, support=math.inf, support_uniform=math.inf, collision_sizes=sizes
        )
    s_int = int(s)
    return BirthdayEstimate(
        batch_size=s_int,
        support=float(s_int * s_int),
        support_uniform=s_int * (s_int - 1) / (2.0 * math.log(2.0)),
        collision_sizes=sizes,
    )
