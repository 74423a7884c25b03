"""Triton kernel for exact assignment: the CUDA implementation of ``fastgan::linear_sum_assignment``.

One program per problem of the batch, so a launch solves many small problems
(the minibatch case of GAN training) at once. Each program runs the same
algorithm as the C++ kernel: shortest augmenting paths with dual potentials
(Dijkstra on reduced costs C_ij - u_i - v_j), in float64, one augmentation
per row. A relaxation step reads one cost row tile by tile with all the
program's lanes, and finds the next column (the closest one not yet reached,
a free one on ties) in the same pass. The per-column state (shortest
distance, predecessor row, reached flag, column dual, owner row) lives in a
per-problem workspace in global memory, so any m fits; on a GPU it stays in
the L1/L2 caches for the problem sizes of minibatch OT.

The duals come out feasible (u_i + v_j <= C_ij) and tight on the assignment,
as the C++ kernel's do: the caller's duality gap certifies each solution.

A program is one multiprocessor's worth of work, and the search is a long
chain of dependent steps: on an H200 one problem of n = m = 1000 took
248 ms, where the C++ kernel took 57 ms on one host core. So a batch of
problems with at least HOST_MIN_ENTRIES costs each, and no more problems
than the host has threads, is solved by the C++ kernel on the host (each
problem on its own core, or one problem sharing its row scans among all
of them), the cost matrix copied over and the results copied back.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from fastgan import _library

BLOCK = 128
_BIG = tl.constexpr(2**30)

#: Problems with at least this many costs (n * m) go to the host's C++ kernel
#: when the batch has no more problems than the host has threads.
HOST_MIN_ENTRIES = 256 * 256


def solved_on_host(batch: int, n: int, m: int) -> bool:
    """Whether a CUDA batch of (n, m) problems is solved by the C++ kernel on the host."""
    return n * m >= HOST_MIN_ENTRIES and batch <= torch.get_num_threads()


@triton.jit
def _relax(
    cost_row, v_ptr, short_ptr, pred_ptr, reached_ptr, owner_ptr, base, row, m,
    BLOCK: tl.constexpr,
):
    """shortest_j = min(shortest_j, base + C_ij - v_j) over columns not reached.

    Returns (lowest, best): the smallest shortest_j over columns not reached,
    and its first column, or the first free column at that distance.
    """
    lowest = tl.full([], float("inf"), tl.float64)
    best_any = _BIG
    best_free = _BIG
    for start in range(0, m, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < m
        c = tl.load(cost_row + cols, mask=inside, other=0.0).to(tl.float64)
        v = tl.load(v_ptr + cols, mask=inside, other=0.0)
        s = tl.load(short_ptr + cols, mask=inside, other=float("inf"))
        reached = tl.load(reached_ptr + cols, mask=inside, other=1) != 0
        r = base + c - v
        better = (r < s) & ~reached & inside
        s = tl.where(better, r, s)
        tl.store(short_ptr + cols, s, mask=better)
        tl.store(pred_ptr + cols, tl.zeros_like(cols) + row, mask=better)
        cand = tl.where(reached | ~inside, float("inf"), s)
        tile_low = tl.min(cand, axis=0)
        at_low = cand == tile_low
        free = tl.load(owner_ptr + cols, mask=inside, other=0) < 0
        tile_any = tl.min(tl.where(at_low, cols, _BIG), axis=0)
        tile_free = tl.min(tl.where(at_low & free, cols, _BIG), axis=0)
        lower = tile_low < lowest
        same = tile_low == lowest
        best_any = tl.where(lower, tile_any, best_any)
        best_free = tl.where(lower, tile_free, tl.where(same & (best_free == _BIG), tile_free, best_free))
        lowest = tl.where(lower, tile_low, lowest)
    best = tl.where(best_free < _BIG, best_free, best_any)
    return lowest, best


@triton.jit
def _assignment_kernel(
    cost_ptr, col4row_ptr, u_ptr, v_ptr, owner_ws, short_ws, pred_ws, reached_ws, status_ptr,
    n, m, BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    cost = cost_ptr + b * n * m
    col4row = col4row_ptr + b * n
    u_ptr = u_ptr + b * n
    v_ptr = v_ptr + b * m
    owner = owner_ws + b * m
    short = short_ws + b * m
    pred = pred_ws + b * m
    reached = reached_ws + b * m
    for start in range(0, m, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < m
        tl.store(v_ptr + cols, tl.zeros([BLOCK], tl.float64), mask=inside)
        tl.store(owner + cols, tl.full([BLOCK], -1, tl.int32), mask=inside)
    for start in range(0, n, BLOCK):
        rows = start + tl.arange(0, BLOCK)
        inside = rows < n
        tl.store(u_ptr + rows, tl.zeros([BLOCK], tl.float64), mask=inside)
        tl.store(col4row + rows, tl.full([BLOCK], -1, tl.int64), mask=inside)
    failed = 0
    for cur in range(0, n):
        for start in range(0, m, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < m
            tl.store(short + cols, tl.full([BLOCK], float("inf"), tl.float64), mask=inside)
            tl.store(reached + cols, tl.zeros([BLOCK], tl.int8), mask=inside)
        tl.debug_barrier()
        i = cur
        min_value = tl.full([], 0.0, tl.float64)
        sink = -1
        while sink < 0:
            ui = tl.load(u_ptr + i)
            lowest, best = _relax(
                cost + i.to(tl.int64) * m, v_ptr, short, pred, reached, owner, min_value - ui, i, m,
                BLOCK,
            )
            tl.debug_barrier()
            if lowest < float("inf"):
                min_value = lowest
                tl.store(reached + best, 1)
                col_owner = tl.load(owner + best)
                if col_owner < 0:
                    sink = best
                else:
                    i = col_owner
            else:
                failed = 1
                sink = 0
            tl.debug_barrier()
        # Dual update: the start row gains min_value, every other reached
        # row (the owner of a reached column) and every reached column move
        # by min_value - shortest_j; then the path is flipped.
        tl.store(u_ptr + cur, tl.load(u_ptr + cur) + min_value)
        for start in range(0, m, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < m
            hit = (tl.load(reached + cols, mask=inside, other=0) != 0) & inside
            s = tl.load(short + cols, mask=hit, other=0.0)
            delta = min_value - s
            v = tl.load(v_ptr + cols, mask=hit, other=0.0)
            tl.store(v_ptr + cols, v - delta, mask=hit)
            rows = tl.load(owner + cols, mask=hit, other=-1)
            moved = hit & (rows >= 0)
            ur = tl.load(u_ptr + rows, mask=moved, other=0.0)
            tl.store(u_ptr + rows, ur + delta, mask=moved)
        tl.debug_barrier()
        j = sink
        # A failed problem has no path to flip (its status reports it).
        r = tl.where(failed != 0, cur, -1)
        while r != cur:
            # Every lane reads the scalars before any is overwritten: the
            # warps of a program drift apart when programs share a
            # multiprocessor, and a lane that read col4row[r] after the
            # store would follow a different path.
            r = tl.load(pred + j)
            previous = tl.load(col4row + r)
            tl.debug_barrier()
            tl.store(owner + j, r)
            tl.store(col4row + r, j.to(tl.int64))
            j = previous.to(tl.int32)
            tl.debug_barrier()
    tl.store(status_ptr + b, failed)


def linear_sum_assignment(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract as ``fastgan::linear_sum_assignment``: cost (B, n, m), n <= m.

    Returns the column of every row (B, n) int64 and float64 duals u (B, n),
    v (B, m).
    """
    if cost.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"fastgan::linear_sum_assignment: `cost` has dtype {cost.dtype}; expected float32 or float64"
        )
    if cost.dim() != 3 or cost.shape[1] > cost.shape[2]:
        raise ValueError(
            "fastgan::linear_sum_assignment: `cost` must have shape (B, n, m) with n <= m, "
            f"got {list(cost.shape)}"
        )
    c = cost.contiguous()
    batch, n, m = c.shape
    dev = c.device
    if dev.type == "cuda" and solved_on_host(batch, n, m):
        return _library.on_host("linear_sum_assignment", c)  # the C++ kernel checks the values
    cols = torch.empty((batch, n), dtype=torch.int64, device=dev)
    u = torch.empty((batch, n), dtype=torch.float64, device=dev)
    v = torch.empty((batch, m), dtype=torch.float64, device=dev)
    if batch == 0 or n == 0:
        u.zero_()
        v.zero_()
        return cols, u, v
    finite = torch.isfinite(c).flatten(1).all(1)
    if not bool(finite.all()):
        first = int(torch.nonzero(~finite)[0, 0])
        raise ValueError(
            f"fastgan::linear_sum_assignment: `cost` of problem {first} contains NaN or infinite values"
        )
    owner = torch.empty((batch, m), dtype=torch.int32, device=dev)
    short = torch.empty((batch, m), dtype=torch.float64, device=dev)
    pred = torch.empty((batch, m), dtype=torch.int32, device=dev)
    reached = torch.empty((batch, m), dtype=torch.int8, device=dev)
    status = torch.empty((batch,), dtype=torch.int32, device=dev)
    block = min(BLOCK, triton.next_power_of_2(m))
    with torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext():
        _assignment_kernel[(batch,)](c, cols, u, v, owner, short, pred, reached, status, n, m, BLOCK=block)
    if bool((status != 0).any()):
        first = int(torch.nonzero(status)[0, 0])
        raise RuntimeError(f"fastgan::linear_sum_assignment: problem {first} has no finite assignment")
    return cols, u, v

