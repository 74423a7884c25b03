"""Triton kernels for log-domain Sinkhorn (the CUDA path).

The CUDA implementations of ``fastgan::sinkhorn_log`` (POT's iterations on
an explicit cost), ``fastgan::sinkhorn_softmin``,
``fastgan::sinkhorn_points`` and ``fastgan::sinkhorn_points_backward``.
For an explicit cost M (B, n, m), the row update streams each row's tiles
of columns and the column update each column block's tiles of rows (both
read M along its rows), with a running maximum; the problems still
iterating are passed as a list, so converged ones cost no work and M is
never copied.
The softmin is a flash-attention-style streaming reduction: one program
holds BLOCK_N rows of x, walks y in tiles of BLOCK_M columns, recomputes
the cost tile from the points and keeps a running maximum and rescaled sum
per row, so the n x m cost never exists. The envelope gradient walks the
same tiles with the plan weights exp((f_i + g_j - C_ij) / eps) known from
the final potentials (no maximum needed). Problems with at most BLOCK_N / 2
rows share a program: each program then holds the rows of several problems
(BLOCK_N // ROWS of them, ROWS the row count rounded up to a power of two),
and each row gathers the columns of its own problem. The eps-scaling loop
itself runs in PyTorch around these kernels, mirroring csrc/cpu/sinkhorn.cpp.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import triton
import triton.language as tl

from fastgan.kernels import _checks
from fastgan.kernels._sinkhorn_host import damping, log_weights, points_cost

BLOCK_N = 32
BLOCK_M = 64
# Features per program in the gradient kernels (wider points: several programs).
MAX_BLOCK_D = 16
# GeomLoss's p = 1 cost is sqrt(max(|x - y|^2, 1e-8)).
MIN_SQUARED_DISTANCE = 1e-8


@triton.jit
def _cost_tile(
    xb, yb, rows, cols, rmask, cmask, d, P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
    ACC64: tl.constexpr,
):
    ACC = tl.float64 if ACC64 else tl.float32
    sq = tl.zeros([BLOCK_N, BLOCK_M], dtype=ACC)
    for k in range(d):
        xk = tl.load(xb + rows * d + k, mask=rmask, other=0).to(ACC)
        yk = tl.load(yb + cols * d + k, mask=cmask, other=0).to(ACC)
        diff = xk[:, None] - yk[None, :]
        sq += diff * diff
    return _cost_from_squares(sq, P), sq


@triton.jit
def _cost_from_squares(sq, P: tl.constexpr):
    """|x - y|^2 / 2 (p = 2) or GeomLoss's smoothed |x - y| (p = 1) from |x - y|^2."""
    if P == 2:
        return 0.5 * sq
    return tl.sqrt(tl.maximum(sq, 1e-8))


@triton.jit
def _lse_step(run_max, run_sum, v, ACC: tl.constexpr):
    """Folds the tile v (rows x columns) into each row's running max and rescaled sum."""
    new_max = tl.maximum(run_max, tl.max(v, axis=1))
    # Rows whose every value so far is -inf keep max = -inf: shift by 0.
    shift = tl.where(new_max == float("-inf"), 0.0, new_max).to(ACC)
    run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(v - shift[:, None]), axis=1)
    return new_max, run_sum


@triton.jit
def _softmin_kernel(
    x_ptr, y_ptr, h_ptr, out_ptr, n, m, d, inv_eps_hi, inv_eps_lo, eps_hi, eps_lo,
    P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, ACC64: tl.constexpr,
):
    ACC = tl.float64 if ACC64 else tl.float32
    inv_eps = tl.cast(inv_eps_hi, ACC) + tl.cast(inv_eps_lo, ACC)
    eps = tl.cast(eps_hi, ACC) + tl.cast(eps_lo, ACC)
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < n
    xb = x_ptr + b * n * d
    yb = y_ptr + b * m * d
    hb = h_ptr + b * m
    run_max = tl.full([BLOCK_N], float("-inf"), dtype=ACC)
    run_sum = tl.zeros([BLOCK_N], dtype=ACC)
    for j0 in range(0, m, BLOCK_M):
        cols = j0 + tl.arange(0, BLOCK_M)
        cmask = cols < m
        c, sq = _cost_tile(xb, yb, rows, cols, rmask, cmask, d, P, BLOCK_N, BLOCK_M, ACC64)
        h = tl.load(hb + cols, mask=cmask, other=0).to(ACC)
        v = h[None, :] - c * inv_eps
        v = tl.where(cmask[None, :], v, float("-inf"))
        run_max, run_sum = _lse_step(run_max, run_sum, v, ACC)
    out = -eps * (run_max + tl.log(run_sum))
    tl.store(out_ptr + b * n + rows, out.to(out_ptr.dtype.element_ty), mask=rmask)


@triton.jit
def _envelope_kernel(
    x_ptr, y_ptr, h_ptr, f_ptr, scale_ptr, grad_ptr, n, m, d, inv_eps_hi, inv_eps_lo, sign,
    P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC64: tl.constexpr, CHUNKED: tl.constexpr,
):
    ACC = tl.float64 if ACC64 else tl.float32
    inv_eps = tl.cast(inv_eps_hi, ACC) + tl.cast(inv_eps_lo, ACC)
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < n
    # Wide points: each program accumulates one chunk of BLOCK_D features
    # (grid axis 2), recomputing the plan weights, so registers stay bounded.
    if CHUNKED:
        feats = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    else:
        feats = tl.arange(0, BLOCK_D)
    fmask = feats < d
    xb = x_ptr + b * n * d
    yb = y_ptr + b * m * d
    hb = h_ptr + b * m
    fi = tl.load(f_ptr + b * n + rows, mask=rmask, other=0).to(ACC) * inv_eps
    acc_w = tl.zeros([BLOCK_N], dtype=ACC)
    acc_y = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC)
    for j0 in range(0, m, BLOCK_M):
        cols = j0 + tl.arange(0, BLOCK_M)
        cmask = cols < m
        c, sq = _cost_tile(xb, yb, rows, cols, rmask, cmask, d, P, BLOCK_N, BLOCK_M, ACC64)
        h = tl.load(hb + cols, mask=cmask, other=0).to(ACC)
        w = tl.exp(h[None, :] - c * inv_eps + fi[:, None])
        if P == 1:
            w = tl.where(sq > 1e-8, w / c, 0.0)
        w = tl.where(cmask[None, :] & rmask[:, None], w, 0.0)
        acc_w += tl.sum(w, axis=1)
        ytile = tl.load(
            yb + cols[:, None] * d + feats[None, :], mask=cmask[:, None] & fmask[None, :], other=0
        ).to(ACC)
        acc_y += tl.sum(w[:, :, None] * ytile[None, :, :], axis=1)
    xmask = rmask[:, None] & fmask[None, :]
    offsets = rows[:, None] * d + feats[None, :]
    xi = tl.load(xb + offsets, mask=xmask, other=0).to(ACC)
    s = tl.load(scale_ptr + b * n + rows, mask=rmask, other=0).to(ACC) * sign
    g = tl.load(grad_ptr + b * n * d + offsets, mask=xmask, other=0).to(ACC)
    g += s[:, None] * (acc_w[:, None] * xi - acc_y)
    tl.store(grad_ptr + b * n * d + offsets, g.to(grad_ptr.dtype.element_ty), mask=xmask)


@triton.jit
def _packed_rows(batch, n, ROWS: tl.constexpr, PACK: tl.constexpr):
    """Rows of a program that holds PACK problems of ROWS rows each: (problem, row, mask)."""
    r = tl.arange(0, PACK * ROWS)
    prob = tl.program_id(0) * PACK + r // ROWS
    row = r % ROWS
    return prob.to(tl.int64), row, (row < n) & (prob < batch)


@triton.jit
def _packed_tile(
    xrow, ybase, hbase, j0, rmask, m, d, P: tl.constexpr, R: tl.constexpr, BLOCK_M: tl.constexpr,
    ACC64: tl.constexpr,
):
    """Columns j0 .. j0 + BLOCK_M of packed rows, each against its own problem:
    (cost, squared distance, h, mask of the tile, mask of the columns)."""
    ACC = tl.float64 if ACC64 else tl.float32
    cols = j0 + tl.arange(0, BLOCK_M)
    cmask = cols < m
    mask2 = rmask[:, None] & cmask[None, :]
    sq = tl.zeros([R, BLOCK_M], dtype=ACC)
    for k in range(d):
        xk = tl.load(xrow + k, mask=rmask, other=0).to(ACC)
        yk = tl.load(ybase[:, None] + cols[None, :] * d + k, mask=mask2, other=0).to(ACC)
        diff = xk[:, None] - yk
        sq += diff * diff
    h = tl.load(hbase[:, None] + cols[None, :], mask=mask2, other=0).to(ACC)
    return _cost_from_squares(sq, P), sq, h, mask2, cmask


@triton.jit
def _softmin_packed_kernel(
    x_ptr, y_ptr, h_ptr, out_ptr, batch, n, m, d, inv_eps_hi, inv_eps_lo, eps_hi, eps_lo,
    P: tl.constexpr, ROWS: tl.constexpr, PACK: tl.constexpr, BLOCK_M: tl.constexpr, ACC64: tl.constexpr,
):
    ACC = tl.float64 if ACC64 else tl.float32
    inv_eps = tl.cast(inv_eps_hi, ACC) + tl.cast(inv_eps_lo, ACC)
    eps = tl.cast(eps_hi, ACC) + tl.cast(eps_lo, ACC)
    prob, row, rmask = _packed_rows(batch, n, ROWS, PACK)
    xrow = x_ptr + (prob * n + row) * d
    ybase = y_ptr + prob * m * d
    hbase = h_ptr + prob * m
    run_max = tl.full([PACK * ROWS], float("-inf"), dtype=ACC)
    run_sum = tl.zeros([PACK * ROWS], dtype=ACC)
    for j0 in range(0, m, BLOCK_M):
        c, sq, h, mask2, cmask = _packed_tile(xrow, ybase, hbase, j0, rmask, m, d, P, PACK * ROWS, BLOCK_M, ACC64)
        v = tl.where(cmask[None, :], h - c * inv_eps, float("-inf"))
        run_max, run_sum = _lse_step(run_max, run_sum, v, ACC)
    out = -eps * (run_max + tl.log(run_sum))
    tl.store(out_ptr + prob * n + row, out.to(out_ptr.dtype.element_ty), mask=rmask)


@triton.jit
def _envelope_packed_kernel(
    x_ptr, y_ptr, h_ptr, f_ptr, scale_ptr, grad_ptr, batch, n, m, d, inv_eps_hi, inv_eps_lo, sign,
    P: tl.constexpr, ROWS: tl.constexpr, PACK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC64: tl.constexpr,
):
    ACC = tl.float64 if ACC64 else tl.float32
    inv_eps = tl.cast(inv_eps_hi, ACC) + tl.cast(inv_eps_lo, ACC)
    prob, row, rmask = _packed_rows(batch, n, ROWS, PACK)
    f0 = tl.program_id(1) * BLOCK_D  # this program's chunk of features
    feats = f0 + tl.arange(0, BLOCK_D)
    fmask = feats < d
    xrow = x_ptr + (prob * n + row) * d
    ybase = y_ptr + prob * m * d
    hbase = h_ptr + prob * m
    fi = tl.load(f_ptr + prob * n + row, mask=rmask, other=0).to(ACC) * inv_eps
    acc_w = tl.zeros([PACK * ROWS], dtype=ACC)
    acc_y = tl.zeros([PACK * ROWS, BLOCK_D], dtype=ACC)
    for j0 in range(0, m, BLOCK_M):
        c, sq, h, mask2, cmask = _packed_tile(xrow, ybase, hbase, j0, rmask, m, d, P, PACK * ROWS, BLOCK_M, ACC64)
        cols = j0 + tl.arange(0, BLOCK_M)
        w = tl.exp(h - c * inv_eps + fi[:, None])
        if P == 1:
            w = tl.where(sq > 1e-8, w / c, 0.0)
        w = tl.where(mask2, w, 0.0)
        acc_w += tl.sum(w, axis=1)
        for k in tl.static_range(BLOCK_D):
            yk = tl.load(ybase[:, None] + cols[None, :] * d + (f0 + k), mask=mask2 & (f0 + k < d), other=0).to(ACC)
            acc_y += tl.where(feats[None, :] == f0 + k, tl.sum(w * yk, axis=1)[:, None], 0.0)
    xmask = rmask[:, None] & fmask[None, :]
    offsets = (prob * n + row)[:, None] * d + feats[None, :]
    xi = tl.load(x_ptr + offsets, mask=xmask, other=0).to(ACC)
    s = tl.load(scale_ptr + prob * n + row, mask=rmask, other=0).to(ACC) * sign
    g = tl.load(grad_ptr + offsets, mask=xmask, other=0).to(ACC)
    g += s[:, None] * (acc_w[:, None] * xi - acc_y)
    tl.store(grad_ptr + offsets, g.to(grad_ptr.dtype.element_ty), mask=xmask)


def _packing(n: int) -> tuple[int, int]:
    """(ROWS, PACK) for problems of n rows: several problems per program when n <= BLOCK_N / 2."""
    rows = triton.next_power_of_2(max(n, 1))
    return rows, BLOCK_N // rows


@triton.jit
def _lse_kernel(
    M_ptr, h_ptr, base_ptr, out_ptr, active_ptr, n, m, inv_reg_hi, inv_reg_lo,
    COLUMNS: tl.constexpr, BLOCK_OUT: tl.constexpr, BLOCK_RED: tl.constexpr, ACC64: tl.constexpr,
):
    """For the listed problems b, rows: out[b, i] = base[b, i] - LSE_j(h[b, j] - M[b, i, j] / reg);
    COLUMNS: out[b, j] = -LSE_i(h[b, i] - M[b, i, j] / reg). Either way tiles of M are read
    along its rows (the compiler sees which tile axis is contiguous)."""
    ACC = tl.float64 if ACC64 else tl.float32
    inv_reg = tl.cast(inv_reg_hi, ACC) + tl.cast(inv_reg_lo, ACC)
    b = tl.load(active_ptr + tl.program_id(1)).to(tl.int64)
    n_out = m if COLUMNS else n
    n_red = n if COLUMNS else m
    outs = tl.program_id(0) * BLOCK_OUT + tl.arange(0, BLOCK_OUT)
    omask = outs < n_out
    Mb = M_ptr + b * n * m
    run_max = tl.full([BLOCK_OUT], float("-inf"), dtype=ACC)
    run_sum = tl.zeros([BLOCK_OUT], dtype=ACC)
    for r0 in range(0, n_red, BLOCK_RED):
        reds = r0 + tl.arange(0, BLOCK_RED)
        red_mask = reds < n_red
        mask2 = omask[:, None] & red_mask[None, :]
        if COLUMNS:
            ptrs = Mb + reds.to(tl.int64)[None, :] * m + outs[:, None]
        else:
            ptrs = Mb + outs.to(tl.int64)[:, None] * m + reds[None, :]
        c = tl.load(ptrs, mask=mask2, other=0).to(ACC)
        h = tl.load(h_ptr + b * n_red + reds, mask=red_mask, other=0).to(ACC)
        v = tl.where(mask2, h[None, :] - c * inv_reg, float("-inf"))
        run_max, run_sum = _lse_step(run_max, run_sum, v, ACC)
    lse = run_max + tl.log(run_sum)
    if COLUMNS:
        out = -lse
    else:
        out = tl.load(base_ptr + b * n + outs, mask=omask, other=0).to(ACC) - lse
    tl.store(out_ptr + b * n_out + outs, out.to(out_ptr.dtype.element_ty), mask=omask)


@triton.jit
def _transport_cost_kernel(
    M_ptr, u_ptr, v_ptr, out_ptr, n, m, inv_reg_hi, inv_reg_lo,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, ACC64: tl.constexpr,
):
    """out[b, i] = sum_j M_ij exp(u_i + v_j - M_ij / reg), in float64 (row sums of the cost)."""
    ACC = tl.float64 if ACC64 else tl.float32
    inv_reg = tl.cast(inv_reg_hi, ACC) + tl.cast(inv_reg_lo, ACC)
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < n
    Mb = M_ptr + b * n * m
    u = tl.load(u_ptr + b * n + rows, mask=rmask, other=0).to(ACC)
    acc = tl.zeros([BLOCK_N], dtype=tl.float64)
    for j0 in range(0, m, BLOCK_M):
        cols = j0 + tl.arange(0, BLOCK_M)
        cmask = cols < m
        mask2 = rmask[:, None] & cmask[None, :]
        c = tl.load(Mb + rows.to(tl.int64)[:, None] * m + cols[None, :], mask=mask2, other=0).to(ACC)
        v = tl.load(v_ptr + b * m + cols, mask=cmask, other=0).to(ACC)
        t = tl.where(mask2, c * tl.exp(u[:, None] + v[None, :] - c * inv_reg), 0.0)
        acc += tl.sum(t, axis=1).to(tl.float64)
    tl.store(out_ptr + b * n + rows, acc, mask=rmask)


def _check_log_args(a, b, M, reg, max_iter, tol) -> None:
    """The checks of the C++ kernel, with the same messages."""
    op = "fastgan::sinkhorn_log"
    if M.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: `M` has dtype {M.dtype}; expected float32 or float64")
    if M.dim() != 3:
        raise ValueError(f"{op}: `M` must have shape (B, n, m), got {list(M.shape)}")
    batch, n, m = M.shape
    for t, name, shape in ((a, "a", (batch, n)), (b, "b", (batch, m))):
        if t.dtype != M.dtype or t.device != M.device:
            raise TypeError(f"{op}: `{name}` has dtype {t.dtype} on {t.device}; expected those of `M`")
        if tuple(t.shape) != shape:
            raise ValueError(f"{op}: `{name}` must have shape {list(shape)}, got {list(t.shape)}")
    if not (math.isfinite(reg) and reg > 0):
        raise ValueError(f"{op}: `reg` must be finite and > 0, got {reg}")
    if max_iter < 1:
        raise ValueError(f"{op}: `max_iter` must be >= 1, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"{op}: `tol` must be >= 0, got {tol}")
    if n == 0 or m == 0:
        raise ValueError(f"{op}: `M` must have n, m >= 1, got {list(M.shape)}")
    for t, name in ((M, "M"), (a, "a"), (b, "b")):
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{op}: `{name}` contains NaN or infinite values")
    for t, name in ((a, "a"), (b, "b")):
        if t.numel() and bool((t < 0).any()):
            raise ValueError(f"{op}: `{name}` has negative weights")


def sinkhorn_log(a, b, M, reg, max_iter, tol):
    """Same contract as ``fastgan::sinkhorn_log`` (csrc/cpu/sinkhorn.cpp): POT's
    ``sinkhorn_log`` on each problem, which stops on its own.

    Iteration k: v = log b - LSE_i(u_i - M_ij / reg), then u = log a -
    LSE_j(v_j - M_ij / reg). After iterations 0, 10, 20, ... POT checks the
    column marginal |exp(v + LSE_i(u - M / reg)) - b|; the column pass that
    starts the next iteration computes that LSE, so the check costs no pass.
    """
    _check_log_args(a, b, M, reg, max_iter, tol)
    M, a, b = M.contiguous(), a.contiguous(), b.contiguous()
    batch, n, m = M.shape
    dev = M.device
    u = torch.zeros((batch, n), dtype=M.dtype, device=dev)
    v = torch.zeros((batch, m), dtype=M.dtype, device=dev)
    cost = torch.zeros(batch, dtype=M.dtype, device=dev)
    n_iter = torch.zeros(batch, dtype=torch.int64, device=dev)
    err = torch.full((batch,), math.inf, dtype=M.dtype, device=dev)
    converged = torch.zeros(batch, dtype=torch.bool, device=dev)
    if batch == 0:
        return u, v, cost, n_iter, err.zero_(), converged
    loga, logb = a.log(), b.log()
    col = torch.empty_like(v)
    split = _split(1.0 / reg)
    acc64 = M.dtype == torch.float64
    active = torch.arange(batch, dtype=torch.int32, device=dev)

    def column_pass(active):
        _lse_kernel[(triton.cdiv(m, BLOCK_M), active.numel())](
            M, u, u, col, active, n, m, *split, COLUMNS=True, BLOCK_OUT=BLOCK_M, BLOCK_RED=BLOCK_N, ACC64=acc64
        )

    def marginal_error(rows):
        return torch.linalg.vector_norm(torch.exp(v[rows] - col[rows]) - b[rows], dim=1)

    for it in range(max_iter):
        column_pass(active)
        if it > 0 and (it - 1) % 10 == 0:
            rows = active.long()
            e = marginal_error(rows)
            err[rows] = e
            done = e < tol
            if bool(done.any()):
                n_iter[rows[done]] = it - 1
                converged[rows[done]] = True
                active = active[~done]
                if active.numel() == 0:
                    break
        rows = active.long()
        v[rows] = logb[rows] + col[rows]
        _lse_kernel[(triton.cdiv(n, BLOCK_N), active.numel())](
            M, v, loga, u, active, n, m, *split, COLUMNS=False, BLOCK_OUT=BLOCK_N, BLOCK_RED=BLOCK_M, ACC64=acc64
        )
    else:
        # The problems that ran to max_iter: POT's last check happens only
        # when the last iteration is one of 0, 10, 20, ...
        rows = active.long()
        n_iter[rows] = max_iter - 1
        if (max_iter - 1) % 10 == 0:
            column_pass(active)
            e = marginal_error(rows)
            err[rows] = e
            converged[rows] = e < tol
    row_costs = torch.empty((batch, n), dtype=torch.float64, device=dev)
    _transport_cost_kernel[(triton.cdiv(n, BLOCK_N), batch)](
        M, u, v, row_costs, n, m, *split, BLOCK_N=BLOCK_N, BLOCK_M=BLOCK_M, ACC64=acc64
    )
    cost = row_costs.sum(1).to(M.dtype)
    return u, v, cost, n_iter, err, converged


def _split(value: float) -> tuple[float, float]:
    """``value`` as float32 hi + lo (hi + lo equals it to about 2^-48 relative).

    Triton passes Python floats to a kernel as float32 scalars; the kernels
    add the two halves in their accumulation type, so float64 problems keep
    float64 parameters.
    """
    hi = float(np.float32(value))
    return hi, float(np.float32(value - hi))


def sinkhorn_softmin(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, eps: float, p: int) -> torch.Tensor:
    """``-eps log sum_j exp(h_j - C(x_i, y_j) / eps)``: same contract as ``fastgan::sinkhorn_softmin``."""
    _checks.check_softmin(x, y, h, eps, p)
    x, y, h = x.contiguous(), y.contiguous(), h.contiguous()
    batch, n, d = x.shape
    m = y.shape[1]
    out = torch.empty((batch, n), dtype=x.dtype, device=x.device)
    if not out.numel():
        return out
    rows, pack = _packing(n)
    if pack >= 2:
        _softmin_packed_kernel[(triton.cdiv(batch, pack),)](
            x, y, h, out, batch, n, m, d, *_split(1.0 / eps), *_split(eps),
            P=int(p), ROWS=rows, PACK=pack, BLOCK_M=BLOCK_M, ACC64=x.dtype == torch.float64,
        )
        return out
    grid = (triton.cdiv(n, BLOCK_N), batch)
    _softmin_kernel[grid](
        x, y, h, out, n, m, d, *_split(1.0 / eps), *_split(eps),
        P=int(p), BLOCK_N=BLOCK_N, BLOCK_M=BLOCK_M, ACC64=x.dtype == torch.float64,
    )
    return out


def _envelope(x, y, h, f, scale, grad, eps, sign, p):
    batch, n, d = x.shape
    m = y.shape[1]
    if batch == 0 or n == 0 or m == 0:
        return
    # Feature chunks: up to MAX_BLOCK_D features per program; wider points
    # get several programs per row block, each recomputing the weights.
    block_d = min(max(2, triton.next_power_of_2(d)), MAX_BLOCK_D)
    chunks = triton.cdiv(d, block_d)
    rows, pack = _packing(n)
    if pack >= 2:
        _envelope_packed_kernel[(triton.cdiv(batch, pack), chunks)](
            x, y, h, f, scale, grad, batch, n, m, d, *_split(1.0 / eps), float(sign),
            P=int(p), ROWS=rows, PACK=pack, BLOCK_M=BLOCK_M, BLOCK_D=block_d, ACC64=x.dtype == torch.float64,
        )
        return
    grid = (triton.cdiv(n, BLOCK_N), batch) if chunks == 1 else (triton.cdiv(n, BLOCK_N), batch, chunks)
    _envelope_kernel[grid](
        x, y, h, f, scale, grad, n, m, d, *_split(1.0 / eps), float(sign),
        P=int(p), BLOCK_N=BLOCK_N, BLOCK_M=BLOCK_M, BLOCK_D=block_d, ACC64=x.dtype == torch.float64,
        CHUNKED=chunks > 1,
    )


def sinkhorn_points(x, y, a, b, p, eps_list, debias, tol, max_iter, rho=None):
    """Same contract as ``fastgan::sinkhorn_points`` (csrc/cpu/sinkhorn.cpp).

    Problems that have converged (tol >= 0) keep their potentials and drop
    out of the launches: later iterations run on the problems still moving.
    """
    _checks.check_sinkhorn_points(x, y, a, b, p, eps_list, tol, max_iter)
    rho = _unbalanced_rho(rho)
    x, y, a, b = x.contiguous(), y.contiguous(), a.contiguous(), b.contiguous()
    la, lb = log_weights(a), log_weights(b)
    schedule = len(eps_list)
    final_eps = eps_list[-1]

    def step(eps, f, g, faa, gbb, sel=None):
        xs, ys, las, lbs = (x, y, la, lb) if sel is None else (x[sel], y[sel], la[sel], lb[sel])
        out = [
            sinkhorn_softmin(xs, ys, lbs + g / eps, eps, p),
            sinkhorn_softmin(ys, xs, las + f / eps, eps, p),
        ]
        if debias:
            out += [sinkhorn_softmin(xs, xs, las + faa / eps, eps, p), sinkhorn_softmin(ys, ys, lbs + gbb / eps, eps, p)]
        lam = damping(eps, rho)
        return out if lam == 1.0 else [lam * t for t in out]

    zf, zg = torch.zeros_like(a), torch.zeros_like(b)
    state = step(eps_list[0], zf, zg, zf, zg)
    if not debias:
        state += [zf, zg]
    batch = x.shape[0]
    n_iter = torch.zeros(batch, dtype=torch.int64, device=x.device)
    sel = None  # the problems still iterating (None: all of them)
    for it in range(max_iter):
        eps = eps_list[it] if it < schedule else final_eps
        current = state if sel is None else [s[sel] for s in state]
        fresh = step(eps, *current, sel=sel)
        change = torch.zeros(current[0].shape[0], dtype=x.dtype, device=x.device)
        for k, new in enumerate(fresh):
            change = torch.maximum(change, (new - current[k]).abs().amax(1))
            avg = 0.5 * (current[k] + new)
            if sel is None:
                state[k] = avg
            else:
                state[k] = state[k].index_copy(0, sel, avg)
        if sel is None:
            n_iter += 1
        else:
            n_iter[sel] += 1
        if it + 1 >= schedule:
            if tol < 0:
                break
            moving = torch.nonzero(~(change <= tol)).squeeze(1)
            if sel is not None:
                moving = sel[moving]
            if moving.numel() == 0:
                break
            sel = None if moving.numel() == batch else moving
    # The returned potentials [0] with the state they came from [1]; without
    # debias, f_aa and g_bb are empty.
    final = step(final_eps, *state)
    pots = [torch.stack((fin, st)) for fin, st in zip(final, state)]
    if not debias:
        final += [None, None]
        pots += [x.new_empty((0,)), x.new_empty((0,))]
    return points_cost(a, b, *final, final_eps, rho), *pots, n_iter


def _unbalanced_rho(rho: float | None) -> float | None:
    """The op's ``rho``: None for balanced OT (None or inf), else checked > 0."""
    if rho is None or math.isinf(rho):
        return None
    if not rho > 0:
        raise ValueError(f"fastgan::sinkhorn_points: `rho` must be > 0 (or None / inf for balanced OT), got {rho}")
    return float(rho)


def _envelope_term(pot, w, grad_cost, eps, rho):
    """(potential of the softmin itself, row scale) of one transport term.

    pot = lambda softmin with lambda = rho / (rho + eps) (1 balanced); the
    term's plan rows are w_i e^{-pot_i / rho} times the softmin's normalised
    weights, so the rows get the scale grad_cost w_i e^{-pot_i / rho} and
    the undamped potential pot / lambda (as csrc/cpu/sinkhorn.cpp).
    """
    scale = grad_cost[:, None] * w
    if rho is None:
        return pot.contiguous(), scale.contiguous()
    return (pot / damping(eps, rho)).contiguous(), (scale * torch.exp(-pot / rho)).contiguous()


def sinkhorn_points_backward(grad_cost, x, y, a, b, f, g, faa, gbb, p, eps, rho=None):
    """Same contract as ``fastgan::sinkhorn_points_backward``."""
    _checks.check_sinkhorn_points_backward(grad_cost, x, y, a, b, f, g, faa, gbb, p, eps)
    rho = _unbalanced_rho(rho)
    x, y = x.contiguous(), y.contiguous()
    debias = faa.numel() > 0
    la, lb = log_weights(a), log_weights(b)
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(y)
    _envelope(x, y, (lb + g[1] / eps).contiguous(), *_envelope_term(f[0], a, grad_cost, eps, rho), gx, eps, 1.0, p)
    _envelope(y, x, (la + f[1] / eps).contiguous(), *_envelope_term(g[0], b, grad_cost, eps, rho), gy, eps, 1.0, p)
    if debias:
        _envelope(x, x, (la + faa[1] / eps).contiguous(), *_envelope_term(faa[0], a, grad_cost, eps, rho), gx, eps, -1.0, p)
        _envelope(y, y, (lb + gbb[1] / eps).contiguous(), *_envelope_term(gbb[0], b, grad_cost, eps, rho), gy, eps, -1.0, p)
    return gx, gy
