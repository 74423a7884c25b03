r"""Exact minimum-cost assignment (the uniform-weight, n = m case of optimal transport).

For a cost matrix :math:`C \in \mathbb{R}^{n \times m}`, find the
permutation (injection for n < m) :math:`\sigma` minimising
:math:`\sum_i C_{i\sigma(i)}`. With uniform weights 1/n on n = m points the
optimal transport plan is such a permutation divided by n, so the exact EMD
between two equally sized minibatches is this cost over n.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from fastgan import _library
from fastgan.ot._checks import float_tensor

__all__ = ["Assignment", "linear_sum_assignment"]


class Assignment(NamedTuple):
    """An optimal assignment with its optimality certificate."""

    row_ind: torch.Tensor  #: (n,) or (B, n) int64, rows in increasing order
    col_ind: torch.Tensor  #: the column of each row
    cost: torch.Tensor  #: the optimal total cost (float64), () or (B,)
    u: torch.Tensor  #: row duals, float64
    v: torch.Tensor  #: column duals, float64: u_i + v_j <= C_ij, tight on the assignment
    duality_gap: torch.Tensor  #: cost - (sum(u) + sum of v over assigned columns): 0 up to rounding


def linear_sum_assignment(cost: torch.Tensor, maximize: bool = False) -> Assignment:
    r"""Exact assignment, SciPy's ``scipy.optimize.linear_sum_assignment`` (batched, with duals).

    On the CPU the problems of a batch run in parallel, and a single problem
    with m >= 1024 shares each search step among the threads. On CUDA a
    batch runs one Triton program per problem; a few large problems (no more
    than the host has threads, n * m >= 256 * 256) are solved on the host's
    cores instead, which measured faster than one program, and the results
    come back on the GPU.

    Args:
        cost: ``(n, m)`` or a batch ``(B, n, m)``, float32 or float64, finite.
            Rectangular matrices assign every row of the smaller side.
        maximize: maximise the total instead.

    Returns:
        :class:`Assignment`: ``row_ind``, ``col_ind`` (as SciPy returns them,
        for every problem of a batch), the optimal ``cost`` in float64, the
        dual potentials ``u``, ``v`` of the (minimisation) linear program and
        the duality gap, which certifies optimality. For n > m the roles are
        swapped internally and the duals refer to the transposed problem.

    Raises:
        ValueError: not 2-D or 3-D, or NaN / infinite entries.
        TypeError: not float32 / float64.

    Not differentiable (the result is a set of indices); differentiate
    ``cost[row_ind, col_ind].sum()`` instead, whose gradient is the
    assignment's indicator.
    """
    float_tensor(cost, "cost")
    if cost.dim() not in (2, 3):
        raise ValueError(f"`cost` must be (n, m) or (B, n, m), got shape {tuple(cost.shape)}")
    _library.require_kernel("linear_sum_assignment", cost.device)
    batched = cost.dim() == 3
    c = cost.detach() if batched else cost.detach().unsqueeze(0)
    transposed = c.shape[1] > c.shape[2]
    work = c.transpose(1, 2) if transposed else c
    work = -work if maximize else work
    cols, u, v = torch.ops.fastgan.linear_sum_assignment.default(work)
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
    result = Assignment(rows, cols, total, u, v, gap)
    if not batched:
        result = Assignment(*(t.squeeze(0) for t in result))
    return result


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
