"""A generator step's evaluation of an MLP critic: fastgan.mlp_critic_scores against calling the critic.

The 2-D recipes' critic (3 hidden LeakyReLU layers of 128, one output) on a
batch of 256 generated points: the scores, then the gradient of the generator
loss -mean D(x) with respect to the points (what flows on into the generator),
the critic's parameters getting no gradient. Widths 128 and 512.

Contenders, the same products to float32 rounding:
- fastgan: ``fastgan.mlp_critic_scores(critic, x, parameters=False)``, one node;
- torch: ``critic(x)`` with the critic's parameters frozen
  (``requires_grad_(False)``), what a generator step runs without fastgan.
"""

from __future__ import annotations

import pytest
import torch
from conftest import timed
from critics import mlp_critic

import fastgan

BATCH = 256


def _scores(contender: str, critic):
    if contender == "fastgan":
        return lambda x: fastgan.mlp_critic_scores(critic, x, parameters=False)
    return critic.requires_grad_(False)


@pytest.mark.parametrize("contender", ["fastgan", "torch"])
@pytest.mark.parametrize("width", [128, 512])
def bench_generator_step_critic(benchmark, bench_device, width, contender):
    torch.manual_seed(0)
    critic = mlp_critic(width).to(bench_device)
    x = torch.randn(BATCH, 2, device=bench_device, requires_grad=True)
    scores = _scores(contender, critic)
    # The same gradient as the frozen critic's, before any timing.
    (ours,) = torch.autograd.grad(-scores(x).mean(), x)
    (theirs,) = torch.autograd.grad(-critic.requires_grad_(False)(x).mean(), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    benchmark.group = f"generator step through an MLP critic {width} x 3 / batch {BATCH} ({bench_device.type})"
    benchmark.extra_info["contender"] = contender
    benchmark(timed(lambda: torch.autograd.grad(-scores(x).mean(), x), bench_device))
