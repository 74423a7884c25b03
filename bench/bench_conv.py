"""One-channel convolutions of an MNIST GAN step: fastgan's input-gradient kernel against torch's.

Shapes of the image recipes (batch 32, 28x28, width 32): the generator's last
layer, a transposed convolution 32 -> 1 channel, 4x4 stride 2 (forward and
backward, the generator step), and the critic's first layer, 1 -> 32 channels,
whose input gradient the generator step and the gradient penalty run through.

Contenders, the same arithmetic to float32 rounding:
- fastgan: ``fastgan.nn.conv_transpose2d_single_channel`` / ``conv2d_single_channel``;
- torch: ``F.conv_transpose2d`` / ``F.conv2d``, what the models run without fastgan.

CPU only: on CUDA both functions are torch's own.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import timed

import fastgan

B, C, SIDE = 32, 32, 28

TRANSPOSED = {"fastgan": fastgan.nn.conv_transpose2d_single_channel, "torch": F.conv_transpose2d}
FORWARD = {"fastgan": fastgan.nn.conv2d_single_channel, "torch": F.conv2d}


@pytest.fixture
def cpu_only(bench_device):
    if bench_device.type != "cpu":
        pytest.skip("fastgan's one-channel kernels run on the CPU; on CUDA these are torch's convolutions")


@pytest.mark.parametrize("contender", list(TRANSPOSED))
def bench_generator_last_layer(benchmark, cpu_only, contender):
    """(32, 32, 14, 14) -> (32, 1, 28, 28), forward and backward with respect to input, weight and bias."""
    x = torch.randn(B, C, SIDE // 2, SIDE // 2, requires_grad=True)
    w = torch.randn(C, 1, 4, 4, requires_grad=True)
    b = torch.randn(1, requires_grad=True)
    grad = torch.randn(B, 1, SIDE, SIDE)
    fn = TRANSPOSED[contender]
    benchmark.group = "conv_transpose2d to one channel fwd+bwd / 32x32x14x14 (cpu)"
    benchmark.extra_info["contender"] = contender
    benchmark(timed(lambda: torch.autograd.grad(fn(x, w, b, 2, 1), (x, w, b), grad), torch.device("cpu")))


@pytest.mark.parametrize("contender", list(FORWARD))
def bench_critic_first_layer_input_grad(benchmark, cpu_only, contender):
    """(32, 1, 28, 28) -> (32, 32, 14, 14), forward and the input gradient (the generator step's path)."""
    x = torch.randn(B, 1, SIDE, SIDE, requires_grad=True)
    w = torch.randn(C, 1, 4, 4)
    grad = torch.randn(B, C, SIDE // 2, SIDE // 2)
    fn = FORWARD[contender]
    benchmark.group = "conv2d from one channel, input gradient / 32x1x28x28 (cpu)"
    benchmark.extra_info["contender"] = contender
    benchmark(timed(lambda: torch.autograd.grad(fn(x, w, None, 2, 1), (x,), grad), torch.device("cpu")))
