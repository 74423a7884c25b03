"""End-to-end training speed: one generator iteration on fastgan's kernels vs the references.

One generator iteration = ``n_critic`` critic updates + one generator update of
:class:`fastgan.train.Trainer`, with each preset's optimizer (the papers'
defaults), on the 2-D MLPs (generator and critic of 3 hidden layers, batch 256,
grid25 data) at two widths: 128, the trainer's default (what ``fastgan train``
runs), and 512, the WGAN-GP authors' toy code. Contenders, from the same seed
and weights:

- ``fastgan``: ``backend="auto"``: fastgan's penalty (for these MLP critics the
  whole critic evaluation in one op, ``fastgan.mlp_critic_penalty``), clipping,
  batched spectral norm, fused activations;
- ``reference``: what a user writes without fastgan: ``backend="reference"``,
  the same loop on fastgan's pure-PyTorch references (``fastgan.reference``'s
  spectral-norm parametrization, the autograd penalty), except that WGAN's
  clipping is the plain ``for p in critic.parameters(): p.data.clamp_(-c, c)``
  loop after each critic step (not ``fastgan.reference.clip_parameters_``,
  which also counts the clipped elements).

    PYTHONPATH=. python -m pytest bench/bench_train.py -q
"""

from __future__ import annotations

import pytest
import torch
from conftest import timed

from fastgan.train import Trainer, preset

ALGOS = {"gan": 10, "wgan": 6, "wgan-gp": 6, "sngan": 6}
WIDTHS, BATCH = (128, 512), 256


def make(algo: str, backend: str, device: torch.device, width: int) -> Trainer:
    cfg = preset(algo, paper_defaults=True, width=width, batch_size=BATCH, backend=backend, device=str(device), progress=False, seed=0)
    return Trainer(cfg)


def generator_iteration(algo: str, contender: str, device: torch.device, width: int = WIDTHS[-1]):
    """``n_critic`` critic updates and one generator update of a contender's trainer."""
    trainer = make(algo, "auto" if contender == "fastgan" else "reference", device, width)
    clip = None
    if contender == "reference" and trainer.cfg.clip is not None:
        # the user's loop instead of the trainer's clip_parameters_ call
        clip, trainer.cfg.clip = trainer.cfg.clip, None
    critic = trainer.D

    def iteration():
        for _ in range(trainer.cfg.n_critic):
            trainer._critic_step()
            if clip is not None:
                for p in critic.parameters():
                    p.data.clamp_(-clip, clip)
        trainer._generator_step()

    return iteration


@pytest.mark.parametrize("contender", ["fastgan", "reference"])
@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("width", WIDTHS)
def bench_generator_iteration(benchmark, bench_device, width, algo, contender):
    iteration = generator_iteration(algo, contender, bench_device, width)
    benchmark.group = f"train / {algo} generator iteration / mlp 3x{width} batch {BATCH} ({bench_device.type})"
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(timed(iteration, bench_device), rounds=ALGOS[algo], warmup_rounds=2)
