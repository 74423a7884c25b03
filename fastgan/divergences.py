"""Distances between discrete distributions: KL, JS, TV, Wasserstein-1, the optimal GAN
discriminator, and the parallel-lines example of the WGAN paper.

Distributions are histograms: non-negative tensors whose last dimension (or ``dim``)
indexes a common support and sums to 1. Leading dimensions are batch dimensions and
broadcast between the two arguments, so ``kl(p, q)`` with ``p`` of shape (B, n) and
``q`` of shape (n,) returns B divergences. Natural logarithms throughout.

Every function checks its input on the host (dtype, shape, NaN, negative mass, mass
that does not sum to 1 within rounding: 1e-6, or n ulps of the dtype if larger); that synchronises with a GPU, so
these are evaluation tools rather than training-step losses. ``normalize=True`` divides
each histogram by its total first (for counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor

from fastgan._checks import float_tensor
from fastgan._tensors import check_float_dtype, integer

__all__ = [
    "kl",
    "js",
    "tv",
    "wasserstein",
    "optimal_discriminator",
    "minimax_value",
    "ParallelLines",
    "parallel_lines",
    "plot_parallel_lines",
]

_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- checks


def _check_masses(x: object, name: str) -> Tensor:
    x = float_tensor(x, name, min_dims=1)
    if bool((x < 0).any()):
        raise ValueError(f"`{name}` has negative masses (min {x.min().item():.3g})")
    return x


def _sum_tolerance(dtype: torch.dtype, n: int) -> float:
    # A sum of n rounded terms is off by at most about n ulps, and normalising costs as
    # much again. The 1e-6 floor accepts float32 probabilities cast to float64; the
    # check is there to catch counts and forgotten normalisations, not rounding.
    return max(4.0 * max(n, 16) * torch.finfo(dtype).eps, 1e-6)


def _histograms(
    p: object, q: object, dim: int, normalize: bool, names: tuple[str, str] = ("p", "q")
) -> tuple[Tensor, Tensor, int]:
    """``p`` and ``q`` checked, with the support moved last and broadcast, and its size."""
    dim = integer(dim, "dim")
    checked = []
    for x, name in ((p, names[0]), (q, names[1])):
        x = _check_masses(x, name)
        if not -x.dim() <= dim < x.dim():
            raise ValueError(f"`dim`={dim} is out of range for `{name}` of shape {tuple(x.shape)}")
        x = x.movedim(dim, -1)
        if x.shape[-1] == 0:
            raise ValueError(f"`{name}` has an empty support")
        total = x.sum(-1, keepdim=True)
        if normalize:
            if bool((total <= 0).any()):
                raise ValueError(f"`{name}` has a histogram with zero total mass; cannot normalize")
            x = x / total
        else:
            err = (total - 1).abs().amax().item() if total.numel() else 0.0
            if err > _sum_tolerance(x.dtype, x.shape[-1]):
                raise ValueError(
                    f"`{name}` does not sum to 1 along dim {dim} (off by up to {err:.3g}); "
                    "pass probabilities, or normalize=True for counts"
                )
        checked.append(x)
    p_, q_ = checked
    if p_.shape[-1] != q_.shape[-1]:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` have supports of different sizes "
            f"({p_.shape[-1]} and {q_.shape[-1]}) along dim {dim}"
        )
    try:
        shape = torch.broadcast_shapes(p_.shape, q_.shape)
    except RuntimeError:
        raise ValueError(
            f"the batch shapes of `{names[0]}` {tuple(p_.shape[:-1])} and `{names[1]}` "
            f"{tuple(q_.shape[:-1])} do not broadcast"
        ) from None
    dtype = torch.promote_types(p_.dtype, q_.dtype)
    return p_.to(dtype).expand(shape), q_.to(dtype).expand(shape), p_.shape[-1]


# --------------------------------------------------------------------------- divergences


def kl(p: Tensor, q: Tensor, *, dim: int = -1, normalize: bool = False) -> Tensor:
    r"""Kullback-Leibler divergence :math:`KL(P\|Q) = \sum_i p_i \log(p_i / q_i)`.

    Terms with p_i = 0 count 0; a term with p_i > 0 = q_i makes the result ``+inf``.
    Returns the batch shape (the broadcast of both inputs without ``dim``).
    """
    p, q, _ = _histograms(p, q, dim, normalize)
    out = (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)
    return out.clamp_min(0.0)  # Gibbs' inequality; removes rounding below 0


def js(p: Tensor, q: Tensor, *, dim: int = -1, normalize: bool = False, halved: bool = True) -> Tensor:
    r"""Jensen-Shannon divergence, with M = (P + Q) / 2.

    ``halved=True`` (the standard convention, the default):
    :math:`JS(P, Q) = \tfrac12 KL(P\|M) + \tfrac12 KL(Q\|M)`, between 0 and log 2.

    ``halved=False``: the unhalved sum :math:`KL(P\|M) + KL(Q\|M) = 2\,JS`, between 0
    and 2 log 2, which is the f-divergence of the f-GAN table's JS row
    (``fastgan.losses.F_DIVERGENCES["js"]``). The GAN value at the optimal
    discriminator is :math:`2\,JS - \log 4` in the standard convention.
    """
    p, q, _ = _histograms(p, q, dim, normalize)
    m = 0.5 * (p + q)
    xlogx = torch.special.xlogy
    half_sum = (0.5 * (xlogx(p, p) + xlogx(q, q)) - xlogx(m, m)).sum(-1)
    out = half_sum.clamp(0.0, _LOG2)
    return out if halved else 2.0 * out


def tv(p: Tensor, q: Tensor, *, dim: int = -1, normalize: bool = False) -> Tensor:
    r"""Total variation distance :math:`\delta(P, Q) = \sup_A |P(A) - Q(A)| = \tfrac12 \sum_i |p_i - q_i|`.

    Between 0 and 1 (1 for disjoint supports).
    """
    p, q, _ = _histograms(p, q, dim, normalize)
    return 0.5 * (p - q).abs().sum(-1)


def wasserstein(
    p: Tensor,
    q: Tensor,
    support: Optional[Tensor] = None,
    *,
    dim: int = -1,
    normalize: bool = False,
) -> Tensor:
    r"""Wasserstein-1 (earth mover's) distance between histograms on a sorted 1-D support.

    With positions :math:`x_0 \le x_1 \le \dots \le x_{n-1}` and cumulative masses
    :math:`C_P(i) = \sum_{j \le i} p_j`,

    .. math:: W_1(P, Q) = \sum_{i=0}^{n-2} |C_P(i) - C_Q(i)|\,(x_{i+1} - x_i):

    the mass that must cross each gap between neighbouring positions, times the gap
    (in one dimension, moving earth left to right is optimal). ``support`` has shape
    (n,) or any shape that broadcasts with the histograms (positions along ``dim``),
    sorted in non-decreasing order along it; by default positions 0, 1, ..., n-1.
    This is ``ot.wasserstein_1d(x, x, p, q, p=1)`` and
    ``scipy.stats.wasserstein_distance(x, x, p, q)`` for a shared support ``x``.
    """
    p, q, n = _histograms(p, q, dim, normalize)
    if support is None:
        gaps = torch.ones(n - 1, dtype=p.dtype, device=p.device)
    else:
        x = float_tensor(support, "support", min_dims=1)
        if x.dim() == 1:
            if x.shape[0] != n:
                raise ValueError(f"`support` has {x.shape[0]} positions; the histograms have {n}")
        else:
            if not -x.dim() <= dim < x.dim():
                raise ValueError(f"`dim`={dim} is out of range for `support` of shape {tuple(x.shape)}")
            x = x.movedim(dim % x.dim(), -1)
            if x.shape[-1] != n:
                raise ValueError(f"`support` has {x.shape[-1]} positions along dim {dim}; the histograms have {n}")
        gaps = x.diff(dim=-1).to(p.dtype)
        if bool((gaps < 0).any()):
            raise ValueError("`support` must be sorted in non-decreasing order along `dim`")
    cdf_gap = (p.cumsum(-1) - q.cumsum(-1))[..., :-1].abs()
    return (cdf_gap * gaps).sum(-1)


# --------------------------------------------------------------------------- optimal discriminator


def optimal_discriminator(p_r: Tensor, p_g: Tensor) -> Tensor:
    r"""The discriminator that maximises the GAN value for a fixed generator.

    :math:`D^*(x) = p_r(x) / (p_r(x) + p_g(x))`, elementwise on densities or masses
    (they need not be normalised; shapes broadcast). Where both vanish D* does not
    affect the value and is returned as 1/2.
    """
    p_r = _check_masses(p_r, "p_r")
    p_g = _check_masses(p_g, "p_g")
    total = p_r + p_g
    return torch.where(total > 0, p_r / torch.where(total > 0, total, 1.0), 0.5)


def minimax_value(
    p_r: Tensor,
    p_g: Tensor,
    discriminator: Optional[Tensor] = None,
    *,
    dim: int = -1,
    normalize: bool = False,
) -> Tensor:
    r"""The GAN value :math:`V(D, G) = \sum_x p_r(x) \log D(x) + p_g(x) \log(1 - D(x))`.

    ``discriminator`` holds D(x) in [0, 1] on the support (broadcasting with the
    histograms); by default the optimal :func:`optimal_discriminator`, for which the
    value is the virtual training criterion
    :math:`C(G) = -\log 4 + 2\,JS(P_r, P_g)` (standard, halved JS). Terms with zero
    mass count 0, so a discriminator that is exactly 0 or 1 where the other
    distribution has no mass is fine.
    """
    p_r, p_g, n = _histograms(p_r, p_g, dim, normalize, names=("p_r", "p_g"))
    if discriminator is None:
        d = optimal_discriminator(p_r, p_g)
    else:
        d = float_tensor(discriminator, "discriminator", min_dims=1)
        if bool(((d < 0) | (d > 1)).any()):
            raise ValueError("`discriminator` must lie in [0, 1] (a probability of 'real')")
        if d.dim() > 1:
            if not -d.dim() <= dim < d.dim():
                raise ValueError(f"`dim`={dim} is out of range for `discriminator` of shape {tuple(d.shape)}")
            d = d.movedim(dim, -1)
        if d.shape[-1] not in (1, n):
            raise ValueError(f"`discriminator` has {d.shape[-1]} values along dim {dim}; the histograms have {n}")
    return (torch.special.xlogy(p_r, d) + torch.special.xlogy(p_g, 1.0 - d)).sum(-1)


# --------------------------------------------------------------------------- parallel lines


class ParallelLines(NamedTuple):
    """Distances between P_0 and P_theta in the parallel-lines example (tensors)."""

    wasserstein: Tensor
    js: Tensor
    kl: Tensor
    tv: Tensor


def parallel_lines(theta: Union[float, Tensor]) -> ParallelLines:
    r"""Example 1 of the WGAN paper: two parallel vertical segments in the plane.

    With Z ~ U[0, 1], P_0 is the law of (0, Z) and P_theta the law of (theta, Z). Then

    * :math:`W_1(P_0, P_\theta) = |\theta|`,
    * :math:`JS(P_0, P_\theta) = \log 2` (standard, halved convention),
    * :math:`KL(P_\theta\|P_0) = KL(P_0\|P_\theta) = +\infty`,
    * :math:`\delta(P_0, P_\theta) = 1` (total variation)

    for theta != 0, and all four are 0 at theta = 0: only W_1 is continuous in theta
    and gives a gradient. ``theta``: a float or a float tensor of any shape; the
    results have its shape (float64 for a Python float).
    """
    if isinstance(theta, Tensor):
        check_float_dtype(theta, "theta")
        t = theta
    elif isinstance(theta, (int, float)) and not isinstance(theta, bool):
        t = torch.tensor(float(theta), dtype=torch.float64)
    else:
        raise TypeError(f"`theta` must be a float or a Tensor, got {type(theta).__name__}")
    if bool(torch.isnan(t).any()):
        raise ValueError("`theta` contains NaN")
    apart = t != 0
    zero = torch.zeros_like(t)
    return ParallelLines(
        wasserstein=t.abs(),
        js=torch.where(apart, _LOG2, zero),
        kl=torch.where(apart, torch.inf, zero),
        tv=torch.where(apart, 1.0, zero),
    )


def _parallel_lines_from_histograms(theta: float) -> ParallelLines:
    """The same four values computed by this module's functions on the x-marginals.

    The y-coordinate of both segments has the same law and the optimal plan moves each
    point horizontally, so every distance here equals that between the x-marginals,
    the point masses at 0 and at theta.
    """
    if theta == 0:
        support = torch.zeros(1, dtype=torch.float64)
        p0 = pt = torch.ones(1, dtype=torch.float64)
    else:
        support = torch.tensor(sorted([0.0, theta]), dtype=torch.float64)
        p0 = (support == 0).double()
        pt = (support == theta).double()
    return ParallelLines(
        wasserstein=wasserstein(p0, pt, support),
        js=js(p0, pt),
        kl=kl(pt, p0),
        tv=tv(p0, pt),
    )


def plot_parallel_lines(
    path: Union[str, Path], thetas: Optional[Sequence[float]] = None
) -> Path:
    """Saves the figure of the parallel-lines example: W_1, JS, KL and TV against theta.

    The curves are the closed forms of :func:`parallel_lines`; the markers are the same
    quantities computed by :func:`wasserstein`, :func:`js`, :func:`kl` and :func:`tv` on
    the x-marginal histograms. KL (infinite off theta = 0) is drawn at a level labelled
    +inf. Needs matplotlib (an optional dependency: ``pip install matplotlib``).
    Returns the path written; the format follows its suffix (.png, .pdf, .svg).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "plot_parallel_lines needs matplotlib, which is not installed: "
            "pip install matplotlib"
        ) from err
    if thetas is None:
        thetas = [float(t) for t in torch.linspace(-1.0, 1.0, 201, dtype=torch.float64)]
        thetas.append(0.0)
        thetas.sort()
    theta_t = torch.tensor(list(thetas), dtype=torch.float64)
    if theta_t.dim() != 1 or theta_t.numel() == 0:
        raise ValueError("`thetas` must be a non-empty sequence of floats")
    closed = parallel_lines(theta_t)
    marks = [float(t) for t in torch.linspace(-1.0, 1.0, 9, dtype=torch.float64)]
    computed = [_parallel_lines_from_histograms(t) for t in marks]

    fig = Figure(figsize=(10, 2.8), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, field, title in zip(
        axes, ParallelLines._fields, ("$W_1$", "JS", "KL", "TV"), strict=True
    ):
        y = getattr(closed, field)
        ym = [float(getattr(c, field)) for c in computed]
        if field == "kl":  # drawn at height 1, labelled infinity
            y = y.clamp(max=1.0)
            ym = [min(v, 1.0) for v in ym]
            ax.set_yticks([0.0, 1.0], ["0", r"$+\infty$"])
        if field == "wasserstein":
            ax.plot(theta_t.numpy(), y.numpy(), "C0", lw=1.5, label="closed form")
        else:  # discontinuous at 0: the two sides and the value at 0
            for side in (theta_t < 0, theta_t > 0):
                ax.plot(theta_t[side].numpy(), y[side].numpy(), "C0", lw=1.5)
            at0 = theta_t == 0
            ax.plot(theta_t[at0].numpy(), y[at0].numpy(), "C0o", ms=6, mfc="none")
        ax.plot(marks, ym, "C1o", ms=4, label="from histograms")
        ax.set_title(title)
        ax.set_xlabel(r"$\theta$")
    axes[0].legend(fontsize=7)
    path = Path(path)
    fig.savefig(path)
    return path
