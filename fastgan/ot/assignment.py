r"""Exact minimum-cost assignment (the uniform-weight, n = m case of optimal transport).

For a cost matrix :math:`C \in \mathbb{R}^{n \times m}`, find the
permutation (injection for n < m) :math:`\sigma` minimising
:math:`\sum_i C_{i\sigma(i)}`. With uniform weights 1/n on n = m points the
optimal transport plan is such a permutation divided by n, so the exact EMD
between two equally sized minibatches is this cost over n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from fastgan import _library
from fastgan.ot._checks import all_finite, float_tensor
from fastgan.ot._compat import ArrayLike, array_io

__all__ = ["Assignment", "linear_sum_assignment"]

#: How the assignment kernels (C++ and Triton) refuse a cost with NaN or an infinity.
NONFINITE = "contains NaN or infinite values"


class Assignment(tuple):
    """An optimal assignment: the pair ``(row_ind, col_ind)`` as SciPy returns
    it (so ``row_ind, col_ind = linear_sum_assignment(C)`` works), with the
    optimality certificate as attributes."""

    row_ind: torch.Tensor  #: (n,) or (B, n) int64, rows in increasing order
    col_ind: torch.Tensor  #: the column of each row
    cost: torch.Tensor  #: the optimal total cost (float64), () or (B,)
    u: torch.Tensor  #: row duals, float64
    v: torch.Tensor  #: column duals, float64: u_i + v_j <= C_ij, tight on the assignment
    duality_gap: torch.Tensor  #: cost - (sum(u) + sum of v over assigned columns): 0 up to rounding

    FIELDS = ("row_ind", "col_ind", "cost", "u", "v", "duality_gap")

    def __new__(cls, row_ind, col_ind, cost, u, v, duality_gap) -> Assignment:
        self = super().__new__(cls, (row_ind, col_ind))
        for name, value in zip(cls.FIELDS, (row_ind, col_ind, cost, u, v, duality_gap)):
            object.__setattr__(self, name, value)
        return self

    def map_tensors(self, fn: Callable[[Any], Any]) -> Assignment:
        """The same assignment with ``fn`` applied to each of its six fields (e.g. ``.cpu()``)."""
        return Assignment(*(fn(getattr(self, name)) for name in self.FIELDS))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"Assignment({fields})"


def _forbid_infinite(work: torch.Tensor, maximize: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Infinite costs as SciPy reads them: forbidden pairs (+inf when minimising,
    -inf when maximising, after the sign flip both +inf here); NaN and the
    other infinity are invalid. Forbidden entries are replaced by a finite
    cost ``big`` that no optimal assignment uses while a feasible one exists:
    with the finite entries in [lo, hi], one forbidden pair costs at least
    big + (n - 1) lo > n hi when big = hi + (n + 1)(hi - lo) + 1.
    Returns the (float64, when it had infinities) matrix and the mask or None."""
    if all_finite(work):
        return work, None
    if bool((torch.isnan(work) | (work == -math.inf)).any()):
        sign = "+inf" if maximize else "-inf"
        raise ValueError(f"`cost_matrix` contains invalid numeric entries (NaN or {sign})")
    forbidden = torch.isinf(work)
    finite = work.double().masked_fill(forbidden, math.nan).flatten(1)
    lo = finite.nan_to_num(nan=math.inf).amin(1)
    hi = finite.nan_to_num(nan=-math.inf).amax(1)
    spread = torch.where(torch.isfinite(hi - lo), hi - lo, torch.zeros_like(hi))
    hi = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
    big = hi + (work.shape[1] + 1) * spread + 1
    return torch.where(forbidden, big[:, None, None], work.double()), forbidden


@array_io("cost_matrix")
def linear_sum_assignment(cost_matrix: ArrayLike, maximize: bool = False) -> Assignment:
    r"""Exact assignment, SciPy's ``scipy.optimize.linear_sum_assignment`` (batched, with duals).

    ``row_ind, col_ind = linear_sum_assignment(C)`` as with SciPy; the
    result also carries ``.cost``, the duals ``.u``, ``.v`` and
    ``.duality_gap``. numpy arrays and lists give numpy arrays (int64
    indices), tensors give tensors.

    On the CPU the problems of a batch run in parallel, and a single problem
    with m >= 1024 shares each search step among the threads. On CUDA a
    batch runs one Triton program per problem; a few large problems (no more
    than the host has threads, n * m >= 256 * 256) are solved on the host's
    cores instead, which measured faster than one program, and the results
    come back on the GPU.

    Args:
        cost_matrix: ``(n, m)`` or a batch ``(B, n, m)``, float32 or float64
            (numpy integers and booleans are read as float64).
            Rectangular matrices assign every row of the smaller side; an
            empty matrix gives empty indices. ``+inf`` (``-inf`` with
            ``maximize``) marks a forbidden pair, as in SciPy.
        maximize: maximise the total instead.

    Returns:
        :class:`Assignment`: ``row_ind``, ``col_ind`` (as SciPy returns them,
        for every problem of a batch), the optimal ``cost`` in float64, the
        dual potentials ``u``, ``v`` of the (minimisation) linear program and
        the duality gap, which certifies optimality. For n > m the roles are
        swapped internally and the duals refer to the transposed problem;
        with forbidden pairs they refer to the matrix where those cost
        ``big`` (see :func:`_forbid_infinite`). Where several assignments are
        optimal (ties) the one returned may differ from SciPy's; its cost
        does not.

    Raises:
        ValueError: not 2-D or 3-D ("expected a matrix"), NaN or the wrong
            infinity ("contains invalid numeric entries"), or no assignment
            avoids the forbidden pairs ("cost matrix is infeasible"): SciPy's messages.
        TypeError: not float32 / float64 (numpy strings: "Cannot cast array data").

    Not differentiable (the result is a set of indices); differentiate
    ``cost[row_ind, col_ind].sum()`` instead, whose gradient is the
    assignment's indicator.
    """
    float_tensor(cost_matrix, "cost_matrix")
    if cost_matrix.dim() not in (2, 3):
        raise ValueError(
            f"`cost_matrix`: expected a matrix (n, m) or a batch of them (B, n, m), got shape {tuple(cost_matrix.shape)}"
        )
    batched = cost_matrix.dim() == 3
    c = cost_matrix.detach() if batched else cost_matrix.detach().unsqueeze(0)
    transposed = c.shape[1] > c.shape[2]
    work = c.transpose(1, 2) if transposed else c
    work = -work if maximize else work
    if work.shape[1] == 0:
        result = _empty(work)
    else:
        _library.require_kernel("linear_sum_assignment", cost_matrix.device)
        try:  # the kernel refuses NaN / Inf while it reads the costs: no extra pass
            result = assign_finite(work, None, transposed, maximize)
        except ValueError as err:
            if NONFINITE not in str(err):
                raise
            work, forbidden = _forbid_infinite(work, maximize)
            result = assign_finite(work, forbidden, transposed, maximize)
    if not batched:
        result = result.map_tensors(lambda t: t.squeeze(0))
    return result


def assign_finite(work: torch.Tensor, forbidden: torch.Tensor | None = None, transposed: bool = False,
                  maximize: bool = False) -> Assignment:
    """The assignment of a batch ``work`` (B, n, m), n <= m, n >= 1, of finite costs
    (callers that build the costs from finite points skip the check here).
    ``forbidden``: the mask of pairs that cost ``big`` (:func:`_forbid_infinite`);
    ``transposed``, ``maximize``: how ``work`` was made from the caller's matrix."""
    cols, u, v = torch.ops.fastgan.linear_sum_assignment.default(work)
    if forbidden is not None and bool(torch.gather(forbidden, 2, cols.unsqueeze(2)).any()):
        raise ValueError("cost matrix is infeasible: no assignment avoids the forbidden (infinite) pairs")
    n = work.shape[1]
    rows = torch.arange(n, device=cols.device).expand_as(cols)
    picked = torch.gather(work.to(torch.float64), 2, cols.unsqueeze(2)).squeeze(2)
    total = picked.sum(1)
    gap = total - (u.sum(1) + torch.gather(v, 1, cols).sum(1))
    if transposed:
        # Rows of the transposed problem are the original columns: sort by original row.
        order = torch.argsort(cols, dim=1)
        rows, cols = torch.gather(cols, 1, order), torch.gather(rows, 1, order)
    if maximize:
        total = -total
    return Assignment(rows, cols, total, u, v, gap)


def _empty(work: torch.Tensor) -> Assignment:
    """The assignment of an empty (B, 0, k) problem: no pairs, cost 0."""
    batch, n, m = work.shape
    index = torch.zeros((batch, 0), dtype=torch.int64, device=work.device)
    f64 = dict(dtype=torch.float64, device=work.device)
    zero = torch.zeros(batch, **f64)
    return Assignment(index, index, zero, torch.zeros((batch, n), **f64), torch.zeros((batch, m), **f64), zero)


if _library.LOADED:

    @torch.library.register_fake("fastgan::linear_sum_assignment")
    def _assignment_fake(cost):
        b, n, m = cost.shape
        f64 = torch.float64
        return (
            cost.new_empty((b, n), dtype=torch.int64),
            cost.new_empty((b, n), dtype=f64),
            cost.new_empty((b, m), dtype=f64),
        )

    # On CUDA the op runs fastgan's Triton kernel (one program per problem), or
    # the C++ kernel on the host for a few large problems (kernels/assignment.py).
    _library.register_triton("linear_sum_assignment", "assignment", "linear_sum_assignment")
