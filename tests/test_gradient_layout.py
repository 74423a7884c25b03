"""Gradients follow their parameter's layout (torch's gradient layout contract).

DistributedDataParallel copies every gradient into a bucket view with the
parameter's strides and warns ("Grad strides do not match bucket view strides")
on every step when an op returns another layout: the fused ops' backward must
give each parameter a gradient with the parameter's own strides.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fastgan

pytestmark = pytest.mark.skipif(not fastgan._library.LOADED, reason="fastgan's compiled library is not built")


def _mlp(transposed: bool) -> nn.Sequential:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))
    if transposed:
        # Parameters stored column-major: the first weight (128, 2) with strides (1, 128), and
        # the last (1, 128) with strides (1, 1), a layout autograd's accumulation does not
        # correct (it ignores the strides of size-1 dimensions) while DDP's buckets compare them.
        for layer in (critic[0], critic[4]):
            w = layer.weight.detach()
            layer.weight = nn.Parameter(torch.empty_strided(w.shape, (1, w.shape[0])).copy_(w))
        assert critic[0].weight.stride() == (1, 128) and critic[4].weight.stride() == (1, 1)
    return critic


@pytest.mark.parametrize("transposed_first", [False, True])
@pytest.mark.parametrize("with_penalty", [False, True])
def test_mlp_critic_penalty_gradients_have_the_parameters_strides(transposed_first, with_penalty):
    critic = _mlp(transposed_first)
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    x_hat = torch.randn(64, 2) if with_penalty else None
    d_real, d_fake, penalty = fastgan.mlp_critic_penalty(critic, real, fake, x_hat)
    (d_fake.mean() - d_real.mean() + 10 * penalty).backward()
    grads = {name: p.grad.clone() for name, p in critic.named_parameters()}
    for name, p in critic.named_parameters():
        assert p.grad.stride() == p.stride(), (name, p.grad.stride(), p.stride())
    # and the values are autograd's
    critic.zero_grad(set_to_none=True)
    loss = critic(fake).mean() - critic(real).mean()
    if with_penalty:
        x = x_hat.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        loss = loss + 10 * ((g.norm(dim=1) - 1) ** 2).mean()
    loss.backward()
    for name, p in critic.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)
