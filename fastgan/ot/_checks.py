r"""Input checks shared by fastgan's optimal-transport functions, and their one rescaling rule.

The rule (:func:`unit_scale`; per problem :func:`power_of_two_scale`): an OT
entry point whose input ``t`` (a cost matrix, or the points its costs are
formed from) may lie far outside unit scale solves on ``t / s``, ``s`` a
power of two, and multiplies each result homogeneous of degree ``k`` in
``t`` by ``s^k``:

- *what*: ``m = max |t|`` over a problem (or over all problems, where one
  number must serve the batch); ``s = 2^floor(log2 m)``, so that
  ``m / s`` lies in ``[1, 2)``;
- *when*: only where ``m^q``, the magnitude of the degree-``q`` quantity the
  entry point forms from ``t`` (``q = 1`` for a cost, ``q = p`` for the
  cost ``|x - y|^p`` of points), lies outside ``[2^-20, 2^20]``, and ``m``
  is finite and positive; elsewhere ``s = 1`` and nothing is done;
- *back*: costs and potentials (degree ``q``) times ``s^q``, distances
  ``W_p`` (degree 1) times ``s``, plans (degree 0) as they are.

Dividing or multiplying by a power of two changes only the exponent of a
float, so both steps are exact (short of the subnormal range, which the
rescaled problem keeps away from), and results at any scale are the
unit-scale results times the scale's power.

Where it applies: ``emd`` / ``emd2`` on float64 costs (q = 1, one scale for
the batch; float32 costs are solved in float64, whose range they cannot
leave), ``wasserstein`` and the sliced distances on their points (q = p,
per problem), ``sinkhorn_divergence`` on its points (q = p, one scale for
the batch, since the eps schedule is shared; the schedule is computed in
units of s too). ``sinkhorn`` / ``sinkhorn2`` need none: their problem
depends on M and reg only through M / reg. Their reduction of the cost by
its row and column minima (``fastgan.ot.sinkhorn._reduce_cost``) is another
operation, a shift that leaves the plan unchanged, not a rescaling.
"""

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


def weights_or_uniform(w: object, count: int, batch: tuple[int, ...], like: torch.Tensor, name: str) -> torch.Tensor:
    """``w`` checked as ``(*batch, count)`` in the dtype and device of ``like``, or uniform
    weights 1 / count where it is None or empty (POT's ``[]``)."""
    if w is None or (not isinstance(w, torch.Tensor) and len(w) == 0) or (
        isinstance(w, torch.Tensor) and w.numel() == 0 and count > 0
    ):
        return torch.full((*batch, count), 1.0 / count, dtype=like.dtype, device=like.device)
    w = float_tensor(w, name)
    if w.dtype != like.dtype or w.device != like.device:
        raise TypeError(f"`{name}` must have the dtype and device of the cost ({like.dtype}, {like.device})")
    if tuple(w.shape) != (*batch, count):
        raise ValueError(f"`{name}` must have shape {(*batch, count)}, got {tuple(w.shape)}")
    return w


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


#: Magnitudes ``m^q`` in ``[2^-UNIT_BAND, 2^UNIT_BAND]`` are solved as they are:
#: within it every dtype's range leaves room for the sums, squares and
#: quotients the solvers form (float32 reaches 2^-126 .. 2^128).
UNIT_BAND = 20


def unit_scale(m: float, degree: float = 1.0) -> float:
    r"""The one rescaling rule of fastgan's OT entry points (the module docstring), for one magnitude.

    Args:
        m: :math:`\max |t|` of a problem's input.
        degree: ``q``, the degree in the input of the quantity the entry point
            forms from it (1 for a cost; ``p`` for ``|x - y|^p``).

    Returns:
        1.0 where :math:`m^q \in [2^{-20}, 2^{20}]` or m is 0 or not finite;
        else :math:`s = 2^{\lfloor \log_2 m \rfloor}`, so that m / s is in [1, 2).
    """
    if not (0.0 < m < math.inf):
        return 1.0
    mantissa, exponent = math.frexp(m)  # m = mantissa 2^exponent, mantissa in [0.5, 1)
    if abs((exponent - 1 + math.log2(2.0 * mantissa)) * degree) <= UNIT_BAND:
        return 1.0
    return math.ldexp(1.0, exponent - 1)


def power_of_two_scale(*tensors: torch.Tensor, degree: float = 1.0, dims: tuple[int, ...] = (-2, -1)) -> torch.Tensor:
    r""":func:`unit_scale` for each problem of a batch.

    Args:
        tensors: the inputs of one problem family, e.g. clouds ``(..., n, d)``
            and ``(..., m, d)``, or one cost ``(..., n, m)``; m is the largest
            magnitude among them, per problem.
        degree: ``q`` of :func:`unit_scale`.
        dims: the dimensions that make one problem (reduced, kept as size 1);
            all dimensions give one scale for the whole batch.

    Returns:
        ``s`` (no gradient) of the inputs' shape with ``dims`` of size 1, in their dtype.
    """
    m = None
    for t in tensors:
        top = torch.linalg.vector_norm(t.detach(), ord=math.inf, dim=dims, keepdim=True)
        m = top if m is None else torch.maximum(m, top)
    scales = [unit_scale(v, degree) for v in m.flatten().tolist()]
    return torch.tensor(scales, dtype=m.dtype, device=m.device).view(m.shape)


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
