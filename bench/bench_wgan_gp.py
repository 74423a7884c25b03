"""A full WGAN-GP critic step: fastgan against the seed-style reference.

One step = critic loss + gradient penalty + backward + Adam step (WGAN-GP
Algorithm 1: lambda 10, Adam lr 1e-4, betas (0, 0.9)), on
- a 4-layer 512-wide LeakyReLU MLP critic, 2-D points, batch 256;
- a DCGAN 32x32 critic without BatchNorm (conv 3-64-128-256, 4x4 stride 2,
  LeakyReLU 0.2, linear), batch 64.

Contenders, each from the same initial weights:
- reference: the plain torch critic, three critic calls,
  ``torch.autograd.grad(..., create_graph=True)``, ``.norm(2, dim=1)``, mean
  (the code of the WGAN-GP paper and most repositories);
- fastgan: the same critic after ``fastgan.nn.fuse_activations_``, loss from
  ``fastgan.wgan_gp_critic_loss`` (arrangement "auto"); ``fastgan/pair`` and
  ``fastgan/joint`` force the other arrangements;
- ``... (no penalty)``: the same step without the penalty, for the penalty
  overhead factor (step with penalty / step without).

Before timing, the parameter gradients of one step are checked against the
reference's (1e-5 relative, float32; 1e-4 for the forced pair / joint
arrangements, whose larger convolutions round differently).
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import timed
from critics import dcgan32_critic, mlp_critic

import fastgan

SETUPS = {
    "mlp_512x4_batch256": (lambda: mlp_critic(512, 2), (256, 2), 40),
    "dcgan32_batch64": (dcgan32_critic, (64, 3, 32, 32), 15),
}
CONTENDERS = [
    "reference", "fastgan", "fastgan/pair", "fastgan/joint",
    "reference (no penalty)", "fastgan (no penalty)",
]


def seed_style_loss(critic, real, fake, generator=None):
    batch = real.shape[0]
    eps = torch.rand(batch, generator=generator).to(real.device).view(-1, *([1] * (real.dim() - 1)))
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    d_hat = critic(x_hat)
    (grads,) = torch.autograd.grad(d_hat, x_hat, torch.ones_like(d_hat), create_graph=True)
    penalty = ((grads.view(batch, -1).norm(2, dim=1) - 1) ** 2).mean()
    return critic(fake).mean() - critic(real).mean() + 10.0 * penalty


def no_penalty_loss(critic, real, fake, generator=None):
    return critic(fake).mean() - critic(real).mean()


def fastgan_loss(arrangement):
    def loss(critic, real, fake, generator=None):
        return fastgan.wgan_gp_critic_loss(critic, real, fake, generator=generator, arrangement=arrangement)

    return loss


def make(contender: str, critic):
    if contender.startswith("fastgan"):
        critic = fastgan.nn.fuse_activations_(critic)
    if contender.endswith("(no penalty)"):
        return critic, no_penalty_loss
    if contender == "reference":
        return critic, seed_style_loss
    arrangement = contender.split("/")[1] if "/" in contender else "auto"
    return critic, fastgan_loss(arrangement)


def check_gradients(base, real, fake, contender):
    """One step's parameter gradients equal the reference's (same weights, same epsilon)."""
    grads = []
    # cuDNN's convolutions default to TF32 on GPUs (about 1e-3 relative): compare in float32.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for name in ("reference", contender):
            critic, loss_fn = make(name, copy.deepcopy(base))
            loss_fn(critic, real, fake, torch.Generator().manual_seed(0)).backward()
            grads.append([p.grad for p in critic.parameters()])
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    scale = max(float(ref.norm()) for ref in grads[0])
    # Concatenated batches change the convolution algorithms' float32 rounding.
    tolerance = 1e-5 if "/" not in contender else 1e-4
    for ours, ref in zip(grads[1], grads[0]):
        # (The output bias's gradient is exactly 0: E[1] - E[1]. Measure it against the largest.)
        err = float((ours - ref).norm()) / max(float(ref.norm()), 1e-6 * scale)
        assert err <= tolerance, f"{contender}: parameter gradient differs from the reference by {err:.2e}"


def critic_step(setup: str, contender: str, device: torch.device):
    """One WGAN-GP critic step of a contender (gradients checked against the reference's first)."""
    build, shape, _ = SETUPS[setup]
    torch.manual_seed(0)
    base = build().to(device)
    real = torch.randn(shape, device=device)
    fake = torch.randn(shape, device=device)
    if "(no penalty)" not in contender and contender != "reference":
        check_gradients(base, real, fake, contender)
    critic, loss_fn = make(contender, copy.deepcopy(base))
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(critic, real, fake).backward()
        opt.step()

    return step


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("setup", list(SETUPS))
def bench_wgan_gp_critic_step(benchmark, bench_device, setup, contender):
    step = critic_step(setup, contender, bench_device)
    benchmark.group = f"WGAN-GP critic step / {setup} ({bench_device.type})"
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(timed(step, bench_device), rounds=SETUPS[setup][2], warmup_rounds=5)
