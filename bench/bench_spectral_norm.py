"""Spectral normalisation of a whole critic: fastgan against torch's parametrization.

Training-step groups (a hinge-loss critic step: D(real), D(fake), backward,
Adam), on the same critic and data:
- no_sn: the critic without spectral normalisation (the overhead baseline);
- torch: ``torch.nn.utils.parametrizations.spectral_norm`` on every layer;
- fastgan: ``fastgan.nn.spectral_norm_all`` (one power-iteration op per forward).
The spectral-norm overhead is a contender's step time minus no_sn's.

Power-iteration groups (one step for every layer, sigma included, no W / sigma):
- floor: two sums over one flat buffer holding every weight (two reads);
- fastgan: ``fastgan::spectral_norm_power_iteration`` on all layers;
- torch: torch's per-layer ``_power_method`` and ``vdot(u, mv(W, v))``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import timed
from critics import mlp_critic, sngan_standard_cnn
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

import fastgan

CRITICS = {
    "sngan_cnn": (sngan_standard_cnn, (3, 32, 32)),
    "mlp_critic": (mlp_critic, (2,)),
}
STEP_CASES = [("sngan_cnn", 8), ("mlp_critic", 16), ("sngan_cnn", 64), ("mlp_critic", 256)]
LAYERS = (nn.Linear, nn.Conv2d)

# Once the hinge loss saturates, gradients vanish and Adam's second moments
# decay into subnormal floats, which slow every contender's step tenfold on
# x86: flush them, as the comparison is about spectral normalisation (for
# this module's benchmarks only: the setting is restored after them).
@pytest.fixture(autouse=True, scope="module")
def _flush_denormal():
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _critic(name: str, contender: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = CRITICS[name][0]().to(device)
    if contender == "torch":
        for m in list(model.modules()):
            if isinstance(m, LAYERS):
                torch_spectral_norm(m)
    elif contender == "fastgan":
        fastgan.nn.spectral_norm_all(model)
    return model


def critic_step(critic: str, batch: int, contender: str, device: torch.device):
    """One hinge-loss critic step (D(real), D(fake), backward, Adam) of a contender."""
    model = _critic(critic, contender, device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.0, 0.9))
    shape = CRITICS[critic][1]
    g = torch.Generator().manual_seed(0)
    real = torch.randn((batch, *shape), generator=g).to(device)
    fake = torch.randn((batch, *shape), generator=g).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.relu(1 - model(real)).mean() + torch.relu(1 + model(fake)).mean()
        loss.backward()
        opt.step()

    return step


def power_iteration(critic: str, contender: str, device: torch.device):
    """One power iteration of every layer of the critic (floor: two reads of every weight).

    Returns the callable and the layers' weights.
    """
    model = _critic(critic, "torch", device)
    layers = [m for m in model.modules() if isinstance(m, LAYERS)]
    sns = [m.parametrizations.weight[0] for m in layers]
    weights = [m.parametrizations.weight.original.detach() for m in layers]
    if contender == "floor":
        flat = torch.cat([w.reshape(-1) for w in weights])

        def run():
            flat.sum()
            flat.sum()

    elif contender == "fastgan":
        op = torch.ops.fastgan.spectral_norm_power_iteration.default
        us = [sn._u for sn in sns]
        vs = [sn._v for sn in sns]
        dims = [sn.dim for sn in sns]

        def run():
            op(weights, us, vs, dims, 1, 1e-12)

    else:
        mats = [sn._reshape_weight_to_matrix(w) for sn, w in zip(sns, weights)]

        @torch.no_grad()
        def run():
            for sn, mat in zip(sns, mats):
                sn._power_method(mat, 1)
                torch.vdot(sn._u, torch.mv(mat, sn._v))

    return run, weights


@pytest.mark.parametrize("contender", ["no_sn", "torch", "fastgan"])
@pytest.mark.parametrize("critic,batch", STEP_CASES)
def bench_critic_step(benchmark, bench_device, critic, batch, contender):
    step = critic_step(critic, batch, contender, bench_device)
    benchmark.group = f"critic step / {critic} batch {batch} ({bench_device.type})"
    benchmark.extra_info["contender"] = contender
    benchmark(timed(step, bench_device))


@pytest.mark.parametrize("contender", ["floor", "fastgan", "torch"])
@pytest.mark.parametrize("critic", list(CRITICS))
def bench_power_iteration(benchmark, bench_device, critic, contender):
    run, weights = power_iteration(critic, contender, bench_device)
    n = sum(w.numel() for w in weights)
    benchmark.group = f"power iteration / {critic} ({bench_device.type}, {len(weights)} weights, {n / 1e6:.2f}M elements)"
    benchmark.extra_info["contender"] = contender
    benchmark(timed(run, bench_device, 10 if bench_device.type == "cuda" else 1))
