"""Exact 1-D Wasserstein: fastgan against SciPy, POT and the torch reference.

- one problem of n = m = 10^6 samples (W_1, uniform weights): fastgan's
  C++ sort-and-walk against ``scipy.stats.wasserstein_distance``, POT's
  ``ot.wasserstein_1d`` (NumPy backend) and fastgan's torch reference;
- a batch of 256 problems of n = m = 1000 (W_2^2), as sliced Wasserstein
  with 256 projections computes it.
"""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import scipy.optimize
import scipy.stats
import torch
from conftest import timed

import fastgan

SETUPS = {"single_1e6": (1_000_000, None), "batch256_n1000": (1000, 256)}


def contenders(u: torch.Tensor, v: torch.Tensor, batched: bool):
    un, vn = u.numpy(), v.numpy()
    p = 2.0 if batched else 1.0
    out = {
        "fastgan": lambda: fastgan.ot.wasserstein_1d(u, v, p=p),
        "reference": lambda: fastgan.ot.wasserstein_1d(u, v, p=p, backend="reference"),
        "pot": lambda: pot.wasserstein_1d(un, vn, p=p),
    }
    if not batched:
        out["scipy"] = lambda: scipy.stats.wasserstein_distance(un, vn)
    return out


@pytest.mark.parametrize("contender", ["fastgan", "reference", "pot", "scipy"])
@pytest.mark.parametrize("setup", list(SETUPS))
def bench_wasserstein_1d(benchmark, bench_device, setup, contender):
    if bench_device.type != "cpu":
        pytest.skip("the 1-D kernel runs on the CPU (SciPy and POT are CPU-only here)")
    n, batch = SETUPS[setup]
    gen = torch.Generator().manual_seed(0)
    shape = (n,) if batch is None else (n, batch)
    u = torch.randn(shape, generator=gen, dtype=torch.float64)
    v = torch.randn(shape, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    fns = contenders(u, v, batch is not None)
    if contender not in fns:
        pytest.skip(f"{contender} has no batched 1-D solver")
    _check_and_time(
        benchmark, fns, contender, f"wasserstein_1d / {setup} (cpu, float64)", 5 if batch is None else 10
    )


def _points(n: int, batch: int | None = None):
    gen = torch.Generator().manual_seed(1)
    shape = (n, 2) if batch is None else (batch, n, 2)
    return torch.rand(shape, generator=gen, dtype=torch.float64), torch.rand(shape, generator=gen, dtype=torch.float64)


def _emd_contenders(x: torch.Tensor, y: torch.Tensor):
    """Exact EMD between equal-size uniform point sets, cost matrix included for everyone."""
    n = x.shape[-2]
    w = np.full(n, 1.0 / n)

    def fastgan_emd():
        return fastgan.ot.linear_sum_assignment(torch.cdist(x, y).square()).cost / n

    def scipy_emd():
        out = []
        for xb, yb in zip(x.reshape(-1, n, 2), y.reshape(-1, n, 2)):
            cost = torch.cdist(xb, yb).square().numpy()
            r, c = scipy.optimize.linear_sum_assignment(cost)
            out.append(cost[r, c].sum() / n)
        return out

    def pot_emd():
        return [
            pot.emd2(w, w, torch.cdist(xb, yb).square().numpy())
            for xb, yb in zip(x.reshape(-1, n, 2), y.reshape(-1, n, 2))
        ]

    return {"fastgan": fastgan_emd, "scipy": scipy_emd, "pot": pot_emd}


def _total(values) -> float:
    if isinstance(values, torch.Tensor):
        return float(values.sum())
    return float(np.sum(np.asarray(values, dtype=np.float64)))


def _check_and_time(benchmark, fns, contender: str, group: str, rounds: int, against: str | None = None, run=None):
    """Asserts that ``against`` (default: the contender) totals what fastgan does to 1e-9, then times the contender."""
    against = against or contender
    ours, theirs = _total(fns["fastgan"]()), _total(fns[against]())
    assert abs(ours - theirs) <= 1e-9 * abs(theirs), f"{against}: {theirs} != fastgan {ours}"
    benchmark.group = group
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(run or fns[contender], rounds=rounds, warmup_rounds=1)


EMD_SETUPS = {"n1000": (1000, None), "n2000": (2000, None), "batch32_n128": (128, 32)}


@pytest.mark.parametrize("contender", ["fastgan", "scipy", "pot"])
@pytest.mark.parametrize("setup", list(EMD_SETUPS))
def bench_exact_emd_uniform(benchmark, bench_device, setup, contender):
    """Exact EMD of uniform 2-D point sets, squared Euclidean cost: assignment vs SciPy and POT."""
    if bench_device.type != "cpu":
        pytest.skip("the assignment solver runs on the CPU")
    n, batch = EMD_SETUPS[setup]
    x, y = _points(n, batch)
    fns = _emd_contenders(x, y)
    _check_and_time(benchmark, fns, contender, f"exact EMD, uniform 2-D points / {setup} (cpu, float64)", 5)


def _emd2_contenders(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """emd2 on 2-D point sets with squared Euclidean cost, cost matrix included for everyone.

    ``fastgan``: the public ``fastgan.ot.emd2`` (uniform n = m goes to the
    assignment solver); ``fastgan_simplex``: the network-simplex kernel on
    the same problem; ``pot``: ``ot.emd2``, one problem at a time.
    """
    n, m = x.shape[-2], y.shape[-2]
    an, bn = a.reshape(-1, n).numpy(), b.reshape(-1, m).numpy()

    def cost_matrix():
        return torch.cdist(x, y).square()

    def fastgan_emd2():
        return fastgan.ot.emd2(a, b, cost_matrix())

    def fastgan_simplex():
        M = cost_matrix().reshape(-1, n, m)
        return torch.ops.fastgan.emd.default(a.reshape(-1, n), b.reshape(-1, m), M, 10**7)[3]

    def pot_emd2():
        M = cost_matrix().reshape(-1, n, m)
        return [pot.emd2(an[k], bn[k], M[k].numpy(), numItermax=10**7) for k in range(M.shape[0])]

    return {"fastgan": fastgan_emd2, "fastgan_simplex": fastgan_simplex, "pot": pot_emd2}


EMD2_SETUPS = {
    # name: (n, m, batch, uniform)
    "uniform_n1000": (1000, 1000, None, True),
    "uniform_n2000": (2000, 2000, None, True),
    "uniform_batch32_n128": (128, 128, 32, True),
    "weights_n500_m700": (500, 700, None, False),
}


@pytest.mark.parametrize("contender", ["fastgan", "fastgan_simplex", "pot"])
@pytest.mark.parametrize("setup", list(EMD2_SETUPS))
def bench_emd2(benchmark, bench_device, setup, contender):
    """fastgan.ot.emd2 against POT's ot.emd2 (a Python loop of it for a batch)."""
    if bench_device.type != "cpu":
        pytest.skip("the exact solvers run on the CPU")
    n, m, batch, uniform = EMD2_SETUPS[setup]
    gen = torch.Generator().manual_seed(2)
    lead = () if batch is None else (batch,)
    x = torch.rand(*lead, n, 2, generator=gen, dtype=torch.float64)
    y = torch.rand(*lead, m, 2, generator=gen, dtype=torch.float64)
    if uniform:
        a = torch.full((*lead, n), 1.0 / n, dtype=torch.float64)
        b = torch.full((*lead, m), 1.0 / m, dtype=torch.float64)
    else:
        a = torch.rand(*lead, n, generator=gen, dtype=torch.float64) + 0.1
        b = torch.rand(*lead, m, generator=gen, dtype=torch.float64) + 0.1
        a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    fns = _emd2_contenders(x, y, a, b)
    _check_and_time(benchmark, fns, contender, f"emd2, 2-D points, squared Euclidean / {setup} (cpu, float64)", 5)


#: Largest n timed for POT (and checked against it); beyond, POT takes minutes.
POT_MAX_N = 2000

GPU_ASSIGNMENT_SETUPS = {
    # name: (n, batch, rounds)
    "batch1024_n128": (128, 1024, 5),
    "single_n1000": (1000, None, 3),
    "single_n10000": (10000, None, 1),
}


@pytest.mark.parametrize("contender", ["fastgan", "fastgan_cpu", "pot"])
@pytest.mark.parametrize("setup", list(GPU_ASSIGNMENT_SETUPS))
def bench_exact_emd_uniform_gpu(benchmark, bench_device, setup, contender):
    """Exact EMD of uniform 2-D point sets, points and cost matrix on the GPU.

    ``fastgan``: ``linear_sum_assignment`` on the GPU's cost matrix (the
    Triton kernel, one program per problem, for the batch of 1024; the C++
    kernel on the host's cores for a single large problem, the matrix copied
    over); ``fastgan_cpu``: the same problems through the C++ kernel with the
    points moved to the host first; ``pot``: a Python loop of ``ot.emd2`` on
    the host (not for n = 10,000). Every contender returns the same exact cost.
    """
    if bench_device.type != "cuda":
        pytest.skip("GPU benchmark")
    n, batch, rounds = GPU_ASSIGNMENT_SETUPS[setup]
    if contender == "pot" and n > POT_MAX_N:
        pytest.skip("POT takes minutes at this size")
    x, y = _points(n, batch)
    host = _emd_contenders(x, y)
    xd, yd = x.to(bench_device), y.to(bench_device)

    def on_gpu():
        return fastgan.ot.linear_sum_assignment(torch.cdist(xd, yd).square()).cost / n

    def on_cpu():
        return fastgan.ot.linear_sum_assignment(torch.cdist(xd.cpu(), yd.cpu()).square()).cost / n

    fns = {"fastgan": on_gpu, "fastgan_cpu": on_cpu, "pot": host["pot"]}
    _check_and_time(
        benchmark, fns, contender, f"exact EMD, uniform 2-D points / {setup} (cuda, float64)", rounds,
        against="pot" if n <= POT_MAX_N else "fastgan_cpu", run=timed(fns[contender], bench_device),
    )
