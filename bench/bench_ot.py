"""Exact 1-D Wasserstein: fastgan against SciPy, POT and the torch reference.

- one problem of n = m = 10^6 samples (W_1, uniform weights): fastgan's
  C++ sort-and-walk against ``scipy.stats.wasserstein_distance``, POT's
  ``ot.wasserstein_1d`` (NumPy backend) and fastgan's torch reference;
- a batch of 256 problems of n = m = 1000 (W_2^2), as sliced Wasserstein
  with 256 projections computes it.
"""

from __future__ import annotations

import ot as pot
import pytest
import scipy.stats
import torch

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
    ours = float(fns["fastgan"]().sum())
    theirs = float(torch.as_tensor(fns[contender]()).sum())
    assert abs(ours - theirs) <= 1e-9 * abs(theirs), f"{contender}: {theirs} != fastgan {ours}"
    benchmark.group = f"wasserstein_1d / {setup} (cpu, float64)"
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(fns[contender], rounds=5 if batch is None else 10, warmup_rounds=1)
