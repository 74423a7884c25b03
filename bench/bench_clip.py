"""Weight clipping of a whole critic: fastgan against what users write today.

Contenders, on the same parameters:
- floor: one ``clamp_`` over a single contiguous tensor with as many elements
  (the least a multi-tensor op can do; it reads and writes each element once);
- fastgan: ``fastgan.clip_parameters_`` (also returns the clipped count);
- loop: ``for p in critic.parameters(): p.data.clamp_(-c, c)`` (seed 003);
- foreach: ``torch._foreach_clamp_min_`` + ``torch._foreach_clamp_max_``;
- reference: ``fastgan.reference.clip_parameters_`` (loop plus count);
- triton: ``backend="triton"`` (GPU only: one launch per tensor).
"""

from __future__ import annotations

import pytest
import torch
from conftest import timed
from critics import CRITICS

import fastgan

CLIP = 0.01  # WGAN Algorithm 1


def _parameters(critic_name: str, device: torch.device) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = list(CRITICS[critic_name]().to(device).parameters())
    with torch.no_grad():
        for p in params:
            p.normal_(0.0, 2 * CLIP)
    return params


def _contender(name: str, params: list[torch.Tensor]):
    if name == "floor":
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        return lambda: flat.clamp_(-CLIP, CLIP)
    if name == "fastgan":
        return lambda: fastgan.clip_parameters_(params, CLIP)
    if name == "triton":
        return lambda: fastgan.clip_parameters_(params, CLIP, backend="triton")
    if name == "reference":
        return lambda: fastgan.reference.clip_parameters_(params, CLIP)
    if name == "loop":

        def loop():
            for p in params:
                p.data.clamp_(-CLIP, CLIP)

        return loop
    if name == "foreach":
        data = [p.data for p in params]

        def foreach():
            torch._foreach_clamp_min_(data, -CLIP)
            torch._foreach_clamp_max_(data, CLIP)

        return foreach
    raise ValueError(name)


@pytest.mark.parametrize("contender", ["floor", "fastgan", "loop", "foreach", "reference", "triton"])
@pytest.mark.parametrize("critic", list(CRITICS))
def bench_clip_parameters(benchmark, bench_device, critic, contender):
    if contender == "triton" and bench_device.type != "cuda":
        pytest.skip("the Triton path is benchmarked on a GPU")
    params = _parameters(critic, bench_device)
    benchmark.group = f"clip_parameters_ / {critic} ({bench_device.type}, {len(params)} tensors, "
    benchmark.group += f"{sum(p.numel() for p in params) / 1e6:.2f}M elements)"
    benchmark.extra_info["contender"] = contender
    repeat = 10 if bench_device.type == "cuda" else 1
    benchmark(timed(_contender(contender, params), bench_device, repeat))
