"""Entropic OT: fastgan's streamed log-domain Sinkhorn against GeomLoss and POT.

- sinkhorn_divergence, n = m = 2000, d = 2, p = 2, blur 0.05, scaling 0.5,
  debiased, forward + backward (gradient with respect to x): fastgan against
  GeomLoss's ``SamplesLoss("sinkhorn", backend="tensorized")`` (same value
  to 1e-5) and fastgan's own PyTorch reference;
- the same for a batch of 64 problems of n = m = 256 (GeomLoss batched
  tensorized);
- sinkhorn2 with an explicit cost, n = m = 2000 (M = |x - y|^2 / 2,
  reg 0.05, tol 1e-6, forward): fastgan against POT's
  ``ot.sinkhorn2(method="sinkhorn_log")`` (NumPy); both run the same
  iterations (asserted) to the same value.

The n = m = 100,000 run on the CPU (time and peak memory) is
bench/sinkhorn_large.py. On a GPU (``--bench-device cuda``) the batch of 1024
problems of n = m = 128 joins the GeomLoss comparison, and the n = m = 100,000
divergence runs here, with one streamed softmin timed against the
exp-throughput floor: a Triton kernel that walks the same tiles and does
nothing but one exp per (i, j) pair.
"""

from __future__ import annotations

import ot as pot
import pytest
import torch
from conftest import timed
from geomloss import SamplesLoss

import fastgan
from fastgan.ot.sinkhorn import epsilon_schedule

try:
    import triton
    import triton.language as tl

    from fastgan.kernels.sinkhorn import BLOCK_M, BLOCK_N
except ImportError:  # a CPU-only torch without triton: the GPU benchmarks skip
    triton = None

DIVERGENCE_SETUPS = {"n2000": (2000, None), "batch64_n256": (256, 64), "batch1024_n128": (128, 1024)}
GPU_ONLY_SETUPS = {"batch1024_n128"}


def _clouds(n: int, batch: int | None, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    shape = (n, 2) if batch is None else (batch, n, 2)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.8 + 0.5
    return x.to(dtype), y.to(dtype)


def _divergence_contenders(x: torch.Tensor, y: torch.Tensor):
    geomloss = SamplesLoss("sinkhorn", p=2, blur=0.05, scaling=0.5, debias=True, backend="tensorized")

    def step(loss):
        def run():
            leaf = x.clone().requires_grad_()
            value = loss(leaf, y)
            value.sum().backward()
            return value.detach(), leaf.grad

        return run

    return {
        "fastgan": step(lambda a, b: fastgan.ot.sinkhorn_divergence(a, b, blur=0.05)),
        "reference": step(lambda a, b: fastgan.ot.sinkhorn_divergence(a, b, blur=0.05, backend="reference")),
        "geomloss": step(geomloss),
    }


@pytest.mark.parametrize("contender", ["fastgan", "geomloss", "reference"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setup", list(DIVERGENCE_SETUPS))
def bench_sinkhorn_divergence(benchmark, bench_device, setup, dtype, contender):
    """Debiased Sinkhorn divergence, forward + backward: fastgan vs GeomLoss tensorized."""
    if setup in GPU_ONLY_SETUPS and bench_device.type != "cuda":
        pytest.skip("GPU-sized batch")
    n, batch = DIVERGENCE_SETUPS[setup]
    x, y = _clouds(n, batch, getattr(torch, dtype))
    x, y = x.to(bench_device), y.to(bench_device)
    fns = _divergence_contenders(x, y)
    if dtype == "float64":
        ours, ours_grad = fns["fastgan"]()
        theirs, theirs_grad = fns["geomloss"]()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-12)
        assert float((ours_grad - theirs_grad).abs().max()) <= 1e-4 * float(theirs_grad.abs().max())
    benchmark.group = f"sinkhorn_divergence fwd+bwd, d=2, p=2, blur 0.05 / {setup} ({bench_device.type}, {dtype})"
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(fns[contender], rounds=3, warmup_rounds=1)


SINKHORN2 = dict(n=2000, reg=0.05, tol=1e-6, max_iter=1000)


@pytest.mark.parametrize("contender", ["fastgan", "pot"])
def bench_sinkhorn2_explicit_cost(benchmark, bench_device, contender):
    """POT's sinkhorn_log on an explicit 2000 x 2000 cost: same iterations, same value."""
    if bench_device.type != "cpu":
        pytest.skip("POT runs on NumPy here; the explicit-cost kernel is CPU")
    n, reg, tol, max_iter = SINKHORN2["n"], SINKHORN2["reg"], SINKHORN2["tol"], SINKHORN2["max_iter"]
    x, y = _clouds(n, None, torch.float64)
    M = torch.cdist(x, y).square() / 2
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    Mn, wn = M.numpy(), w.numpy()
    fns = {
        "fastgan": lambda: fastgan.ot.sinkhorn2(w, w, M, reg, tol=tol, max_iter=max_iter, log=True),
        "pot": lambda: pot.sinkhorn2(
            wn, wn, Mn, reg, method="sinkhorn_log", stopThr=tol, numItermax=max_iter, log=True
        ),
    }
    if contender == "fastgan":
        ours, ours_log = fns["fastgan"]()
        theirs, theirs_log = fns["pot"]()
        assert int(ours_log["niter"]) == theirs_log["niter"]
        assert abs(float(ours) - float(theirs)) <= 1e-6 * abs(float(theirs))
        benchmark.extra_info["iterations"] = int(ours_log["niter"]) + 1
    benchmark.group = f"sinkhorn2, explicit M, n=m={n}, reg {reg}, tol {tol} (cpu, float64)"
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(fns[contender], rounds=2 if contender == "pot" else 3, warmup_rounds=1 if contender == "fastgan" else 0)


POT_CAPPED_ITERATIONS = 20


@pytest.mark.parametrize("contender", ["fastgan", "pot"])
def bench_divergence_against_pot_at_blur(benchmark, bench_device, contender):
    """The issue's POT comparison: the n = m = 2000 problem at GeomLoss's eps = blur^2.

    fastgan: the debiased divergence (three OT problems with eps-scaling),
    forward and backward, accurate to 1e-5 (GeomLoss's value, asserted in
    bench_sinkhorn_divergence). POT: ``ot.sinkhorn2(method="sinkhorn_log")``
    on the cost |x - y|^2 / 2 at reg = 0.05^2, forward only, one problem, but
    capped at POT_CAPPED_ITERATIONS iterations, after which its marginal error
    is still far above 1e-5 (asserted): POT needs thousands of iterations at
    this eps, so the measured ratio is a lower bound on the speed-up at
    matching tolerance.
    """
    if bench_device.type != "cpu":
        pytest.skip("POT runs on NumPy here")
    x, y = _clouds(2000, None, torch.float64)
    w = torch.full((2000,), 1.0 / 2000, dtype=torch.float64).numpy()
    Mn = (torch.cdist(x, y).square() / 2).numpy()

    def pot_capped():
        return pot.sinkhorn2(
            w, w, Mn, 0.05**2, method="sinkhorn_log", stopThr=1e-9, numItermax=POT_CAPPED_ITERATIONS, log=True
        )

    fns = {"fastgan": _divergence_contenders(x, y)["fastgan"], "pot": pot_capped}
    if contender == "pot":
        _, log = pot_capped()
        assert log["err"][-1] > 1e-5, "POT converged within the cap: raise the iteration count"
        benchmark.extra_info["pot_marginal_error"] = float(log["err"][-1])
    benchmark.group = "sinkhorn at blur 0.05, n=m=2000: fastgan divergence fwd+bwd vs POT capped (cpu, float64)"
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(fns[contender], rounds=2, warmup_rounds=0)


if triton is not None:

    @triton.jit
    def _exp_rows(out_ptr, n, m, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
        """The least work of one streamed softmin: one exp per (i, j) pair, summed per row."""
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for j0 in range(0, m, BLOCK_M):
            cols = j0 + tl.arange(0, BLOCK_M)
            v = (rows[:, None] - cols[None, :]).to(tl.float32) * 1e-6
            acc += tl.sum(tl.exp(v), axis=1)
        tl.store(out_ptr + rows, acc, mask=rows < n)


def _exp_floor(n: int, m: int, device: torch.device):
    out = torch.empty(n, device=device)

    def run():
        _exp_rows[(triton.cdiv(n, BLOCK_N),)](out, n, m, BLOCK_N=BLOCK_N, BLOCK_M=BLOCK_M)

    return run


LARGE_N = 100_000


@pytest.mark.parametrize("contender", ["fastgan", "floor"])
def bench_softmin_large_gpu(benchmark, bench_device, contender):
    """One streamed softmin at n = m = 100,000, d = 2, float32 against the exp floor."""
    if bench_device.type != "cuda":
        pytest.skip("GPU benchmark (the CPU run is bench/sinkhorn_large.py)")
    x, y = (t.to(bench_device) for t in _clouds(LARGE_N, None, torch.float32))
    h = torch.randn(1, LARGE_N, device=bench_device) * 0.1
    softmin = torch.ops.fastgan.sinkhorn_softmin.default
    fns = {
        "fastgan": lambda: softmin(x[None], y[None], h, 0.0025, 2),
        "floor": _exp_floor(LARGE_N, LARGE_N, bench_device),
    }
    if contender == "fastgan":
        assert bool(torch.isfinite(fns["fastgan"]()).all())
    benchmark.group = f"sinkhorn softmin, n=m={LARGE_N}, d=2, p=2 (cuda, float32): one exp per pair"
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(timed(fns[contender], bench_device), rounds=10, warmup_rounds=2)


def bench_sinkhorn_divergence_large_gpu(benchmark, bench_device):
    """The whole debiased divergence at n = m = 100,000, forward + backward, with its iteration count."""
    if bench_device.type != "cuda":
        pytest.skip("GPU benchmark (the CPU run is bench/sinkhorn_large.py)")
    x, y = (t.to(bench_device) for t in _clouds(LARGE_N, None, torch.float32))
    run = _divergence_contenders(x, y)["fastgan"]
    value, grad = run()
    assert bool(torch.isfinite(value).all()) and bool(torch.isfinite(grad).all())
    points = torch.cat([x, y])
    diameter = float((points.amax(0) - points.amin(0)).norm())
    steps = len(epsilon_schedule(2, diameter, 0.05, 0.5))
    # One softmin per potential (four, debiased) per step, plus the first and the
    # final extrapolation; the backward is four envelope passes.
    softmins = 4 * (steps + 2)
    benchmark.group = f"sinkhorn_divergence fwd+bwd, n=m={LARGE_N}, d=2, p=2, blur 0.05 (cuda, float32)"
    benchmark.extra_info["contender"] = "fastgan"
    benchmark.pedantic(timed(run, bench_device), rounds=3, warmup_rounds=0)
    median = benchmark.stats.stats.median
    benchmark.extra_info["note"] = (
        f"{softmins} softmins + 4 envelope passes of n*m pairs: {median / (softmins + 4) * 1e3:.2f} ms per pass; "
        f"value {float(value):.6g}"
    )
