"""Dropout in the MNIST GAN's critic: fastgan's counter-based mask against torch's.

Shapes of the GAN's image recipe (batch 32, width 32, ``critic_dropout`` 0.3):
the critic step scores real and fake together (64 rows), so its three dropout
layers see (64, 32, 14, 14), (64, 64, 7, 7) and (64, 64, 7, 7) feature maps.
Each call is the forward (mask and product) and the backward of one layer.

Contenders, the same work (a fresh mask of independent Bernoulli(1 - p)
variates scaled by 1 / (1 - p), the product, the gradient through the same
mask):
- fastgan: ``fastgan.nn.dropout``, the mask from ``fastgan::dropout_mask``;
- torch: ``F.dropout``, what ``nn.Dropout`` runs without fastgan.

CPU only: on CUDA ``fastgan.nn.dropout`` is ``F.dropout``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import timed

import fastgan

P = 0.3
SHAPES = {"64x32x14x14": (64, 32, 14, 14), "64x64x7x7": (64, 64, 7, 7)}
CONTENDERS = {"fastgan": fastgan.nn.dropout, "torch": F.dropout}


def forward_backward(contender: str, shape: tuple[int, ...]) -> Callable[[], None]:
    """One dropout layer's forward and backward at ``shape``, float32 on the CPU."""
    x = torch.randn(shape, requires_grad=True)
    grad = torch.randn(shape)
    fn = CONTENDERS[contender]
    return lambda: torch.autograd.grad(fn(x, P, True), (x,), grad)


@pytest.fixture
def cpu_only(bench_device):
    if bench_device.type != "cpu":
        pytest.skip("fastgan's dropout mask runs on the CPU; on CUDA both contenders are torch's")


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("contender", list(CONTENDERS))
def bench_dropout_forward_backward(benchmark, cpu_only, contender, shape):
    """Forward and backward of one dropout layer, p = 0.3."""
    benchmark.group = f"dropout p={P} fwd+bwd / {shape} (cpu)"
    benchmark.extra_info["contender"] = contender
    benchmark(timed(forward_backward(contender, SHAPES[shape]), torch.device("cpu")))
