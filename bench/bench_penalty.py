"""The penalty on given gradients, forward + backward: fused against the usual chain.

Contenders on the same gradients ``g`` (requires grad):
- fastgan: ``fastgan.penalty_from_gradients(g)``;
- seed: ``((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()``, the WGAN-GP code users write;
- reference: ``fastgan.reference.penalty_from_gradients(g)``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import timed

import fastgan

SHAPES = {"points_256x2": (256, 2), "images_64x3x32x32": (64, 3, 32, 32)}


def _seed_penalty(g: torch.Tensor) -> torch.Tensor:
    return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


CONTENDERS = {
    "fastgan": fastgan.penalty_from_gradients,
    "seed": _seed_penalty,
    "reference": fastgan.reference.penalty_from_gradients,
}


@pytest.mark.parametrize("contender", list(CONTENDERS))
@pytest.mark.parametrize("shape", list(SHAPES))
def bench_penalty_forward_backward(benchmark, bench_device, shape, contender):
    g = torch.randn(SHAPES[shape], device=bench_device, requires_grad=True)
    penalty = CONTENDERS[contender]
    benchmark.group = f"penalty_from_gradients fwd+bwd / {shape} ({bench_device.type})"
    benchmark.extra_info["contender"] = contender

    def step():
        (grad,) = torch.autograd.grad(penalty(g), g)
        return grad

    benchmark(timed(step, bench_device))


INTERPOLATE = {
    "fastgan": lambda r, f, e: fastgan.penalty.interpolate(r, f, e),
    "seed": lambda r, f, e: e.view(-1, 1, 1, 1) * r + (1 - e.view(-1, 1, 1, 1)) * f,
}


@pytest.mark.parametrize("contender", list(INTERPOLATE))
def bench_interpolate(benchmark, bench_device, contender):
    """WGAN-GP's interpolates for a 64x3x32x32 batch: one pass against the three-op expression."""
    real = torch.randn(64, 3, 32, 32, device=bench_device)
    fake = torch.randn(64, 3, 32, 32, device=bench_device)
    eps = torch.rand(64, device=bench_device)
    fn = INTERPOLATE[contender]
    benchmark.group = f"interpolate / images_64x3x32x32 ({bench_device.type})"
    benchmark.extra_info["contender"] = contender
    benchmark(timed(lambda: fn(real, fake, eps), bench_device))
